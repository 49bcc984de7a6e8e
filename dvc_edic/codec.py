"""Sequence-level encoder and decoder: frames in, packets out, and back.

The encoder keeps the decoder's state (the reference buffer) by running the
decoder's own reconstruction code on what it has just coded. References are
stored as decoded integer frames, so float noise never accumulates across a
GOP and the decoded YUV is byte-identical to the encoder's reconstruction.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from fractions import Fraction

import torch

from dvc_edic import dctcontext, dctlayer
from dvc_edic.bitstream import BITS_PER_BYTE, DEFAULT_LIMITS, FrameType, Header, Limits, Packet
from dvc_edic.bitstream.header import field_where, quantize_quality
from dvc_edic.bitstream.version import CONTEXT_LAYER_VERSION
from dvc_edic.encoder import EncoderSettings, load_encoder_settings
from dvc_edic.encoder.decision import (
    Candidate,
    Chooser,
    Decision,
    Rd,
    choose,
    intra_candidate,
    p_candidates,
    refine_chosen,
    search_residual_quality,
    try_dct_layer,
    try_intra_residual,
    try_loop_filter,
    within_budget,
)
from dvc_edic.errors import BitstreamError, InputError, WeightsError
from dvc_edic.gop import frame_type
from dvc_edic.io import Frame, VideoInfo
from dvc_edic.loopfilter import NO_FILTERS, apply_filters, held_filters, read_section
from dvc_edic.models.ladder import QualityRange, interpolate_ladder
from dvc_edic.models.video import VideoCodecModel
from dvc_edic.packets import (
    dct_layer_data,
    frame_quality,
    intra_latents,
    loop_filter_data,
    p_latents,
)
from dvc_edic.representation import (
    crop_to,
    frame_to_tensor,
    pad_to_multiple,
    representation_size,
    tensor_to_frame,
)
from dvc_edic.weights import weights_hash


def coded_quality(quality: float, qualities: QualityRange) -> float:
    """The quality value exactly as the decoder will read it from the header."""
    if quality not in qualities:
        raise InputError(
            f"--quality must be between {qualities.low:g} and {qualities.high:g}, "
            f"got {quality:g}"
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


class SequenceEncoder:
    """Turns frames into packets; ``encode`` also returns the decoder's output frame."""

    def __init__(
        self,
        model: VideoCodecModel,
        info: VideoInfo,
        quality: float,
        intra_period: int,
        limits: Limits = DEFAULT_LIMITS,
        intra_fallback: bool | None = None,
        settings: EncoderSettings | None = None,
        chooser: Chooser = choose,
    ) -> None:
        check_frame_size(info.width, info.height, limits, "input")
        self.limits = limits  # what the stream writer must apply too
        self.model = model.eval()
        self.quality = coded_quality(quality, model.quality_range)
        self.intra_period = intra_period
        base = load_encoder_settings() if settings is None else settings
        self.settings = base.with_overrides(intra_fallback=intra_fallback)
        self.last_decision: Decision | None = None
        self._choose = chooser  # by J; tools that need every packet layout pass their own
        self.lam = self._ladder_lambda(self.quality)
        self.fallbacks = 0  # P positions coded as I because that cost less
        self.index = 0
        self._pipe = _Pipeline(model, info)
        self._filters = NO_FILTERS  # the in-loop filters the decoder will hold
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

    @property
    def intra_fallback(self) -> bool:
        return self.settings.intra_fallback

    @property
    def intra_offset(self) -> float:
        """What the scheduled I-frames add to their quality: the preset's offset, except
        when every frame is an I-frame (intra period 1, still images), where no P-frame
        predicts from them and the offset would only shift the ladder (and code the top
        two qualities alike, as the ladder's end clamps both)."""
        return 0.0 if self.intra_period == 1 else self.settings.intra_quality_offset

    def _intra_quality(self, quality: float | None = None) -> float:
        """The GOP's I-frames are coded better: every frame of the GOP predicts from them.

        ``quality``: the frame's (None: the stream's), to which the offset is added.
        """
        return self._on_ladder((self.quality if quality is None else quality) + self.intra_offset)

    def _on_ladder(self, quality: float) -> float:
        """An offset quality clamped to the ladder, as the header's grid stores it."""
        return quantize_quality(self.model.quality_range.clamp(quality))

    def _pattern_offset(self, position: int) -> float:
        """What a P-frame at GOP ``position`` adds to its quality under the preset's pattern:
        the frames every later one predicts through can be coded better, and the GOP's
        last ones, which the next I-frame cuts off, cheaper."""
        offset = 0.0
        pattern, tail = self.settings.p_quality_offsets, self.settings.gop_tail_offsets
        if pattern:
            offset += pattern[position % len(pattern)]
        left = self.intra_period - position  # 1: the P-frame just before the next I-frame
        if tail and self.intra_period > 0 and left <= len(tail):
            offset += tail[len(tail) - left]
        return offset

    def _position(self, index: int) -> int:
        return index if self.intra_period <= 0 else index % self.intra_period

    def quality_offset(self, index: int) -> float:
        """What frame ``index``, as scheduled, adds to the quality it is given (the stream's
        or the rate controller's): the I-frames' offset or the P pattern's. The rate
        controller plans with it, so its choice means what a constant --quality means."""
        if frame_type(index, self.intra_period) == FrameType.I:
            return self.intra_offset
        return self._pattern_offset(self._position(index))

    def _pattern_quality(self, base: float, position: int) -> float:
        """A P-frame's quality: ``base`` plus the preset's pattern offset, on the ladder."""
        offset = self._pattern_offset(position)
        if not self.settings.p_quality_offsets and not offset:
            return base
        return self._on_ladder(base + offset)

    def _lambda(self, quality: float) -> float:
        """The decisions' lambda at a frame's quality (the stream's is computed once)."""
        if quality == self.quality:
            return self.lam
        return self._ladder_lambda(quality)

    def _ladder_lambda(self, quality: float) -> float:
        """The training ladder's lambda, times the preset's ``lambda_scale``: the ladder is
        what the model was trained at, not necessarily the slope of its real RD curve."""
        ladder = float(interpolate_ladder(self.model.preset.lambdas, torch.tensor(quality)))
        return ladder * self.settings.lambda_scale

    @torch.no_grad()
    def probe(self, frames: Sequence[Frame], quality: float) -> list[tuple[FrameType, float, int]]:
        """What the first ``frames`` cost at ``quality``: (type, coded quality, bits) of each,
        coded aside by a fresh encoder with these settings, without refinement. Nothing
        is written and this encoder's state does not change. The rate controller's
        calibration: on the dev set an I-frame costs 0.1-0.6 bpp at one quality and a
        P-frame 2-20 % of it, so neither is worth guessing."""
        aside = SequenceEncoder(self.model, self._pipe.info, quality, self.intra_period,
                                self.limits, settings=self.settings.with_overrides(refine_steps=0),
                                chooser=self._choose)
        out = []
        for frame in frames:
            packet, _ = aside.encode(frame)
            coded = frame_quality(packet, aside.quality, self.model.quality_range)
            out.append((packet.frame_type, coded, len(packet.to_bytes()) * BITS_PER_BYTE))
        return out

    @torch.no_grad()
    def encode(self, frame: Frame, quality: float | None = None,
               max_bits: float | None = None) -> tuple[Packet, Frame]:
        """Code one frame, choosing among the preset's candidates by R + lambda*D.

        At a P position the candidates are each motion source with and without a
        residual, and (with the intra fallback) the I-frame coder: what x264's
        block modes do, at frame level. The intra period still bounds the GOP.
        The winner's latents are then refined if the preset asks (refine_chosen).
        ``last_decision`` keeps what was tried, for --stats.

        ``quality`` (None: the stream's) codes this frame at its own quality, as
        the rate controller asks: its packet then carries it in a ``q`` section,
        and the decision weighs distortion by the ladder's lambda at it. A
        scheduled I-frame still adds the intra quality offset to it. Without it,
        a P-frame's quality follows the preset's ``p_quality_offsets`` pattern.
        ``max_bits`` (rate control) keeps the lowest-J candidate whose packet fits it,
        or the smallest (decision.within_budget).
        """
        scheduled = frame_type(self.index, self.intra_period)
        position = self._position(self.index)
        self.index += 1
        q = self.quality if quality is None else coded_quality(quality, self.model.quality_range)
        if scheduled == FrameType.P:
            q = self._pattern_quality(q, position)
        rd = Rd(self._lambda(self._intra_quality(q) if scheduled == FrameType.I else q),
                self.settings.chroma_weight)
        x, size = self._pipe.to_tensor(frame)
        picture = rd.picture(x, size, lambda t: self._pipe.round_frame(t, size),
                             self.model.representation)

        candidates: list[Candidate] = []
        if scheduled == FrameType.P:
            assert self._pipe.reference is not None
            candidates += p_candidates(self.model, picture, self._pipe.reference, q,
                                       self.settings, rd.weight(frame),
                                       own_quality=q != self.quality)
        if scheduled == FrameType.I:
            iq = self._intra_quality(q)
            candidates.append(intra_candidate(self.model, picture, iq,
                                              own_quality=iq != self.quality))
        elif self.settings.intra_fallback:
            candidates.append(intra_candidate(self.model, picture, q,
                                              own_quality=q != self.quality))
        decision = self._choose(candidates, frame, rd)
        if self.settings.intra_residual:
            decision = try_intra_residual(decision, frame, rd)
        deltas = self.settings.residual_quality_deltas
        if deltas:
            others = sorted({self._on_ladder(q + d) for d in deltas})
            decision = search_residual_quality(decision, frame, rd,
                                               [(o, o != self.quality) for o in others])
        decision = refine_chosen(decision, frame, rd,
                                 self.settings.refine_for(scheduled == FrameType.I))
        if max_bits is not None:
            decision = within_budget(decision, max_bits)
        decision = try_dct_layer(decision, frame, rd, self.settings.dct, max_bits)
        decision, self._filters = try_loop_filter(decision, frame, rd, self._filters,
                                                  self.settings.loop_filter, max_bits)
        self.last_decision = decision
        packet = decision.chosen.packet
        if packet.frame_type != scheduled:
            self.fallbacks += 1
        return packet, self._pipe.keep(decision.chosen.recon)


def check_model(model: VideoCodecModel, header: Header) -> None:
    """Stop before decoding anything if the stream was made by other weights, or asks
    for what its model cannot do. The header was read without a model, so only here
    can its quality be held against the model's range."""
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
    qualities = model.quality_range
    if header.quality not in qualities:
        raise BitstreamError(
            f"{field_where('quality')}: the stream's quality {header.quality:g} is outside "
            f"the range {qualities} of model {model.model_id!r}"
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
        self._filters = NO_FILTERS  # the in-loop filters sent since the last I packet
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
        q = frame_quality(packet, self.header.quality, self.model.quality_range)
        if packet.frame_type == FrameType.I:  # scheduled, or the encoder's intra fallback
            latents = intra_latents(packet, self.model.intra, self._padded, self.header.version)
            x_hat = self.model.intra.decompress(latents, q, self._padded)
        else:
            assert self._pipe.reference is not None
            pf = self.model.pframe
            p = p_latents(packet, pf.mv_coder, pf.residual_coder, self.model.intra,
                          self._padded, self.header.version)
            x_hat = pf.decompress(p, self._pipe.reference, q, self.model.intra)
        frame = self._pipe.round_frame(x_hat, self._size)
        layer = dct_layer_data(packet, self.header.version)
        if layer is not None:  # the refinement layer adds to the decoded samples
            if self.header.version >= CONTEXT_LAYER_VERSION:
                levels = dctcontext.read_layer(layer, frame, self.header.version)
            else:
                levels = dctlayer.read_layer(layer, frame)
            frame = dctlayer.apply_layer(frame, levels)
        self._filters = held_filters(packet.frame_type, self._filters)
        data = loop_filter_data(packet, self.header.version)
        if data is not None:  # the in-loop filter comes last; the reference is its output
            section = read_section(data, self._filters)
            frame = apply_filters(frame, section.filters(self._filters))
            self._filters = section.remembered(self._filters)
        self.index += 1
        return self._pipe.keep(frame)

    def decode_all(self, packets: Iterator[Packet]) -> Iterator[Frame]:
        for packet in packets:
            yield self.decode(packet)
