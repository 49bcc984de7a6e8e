"""What the ablation measures of a trained variant, and the two coders it measures through.

Both coders take the same source and give back the same kind of picture: the
photo converted by dvc_edic.image's own BT.709 full-range 4:2:0 conversion (padded
to even), and the decoded 4:2:0 frame converted back to 8-bit RGB, so variants
differ only in their learned coder. Every PSNR-RGB is measured on what the decoder
returns from the bytes (dvc_edic.image's encoder reconstructs through the
decoder's own code).

- EDIC variants code through dvc_edic.image, into the codec's real streams, with
  the encoder's tools as the plan sets them: off by default (no latent
  refinement, DCT layer or loop filter), since they are no part of the paper's
  claims and the baselines have none.
- CompressAI's coders write their own ``compress`` strings, behind the 8 bytes a
  stream of theirs needs to decode alone (picture size, length of the y string).

The rate charged is the same for both: the entropy-coded bytes plus those 8 bytes
of framing. An EDIC stream's container header (model id, weights hash, CRC:
about 110 bytes, 0.9 % of a 1-megapixel photo at 0.1 bpp) identifies weights that
CompressAI's strings do not, so it is left out of the rate; its whole length is
kept beside it (``stream_bytes``).
"""

from __future__ import annotations

import struct
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import torch
from torch import nn

from dvc_edic.bitstream import BITS_PER_BYTE, BitstreamReader
from dvc_edic.encoder.settings import EncoderSettings, load_encoder_settings
from dvc_edic.image import (
    CROP_SECTION,
    IMAGE_BIT_DEPTH,
    IMAGE_FULL_RANGE,
    IMAGE_MATRIX,
    decode_image,
    encode_image,
    frame_to_rgb8,
    pad_even,
    rgb_to_frame,
)
from dvc_edic.models.edic import CodedLatents
from dvc_edic.models.layers import torch_threads
from dvc_edic.models.video import VideoCodecModel
from dvc_edic.representation import (
    frame_to_tensor,
    pad_to_multiple,
    representation_channels,
    representation_size,
    tensor_to_frame,
)
from dvc_edic.train.baselines import BaselineImageModel
from eval.ablation.plan import DecodeTiming, Evaluation
from eval.image_rd import list_images, psnr_rgb8, read_rgb, select_images
from flows.macs import conv_macs

KILO = 1000.0
# A baseline stream: picture height and width, then the length of the y string (y, then z);
# the framing every coder's rate is charged (see the module docstring).
BASELINE_HEADER = struct.Struct("<HHI")
# Side of the picture the multiply-adds are counted on: a multiple of every coder's
# stride, large enough that the hyperprior's edges weigh nothing per pixel.
MAC_PROBE_SIDE = 256


class ImageCoder(Protocol):
    """An 8-bit RGB picture to bytes and back."""

    def encode(self, rgb: np.ndarray, quality: float) -> tuple[bytes, np.ndarray]:
        """The stream and the decoder's reconstruction of it."""
        ...

    def decode(self, data: bytes) -> np.ndarray: ...

    def rate_bytes(self, data: bytes) -> int:
        """What the stream is charged: its entropy-coded bytes plus the common framing."""
        ...


def encoder_settings(switches: dict[str, Any]) -> EncoderSettings:
    """The plan's ``evaluation.encoder``: a preset with the switches the command line has."""
    rest = {k: tuple(v) if isinstance(v, list) else v for k, v in switches.items()
            if k != "preset"}
    return load_encoder_settings(switches["preset"]).with_overrides(**rest)


class EdicCoder:
    """An EDIC variant through the codec's image path (its real streams)."""

    def __init__(self, model: VideoCodecModel, settings: EncoderSettings) -> None:
        self.model = model.eval()
        self.settings = settings

    def encode(self, rgb: np.ndarray, quality: float) -> tuple[bytes, np.ndarray]:
        return encode_image(rgb, self.model, quality, settings=self.settings)

    def decode(self, data: bytes) -> np.ndarray:
        return decode_image(data, self.model)

    def rate_bytes(self, data: bytes) -> int:
        """Every section of the frame's packet but the picture size, plus the framing."""
        sections = [s for p in BitstreamReader(data).read_all() for s in p.sections]
        return BASELINE_HEADER.size + sum(len(s.data) for s in sections
                                          if s.name != CROP_SECTION)


class BaselineCoder:
    """A CompressAI coder's strings as a stream, on the 4:2:0 source EDIC codes."""

    def __init__(self, model: BaselineImageModel) -> None:
        self.model = model.eval()
        self.coder = model.intra

    def encode(self, rgb: np.ndarray, quality: float) -> tuple[bytes, np.ndarray]:
        h, w = rgb.shape[:2]
        x = frame_to_tensor(rgb_to_frame(pad_even(rgb)), self.model.representation,
                            matrix=IMAGE_MATRIX, full_range=IMAGE_FULL_RANGE)
        latents = self.coder.encode(pad_to_multiple(x, self.model.stride)[0])
        data = BASELINE_HEADER.pack(h, w, len(latents.y)) + latents.y + latents.z
        return data, self.decode(data)

    def decode(self, data: bytes) -> np.ndarray:
        h, w, y_length = BASELINE_HEADER.unpack_from(data)
        start = BASELINE_HEADER.size
        size = representation_size(w + w % 2, h + h % 2, self.model.representation)
        y_shape, z_shape = self.coder.latent_shapes(size)
        latents = CodedLatents(z=data[start + y_length:], y=data[start:start + y_length],
                               z_shape=z_shape, y_shape=y_shape)
        x_hat = self.coder.decompress(latents, 0.0, size)  # single-rate: no quality
        frame = tensor_to_frame(x_hat, self.model.representation,
                                IMAGE_BIT_DEPTH, matrix=IMAGE_MATRIX,
                                full_range=IMAGE_FULL_RANGE)
        return frame_to_rgb8(frame)[:h, :w]

    def rate_bytes(self, data: bytes) -> int:
        return len(data)


def make_coder(model: nn.Module, encoder: dict[str, Any]) -> ImageCoder:
    if isinstance(model, BaselineImageModel):
        return BaselineCoder(model)
    assert isinstance(model, VideoCodecModel)
    return EdicCoder(model, encoder_settings(encoder))


# --------------------------------------------------------------- pictures
def centre_window(rgb: np.ndarray, height: int, width: int) -> np.ndarray:
    """The centred height x width window, the photo mirrored out first if it is smaller."""
    from dvc_edic.data.images import mirror_pad

    padded = mirror_pad(rgb, height, width)
    top, left = (padded.shape[0] - height) // 2, (padded.shape[1] - width) // 2
    return np.ascontiguousarray(padded[top:top + height, left:left + width])


@dataclass(frozen=True)
class Pictures:
    """The held-back photos (as the plan crops them) and the picture decoding is timed on."""

    names: list[str]
    photos: list[np.ndarray]
    timed: np.ndarray
    holdout: dict[str, Any] | None  # the split's record (eval.image_rd.select_images)


def load_pictures(evaluation: Evaluation) -> Pictures:
    folder = evaluation.images
    if evaluation.holdout is None:
        paths, record = list_images(folder), None
    else:
        paths, record = select_images(folder, *evaluation.holdout)
    paths = paths[:evaluation.max_images]
    photos = [read_rgb(p) for p in paths]
    timing = evaluation.decode
    timed = centre_window(photos[0], timing.height, timing.width)
    if evaluation.crop is not None:
        photos = [centre_window(p, *evaluation.crop) for p in photos]
    return Pictures([p.name for p in paths], photos, timed, record)


# ------------------------------------------------------------ measurements
def rd_point(coder: ImageCoder, pictures: Pictures, quality: float) -> dict[str, Any]:
    """One rate point over every photo: mean bpp (real bytes) and mean PSNR-RGB."""
    start = time.perf_counter()
    per_image = []
    for name, rgb in zip(pictures.names, pictures.photos, strict=True):
        data, decoded = coder.encode(rgb, quality)
        h, w = rgb.shape[:2]
        rate = coder.rate_bytes(data)
        per_image.append({"image": name, "bytes": rate, "stream_bytes": len(data),
                          "bpp": BITS_PER_BYTE * rate / (h * w),
                          "psnr_rgb": psnr_rgb8(rgb, decoded)})
    return {
        "rate_param": quality,
        "bpp": float(np.mean([p["bpp"] for p in per_image])),
        "psnr_rgb": float(np.mean([p["psnr_rgb"] for p in per_image])),
        "seconds": time.perf_counter() - start,
        "per_image": per_image,
    }


def decode_time(coder: ImageCoder, picture: np.ndarray, timing: DecodeTiming) -> dict[str, Any]:
    """Wall and CPU seconds of the fastest of ``repeats`` decodes, after one untimed
    decode that builds what a decoder builds once (entropy tables, oneDNN kernels)."""
    data, _ = coder.encode(picture, timing.level)
    walls, cpus = [], []
    with torch_threads(timing.threads):
        coder.decode(data)
        for _ in range(timing.repeats):
            wall, cpu = time.perf_counter(), time.process_time()
            coder.decode(data)
            walls.append(time.perf_counter() - wall)
            cpus.append(time.process_time() - cpu)
    fastest = int(np.argmin(walls))
    return {"seconds": walls[fastest], "cpu_seconds": cpus[fastest], "all_seconds": walls,
            "bytes": len(data), "width": picture.shape[1], "height": picture.shape[0],
            "quality": timing.level, "threads": timing.threads}


def complexity(model: nn.Module) -> dict[str, Any]:
    """Parameters of the image coder, and its conv multiply-adds per source pixel: all of
    them, and the decoder's alone (the modules its class lists as the decoder's)."""
    coder = model.intra
    h, w = representation_size(MAC_PROBE_SIDE, MAC_PROBE_SIDE, model.representation)
    x = torch.zeros(1, representation_channels(model.representation), h, w)
    pixels = MAC_PROBE_SIDE * MAC_PROBE_SIDE
    coder.eval()
    return {
        "parameters": sum(p.numel() for p in coder.parameters()),
        "kmac_per_pixel": conv_macs(coder, x, 1.0) / pixels / KILO,
        "decoder_kmac_per_pixel": conv_macs(coder, x, 1.0, prefixes=coder.decoder_modules)
        / pixels / KILO,
    }


def measure(model: nn.Module, pictures: Pictures, qualities: Sequence[float],
            evaluation: Evaluation, timed: bool) -> dict[str, Any]:
    """RD points at ``qualities`` and, where ``timed``, the decode time."""
    coder = make_coder(model, dict(evaluation.encoder))
    out: dict[str, Any] = {"points": [rd_point(coder, pictures, q) for q in qualities]}
    if timed:
        out["decode"] = decode_time(coder, pictures.timed, evaluation.decode)
    return out
