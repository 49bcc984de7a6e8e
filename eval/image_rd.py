"""Image-mode RD evaluation: `python -m eval.image_rd FOLDER --out DIR`.

The I-frame codec judged on an image folder (e.g. Kodak) the way the learned
image-compression papers report it: PSNR-RGB on 8-bit RGB (peak 255) and bpp
from real bytes, both averaged over the images per rate point (CompressAI's
convention). JPEG through Pillow and x265 intra (PyAV's libx265, one still =
one intra frame) are the local anchors; published curves in CompressAI's
results-JSON format are drawn beside ours and get BD numbers too, but are marked
as published (we did not run them).

x265 codes exactly the YUV 4:2:0 that dvc_edic.image codes (its own BT.709
full-range conversion, padded to even and cropped back), so the two differ only
in the coder. Besides BD-rate, every dvc_edic point is compared with each local
anchor at the same bpp, interpolated between the anchor's measured points and
never extrapolated. `--holdout` evaluates only the images that training held
back, chosen by the same rule training uses.
"""

from __future__ import annotations

import argparse
import functools
import io
import json
import math
import shlex
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np

from dvc_edic.errors import BitstreamError, DvcEdicError, InputError
from dvc_edic.io import Frame
from dvc_edic.metrics import array_psnr
from eval.anchors import (
    DEFAULT_PRESET,
    DEFAULT_TUNE,
    DEMUXERS,
    ENCODERS,
    PIX_FMT_8BIT,
    PRESETS,
    AnchorSettings,
    backend_version,
    decoded_frame,
    encoder_context,
    encoder_options,
    encoder_version_from_stream,
    frame_array,
    native_params,
)
from eval.bd import MIN_POINTS, BDResult, bd_compare
from eval.codecs import QUIET_OVERWRITE, rate_label, weights_identity
from eval.report import machine_info, write_json_atomic

# Image files picked up from the folder.
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".ppm", ".tif", ".tiff", ".webp")
# Default JPEG quality ladder (Pillow's 1..95 scale) and dvc_edic quality levels.
DEFAULT_JPEG_QUALITIES = (10, 20, 30, 40, 50, 60, 70, 80, 90)
DEFAULT_DVC_QUALITIES = (1, 2, 3, 4, 5, 6, 7, 8)
# x265 crf ladder: on ~1-megapixel photos at preset veryfast this spans about 1 bpp
# (crf 27) down to 0.05-0.1 bpp (crf 47), the range the learned image codecs cover.
DEFAULT_X265_CRFS = (27, 31, 35, 39, 43, 47)
# Local codecs, in the order they run and appear in the same-bpp table.
LOCAL_CODECS = ("jpeg", "x265", "dvc_edic")
# The codec the same-bpp table compares with the other local codecs, and their column order.
SAME_BPP_TEST = "dvc_edic"
SAME_BPP_ANCHORS = ("x265", "jpeg")
# x265 in image mode: every picture an intra picture.
X265_INTRA_PERIOD = 1
X265_FRAMES = 1
# x265 otherwise writes its version and full option list (~2 KB) as an SEI into every
# stream; for one small image that would outweigh the picture, so it is switched off
# and the version is read from a separate probe stream instead (x265_version).
X265_NO_INFO = {"info": "0"}
# Side of the grey probe picture whose version SEI names the libx265 build
# (the smallest size libx265 4.x accepts is 16x16).
X265_PROBE_SIDE = 16
X265_PROBE_GREY = 128
# Sample depth of the x265 anchor's pictures (PIX_FMT_8BIT), as dvc_edic.image codes images.
X265_BIT_DEPTH = 8
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
    return array_psnr(a, b, RGB_PEAK)


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


def x265_available() -> bool:
    """Whether this PyAV can both encode (libx265) and decode (hevc) the x265 anchor."""
    import av

    return {ENCODERS["x265"], DEMUXERS["x265"]} <= av.codecs_available


def x265_settings(crf: float, preset: str = DEFAULT_PRESET) -> AnchorSettings:
    """The video anchors' low-delay settings, all-intra, without the version SEI."""
    return AnchorSettings(
        codec="x265",
        crf=crf,
        intra_period=X265_INTRA_PERIOD,
        frames=X265_FRAMES,
        preset=preset,
        tune=DEFAULT_TUNE,
        extra_params=dict(X265_NO_INFO),
    )


def _encode_x265(frame: Frame, s: AnchorSettings) -> bytes:
    """One 8-bit 4:2:0 frame -> the whole HEVC elementary stream (VPS/SPS/PPS in band)."""
    import av

    ctx = encoder_context(s, frame.width, frame.height, X265_BIT_DEPTH, Fraction(1))
    vf = av.VideoFrame.from_ndarray(frame_array(frame, X265_BIT_DEPTH), format=ctx.pix_fmt)
    vf.pts = 0
    try:
        packets = [*ctx.encode(vf), *ctx.encode(None)]
    except av.FFmpegError as exc:
        raise InputError(
            f"libx265 refused a {frame.width}x{frame.height} picture with {ctx.options}: {exc}"
        ) from None
    if ctx.extradata:
        # headers only out of band would be bytes the count below misses
        raise BitstreamError(f"libx265 put {len(ctx.extradata)} header bytes in extradata")
    return b"".join(bytes(p) for p in packets)


def _decode_hevc(data: bytes, width: int, height: int) -> Frame:
    """A one-picture HEVC elementary stream -> 8-bit 4:2:0 Frame, all in memory."""
    import av

    ctx = av.CodecContext.create(DEMUXERS["x265"], "r")
    try:
        pictures = [*ctx.decode(av.Packet(data)), *ctx.decode(None)]
    except av.FFmpegError as exc:
        raise BitstreamError(
            f"hevc decoder rejected a {len(data)}-byte x265 stream: {exc}"
        ) from None
    if len(pictures) != 1:
        raise BitstreamError(f"x265 stream decoded to {len(pictures)} pictures, expected 1")
    return decoded_frame(pictures[0], width, height, X265_BIT_DEPTH, "x265 stream")


def x265_point(rgb: np.ndarray, crf: float, preset: str = DEFAULT_PRESET) -> tuple[int, np.ndarray]:
    """Bits and decoded RGB of one image as one x265 intra picture at `crf`.

    The RGB<->YUV conversion and the even padding are dvc_edic.image's own; the
    decoded picture is cropped back to the original size before any PSNR.
    """
    from dvc_edic.image import frame_to_rgb8, pad_even, rgb_to_frame

    h, w = rgb.shape[:2]
    frame = rgb_to_frame(pad_even(rgb))
    data = _encode_x265(frame, x265_settings(crf, preset))
    decoded = _decode_hevc(data, frame.width, frame.height)
    return 8 * len(data), frame_to_rgb8(decoded)[:h, :w]


@functools.cache
def x265_version() -> str | None:
    """The libx265 build, read from the version SEI of a tiny probe stream (info on)."""
    import av

    side, half = X265_PROBE_SIDE, X265_PROBE_SIDE // 2
    grey = Frame(
        y=np.full((side, side), X265_PROBE_GREY, np.uint8),
        u=np.full((half, half), X265_PROBE_GREY, np.uint8),
        v=np.full((half, half), X265_PROBE_GREY, np.uint8),
        bit_depth=X265_BIT_DEPTH,
    )
    probe = AnchorSettings(
        "x265", crf=DEFAULT_X265_CRFS[0], intra_period=X265_INTRA_PERIOD, frames=X265_FRAMES
    )
    try:
        return encoder_version_from_stream(_encode_x265(grey, probe), "x265")
    except (InputError, av.FFmpegError):
        return None


def x265_record(preset: str) -> dict[str, Any]:
    """What decides the x265 anchor's bytes; it goes into results.json and the cache key."""
    s = x265_settings(DEFAULT_X265_CRFS[0], preset)
    options = {k: v for k, v in encoder_options(s).items() if k != "crf"}
    return {
        "library": f"{ENCODERS['x265']} through {backend_version('pyav')}",
        "encoder_version": x265_version(),
        "options": options,  # plus crf = the rate parameter of each point
        "native_params": native_params(s),
        "pix_fmt": PIX_FMT_8BIT,
        "colour": "dvc_edic.image.rgb_to_frame / frame_to_rgb8: BT.709 full-range "
        "YUV 4:2:0 8-bit, edge-padded to even and cropped back",
        "info": "info=0: no version/options SEI in the stream (it is ~2 KB and would "
        "dominate a single small image); encoder_version comes from a separate probe",
        "bits": "8 x bytes of the whole elementary stream, VPS/SPS/PPS included",
    }


def psnr_at_bpp(
    bpp: float, curve_bpp: Sequence[float], curve_psnr: Sequence[float]
) -> float | None:
    """A curve's PSNR at `bpp`: piecewise linear in log(bpp) between its measured
    points, None outside them (no extrapolation)."""
    pairs = sorted(
        (float(b), float(q))
        for b, q in zip(curve_bpp, curve_psnr, strict=True)
        if b is not None and q is not None and b > 0 and math.isfinite(q)
    )
    if not pairs or bpp <= 0 or not pairs[0][0] <= bpp <= pairs[-1][0]:
        return None
    for b, q in pairs:
        if b == bpp:
            return q
    logs = np.log([b for b, _ in pairs])
    return float(np.interp(math.log(bpp), logs, [q for _, q in pairs]))


def same_bpp(
    curves: Mapping[str, Mapping[str, Sequence[Any]]],
    test: str = SAME_BPP_TEST,
    others: Sequence[str] = (),
) -> list[dict[str, Any]]:
    """One row per point of `test`: its PSNR-RGB and each other curve's at the same bpp."""
    t = curves[test]
    rows = []
    for q, b, p in zip(t["rate_param"], t["bpp"], t["psnr_rgb"], strict=True):
        row: dict[str, Any] = {"rate_param": q, "bpp": b, "psnr_rgb": p, "others": {}}
        for name in others:
            other = psnr_at_bpp(b, curves[name]["bpp"], curves[name]["psnr_rgb"])
            row["others"][name] = {
                "psnr_rgb": other,
                "delta_db": None if other is None else p - other,  # > 0: test is better
            }
        rows.append(row)
    return rows


def same_bpp_markdown(rows: list[dict[str, Any]], test: str, others: Sequence[str]) -> list[str]:
    if not rows:
        return []

    def db(v: float | None, fmt: str) -> str:
        return "n/a" if v is None else format(v, fmt)

    head = f"| {test} quality | bpp | {test} PSNR |"
    rule = "|---|---|---|"
    for name in others:
        head += f" {name} PSNR at that bpp | Δ |"
        rule += "---|---|"
    lines = [
        "",
        f"### Same bpp: {test} vs the local anchors",
        "",
        f"PSNR-RGB (dB) of each anchor at the bpp of each {test} point, piecewise linear in "
        "log-bpp between the anchor's measured points; n/a outside them (never extrapolated). "
        f"Δ = {test} − anchor (positive: {test} is better).",
        "",
        head,
        rule,
    ]
    for row in rows:
        line = f"| {rate_label(row['rate_param'])} | {row['bpp']:.4f} | {row['psnr_rgb']:.2f} |"
        for name in others:
            o = row["others"][name]
            line += f" {db(o['psnr_rgb'], '.2f')} | {db(o['delta_db'], '+.2f')} |"
        lines.append(line)
    return lines


def select_images(
    folder: Path, holdout: float | None, seed: int
) -> tuple[list[Path], dict[str, Any] | None]:
    """All images of the folder, or only those training held back (and the rule used)."""
    if holdout is None:
        return list_images(folder), None
    from dvc_edic.data.sources import split_holdout

    if not folder.is_dir():
        raise InputError(f"{folder}: not a directory")
    _, held = split_holdout(folder, fraction=holdout, seed=seed, kind="image")
    if not held:
        raise InputError(f"--holdout {holdout}: holds out no image of {folder}")
    record = {
        "fraction": holdout,
        "seed": seed,
        "kind": "image",
        "rule": "dvc_edic.data.sources.split_holdout(folder, fraction, seed, kind='image'), "
        "as the training configs' `holdout: {fraction, seed}`",
        "images": [str(p.relative_to(folder)) for p in held],
    }
    return held, record


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
        elif codec == "x265":
            try:
                bits, dec = x265_point(rgb, quality, args.x265_preset)
            except InputError as exc:
                raise InputError(f"{path}: {exc}") from None
        else:
            extra = shlex.split(args.dvc_args) if args.dvc_args else []
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
    p.add_argument(
        "--codecs",
        default=None,
        help="comma-separated: jpeg, x265, dvc_edic (default: all three; x265 only where "
        "PyAV has libx265)",
    )
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
        "--x265-crf", type=_floats, default=list(DEFAULT_X265_CRFS), help="e.g. 27,35,43"
    )
    p.add_argument("--x265-preset", choices=PRESETS, default=DEFAULT_PRESET, help="x265 preset")
    p.add_argument(
        "--holdout",
        type=float,
        default=None,
        metavar="FRACTION",
        help="evaluate only the images training held back (split_holdout with this fraction; "
        "the image configs use 0.1)",
    )
    p.add_argument("--holdout-seed", type=int, default=0, help="seed of --holdout (default 0)")
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


def bd_or_note(
    anchor: Mapping[str, Sequence[float]],
    test: Mapping[str, Sequence[float]],
    anchor_name: str,
    test_name: str,
    method: str,
) -> dict[str, Any]:
    """BD of one curve against the anchor; a one-point curve gets None and a note
    instead of stopping the run (its same-bpp rows are still meaningful)."""
    short = [n for n, c in ((anchor_name, anchor), (test_name, test)) if len(c["bpp"]) < MIN_POINTS]
    if short:
        note = f"{', '.join(short)}: BD needs at least {MIN_POINTS} rate points"
        return BDResult(None, None, method, [note]).to_json()
    return bd_compare(
        anchor["bpp"], anchor["psnr_rgb"], test["bpp"], test["psnr_rgb"], method=method
    ).to_json()


def choose_codecs(text: str | None) -> list[str]:
    """--codecs as a list in LOCAL_CODECS order; by default all, x265 only where available."""
    if text is None:
        return [c for c in LOCAL_CODECS if c != "x265" or x265_available()]
    asked = [c.strip() for c in text.split(",") if c.strip()]
    unknown = [c for c in asked if c not in LOCAL_CODECS]
    if unknown:
        raise InputError(f"--codecs: unknown {unknown}; known: {', '.join(LOCAL_CODECS)}")
    if "x265" in asked and not x265_available():
        raise InputError(f"--codecs x265: this PyAV build has no {ENCODERS['x265']}")
    return [c for c in LOCAL_CODECS if c in asked]


def run(args: argparse.Namespace, argv: Sequence[str] | None = None) -> Path:
    from PIL import __version__ as pil_version
    from PIL import features

    from eval.plots import plot_rd

    folder, out = Path(args.folder), Path(args.out)
    images, holdout = select_images(folder, args.holdout, args.holdout_seed)
    codecs = choose_codecs(args.codecs)
    published = dict(load_published(Path(p)) for p in args.published)
    ladders = {"jpeg": args.jpeg_quality, "x265": args.x265_crf, "dvc_edic": args.dvc_quality}
    settings = {
        "jpeg": {
            "library": f"Pillow {pil_version}, libjpeg {features.version('jpg')}",
            "subsampling": "4:2:0",
            "optimize": False,
        },
        "dvc_edic": {
            "cli": f"python -m {DVC_IMAGE_MODULE}",
            "extra": args.dvc_args,
            "weights": weights_identity(shlex.split(args.dvc_args)),
        },
    }
    if "x265" in codecs:
        settings["x265"] = x265_record(args.x265_preset)
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
        name: bd_or_note(a, c, args.anchor, name, args.method)
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
    others = [c for c in SAME_BPP_ANCHORS if c in codecs]
    run_same = SAME_BPP_TEST in codecs and bool(others)
    same = same_bpp(curves, SAME_BPP_TEST, others) if run_same else []
    lines += same_bpp_markdown(same, SAME_BPP_TEST, others)
    (out / "table.md").write_text("\n".join(lines) + "\n", encoding="utf-8")
    write_json_atomic(
        out / "results.json",
        {
            "schema": POINT_SCHEMA,
            "folder": str(folder),
            "images": [p.name for p in images],
            "holdout": holdout,
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
            "same_bpp": {
                "test": SAME_BPP_TEST,
                "anchors": others if same else [],
                "interpolation": "piecewise linear in log(bpp) between the anchor's measured "
                "points; null outside them",
                "delta": "test PSNR-RGB minus anchor PSNR-RGB at the test point's bpp (dB)",
                "rows": same,
            },
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
