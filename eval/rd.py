"""RD evaluation runner: `python -m eval.rd CONFIG [--out DIR]` (or `--folder DIR`).

Each (codec, sequence, rate point) is one unit of work whose result is written to the
work dir as soon as it is done, keyed by everything that decides it; a rerun (after a
crash, or with one more codec) only computes what is missing or changed. Sources are
prepared once, in the main process, so every codec reads the identical raw YUV.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import shutil
import sys
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from dvc_edic.errors import DvcEdicError, InputError
from eval import anchors
from eval.bd import bd_compare, mean_or_none
from eval.codecs import make_adapter, rate_label
from eval.metrics import CONVENTIONS, average, compare_sequences, rate_numbers
from eval.report import machine_info, markdown_table, write_json_atomic
from eval.sets import CodecSpec, EvalConfig, load_config, resolve_sequences, with_folder
from eval.sources import RawSource, open_raw, prepare_source

# Config used for codec settings when only --folder is given.
DEFAULT_CONFIG = Path(__file__).resolve().parent.parent / "configs" / "eval" / "dev.yaml"
# Default output folder (relative to the current directory): runs/eval/<set name>.
DEFAULT_OUT_ROOT = Path("runs") / "eval"
# Bump when the point record changes meaning, so old cached points are recomputed.
POINT_SCHEMA = 1
RESULTS_SCHEMA = 1
# Metrics BD numbers are computed for (the config's `bd.metric` leads the table).
BD_METRICS = ("psnr_yuv", "psnr_y", "psnr_rgb")
# Exit codes: bad input/config, and any other failure of a codec or stream.
EXIT_INPUT = 2
EXIT_FAILURE = 1


@dataclass(frozen=True)
class PointTask:
    """One (codec, sequence, rate) unit; picklable so worker processes can run it."""

    codec: CodecSpec
    source: RawSource
    rate: float
    point_dir: Path
    key: dict[str, Any]
    ms_ssim: bool
    keep_decoded: bool

    @property
    def record(self) -> Path:
        return self.point_dir / f"{rate_label(self.rate)}.json"


def _load_cached(task: PointTask) -> dict[str, Any] | None:
    if not task.record.is_file():
        return None
    try:
        with task.record.open("r", encoding="utf-8") as fh:
            data = json.load(fh)
    except (OSError, json.JSONDecodeError):
        return None
    return data if data.get("key") == task.key else None


def run_point(task: PointTask) -> dict[str, Any]:
    """Encode, decode, measure one point and store its record (the unit a worker runs)."""
    adapter = make_adapter(task.codec)
    src = task.source
    task.point_dir.mkdir(parents=True, exist_ok=True)
    run = adapter.run_point(src, task.rate, task.point_dir)
    try:
        size = run.decoded.stat().st_size
        expected = src.frame_bytes * src.frames
        if size != expected:
            raise InputError(
                f"{run.decoded}: decoded YUV has {size} bytes, expected {expected} "
                f"({src.frames} frames of {src.width}x{src.height}, {src.bit_depth}-bit)"
            )
        with open_raw(src.path, src) as ref, open_raw(run.decoded, src) as dec:
            per_frame = compare_sequences(
                ref, dec, src.frames, run.decoded, with_ms_ssim=task.ms_ssim
            )
    finally:
        if not task.keep_decoded:
            run.decoded.unlink(missing_ok=True)
    record = {
        "schema": POINT_SCHEMA,
        "key": task.key,
        "codec": task.codec.name,
        "sequence": src.name,
        "rate_param": task.rate,
        **rate_numbers(run.bits, src.width, src.height, src.frames, float(src.fps)),
        "bitstream": run.bitstream.name,
        "decoded_frames": run.decoded_frames,
        "encode_s": run.encode_s,
        "decode_s": run.decode_s,
        "info": run.info,
        "avg": average(per_frame),
        "per_frame": per_frame,
    }
    write_json_atomic(task.record, record)
    return record


def _point_key(task_codec: CodecSpec, src: RawSource, rate: float, ms_ssim: bool) -> dict[str, Any]:
    adapter = make_adapter(task_codec)
    origin = Path(src.origin)
    return {
        "schema": POINT_SCHEMA,
        "codec": adapter.cache_key(src, rate),
        "rate": rate,
        "source": {**src.to_json(), "origin_size": origin.stat().st_size},
        "ms_ssim": ms_ssim,
    }


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m eval.rd",
        description="RD evaluation of dvc_edic against x264/x265: metrics, BD-rate, plots, tables.",
    )
    p.add_argument("config", nargs="?", help="evaluation config (configs/eval/*.yaml)")
    p.add_argument(
        "--folder",
        help="evaluate every .yuv/.y4m in this folder (codec settings from "
        "CONFIG, or configs/eval/dev.yaml)",
    )
    p.add_argument("--root", help="folder holding the set's files (overrides the config's root)")
    p.add_argument("--out", help="output folder (default runs/eval/<set name>)")
    p.add_argument("--anchor", help="codec the BD numbers are measured against")
    p.add_argument("--codecs", help="comma-separated subset of the config's codecs to run")
    p.add_argument("--frames", type=int, help="frames to code per sequence (overrides the config)")
    p.add_argument("--preset", choices=anchors.PRESETS, help="x264/x265 preset (default: config)")
    p.add_argument(
        "--backend",
        choices=("ffmpeg", "pyav"),
        help="how anchors run (default: ffmpeg if on PATH, else PyAV)",
    )
    p.add_argument("--jobs", type=int, default=1, help="points coded in parallel (processes)")
    p.add_argument(
        "--x-axis", choices=("bpp", "kbps"), default="bpp", help="rate axis of the plots"
    )
    p.add_argument("--no-ms-ssim", action="store_true", help="skip MS-SSIM (the slowest metric)")
    p.add_argument("--keep-decoded", action="store_true", help="keep decoded .yuv files")
    args = p.parse_args(argv)
    if not args.config and not args.folder:
        p.error("give a CONFIG, --folder DIR, or both")
    if args.jobs < 1:
        p.error("--jobs must be at least 1")
    return args


def _apply_overrides(cfg: EvalConfig, args: argparse.Namespace) -> EvalConfig:
    if args.folder:
        cfg = with_folder(cfg, args.folder)
    if args.root:
        cfg = replace(cfg, root=Path(os.path.expanduser(args.root)))
    if args.frames is not None:
        if args.frames < 1:
            raise InputError(f"--frames must be positive, got {args.frames}")
        cfg = replace(
            cfg, frames=args.frames, sequences=[replace(s, frames=None) for s in cfg.sequences]
        )
    codecs = cfg.codecs
    if args.codecs:
        wanted = [c.strip() for c in args.codecs.split(",") if c.strip()]
        known = {c.name for c in codecs}
        unknown = [c for c in wanted if c not in known]
        if unknown:
            raise InputError(f"--codecs: {unknown} not in the config's codecs {sorted(known)}")
        codecs = [c for c in codecs if c.name in wanted]
    overrides = {"preset": args.preset, "backend": args.backend}
    codecs = [
        replace(c, settings={**c.settings, **{k: v for k, v in overrides.items() if v}})
        if c.kind in anchors.ENCODERS
        else c
        for c in codecs
    ]
    anchor = args.anchor or cfg.anchor
    if anchor not in {c.name for c in codecs}:
        raise InputError(
            f"anchor {anchor!r} is not among the codecs run: {[c.name for c in codecs]}"
        )
    return replace(cfg, codecs=codecs, anchor=anchor, ms_ssim=cfg.ms_ssim and not args.no_ms_ssim)


def _curves(
    results: dict[str, dict[str, list[dict[str, Any]]]], codec: str, seq: str
) -> dict[str, list]:
    points = sorted(results[codec].get(seq, []), key=lambda r: r["bpp"])
    curve: dict[str, list] = {
        "bpp": [p["bpp"] for p in points],
        "kbps": [p["kbps"] for p in points],
        "rate_param": [p["rate_param"] for p in points],
    }
    for metric in ("psnr_y", "psnr_u", "psnr_v", "psnr_yuv", "psnr_rgb", "ms_ssim"):
        curve[metric] = [p["avg"].get(metric) for p in points]
    return curve


def _class_curve(curves: list[dict[str, list]]) -> dict[str, list] | None:
    """Mean over sequences of each rate point (all sequences must have the same points)."""
    if not curves or len({tuple(c["rate_param"]) for c in curves}) != 1:
        return None
    out: dict[str, list] = {"rate_param": curves[0]["rate_param"]}
    for key in curves[0]:
        if key == "rate_param":
            continue
        columns = list(zip(*(c[key] for c in curves), strict=True))
        out[key] = [
            mean_or_none(list(col)) if all(v is not None for v in col) else None for col in columns
        ]
    return out


def _bd_tables(
    cfg: EvalConfig, sources: list[RawSource], curves: dict[str, dict[str, dict[str, list]]]
) -> tuple[dict, dict]:
    """Per-sequence BD of every codec vs the anchor, and per-class means of those."""
    per_seq: dict[str, dict[str, dict[str, dict[str, Any]]]] = {}
    per_cls: dict[str, dict[str, dict[str, dict[str, Any]]]] = {}
    metrics = [cfg.bd_metric, *[m for m in BD_METRICS if m != cfg.bd_metric]]
    for metric in metrics:
        per_seq[metric], per_cls[metric] = {}, {}
        for codec in curves:
            per_seq[metric][codec] = {}
            for src in sources:
                a, t = curves[cfg.anchor][src.name], curves[codec][src.name]
                if any(v is None for v in a[metric] + t[metric]):
                    continue
                per_seq[metric][codec][src.name] = bd_compare(
                    a["bpp"], a[metric], t["bpp"], t[metric], method=cfg.bd_method
                ).to_json()
            per_cls[metric][codec] = {}
            for cls in sorted({s.cls for s in sources}):
                entries = [per_seq[metric][codec].get(s.name) for s in sources if s.cls == cls]
                defined = [e for e in entries if e is not None and e["bd_rate_pct"] is not None]
                per_cls[metric][codec][cls] = {
                    "bd_rate_pct": mean_or_none([e["bd_rate_pct"] for e in defined]),
                    "bd_psnr_db": mean_or_none([e["bd_psnr_db"] for e in defined]),
                    "method": cfg.bd_method,
                    "averaged_over": len(defined),
                    "of": len(entries),
                    "notes": []
                    if len(defined) == len(entries)
                    else [
                        f"{len(entries) - len(defined)} sequence(s) without a defined BD-rate "
                        "left out"
                    ],
                }
    return per_seq, per_cls


def _pool(jobs: int) -> ProcessPoolExecutor:
    # spawn, not fork: the parent may hold torch/OpenMP threads that a fork would copy broken
    return ProcessPoolExecutor(max_workers=jobs, mp_context=multiprocessing.get_context("spawn"))


def run(args: argparse.Namespace, argv: Sequence[str] | None = None) -> Path:
    """The whole evaluation; returns the output folder."""
    from tqdm import tqdm

    cfg = load_config(args.config or DEFAULT_CONFIG)
    cfg = _apply_overrides(cfg, args)
    sequences = resolve_sequences(cfg)
    out = Path(args.out) if args.out else DEFAULT_OUT_ROOT / cfg.name
    work = out / "work"
    work.mkdir(parents=True, exist_ok=True)

    sources = [prepare_source(seq, work) for seq in sequences]
    tasks: list[PointTask] = []
    results: dict[str, dict[str, list[dict[str, Any]]]] = {c.name: {} for c in cfg.codecs}
    reused = 0
    for src in sources:
        for codec in cfg.codecs:
            results[codec.name][src.name] = []
            for rate in codec.rates:
                task = PointTask(
                    codec,
                    src,
                    rate,
                    work / "points" / src.name / codec.name,
                    _point_key(codec, src, rate, cfg.ms_ssim),
                    cfg.ms_ssim,
                    args.keep_decoded,
                )
                cached = _load_cached(task)
                if cached is not None:
                    results[codec.name][src.name].append(cached)
                    reused += 1
                else:
                    tasks.append(task)

    bar = tqdm(
        total=reused + len(tasks),
        initial=reused,
        desc=f"RD {cfg.name}",
        unit="point",
        file=sys.stderr,
        dynamic_ncols=True,
    )
    with bar:
        if args.jobs == 1:
            for task in tasks:
                results[task.codec.name][task.source.name].append(run_point(task))
                bar.update(1)
        else:
            with _pool(args.jobs) as pool:
                futures = {pool.submit(run_point, t): t for t in tasks}
                for fut in as_completed(futures):
                    task = futures[fut]
                    results[task.codec.name][task.source.name].append(fut.result())
                    bar.update(1)

    curves = {
        c.name: {s.name: _curves(results, c.name, s.name) for s in sources} for c in cfg.codecs
    }
    class_curves: dict[str, dict[str, dict[str, list]]] = {}
    for cls in sorted({s.cls for s in sources}):
        class_curves[cls] = {}
        for codec in cfg.codecs:
            curve = _class_curve([curves[codec.name][s.name] for s in sources if s.cls == cls])
            if curve is not None:
                class_curves[cls][codec.name] = curve
    bd_seq, bd_cls = _bd_tables(cfg, sources, curves)

    _write_outputs(
        cfg,
        args,
        argv,
        out,
        sources,
        results,
        curves,
        class_curves,
        bd_seq,
        bd_cls,
        computed=len(tasks),
        reused=reused,
    )
    return out


def _encoders_used(
    results: dict[str, dict[str, list[dict[str, Any]]]],
) -> dict[str, dict[str, Any]]:
    used: dict[str, dict[str, Any]] = {}
    for codec, by_seq in results.items():
        for points in by_seq.values():
            for p in points:
                info = p.get("info", {})
                entry = used.setdefault(codec, {"versions": set(), "backends": set()})
                entry["versions"].add(str(info.get("encoder_version")))
                entry["backends"].add(str(info.get("backend_version", info.get("encoder"))))
    return {c: {k: sorted(v) for k, v in e.items()} for c, e in used.items()}


def _write_outputs(
    cfg: EvalConfig,
    args: argparse.Namespace,
    argv: Sequence[str] | None,
    out: Path,
    sources: list[RawSource],
    results: dict,
    curves: dict,
    class_curves: dict,
    bd_seq: dict,
    bd_cls: dict,
    computed: int,
    reused: int,
) -> None:
    from eval.breakdown import breakdown_table
    from eval.plots import plot_rd

    plots = out / "plots"
    if plots.is_dir():
        shutil.rmtree(plots)
    panels = ("psnr_yuv", "psnr_y")
    for src in sources:
        plot_rd(
            {c: curves[c][src.name] for c in curves},
            f"{cfg.name} / {src.name} "
            f"({src.width}x{src.height}, {src.frames} frames, intra period {src.intra_period})",
            plots / f"{src.name}.png",
            x=args.x_axis,
            panels=panels,
        )
    for cls, by_codec in class_curves.items():
        plot_rd(
            by_codec,
            f"{cls}: average over {sum(s.cls == cls for s in sources)} sequences",
            plots / f"average_{cls}.png",
            x=args.x_axis,
            panels=panels,
        )

    setup = (
        f"{', '.join(sorted({str(s.frames) for s in sources}))} frames, intra period "
        f"{', '.join(sorted({str(s.intra_period) for s in sources}))}; anchors: "
        + "; ".join(
            f"{c.name} preset {c.settings.get('preset', anchors.DEFAULT_PRESET)}"
            for c in cfg.codecs
            if c.kind in anchors.ENCODERS
        )
        + "."
    )
    table = markdown_table(
        cfg.name,
        cfg.anchor,
        cfg.bd_metric,
        cfg.bd_method,
        bd_seq[cfg.bd_metric],
        [s.name for s in sources],
        bd_cls[cfg.bd_metric],
        setup,
    )
    (out / "table.md").write_text(table, encoding="utf-8")
    breakdown = breakdown_table(results)
    if breakdown is not None:
        (out / "breakdown.md").write_text(breakdown, encoding="utf-8")

    report = {
        "schema": RESULTS_SCHEMA,
        "set": cfg.name,
        "config": str(cfg.source_path) if cfg.source_path else None,
        "machine": machine_info("eval.rd", argv),
        "metrics": CONVENTIONS,
        "bd": {
            "anchor": cfg.anchor,
            "method": cfg.bd_method,
            "metric": cfg.bd_metric,
            "rate": "bpp",
            "package": "bjontegaard",
            "class_average": "mean of the per-sequence BD values",
        },
        "anchor_backend": sorted(
            {
                str(c.settings.get("backend") or anchors.backend())
                for c in cfg.codecs
                if c.kind in anchors.ENCODERS
            }
        ),
        "encoders": _encoders_used(results),
        "codecs": {
            c.name: {"kind": c.kind, "rates": c.rates, "settings": c.settings} for c in cfg.codecs
        },
        "sequences": {s.name: s.to_json() for s in sources},
        "points_computed": computed,
        "points_reused": reused,
        "curves": curves,
        "class_curves": class_curves,
        "bd_rate": bd_seq,
        "bd_rate_class_average": bd_cls,
        "results": {
            c: {s: sorted(p, key=lambda r: r["rate_param"]) for s, p in by.items()}
            for c, by in results.items()
        },
    }
    write_json_atomic(out / "results.json", report)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        out = run(args, argv)
    except InputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_INPUT
    except DvcEdicError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    print(f"results: {out / 'results.json'}\ntable:   {out / 'table.md'}\nplots:   {out / 'plots'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
