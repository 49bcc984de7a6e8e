"""Where the bits go: the per-frame --stats of dvc_edic, summed per RD point.

The share of I vs P bytes, of motion vs residual inside P-frames, and how good
the prediction was (PSNR of the warped reference and of the motion-compensated
prediction) say which part of the codec the next gain must come from.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

# Section names that start with these hold motion (MV latents, block vectors) and the
# residual (by the residual coder or by the I-frame coder).
MOTION_PREFIXES = ("mv_", "bmv")
RESIDUAL_PREFIXES = ("res_", "ires_")
DCT_PREFIXES = ("dct",)  # the DCT refinement layer (format version 6), I and P packets
LOOP_FILTER_PREFIXES = ("lf",)  # the in-loop filter's coefficients (format version 8)
PERCENT = 100.0


def _mean(values: list[float]) -> float | None:
    return sum(values) / len(values) if values else None


def bit_breakdown(per_frame: list[dict[str, Any]]) -> dict[str, Any] | None:
    """Totals and shares of one encode's frames; None for stats without sections."""
    if not per_frame or any("sections" not in f for f in per_frame):
        return None
    total = sum(f["bytes"] for f in per_frame)
    p_frames = [f for f in per_frame if f["type"] == "P"]
    p_bytes = sum(f["bytes"] for f in p_frames)

    def section_sum(frames: list[dict[str, Any]], prefixes: tuple[str, ...]) -> int:
        return sum(n for f in frames for name, n in f["sections"].items()
                   if name.startswith(prefixes))

    mv = section_sum(p_frames, MOTION_PREFIXES)
    res = section_sum(p_frames, RESIDUAL_PREFIXES)
    dct = section_sum(per_frame, DCT_PREFIXES)
    return {
        "bytes": total,
        "i_share": PERCENT * (total - p_bytes) / total,
        "p_share": PERCENT * p_bytes / total,
        "mv_share_of_p": PERCENT * mv / p_bytes if p_bytes else None,
        "residual_share_of_p": PERCENT * res / p_bytes if p_bytes else None,
        "dct_share": PERCENT * dct / total,
        "lf_share": PERCENT * section_sum(per_frame, LOOP_FILTER_PREFIXES) / total,
        "overhead_share": PERCENT * sum(f["overhead_bytes"] for f in per_frame) / total,
        "mean_psnr_warped": _mean([f["psnr_warped"] for f in p_frames if f["psnr_warped"]]),
        "mean_psnr_pred": _mean([f["psnr_pred"] for f in p_frames if f["psnr_pred"]]),
        "mean_psnr_p": _mean([f["psnr_yuv"] for f in p_frames]),
        "modes": dict(Counter(f["mode"] for f in per_frame)),
    }


def _fmt(value: float | None, digits: int = 1) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def breakdown_table(results: dict[str, dict[str, list[dict[str, Any]]]]) -> str | None:
    """Markdown: one row per codec, sequence and rate point that has a breakdown."""
    rows = []
    for codec, by_seq in results.items():
        for seq, points in by_seq.items():
            for p in sorted(points, key=lambda r: r["rate_param"]):
                b = (p.get("info") or {}).get("breakdown")
                if not b:
                    continue
                modes = ", ".join(f"{m} {n}" for m, n in sorted(b["modes"].items()))
                rows.append(
                    f"| {codec} | {seq} | {p['rate_param']:g} | {p['bpp']:.4f} | "
                    f"{_fmt(b['i_share'])} | {_fmt(b['mv_share_of_p'])} | "
                    f"{_fmt(b['residual_share_of_p'])} | {_fmt(b.get('dct_share'))} | "
                    f"{_fmt(b.get('lf_share'), 2)} | {_fmt(b['overhead_share'])} | "
                    f"{_fmt(b['mean_psnr_warped'], 2)} | {_fmt(b['mean_psnr_pred'], 2)} | "
                    f"{_fmt(b['mean_psnr_p'], 2)} | {modes} |"
                )
    if not rows:
        return None
    head = (
        "### Where the bits go\n\n"
        "I % of all bytes; MV % and residual % of the P-frames' bytes; DCT % (the "
        "refinement layer, I and P frames), LF % (the in-loop filter's coefficients) and "
        "overhead % (packet and section headers) of all bytes. PSNR-YUV (dB) averaged "
        "over P-frames: of the warped reference, of the motion-compensated prediction, and "
        "of the decoded frame. "
        "Modes: how many frames each candidate won.\n\n"
        "| codec | sequence | q | bpp | I % | MV % | residual % | DCT % | LF % | overhead % "
        "| warped | prediction | decoded P | modes |\n"
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n"
    )
    return head + "\n".join(rows) + "\n"
