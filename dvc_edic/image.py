"""Still-image coding with the EDIC I-frame coder.

    python -m dvc_edic.image encode IN.png OUT.dvce --quality 4
    python -m dvc_edic.image decode IN.dvce OUT.png

An image is stored as a one-frame intra stream in the same container as video,
after conversion to the model's representation (BT.709 full-range YUV 4:2:0
for the yuv420 presets). Odd sizes are padded by replication to even and the
true size travels in a ``crop`` section.
"""

from __future__ import annotations

import argparse
import io
import struct
import sys
import time
import warnings
from collections.abc import Sequence
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image, UnidentifiedImageError

from dvc_edic.bitstream import BITS_PER_BYTE, BitstreamReader, BitstreamWriter, Packet, Section
from dvc_edic.bitstream.limits import DEFAULT_LIMITS, Limits
from dvc_edic.cli import (
    UNTRAINED_NOTE,
    add_common_flags,
    add_max_pixels_flag,
    check_threads,
    limits_from_flags,
    run_cli,
    setup_threads,
)
from dvc_edic.errors import BitstreamError, DvcEdicWarning, InputError
from dvc_edic.io import Frame, VideoInfo
from dvc_edic.io.atomic import AtomicFile, check_output_path
from dvc_edic.io.frames import CHROMA_SUBSAMPLING

# torch and the codec are imported inside the functions that use them, so that
# --help and the command-line errors answer without the seconds they take to load.
if TYPE_CHECKING:
    from dvc_edic.encoder.settings import EncoderSettings
    from dvc_edic.models.video import VideoCodecModel

IMAGE_MATRIX = "bt709"
IMAGE_FULL_RANGE = True  # PNG samples use the whole 0..255 range
IMAGE_BIT_DEPTH = 8
MAX_SAMPLE = 255.0
CROP_SECTION = "crop"
CROP_SIZE = struct.Struct("<II")  # the picture's true (height, width)
CROP_DIMS = 2
DEFAULT_QUALITY = 4.0
# Pillow modes that carry transparency, which converting to RGB drops.
ALPHA_MODES = ("RGBA", "RGBa", "LA", "La", "PA")


class AlphaChannelWarning(DvcEdicWarning):
    """An image's alpha channel was dropped: the codec codes colour only."""


def rgb_to_frame(rgb: np.ndarray) -> Frame:
    """uint8 (H, W, 3) with even H, W -> 8-bit YUV 4:2:0 frame.

    Public so eval.image_rd's x265 anchor codes exactly the YUV this codec codes.
    """
    import torch

    from dvc_edic.colour import rgb_to_yuv

    t = torch.from_numpy(rgb).permute(2, 0, 1)[None].to(torch.float32) / MAX_SAMPLE
    planes = rgb_to_yuv(t, matrix=IMAGE_MATRIX, full_range=IMAGE_FULL_RANGE)
    y, u, v = ((p[0, 0].clamp(0, 1) * MAX_SAMPLE).round().to(torch.uint8).numpy() for p in planes)
    return Frame(y=y, u=u, v=v, bit_depth=IMAGE_BIT_DEPTH)


def frame_to_rgb8(frame: Frame) -> np.ndarray:
    """The inverse of rgb_to_frame, rounded and clipped back to 8-bit RGB."""
    from dvc_edic.colour import frame_to_rgb

    rgb = frame_to_rgb(frame, matrix=IMAGE_MATRIX, full_range=IMAGE_FULL_RANGE)
    return np.clip(np.round(rgb * MAX_SAMPLE), 0, MAX_SAMPLE).astype(np.uint8)


def read_image(path: Path) -> np.ndarray:
    """The picture as uint8 RGB (H, W, 3); warns (AlphaChannelWarning) if transparency is lost."""
    if not path.is_file():
        raise InputError(f"{path}: no such image file")
    try:
        with Image.open(path) as im:
            if im.mode in ALPHA_MODES or "transparency" in im.info:
                warnings.warn(
                    AlphaChannelWarning(
                        f"{path}: has an alpha channel (mode {im.mode}), which is dropped: "
                        "the codec codes colour only, so transparent areas come back as the "
                        "colour stored under them"
                    ),
                    stacklevel=2,
                )
            return np.asarray(im.convert("RGB"))
    except (UnidentifiedImageError, OSError) as exc:
        raise InputError(f"{path}: not an image Pillow can read ({exc})") from exc


def pad_even(rgb: np.ndarray) -> np.ndarray:
    """Edge-replicate to even H, W, which 4:2:0 chroma needs; callers crop back."""
    h, w = rgb.shape[:2]
    return np.pad(rgb, ((0, h % 2), (0, w % 2), (0, 0)), mode="edge")


def encode_image(
    rgb: np.ndarray, model, quality: float, limits: Limits = DEFAULT_LIMITS, where: str = "image",
    settings: EncoderSettings | None = None,
) -> tuple[bytes, np.ndarray]:
    """Returns the stream bytes and the decoder's RGB reconstruction.

    ``settings``: the encoder's tools (None: the default preset's); eval.ablation turns
    the refinement, DCT layer and loop filter off to compare the learned coders alone.
    """
    from dvc_edic.codec import SequenceEncoder, check_frame_size

    h, w = rgb.shape[:2]
    check_frame_size(w + w % 2, h + h % 2, limits, where)
    frame = rgb_to_frame(pad_even(rgb))
    info = VideoInfo(
        width=frame.width,
        height=frame.height,
        fps=Fraction(1),
        bit_depth=IMAGE_BIT_DEPTH,
        num_frames=1,
        matrix=IMAGE_MATRIX,
        full_range=IMAGE_FULL_RANGE,
    )
    encoder = SequenceEncoder(model, info, quality, intra_period=1, limits=limits,
                              settings=settings)
    packet, recon = encoder.encode(frame)
    crop = Section(CROP_SECTION, (h, w), CROP_SIZE.pack(h, w))
    packet = Packet(packet.frame_type, (*packet.sections, crop))
    buf = io.BytesIO()
    writer = BitstreamWriter(buf, encoder.header, limits)
    writer.write_packet(packet)
    writer.finalize()
    return buf.getvalue(), frame_to_rgb8(recon)[:h, :w]


def decode_image(
    data: bytes | io.BufferedIOBase, model, limits: Limits = DEFAULT_LIMITS
) -> np.ndarray:
    from dvc_edic.codec import SequenceDecoder

    reader = BitstreamReader(data, limits)
    decoder = SequenceDecoder(model, reader.header)
    packets = reader.read_all()
    if len(packets) != 1:
        raise BitstreamError(f"an image stream holds one frame, this one holds {len(packets)}")
    hdr = reader.header
    picture, size = split_crop(packets[0], hdr.width, hdr.height)
    if size is None:
        raise BitstreamError(f"the frame has no {CROP_SECTION} section: not an image stream")
    h, w = size
    return frame_to_rgb8(decoder.decode(picture))[:h, :w]


def split_crop(packet: Packet, coded_width: int, coded_height: int
               ) -> tuple[Packet, tuple[int, int] | None]:
    """The packet without its ``crop`` section, and the true (height, width) it gave.

    The size is None for a video packet, which has no such section. An image is
    coded at its size padded to even, so the true size is checked to lie at most
    one sample inside the coded size: both the image tool and decode_sequence
    (which writes an image stream at its true size) crop by it.
    """
    sections = [s for s in packet.sections if s.name == CROP_SECTION]
    if not sections:
        return packet, None
    h, w = _crop_size(sections[0])
    if not (0 < h <= coded_height and 0 < w <= coded_width
            and coded_height - h < CHROMA_SUBSAMPLING and coded_width - w < CHROMA_SUBSAMPLING):
        raise BitstreamError(
            f"crop size {h}x{w} does not fit the coded size {coded_height}x{coded_width}"
        )
    picture = Packet(packet.frame_type, tuple(s for s in packet.sections if s.name != CROP_SECTION))
    return picture, (h, w)


def _crop_size(section: Section) -> tuple[int, int]:
    """Version 1 kept the size as the section's shape; version 2 stores no shapes."""
    if section.shape:
        if len(section.shape) != CROP_DIMS:
            raise BitstreamError(f"crop section: expected shape (h, w), got {section.shape}")
        return section.shape[0], section.shape[1]
    if len(section.data) != CROP_SIZE.size:
        raise BitstreamError(
            f"crop section: expected {CROP_SIZE.size} bytes (h, w), got {len(section.data)}"
        )
    h, w = CROP_SIZE.unpack(section.data)
    return h, w


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m dvc_edic.image",
        description="Code still images with dvc_edic's EDIC I-frame coder.",
        epilog=UNTRAINED_NOTE,
    )
    sub = p.add_subparsers(dest="command", required=True)
    enc = sub.add_parser("encode", help="PNG/JPEG/... -> .dvce", epilog=UNTRAINED_NOTE)
    enc.add_argument("input")
    enc.add_argument("output")
    enc.add_argument(
        "--quality",
        type=float,
        default=DEFAULT_QUALITY,
        help=f"1 (lowest rate) to 8 (highest); fractions interpolate (default {DEFAULT_QUALITY:g})",
    )
    add_max_pixels_flag(enc, "encode")
    add_common_flags(enc)
    dec = sub.add_parser("decode", help=".dvce -> PNG", epilog=UNTRAINED_NOTE)
    dec.add_argument("input")
    dec.add_argument("output")
    add_max_pixels_flag(dec, "decode")
    add_common_flags(dec)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    check_threads(args.threads)
    inp, out = Path(args.input), Path(args.output)
    limits = limits_from_flags(args.max_pixels)
    # Everything about the input and output is checked before torch is imported.
    if args.command == "encode":
        rgb = read_image(inp)
    elif not inp.is_file():
        raise InputError(f"{inp}: no such stream file")
    check_output_path(out, overwrite=args.force, inputs=[inp])  # again when writing
    from dvc_edic.weights import load_model

    setup_threads(args.threads)
    model = load_model(args.weights)
    if args.command == "encode":
        print(_encode(model, args, rgb, inp, out, limits))
        return 0
    try:
        print(_decode(model, args, inp, out, limits))
    except BitstreamError as exc:  # the stream is what is wrong: name it (docs/errors.md)
        raise BitstreamError(f"{inp}: {exc}") from exc
    return 0


def _encode(model: VideoCodecModel, args: argparse.Namespace, rgb: np.ndarray, inp: Path,
            out: Path, limits: Limits) -> str:
    from dvc_edic.metrics import array_psnr

    start = time.perf_counter()
    data, recon = encode_image(rgb, model, args.quality, limits, str(inp))
    _write(out, data, args.force, inp)
    bpp = len(data) * BITS_PER_BYTE / (rgb.shape[0] * rgb.shape[1])
    return (
        f"{out}: {rgb.shape[1]}x{rgb.shape[0]}, {len(data)} bytes, {bpp:.4f} bpp, "
        f"PSNR-RGB {array_psnr(rgb, recon, MAX_SAMPLE):.2f} dB, {time.perf_counter() - start:.2f} s"
    )


def _decode(model: VideoCodecModel, args: argparse.Namespace, inp: Path, out: Path,
            limits: Limits) -> str:
    start = time.perf_counter()
    rgb = decode_image(inp.read_bytes(), model, limits)
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format="PNG")
    _write(out, buf.getvalue(), args.force, inp)
    return f"{out}: {rgb.shape[1]}x{rgb.shape[0]} decoded in {time.perf_counter() - start:.2f} s"


def _write(path: Path, data: bytes, force: bool, inp: Path) -> None:
    with AtomicFile(path, overwrite=force, inputs=[inp]) as f:
        f.write(data)


def cli(argv: Sequence[str] | None = None) -> int:
    return run_cli(main, argv)


if __name__ == "__main__":
    sys.exit(cli())
