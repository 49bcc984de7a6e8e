"""Transform ceiling of the I-frame coder: `python -m eval.ceiling FOLDER [--weights W]`.

A learned codec's quality ladder can only be as wide as its transform allows.
This prints, per quality level, the PSNR of g_s(g_a(x)) without quantisation
(the ceiling: no rate spent can beat it), with rounding but no entropy coding
(what the bits buy), and the rate the model would pay (bits from its own
likelihoods, an estimate, labelled so). A ceiling that barely moves between
levels means the latent is too small or the transform undertrained, not that
the entropy model or the ladder is wrong; this is how the stride-32 latent of
the first cpu preset was found to cap every level near 27.5 dB on held-back photos.

PSNR is measured on the model tensor (4:2:0, samples in [0, 1], each of the 6
channels weighted equally, so Y counts 4 and U, V 1 each), cropped back to the
picture, with the reconstruction clamped as the decoder clamps it.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from collections.abc import Sequence
from pathlib import Path

import torch

from dvc_edic.errors import DvcEdicError
from dvc_edic.image import pad_even, read_image, rgb_to_frame
from dvc_edic.metrics import UNIT_PEAK, mse_to_psnr
from dvc_edic.representation import crop_to, frame_to_tensor, pad_to_multiple
from dvc_edic.weights import load_model
from eval.image_rd import select_images

EXIT_INPUT = 2


def _psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    return mse_to_psnr(float(torch.mean((a.clamp(0.0, 1.0) - b) ** 2)), UNIT_PEAK)


@torch.no_grad()
def image_ceiling(model: torch.nn.Module, x: torch.Tensor, quality: float) -> dict[str, float]:
    """Unquantised and rounded-latent PSNR, and the model's own rate estimate, for one picture."""
    intra = model.intra
    padded, size = pad_to_multiple(x, intra.cfg.stride)
    q = torch.tensor([quality])
    y = intra.g_a(padded) * intra.gain.gain(q)
    out = intra(padded, q)  # eval mode: rounded latents, likelihoods of the rounded values
    bits = sum(float(-torch.log2(lk).sum()) for lk in out["likelihoods"].values())
    pixels = size[0] * size[1] * 4  # the model tensor is at half the luma size
    return {
        "ceiling_db": _psnr(crop_to(intra.reconstruct(y, q), size), x),
        "rounded_db": _psnr(crop_to(out["x_hat"], size), x),
        "bpp_estimate": bits / pixels,
    }


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m eval.ceiling",
        description="Per quality level: the I-frame transform's PSNR without quantisation "
        "(its ceiling), with rounded latents, and the model's rate estimate.",
    )
    p.add_argument("folder", type=Path, help="folder of PNG/JPEG photos")
    p.add_argument("--weights", type=Path, default=None, help="weights (default: shipped)")
    p.add_argument("--holdout", type=float, default=None, metavar="FRACTION",
                   help="only the photos training held back (as eval.image_rd)")
    p.add_argument("--holdout-seed", type=int, default=0)
    p.add_argument("--max-images", type=int, default=None, help="first N photos only")
    p.add_argument("--threads", type=int, default=2)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    torch.set_num_threads(args.threads)
    try:
        images, _ = select_images(args.folder, args.holdout, args.holdout_seed)
        images = images[: args.max_images]
        model = load_model(args.weights).float().eval()
        rep = model.representation
        tensors = [frame_to_tensor(rgb_to_frame(pad_even(read_image(p))), rep) for p in images]
    except DvcEdicError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_INPUT
    print(f"{model.model_id}, {len(images)} photos, medians over photos")
    print("| quality | ceiling dB (no quantisation) | rounded-latent dB | bpp (model estimate) |")
    print("|---|---|---|---|")
    for level in model.quality_range.levels():
        rows = [image_ceiling(model, x, level) for x in tensors]
        med = {k: statistics.median(r[k] for r in rows) for k in rows[0]}
        print(f"| {level:g} | {med['ceiling_db']:.2f} | {med['rounded_db']:.2f} | "
              f"{med['bpp_estimate']:.3f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
