"""Sequence-level encoder and decoder: frames in, packets out, and back.

The encoder keeps the decoder's state (the reference buffer) by running the
decoder's own reconstruction code on what it has just coded. References are
stored as decoded integer frames, so float noise never accumulates across a
GOP and the decoded YUV is byte-identical to the encoder's reconstruction.
"""

from __future__ import annotations

from collections.abc import Iterator
from fractions import Fraction

import torch

from dvc_edic.bitstream import DEFAULT_LIMITS, FrameType, Header, Limits, Packet, Section
from dvc_edic.bitstream.header import quantize_quality
from dvc_edic.errors import BitstreamError, InputError, WeightsError
from dvc_edic.gop import frame_type
from dvc_edic.io import Frame, VideoInfo
from dvc_edic.metrics import pooled_mse
from dvc_edic.models.edic import CodedLatents
from dvc_edic.models.ladder import LADDER_PEAK, interpolate_ladder
from dvc_edic.models.pframe import PFrameLatents
from dvc_edic.models.video import VideoCodecModel
from dvc_edic.representation import (
    crop_to,
    frame_to_tensor,
    pad_to_multiple,
    representation_size,
    tensor_to_frame,
)
from dvc_edic.weights import weights_hash

QUALITY_MIN = 1.0
BITS_PER_BYTE = 8

# Section names of each frame type, in packet order.
I_SECTIONS = ("z", "y")
P_SECTIONS = ("mv_z", "mv_y", "res_z", "res_y")


def coded_quality(quality: float, levels: int) -> float:
    """The quality value exactly as the decoder will read it from the header."""
    if not QUALITY_MIN <= quality <= levels:
        raise InputError(
            f"--quality must be between {QUALITY_MIN:g} and {levels}, got {quality:g}"
        )
    return quantize_quality(quality)


def check_frame_size(width: int, height: int, limits: Limits, where: str) -> None:
    """Refuse, before any coding, frames the decoder with the same limits would refuse.

    `where` starts the message (the input file, for the CLI), so the user learns
    which file is too large and which flag raises the cap.
    """
    pixels = width * height
    if pixels > limits.max_pixels:
        raise InputError(
            f"{where}: frames are {width}x{height} = {pixels} pixels, above the limit of "
            f"{limits.max_pixels} pixels per frame; a decoder with that limit would refuse the "
            f"stream. To encode it anyway pass --max-pixels {pixels} (or more) here and when "
            f"decoding (Limits(max_pixels=...) in Python)"
        )


def _latent_sections(prefix: str, latents: CodedLatents) -> list[Section]:
    return [
        Section(f"{prefix}z", tuple(latents.z_shape), latents.z),
        Section(f"{prefix}y", tuple(latents.y_shape), latents.y),
    ]


def _latents_from(packet: Packet, prefix: str) -> CodedLatents:
    z = packet.section(f"{prefix}z")
    y = packet.section(f"{prefix}y")
    if len(z.shape) != 3 or len(y.shape) != 3:
        raise BitstreamError(
            f"sections {prefix}z/{prefix}y must have 3-dimensional shapes, got {z.shape}, {y.shape}"
        )
    return CodedLatents(z=z.data, y=y.data, z_shape=z.shape, y_shape=y.shape)


class _Pipeline:
    """What encoder and decoder share: frame <-> padded model tensor, and the reference."""

    def __init__(self, model: VideoCodecModel, info: VideoInfo) -> None:
        self.model = model
        self.info = info
        self.reference: torch.Tensor | None = None

    def to_tensor(self, frame: Frame) -> tuple[torch.Tensor, tuple[int, int]]:
        x = frame_to_tensor(
            frame,
            self.model.representation,
            matrix=self.info.matrix,
            full_range=self.info.full_range,
        )
        return pad_to_multiple(x, self.model.stride)

    def round_frame(self, x: torch.Tensor, size: tuple[int, int]) -> Frame:
        """The reconstruction as output samples, exactly as the decoder will write them."""
        return tensor_to_frame(
            crop_to(x, size),
            self.model.representation,
            self.info.bit_depth,
            matrix=self.info.matrix,
            full_range=self.info.full_range,
        )

    def keep(self, frame: Frame) -> Frame:
        """Make a rounded reconstruction the next reference."""
        self.reference, _ = self.to_tensor(frame)
        return frame

    def to_frame(self, x: torch.Tensor, size: tuple[int, int]) -> Frame:
        return self.keep(self.round_frame(x, size))


def rd_cost(source: Frame, recon: Frame, bits: int, lam: float) -> float:
    """J = lambda * 255^2 * MSE * pixels + bits: the training loss L = lambda*D + R, per frame."""
    return lam * LADDER_PEAK * LADDER_PEAK * pooled_mse(source, recon) * source.y.size + bits


class SequenceEncoder:
    """Turns frames into packets; ``encode`` also returns the decoder's output frame."""

    def __init__(
        self,
        model: VideoCodecModel,
        info: VideoInfo,
        quality: float,
        intra_period: int,
        limits: Limits = DEFAULT_LIMITS,
        intra_fallback: bool = True,
    ) -> None:
        check_frame_size(info.width, info.height, limits, "input")
        self.limits = limits  # what the stream writer must apply too
        self.model = model.eval()
        self.quality = coded_quality(quality, model.quality_levels)
        self.intra_period = intra_period
        self.intra_fallback = intra_fallback
        self.lam = float(interpolate_ladder(model.preset["lambdas"], torch.tensor(self.quality)))
        self.fallbacks = 0  # P positions coded as I because that cost less
        self.index = 0
        self._pipe = _Pipeline(model, info)
        fps = Fraction(info.fps)
        self.header = Header(
            width=info.width,
            height=info.height,
            fps_num=fps.numerator,
            fps_den=fps.denominator,
            bit_depth=info.bit_depth,
            chroma=info.chroma,
            representation=model.representation,
            matrix=info.matrix,
            full_range=info.full_range,
            frame_count=0,
            model_id=model.model_id,
            weights_hash=weights_hash(model),
            quality=self.quality,
            intra_period=intra_period,
        )

    @torch.no_grad()
    def encode(self, frame: Frame) -> tuple[Packet, Frame]:
        """Code one frame; at a P position, also try intra and keep the cheaper in R + lambda*D.

        The fallback is what x264's intra blocks in P-frames do at block level: when
        prediction fails (a cut, an occlusion, a motion coder that is not good enough),
        coding the frame alone costs less. The intra period still bounds the GOP.
        """
        x, size = self._pipe.to_tensor(frame)
        scheduled = frame_type(self.index, self.intra_period)
        self.index += 1
        candidates: list[tuple[Packet, Frame]] = []
        if scheduled == FrameType.P:
            assert self._pipe.reference is not None
            p, x_hat = self.model.pframe.compress(x, self._pipe.reference, self.quality)
            sections = _latent_sections("mv_", p.mv) + _latent_sections("res_", p.residual)
            candidates.append((Packet(FrameType.P, tuple(sections)),
                               self._pipe.round_frame(x_hat, size)))
        if scheduled == FrameType.I or self.intra_fallback:
            latents, x_hat = self.model.intra.compress(x, self.quality)
            candidates.append((Packet(FrameType.I, tuple(_latent_sections("", latents))),
                               self._pipe.round_frame(x_hat, size)))
        if len(candidates) > 1:
            candidates.sort(key=lambda c: rd_cost(
                frame, c[1], BITS_PER_BYTE * len(c[0].to_bytes()), self.lam))
        packet, recon = candidates[0]
        if packet.frame_type != scheduled:
            self.fallbacks += 1
        return packet, self._pipe.keep(recon)


def check_model(model: VideoCodecModel, header: Header) -> None:
    """Stop before decoding anything if the stream was made by other weights."""
    if header.model_id != model.model_id:
        raise WeightsError(
            f"stream was encoded with model {header.model_id!r}, these weights are "
            f"{model.model_id!r}; pass the matching --weights"
        )
    if header.weights_hash != weights_hash(model):
        raise WeightsError(
            f"stream was encoded with weights {header.weights_hash.hex()[:16]}..., these weights "
            f"hash to {weights_hash(model).hex()[:16]}...; pass the matching --weights"
        )
    if header.representation != model.representation:
        raise BitstreamError(
            f"stream representation {header.representation!r} differs from the model's "
            f"{model.representation!r}"
        )


class SequenceDecoder:
    def __init__(self, model: VideoCodecModel, header: Header) -> None:
        check_model(model, header)
        self.model = model.eval()
        self.header = header
        self.index = 0
        try:
            info = VideoInfo(
                width=header.width,
                height=header.height,
                fps=Fraction(header.fps_num, header.fps_den),
                bit_depth=header.bit_depth,
                chroma=header.chroma,
                num_frames=header.frame_count,
                matrix=header.matrix,
                full_range=header.full_range,
            )
        except InputError as exc:
            raise BitstreamError(f"stream header describes an impossible video: {exc}") from exc
        self.info = info
        self._pipe = _Pipeline(model, info)
        h, w = representation_size(header.width, header.height, model.representation)
        self._padded = (-(-h // model.stride) * model.stride, -(-w // model.stride) * model.stride)
        self._size = (h, w)

    @torch.no_grad()
    def decode(self, packet: Packet) -> Frame:
        scheduled = frame_type(self.index, self.header.intra_period)
        if scheduled == FrameType.I and packet.frame_type != FrameType.I:
            raise BitstreamError(
                f"packet {self.index}: frame type {packet.frame_type.name}, the GOP structure "
                f"(intra period {self.header.intra_period}) requires I"
            )
        q = self.header.quality
        if packet.frame_type == FrameType.I:  # scheduled, or the encoder's intra fallback
            x_hat = self.model.intra.decompress(_latents_from(packet, ""), q, self._padded)
        else:
            assert self._pipe.reference is not None
            latents = PFrameLatents(
                mv=_latents_from(packet, "mv_"), residual=_latents_from(packet, "res_")
            )
            x_hat = self.model.pframe.decompress(latents, self._pipe.reference, q)
        self.index += 1
        return self._pipe.to_frame(x_hat, self._size)

    def decode_all(self, packets: Iterator[Packet]) -> Iterator[Frame]:
        for packet in packets:
            yield self.decode(packet)
