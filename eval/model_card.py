"""``python -m eval.model_card``: write the shipped weights' MODEL_CARD.md from the record.

The card is generated, never typed: the training facts come from the weights'
own metadata (written by ``dvc_edic.export``) and the results from the JSON and
tables the evaluation runners wrote. A card whose numbers disagree with the
runner's output therefore cannot exist; rerun this after retraining or
re-evaluating.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

from dvc_edic.errors import DvcEdicError, InputError
from dvc_edic.weights import DEFAULT_WEIGHTS, read_metadata
from eval.report import file_sha256, write_text_atomic

DEFAULT_VIDEO_RESULTS = Path("eval/results/dev")
DEFAULT_IMAGE_RESULTS = Path("eval/results/image")
CARD_NAME = "MODEL_CARD.md"
SECONDS_PER_HOUR = 3600.0
BYTES_PER_MB = 1e6
# Line width of the YAML dump of the training config.
CONFIG_WIDTH = 100
# Metrics of the dvc_edic ladder table, in the order shown.
LADDER_METRICS = (("psnr_yuv", "PSNR-YUV dB", 2), ("psnr_y", "PSNR-Y dB", 2),
                  ("ms_ssim", "MS-SSIM", 4))


def _load_json(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise InputError(f"{path}: not a readable results file: {exc}") from None


def _relative(target: Path, start: Path) -> str:
    return Path(os.path.relpath(target.resolve(), start.resolve())).as_posix()


def training_section(meta: dict[str, str]) -> list[str]:
    """Per-stage steps, wall time, hardware and data, from the weights' history."""
    history = json.loads(meta.get("history", "[]"))
    config = json.loads(meta.get("config", "{}"))
    lines = [
        "## Training",
        "",
        "Every weight was trained by this project's code (`python -m dvc_edic.train`) from "
        "random initialisation; nothing was downloaded. Stages in order; *modules* says "
        "which part of the shipped model a stage's run still describes.",
        "",
        "| stage | modules | steps done / set for that run | wall time | hardware | processes |",
        "|---|---|---|---|---|---|",
    ]
    total_s = 0.0
    for entry in history:
        total_s += float(entry["elapsed_s"])
        modules = ", ".join(entry.get("modules", [])) or "all it trained"
        lines.append(
            f"| {entry['stage']} | {modules} | {entry['steps']} / {entry['total_steps']} | "
            f"{float(entry['elapsed_s']) / SECONDS_PER_HOUR:.2f} h | {entry['hardware']} | "
            f"{entry['processes']} |"
        )
    lines += ["", f"Total training wall time: {total_s / SECONDS_PER_HOUR:.2f} h.", ""]
    if config.get("init_parts"):
        parts = ", ".join(f"`{k}` from `{v}`" for k, v in config["init_parts"].items())
        lines += [
            f"The last stage joined two runs (`init_parts`): {parts}. The P-frame stages "
            "before it trained beside the I-frame run, with references from an earlier "
            "copy of the I-frame coder.",
            "",
        ]
    lines += ["### Data seen per stage", ""]
    for entry in history:
        for phase, items in entry["data"].items():
            for item in items:
                lines.append(f"- **{entry['stage']}** ({phase}): {item}")
    lines += [
        "",
        f"Synthetic data used in some stage: {meta.get('synthetic_data', 'unknown')}. "
        "No evaluation sequence was trained on: the data loaders refuse the names of "
        "the UVG, HEVC-B and dev-set sequences (`dvc_edic/data/sources.py`).",
        "",
        f"Configuration of the last stage (`{meta.get('stage')}`), as stored in the weights:",
        "",
        "```yaml",
        yaml.safe_dump(config, sort_keys=True, default_flow_style=None, width=CONFIG_WIDTH).strip(),
        "```",
        "",
    ]
    return lines


def video_section(results_dir: Path, card_dir: Path) -> list[str]:
    """The runner's BD table verbatim, its plots, and the dvc_edic quality ladder."""
    report = _load_json(results_dir / "results.json")
    table = (results_dir / "table.md").read_text(encoding="utf-8").strip()
    lines = [f"## Video RD: `{report['set']}` set ({report.get('config')})", "", table, ""]
    plots = sorted((results_dir / "plots").glob("*.png"))
    lines += [f"![{p.stem}]({_relative(p, card_dir)})" for p in plots]
    ours = report["results"].get("dvc_edic", {})
    for sequence, points in ours.items():
        seq = report["sequences"][sequence]
        lines += [
            "",
            f"**{sequence}** ({seq['width']}x{seq['height']}, {seq['frames']} frames, "
            f"intra period {seq['intra_period']}): the dvc_edic quality ladder",
            "",
            "| quality | bpp | kbps | " + " | ".join(m[1] for m in LADDER_METRICS)
            + " | encode fps | decode fps | P positions coded intra |",
            "|---" * (6 + len(LADDER_METRICS)) + "|",
        ]
        for p in points:
            metrics = " | ".join(
                "n/a" if p["avg"].get(key) is None else f"{p['avg'][key]:.{digits}f}"
                for key, _, digits in LADDER_METRICS
            )
            frames = p["decoded_frames"] or seq["frames"]
            lines.append(
                f"| {p['rate_param']:g} | {p['bpp']:.4f} | {p['kbps']:.1f} | {metrics} | "
                f"{frames / p['encode_s']:.2f} | {frames / p['decode_s']:.2f} | "
                f"{p.get('info', {}).get('intra_fallbacks', 'n/a')} |"
            )
    machine = report.get("machine", {})
    lines += ["", f"Measured on: {machine.get('cpu', 'unknown CPU')}, {machine.get('cores')} "
              f"cores, {machine.get('date')}, commit {machine.get('git_commit')}.", ""]
    return lines


def image_section(results_dir: Path, card_dir: Path) -> list[str]:
    report = _load_json(results_dir / "results.json")
    table = (results_dir / "table.md").read_text(encoding="utf-8").strip()
    images = ", ".join(report.get("images", []))
    lines = [f"## Still images (the I-frame coder alone): {images}", "", table, ""]
    plots = sorted((results_dir / "plots").glob("*.png"))
    lines += [f"![{p.stem}]({_relative(p, card_dir)})" for p in plots]
    return [*lines, ""]


def build_card(weights: Path, video: Path | None, image: Path | None, out: Path) -> str:
    if not weights.is_file():
        raise InputError(f"{weights}: no weights file to describe")
    meta = read_metadata(weights)
    card_dir = out.parent
    lines = [
        "# Model card: dvc_edic default weights",
        "",
        "Generated by `python -m eval.model_card` from the weights' metadata and the "
        "evaluation runners' output; regenerate it instead of editing it.",
        "",
        "## The model",
        "",
        f"- File: `{_relative(weights, card_dir)}`, {weights.stat().st_size / BYTES_PER_MB:.1f} "
        f"MB, sha256 `{file_sha256(weights)}`",
        f"- Model id `{meta.get('model_id')}`, stored as {meta.get('dtype')}; exported "
        f"{meta.get('date')} on {meta.get('exported_on')}",
        f"- Preset: `{json.loads(meta['preset']).get('name', 'see metadata')}` "
        "(configs/models/); one variable-rate model, quality levels 1..8",
        "- I-frames: EDIC (channel attention, GMM entropy model, decoder-side enhancement, "
        "no autoregressive context). P-frames: SpyNet-style flow, EDIC-style MV and residual "
        "coders, motion-compensation net. See docs/architecture.md.",
        "- Intended use: research and evaluation of learned video coding on a CPU. "
        "Not a replacement for x264/x265; see the results below.",
        "",
        *training_section(meta),
    ]
    if video is not None:
        lines += video_section(video, card_dir)
    if image is not None:
        lines += image_section(image, card_dir)
    return "\n".join(lines).rstrip() + "\n"


def fill_readme(text: str, blocks: dict[str, str]) -> str:
    """Replace each ``<!-- results:NAME -->...<!-- /results:NAME -->`` block's body.

    The README quotes the runners' tables; filling them by program keeps the
    quoted numbers identical to the files in eval/results/.
    """
    for name, body in blocks.items():
        start, end = f"<!-- results:{name} -->", f"<!-- /results:{name} -->"
        i, j = text.find(start), text.find(end)
        if i < 0 or j < i:
            raise InputError(f"README: no {start} ... {end} block to fill")
        text = text[: i + len(start)] + "\n" + body.strip() + "\n" + text[j:]
    return text


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m eval.model_card",
        description="Write MODEL_CARD.md for a weights file from its metadata and RD results.",
    )
    p.add_argument("--weights", type=Path, default=DEFAULT_WEIGHTS,
                   help="weights file (default: the shipped default weights)")
    p.add_argument("--video", type=Path, default=DEFAULT_VIDEO_RESULTS,
                   help="output folder of python -m eval.rd (results.json, table.md, plots/)")
    p.add_argument("--image", type=Path, default=DEFAULT_IMAGE_RESULTS,
                   help="output folder of python -m eval.image_rd")
    p.add_argument("--out", type=Path, default=None,
                   help=f"card to write (default: {CARD_NAME} next to the weights)")
    p.add_argument("--readme", type=Path, default=None,
                   help="also fill this README's <!-- results:video/image --> blocks with "
                        "the runners' tables")
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    out = args.out or args.weights.parent / CARD_NAME
    try:
        video = args.video if (args.video / "results.json").is_file() else None
        image = args.image if (args.image / "results.json").is_file() else None
        text = build_card(args.weights, video, image, out)
    except (DvcEdicError, KeyError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    write_text_atomic(out, text)
    if args.readme is not None:
        blocks = {name: (folder / "table.md").read_text(encoding="utf-8")
                  for name, folder in (("video", video), ("image", image)) if folder is not None}
        try:
            filled = fill_readme(args.readme.read_text(encoding="utf-8"), blocks)
        except (OSError, InputError) as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
        write_text_atomic(args.readme, filled)
    missing = [n for n, d in (("video", video), ("image", image)) if d is None]
    print(f"wrote {out}" + (f" (no {' or '.join(missing)} results found)" if missing else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
