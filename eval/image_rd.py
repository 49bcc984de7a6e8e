"""Image-mode RD evaluation: `python -m eval.image_rd FOLDER --out DIR`.

The I-frame codec judged on an image folder (e.g. Kodak) the way the learned
image-compression papers report it: PSNR-RGB on 8-bit RGB (peak 255) and bpp
from real bytes, both averaged over the images per rate point (CompressAI's
convention). JPEG through Pillow is the local anchor; published curves in
CompressAI's results-JSON format are drawn beside ours and get BD numbers too,
but are marked as published (we did not run them).
"""

from __future__ import annotations

import argparse
import io
import json
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from dvc_edic.errors import BitstreamError, DvcEdicError, InputError
from dvc_edic.metrics import mse_to_psnr
from eval.bd import bd_compare
from eval.codecs import QUIET_OVERWRITE, rate_label
from eval.report import machine_info, write_json_atomic

# Image files picked up from the folder.
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".ppm", ".tif", ".tiff", ".webp")
# Default JPEG quality ladder (Pillow's 1..95 scale) and dvc_edic quality levels.
DEFAULT_JPEG_QUALITIES = (10, 20, 30, 40, 50, 60, 70, 80, 90)
DEFAULT_DVC_QUALITIES = (1, 2, 3, 4, 5, 6, 7, 8)
# JPEG chroma subsampling as Pillow numbers it: 2 = 4:2:0, like the codec's YUV 4:2:0.
JPEG_SUBSAMPLING = 2
# Peak of 8-bit RGB samples.
RGB_PEAK = 255.0
DVC_IMAGE_MODULE = "dvc_edic.image"
# Quality keys of CompressAI's results JSON, preferred first.
PUBLISHED_PSNR_KEYS = ("psnr-rgb", "psnr")
POINT_SCHEMA = 1
EXIT_INPUT = 2
EXIT_FAILURE = 1


def list_images(folder: Path) -> list[Path]:
    if not folder.is_dir():
        raise InputError(f"{folder}: not a directory")
    images = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS)
    if not images:
        raise InputError(f"{folder}: no images ({', '.join(IMAGE_EXTENSIONS)}) found")
    return images


def read_rgb(path: Path) -> np.ndarray:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as img:
            return np.asarray(img.convert("RGB"))
    except (OSError, UnidentifiedImageError) as exc:
        raise InputError(f"{path}: not a readable image: {exc}") from None


def psnr_rgb8(a: np.ndarray, b: np.ndarray) -> float:
    if a.shape != b.shape:
        raise InputError(f"decoded image is {b.shape}, original {a.shape}")
    diff = a.astype(np.float64) - b.astype(np.float64)
    return mse_to_psnr(float(np.mean(diff * diff)), RGB_PEAK)


def jpeg_point(rgb: np.ndarray, quality: float) -> tuple[int, np.ndarray]:
    """Bits and decoded RGB of one image at one Pillow JPEG quality."""
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(rgb).save(
        buf, format="JPEG", quality=int(quality), subsampling=JPEG_SUBSAMPLING
    )
    data = buf.getvalue()
    with Image.open(io.BytesIO(data)) as img:
        return 8 * len(data), np.asarray(img.convert("RGB"))


def dvc_point(
    path: Path, quality: float, work: Path, python: str, extra: Sequence[str]
) -> tuple[int, np.ndarray]:
    """Bits and decoded RGB through the dvc_edic image CLI (bits = size of the file it wrote)."""
    work.mkdir(parents=True, exist_ok=True)
    stream = work / f"{path.stem}.q{rate_label(quality)}.bin"
    decoded = work / f"{path.stem}.q{rate_label(quality)}.png"
    base = [python, "-m", DVC_IMAGE_MODULE]
    for cmd in (
        [*base, "encode", str(path), str(stream), "--quality", rate_label(quality)],
        [*base, "decode", str(stream), str(decoded)],
    ):
        proc = subprocess.run(
            [*cmd, *QUIET_OVERWRITE, *extra], capture_output=True, text=True, check=False
        )
        if proc.returncode != 0:
            raise BitstreamError(
                f"{' '.join(cmd)} failed (exit {proc.returncode}):\n{proc.stderr[-2000:]}"
            )
    bits = 8 * stream.stat().st_size
    rgb = read_rgb(decoded)
    decoded.unlink()
    return bits, rgb


def load_published(path: Path) -> tuple[str, dict[str, list[float]]]:
    """A curve in CompressAI's results-JSON format: name, bpp and PSNR-RGB lists."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise InputError(f"{path}: not a readable JSON file: {exc}") from None
    results = data.get("results") if isinstance(data, dict) else None
    if not isinstance(results, dict) or "bpp" not in results:
        raise InputError(
            f"{path}: expected {{'name':..., 'results': {{'bpp': [...], 'psnr-rgb': [...]}}}}"
        )
    key = next((k for k in PUBLISHED_PSNR_KEYS if k in results), None)
    if key is None:
        raise InputError(f"{path}: results hold none of {PUBLISHED_PSNR_KEYS}: {sorted(results)}")
    bpp, psnr = [float(v) for v in results["bpp"]], [float(v) for v in results[key]]
    if len(bpp) != len(psnr) or not bpp:
        raise InputError(f"{path}: {len(bpp)} bpp values but {len(psnr)} {key} values")
    name = str(data.get("name") or path.stem)
    return f"{name} (published)", {"bpp": bpp, "psnr_rgb": psnr}


def _image_key(images: list[Path]) -> list[list[Any]]:
    return [[p.name, p.stat().st_size, p.stat().st_mtime_ns] for p in images]


def run_codec_point(
    codec: str, quality: float, images: list[Path], work: Path, key: dict[str, Any], args: Any
) -> dict[str, Any]:
    """One (codec, quality) point over all images, cached in the work dir by `key`."""
    record_path = work / "points" / codec / f"{rate_label(quality)}.json"
    if record_path.is_file():
        cached = json.loads(record_path.read_text(encoding="utf-8"))
        if cached.get("key") == key:
            cached["reused"] = True
            return cached
    per_image = []
    start = time.perf_counter()
    for path in images:
        rgb = read_rgb(path)
        if codec == "jpeg":
            bits, dec = jpeg_point(rgb, quality)
        else:
            extra = args.dvc_args.split() if args.dvc_args else []
            bits, dec = dvc_point(path, quality, work / "streams" / codec, sys.executable, extra)
        h, w = rgb.shape[:2]
        per_image.append(
            {
                "image": path.name,
                "bits": bits,
                "bpp": bits / (h * w),
                "psnr_rgb": psnr_rgb8(rgb, dec),
            }
        )
    record = {
        "schema": POINT_SCHEMA,
        "key": key,
        "codec": codec,
        "rate_param": quality,
        "bpp": float(np.mean([p["bpp"] for p in per_image])),
        "psnr_rgb": float(np.mean([p["psnr_rgb"] for p in per_image])),
        "seconds": time.perf_counter() - start,
        "per_image": per_image,
    }
    write_json_atomic(record_path, record)
    record["reused"] = False
    return record


def _floats(text: str) -> list[float]:
    try:
        return [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated numbers, got {text!r}"
        ) from None


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m eval.image_rd",
        description="RD evaluation of the dvc_edic image (I-frame) codec on an image folder.",
    )
    p.add_argument("folder", help="folder of images (e.g. the 24 Kodak PNGs)")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--codecs", default="jpeg,dvc_edic", help="comma-separated: jpeg, dvc_edic")
    p.add_argument(
        "--anchor", default="jpeg", help="codec or published name BD is measured against"
    )
    p.add_argument(
        "--jpeg-quality", type=_floats, default=list(DEFAULT_JPEG_QUALITIES), help="e.g. 10,30,50"
    )
    p.add_argument(
        "--dvc-quality", type=_floats, default=list(DEFAULT_DVC_QUALITIES), help="e.g. 2,4,6,8"
    )
    p.add_argument(
        "--dvc-args", default="", help="extra flags for dvc_edic.image (e.g. '--weights W')"
    )
    p.add_argument(
        "--published",
        action="append",
        default=[],
        metavar="JSON",
        help="published curve in CompressAI's results format (repeatable)",
    )
    p.add_argument("--method", choices=("pchip", "akima"), default="pchip", help="BD interpolation")
    return p.parse_args(argv)


def run(args: argparse.Namespace, argv: Sequence[str] | None = None) -> Path:
    from PIL import __version__ as pil_version
    from PIL import features

    from eval.plots import plot_rd

    folder, out = Path(args.folder), Path(args.out)
    images = list_images(folder)
    codecs = [c.strip() for c in args.codecs.split(",") if c.strip()]
    unknown = [c for c in codecs if c not in ("jpeg", "dvc_edic")]
    if unknown:
        raise InputError(f"--codecs: unknown {unknown}; known: jpeg, dvc_edic")
    published = dict(load_published(Path(p)) for p in args.published)
    ladders = {"jpeg": args.jpeg_quality, "dvc_edic": args.dvc_quality}
    settings = {
        "jpeg": {
            "library": f"Pillow {pil_version}, libjpeg {features.version('jpg')}",
            "subsampling": "4:2:0",
            "optimize": False,
        },
        "dvc_edic": {"cli": f"python -m {DVC_IMAGE_MODULE}", "extra": args.dvc_args},
    }
    from tqdm import tqdm

    points: dict[str, list[dict[str, Any]]] = {}
    total = sum(len(ladders[c]) for c in codecs)
    with tqdm(total=total, desc="image RD", unit="point", file=sys.stderr) as bar:
        for codec in codecs:
            points[codec] = []
            for q in ladders[codec]:
                key = {
                    "schema": POINT_SCHEMA,
                    "images": _image_key(images),
                    "settings": settings[codec],
                    "quality": q,
                }
                points[codec].append(run_codec_point(codec, q, images, out / "work", key, args))
                bar.update(1)

    curves: dict[str, dict[str, list]] = {
        c: {
            "bpp": [p["bpp"] for p in pts],
            "psnr_rgb": [p["psnr_rgb"] for p in pts],
            "rate_param": [p["rate_param"] for p in pts],
        }
        for c, pts in points.items()
    }
    curves.update(published)
    if args.anchor not in curves:
        raise InputError(f"--anchor {args.anchor!r} is none of the curves {sorted(curves)}")
    a = curves[args.anchor]
    bd = {
        name: bd_compare(
            a["bpp"], a["psnr_rgb"], c["bpp"], c["psnr_rgb"], method=args.method
        ).to_json()
        for name, c in curves.items()
        if name != args.anchor
    }
    plot_rd(
        curves,
        f"{folder.name}: {len(images)} images",
        out / "plots" / "rd.png",
        panels=("psnr_rgb",),
        dashed=list(published),
    )
    lines = [
        f"### {folder.name}: BD-rate vs {args.anchor}",
        "",
        f"PSNR-RGB (8-bit, averaged over {len(images)} images) over bpp; {args.method} "
        "interpolation (`bjontegaard`); negative BD-rate = fewer bits.",
        "",
        "| Codec | BD-rate | BD-PSNR |",
        "|---|---|---|",
    ]
    for name, r in bd.items():
        rate = "n/a" if r["bd_rate_pct"] is None else f"{r['bd_rate_pct']:+.2f}%"
        qual = "n/a" if r["bd_psnr_db"] is None else f"{r['bd_psnr_db']:+.3f} dB"
        lines.append(f"| {name}{' *' if r['notes'] else ''} | {rate} | {qual} |")
    (out / "table.md").write_text("\n".join(lines) + "\n", encoding="utf-8")
    write_json_atomic(
        out / "results.json",
        {
            "schema": POINT_SCHEMA,
            "folder": str(folder),
            "images": [p.name for p in images],
            "machine": machine_info("eval.image_rd", argv),
            "metrics": {
                "psnr_rgb": "8-bit RGB, peak 255, mean over images of per-image PSNR",
                "bpp": "mean over images of bits / (width * height)",
            },
            "bd": {
                "anchor": args.anchor,
                "method": args.method,
                "metric": "psnr_rgb",
                "rate": "bpp",
            },
            "settings": {c: settings[c] for c in codecs},
            "published": sorted(published),
            "curves": curves,
            "bd_rate": bd,
            "points_reused": sum(p["reused"] for pts in points.values() for p in pts),
            "results": points,
        },
    )
    return out


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
    print(f"results: {out / 'results.json'}\ntable:   {out / 'table.md'}")
    print(f"plot:    {out / 'plots' / 'rd.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
