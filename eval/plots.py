"""RD curves as PNG files (matplotlib, Agg backend: no display needed)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

# Figure size in inches and resolution: readable when embedded in a README.
FIG_SIZE = (11.0, 4.5)
FIG_DPI = 120
# Axis labels per quantity the curves can be drawn in.
LABELS = {
    "bpp": "bits per pixel",
    "kbps": "kbit/s",
    "psnr_yuv": "PSNR-YUV 6:1:1 (dB)",
    "psnr_y": "PSNR-Y (dB)",
    "psnr_rgb": "PSNR-RGB (dB)",
    "ms_ssim": "MS-SSIM (Y)",
}
MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*")


Curve = Mapping[str, Sequence[float | None]]


def plot_rd(
    curves: Mapping[str, Curve],
    title: str,
    out: Path,
    x: str = "bpp",
    panels: Sequence[str] = ("psnr_yuv", "psnr_y"),
    dashed: Sequence[str] = (),
) -> Path:
    """One PNG with a panel per quality metric; `curves[name][quantity]` lists the points.

    Curves named in `dashed` (e.g. published results we did not run) are drawn dashed.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(panels), figsize=FIG_SIZE, squeeze=False)
    for ax, metric in zip(axes[0], panels, strict=True):
        for i, (name, curve) in enumerate(curves.items()):
            points = [
                (xv, yv)
                for xv, yv in zip(curve.get(x, []), curve.get(metric, []), strict=True)
                if xv is not None and yv is not None
            ]
            if not points:
                continue
            points.sort()
            ax.plot(
                [p[0] for p in points],
                [p[1] for p in points],
                linestyle="--" if name in dashed else "-",
                marker=MARKERS[i % len(MARKERS)],
                label=name,
            )
        ax.set_xlabel(LABELS.get(x, x))
        ax.set_ylabel(LABELS.get(metric, metric))
        ax.grid(True, alpha=0.3)
        ax.legend(loc="lower right")
    fig.suptitle(title)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    part = out.with_name(out.stem + ".part.png")
    fig.savefig(part, dpi=FIG_DPI)
    plt.close(fig)
    part.replace(out)
    return out
