"""One-pass rate control: pick each frame's quality so the stream lands on a target rate.

The codec has no rate parameter, only a quality in [1, levels] (the gain
units' ladder), and how many bits a quality costs depends on the content by a
factor of five or more. So the controller learns it while coding:

- **A size model per frame type.** ``ln(bits)`` rises with the quality at a
  slope that differs by frame type and along the ladder: on the development set
  I-frames gain 0.2-0.3 ln-bits a level, P-frames 0.15-0.35 at the bottom (a
  skipped residual costs the same at any quality) and about 0.55 above. The
  model's slope goes linearly between knots from the config, and its scale is
  re-estimated from every coded frame's real size, averaged over recent frames
  in bits rather than in log-bits, because what must add up is the sum of the
  bits (a P-frame that skips its residual costs 60 bytes, the next one 800: an
  average of logs would underestimate the sum).
- **A plan over the next frames.** The next frame's quality is the one at which
  the model predicts that the next ``payback_frames`` frames (or the rest of
  the sequence, if fewer), with their GOP types, cost their share of the
  budget plus ``feedback_gain`` times the error accumulated so far. Bits
  saved or overspent are thereby repaid over the following frames, and at the
  end of a sequence of known length the plan covers exactly the frames left,
  so what remains of the error is only what the last frames missed by. The plan
  includes the I-frames in it, so the bits for an I-frame are set aside before
  it comes, and each frame at the quality the encoder will code it at: the
  controller's choice plus the frame's offset by GOP position (the I-frames',
  the GOP tail's), so a choice means what the same constant ``--quality`` means.
- **A bounded step.** Quality moves by at most ``max_step`` from one frame to
  the next: a single odd frame (a scene cut, a skipped residual) must not swing
  the quality of the frames after it. The first frame of a type that neither the
  probe nor the stream has shown is free: the prior it replaces is only a guess.

The controller never looks at pixels and does not depend on the encoder's
preset: it sees only the qualities and the bytes that came out, of the coded
frames and of a probe (``calibrate``: the CLI codes the first two frames aside,
an I- and a P-frame, so the first quality is not a guess).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from dvc_edic.bitstream import FrameType, quantize_quality
from dvc_edic.errors import InputError
from dvc_edic.gop import frame_type
from dvc_edic.models.ladder import MIN_QUALITY, QualityRange

# Bisection on the quality: the plan's predicted bits rise monotonically with it, and
# 40 halvings of [1, 8] are far below the 1/1000 grid the stream stores.
_BISECTIONS = 40


@dataclass(frozen=True)
class RateControlSettings:
    """The controller's tuning numbers (``ratecontrol:`` in configs/encoder.yaml)."""

    # d ln(bits) / d quality of I-frames at knots spread evenly over the ladder (two or more,
    # the first at quality 1, the last at the top; linear in between)
    slope_intra: tuple[float, ...]
    slope_inter: tuple[float, ...]  # the same for P-frames
    prior_bpp: float  # I-frame bits per pixel at prior_quality, before any frame is coded
    prior_quality: float
    inter_to_intra: float  # P-frame / I-frame bits at one quality, before any P is coded
    # a probed P-frame's bits are taken as this x what it cost (see ``calibrate``)
    probe_inter_scale: float
    smoothing_intra: float  # weight of the newest I-frame in the I size model (0, 1]
    smoothing_inter: float  # the same for P-frames
    payback_frames: int  # the error so far is repaid over this many frames (or the rest)
    feedback_gain: float  # share of the accumulated error to repay over that window
    max_step: float  # largest change of quality from one frame to the next
    # a frame may exceed its plan by this share of the clip's (or the window's) budget
    frame_overshoot: float

    def __post_init__(self) -> None:
        positive = {
            "slope_intra": min(self.slope_intra), "slope_inter": min(self.slope_inter),
            "prior_bpp": self.prior_bpp, "inter_to_intra": self.inter_to_intra,
            "probe_inter_scale": self.probe_inter_scale,
            "max_step": self.max_step,
        }
        for name, value in positive.items():
            if not value > 0:
                raise InputError(f"ratecontrol.{name} must be > 0, got {value!r}")
        for name, value in (("smoothing_intra", self.smoothing_intra),
                            ("smoothing_inter", self.smoothing_inter)):
            if not 0 < value <= 1:
                raise InputError(f"ratecontrol.{name} must be in (0, 1], got {value!r}")
        if not self.prior_quality >= MIN_QUALITY:
            raise InputError(f"ratecontrol.prior.quality must be >= {MIN_QUALITY:g}, got "
                             f"{self.prior_quality!r}")
        if not self.frame_overshoot >= 0:
            raise InputError(f"ratecontrol.frame_overshoot must be >= 0, got "
                             f"{self.frame_overshoot!r}")
        if self.payback_frames < 1:
            raise InputError(f"ratecontrol.payback_frames must be >= 1, got "
                             f"{self.payback_frames!r}")
        if not 0 <= self.feedback_gain <= 1:
            raise InputError(f"ratecontrol.feedback_gain must be in [0, 1], got "
                             f"{self.feedback_gain!r}")

    @classmethod
    def from_config(cls, cfg: dict[str, Any]) -> RateControlSettings:
        try:
            return cls(
                slope_intra=_knots(cfg["slope"]["I"]),
                slope_inter=_knots(cfg["slope"]["P"]),
                prior_bpp=float(cfg["prior"]["bpp"]),
                prior_quality=float(cfg["prior"]["quality"]),
                inter_to_intra=float(cfg["prior"]["inter_to_intra"]),
                probe_inter_scale=float(cfg["prior"]["probe_inter_scale"]),
                smoothing_intra=float(cfg["smoothing"]["I"]),
                smoothing_inter=float(cfg["smoothing"]["P"]),
                payback_frames=int(cfg["payback_frames"]),
                feedback_gain=float(cfg["feedback_gain"]),
                max_step=float(cfg["max_step"]),
                frame_overshoot=float(cfg["frame_overshoot"]),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise InputError(f"ratecontrol settings {cfg!r}: missing or bad key: {exc}") from exc


def _knots(value: Any) -> tuple[float, ...]:
    knots = tuple(float(v) for v in value)
    if len(knots) < 2:
        raise ValueError(f"a slope needs 2 or more knots, got {value!r}")
    return knots


class SizeModel:
    """``bits(q) = scale * exp(G(q))`` for one frame type; the scale is learnt.

    G rises from 0 at quality 1 with a slope that goes linearly between knots spread
    evenly from quality 1 to the top of ``qualities``, so ``scale`` is the bits at
    quality 1. ``scale`` is None until a frame of the type is seen or a prior is
    set: the controller then predicts from another model (a P-frame from the I-frame's).
    """

    def __init__(self, slope: tuple[float, ...], qualities: QualityRange, smoothing: float,
                 scale: float | None = None) -> None:
        self.slope = slope
        self.low = qualities.low
        self.span = max(qualities.span, 1.0)
        self.smoothing = smoothing
        self.scale = scale
        self.frames = 0  # frames observed

    def gain(self, quality: float) -> float:
        """G(q) = ln(bits(q) / bits(1)): the integral of the slope from quality 1 to q."""
        t = quality - self.low
        pieces = len(self.slope) - 1
        width = self.span / pieces
        total = 0.0
        for j in range(pieces):
            start = j * width
            if t <= start:
                break
            d = t - start if j == pieces - 1 else min(t - start, width)
            low, high = self.slope[j], self.slope[j + 1]
            total += low * d + (high - low) * d * d / (2.0 * width)
        return total

    def predict(self, quality: float) -> float:
        assert self.scale is not None
        return self.scale * math.exp(self.gain(quality))

    def observe(self, quality: float, bits: float) -> None:
        """Fold one coded frame in: its size, brought back to quality 1 by the slope.

        The first frames are averaged with equal weights (the n-th weighs 1/n) until
        that falls to ``smoothing``: a probe or the first frame of a type is one
        sample, and the frame after an I-frame costs a half or less of the GOP's
        average P-frame on the dev set, so no one frame should set the scale for long.
        """
        seen = bits * math.exp(-self.gain(quality))
        if self.frames == 0 or self.scale is None:
            self.scale = seen  # the prior was only a guess: the first real frame replaces it
        else:
            weight = max(self.smoothing, 1.0 / (self.frames + 1))
            self.scale += weight * (seen - self.scale)
        self.frames += 1


class RateController:
    """Chooses each frame's quality for a target of ``bits_per_frame``, in coding order.

    Call ``next_quality()`` before coding a frame and ``update()`` with what came
    out. ``frame_count`` (None: unknown) lets the plan cover exactly the frames
    left at the end, so the total lands on the target. ``spent_bits`` counts what
    the stream costs besides the frames (the header).
    """

    def __init__(
        self,
        settings: RateControlSettings,
        bits_per_frame: float,
        pixels: int,
        intra_period: int,
        qualities: QualityRange,
        frame_count: int | None = None,
        quality_offset: Callable[[int], float] | None = None,
        spent_bits: float = 0.0,
    ) -> None:
        if not bits_per_frame > 0:
            raise InputError(f"target must be > 0 bits per frame, got {bits_per_frame!r}")
        self.settings = settings
        self.bits_per_frame = float(bits_per_frame)
        self.intra_period = intra_period
        self.qualities = qualities
        self.frame_count = frame_count
        self.quality_offset = quality_offset or _no_offset
        self.spent_bits = float(spent_bits)
        self.index = 0  # frames coded so far
        self.last_quality: float | None = None
        s = settings
        self.intra = SizeModel(s.slope_intra, qualities, s.smoothing_intra)
        self.intra.scale = s.prior_bpp * pixels * math.exp(-self.intra.gain(s.prior_quality))
        self.inter = SizeModel(s.slope_inter, qualities, s.smoothing_inter)

    @property
    def error_bits(self) -> float:
        """The budget of the frames coded so far minus what they cost (> 0: under budget)."""
        return self.index * self.bits_per_frame - self.spent_bits

    def _model(self, ftype: FrameType) -> SizeModel:
        return self.intra if ftype == FrameType.I else self.inter

    def coded_quality(self, quality: float, index: int) -> float:
        """The quality frame ``index`` is coded at when the controller picks ``quality``: the
        encoder adds its offset by GOP position (the I-frames', the GOP's tail)."""
        return self.qualities.clamp(quality + self.quality_offset(index))

    def predict(self, quality: float, ftype: FrameType, index: int) -> float:
        """Predicted bits of frame ``index``, of ``ftype``, at the controller's ``quality``."""
        q = self.coded_quality(quality, index)
        if ftype == FrameType.I:
            return self.intra.predict(q)
        if self.inter.scale is None:  # no P-frame yet: the I-frame model, scaled
            return self.settings.inter_to_intra * self.intra.predict(q)
        return self.inter.predict(q)

    def window(self) -> list[tuple[int, FrameType]]:
        """The indices and GOP types of the frames the next plan covers."""
        span = self.settings.payback_frames
        if self.frame_count is not None:
            span = max(1, min(span, self.frame_count - self.index))
        return [(i, frame_type(i, self.intra_period))
                for i in range(self.index, self.index + span)]

    def plan_bits(self) -> float:
        """What the next plan (the window's frames) may spend: their share of the target
        plus ``feedback_gain`` x the error so far."""
        return (len(self.window()) * self.bits_per_frame
                + self.settings.feedback_gain * self.error_bits)

    def next_quality(self) -> float:
        """The quality for the next frame: the plan's, within ``max_step`` of the last one.

        The bound holds once a frame of the next frame's type has been seen. Before
        that its size is a guess (the prior, or a P-frame as a scaled I-frame), so
        the first frame of a type may move at once. After that, a single frame can
        be an outlier (a P-frame that skips its residual costs a tenth of a coded
        one): following it at once would swing the quality far, and bounded steps
        would take many frames to bring it back (measured: +97 % on carphone).
        """
        types = self.window()
        budget = self.plan_bits()

        def cost(q: float) -> float:
            return sum(self.predict(q, t, i) for i, t in types)

        lo, hi = self.qualities.low, self.qualities.high
        if cost(lo) >= budget:
            q = lo
        elif cost(hi) <= budget:
            q = hi
        else:
            for _ in range(_BISECTIONS):
                mid = 0.5 * (lo + hi)
                lo, hi = (mid, hi) if cost(mid) < budget else (lo, mid)
            q = 0.5 * (lo + hi)
        if self.last_quality is not None and self._model(types[0][1]).frames > 0:
            step = self.settings.max_step
            q = min(max(q, self.last_quality - step), self.last_quality + step)
        return quantize_quality(q)

    def max_frame_bits(self) -> float:
        """The most the next frame may cost: all that its plan (the window of
        ``next_quality``) has left, plus ``frame_overshoot`` of the clip's budget (of
        the window's, if the clip's length is unknown), never below 0. The encoder keeps
        the lowest-J candidate within it (decision.within_budget).

        Only the end of a clip can make it bind: there the plan is what the clip has
        left, and a frame that overshoots it can no longer be repaid. The slack keeps
        it from refusing a residual that lands the clip within the tolerance anyway
        (without it, carphone at the rate of quality 4.5 undershot by 9 %)."""
        frames = self.frame_count if self.frame_count is not None else len(self.window())
        slack = self.settings.frame_overshoot * frames * self.bits_per_frame
        return max(self.plan_bits() + slack, 0.0)

    def calibrate(self, ftype: FrameType, coded: float, bits: float) -> None:
        """Learn the size of a frame coded aside, not into the stream: a probe.

        The CLI codes the first two frames aside at ``prior.quality`` (an I- and a
        P-frame, SequenceEncoder.probe) before choosing the first quality, so both
        types' sizes are measured, not guessed: the dev set's I-frames differ by 5x
        in bits per pixel, and its P-frames cost 2-20 % of an I-frame.

        The probed P-frame is the GOP's first, one sample of a cost that swings
        with each frame's residual decision: the dev set's P-frames average 0.35 to
        3.5 times the first one's bits (median 1.3). So it counts
        ``probe_inter_scale`` times: erring high costs less than erring low, since a
        P-frame skipping its residual costs about the same at any quality, so the
        P-frames cannot repay an I-frame that the plan overpaid.
        """
        if ftype == FrameType.P:
            bits *= self.settings.probe_inter_scale
        self._model(ftype).observe(coded, bits)

    def update(self, ftype: FrameType, chosen: float, coded: float, bits: float) -> None:
        """Learn from one coded frame: the quality the controller chose for it, the
        quality it was coded at (with its GOP position's offset) and its bits.

        ``ftype`` is the packet's own type: an intra fallback at a P position
        teaches the I model.
        """
        self._model(ftype).observe(coded, bits)
        self.spent_bits += bits
        self.index += 1
        self.last_quality = chosen


def _no_offset(index: int) -> float:
    return 0.0
