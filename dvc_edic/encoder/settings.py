"""The encoder's switches, read once from configs/encoder.yaml and chosen by --preset.

This module imports neither torch nor anything that does: the encoder's
``--help`` lists the presets from here, and must answer at once. So the plain
settings records live here (RefineSettings too, which dvc_edic.encoder.refine
re-exports), and the rate controller's module is imported only when its
settings are asked for.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, TypeVar

from dvc_edic.bitstream.limits import PRECISION_LOG2_MAX, WARP_KERNELS
from dvc_edic.config import CONFIG_ROOT, load_yaml
from dvc_edic.errors import InputError

if TYPE_CHECKING:
    from dvc_edic.encoder.ratecontrol import RateControlSettings

ENCODER_CONFIG = CONFIG_ROOT / "encoder.yaml"
MOTION_SOURCES = ("learned", "dis", "zero", "block")
BLOCK_SOURCE = "block"  # searched block vectors, coded exactly (dvc_edic.blockmotion)
DIS_PRESETS = ("ultrafast", "fast", "medium")
# Whether P-frames may predict from the warped reference without the MC net: never,
# when it is closer to the frame than the MC output (one residual coded), or both coded.
PLAIN_WARP_OFF, PLAIN_WARP_PROXY, PLAIN_WARP_SEARCH = "off", "proxy", "search"
PLAIN_WARP_MODES = (PLAIN_WARP_OFF, PLAIN_WARP_PROXY, PLAIN_WARP_SEARCH)
# Which searched block sizes the mode decision codes: the one whose vectors' bits plus
# weighted prediction error are lowest, or every one.
SIZE_CHOICE_PROXY, SIZE_CHOICE_CODE = "proxy", "code"
SIZE_CHOICES = (SIZE_CHOICE_PROXY, SIZE_CHOICE_CODE)


@dataclass(frozen=True)
class RefineSettings:
    """How hard the encoder works on each coded picture's latents (configs/encoder.yaml).

    The refinement itself is dvc_edic.encoder.refine.refine_latents.
    """

    steps: int = 0  # 0: the analysis net's latents as they are
    lr: float = 0.05
    alpha_start: float = 1.0  # soft-rounding sharpness of the backward pass, first step
    alpha_end: float = 8.0  # ... and last step (geometric in between)

    def __post_init__(self) -> None:
        if self.steps < 0:
            raise ValueError(f"refine steps must be >= 0, got {self.steps}")
        if self.steps and not (self.lr > 0 and 0 < self.alpha_start <= self.alpha_end):
            raise ValueError(
                f"refine needs lr > 0 and 0 < alpha_start <= alpha_end, got lr {self.lr}, "
                f"alpha {self.alpha_start}..{self.alpha_end}"
            )


@dataclass(frozen=True)
class BlockSearchSettings:
    """How the encoder finds a block motion field (configs/encoder.yaml, ``block_motion``).

    The search itself is dvc_edic.encoder.blocksearch.search_block_motion.
    """

    block_log2: tuple[int, ...] = (3,)  # block sides searched, coarse to fine (model grid)
    precision_log2: int = 3  # vectors in 1/2^p model-grid samples
    # every block size also searched at these (coarser) precisions, each field a candidate:
    # half-sample vectors cost fewer bits and blur less, which pays at low rates
    extra_precisions: tuple[int, ...] = ()
    dis_preset: str = "medium"  # the dense flow the search starts from
    # bits per unit of prediction SSE = distortion_weight * the mode decision's
    distortion_weight: float = 1.0
    rounds: int = 2  # descents from the coarsest step to the finest
    # mean |residual| of the rate model of every round but the last (0: the field's own)
    search_scale: float = 0.0
    # which sizes become candidates: the one of lowest motion cost (proxy), or all (code)
    size_choice: str = SIZE_CHOICE_PROXY
    # interpolation kernels of the plain warp a field may take (format version 10); with
    # several, each field takes the one whose warp is closer to the frame (its vectors
    # cost the same bits under each)
    kernels: tuple[str, ...] = ("bilinear",)
    # rounds of the descent again for a field that takes the cubic kernel, priced with it
    kernel_rounds: int = 0

    def __post_init__(self) -> None:
        precisions = (self.precision_log2, *self.extra_precisions)
        if (not self.block_log2 or min(precisions) < 0 or max(precisions) > PRECISION_LOG2_MAX
                or self.rounds < 1 or self.kernel_rounds < 0):
            raise ValueError(f"block motion needs block sizes, precisions in "
                             f"0..{PRECISION_LOG2_MAX}, rounds >= 1 and kernel_rounds >= 0, "
                             f"got {self}")
        if self.search_scale < 0 or self.size_choice not in SIZE_CHOICES:
            raise ValueError(f"block motion: search_scale >= 0 and size_choice one of "
                             f"{list(SIZE_CHOICES)}, got {self}")
        if not self.kernels or not set(self.kernels) <= set(WARP_KERNELS):
            raise ValueError(f"block motion: kernels must be some of {list(WARP_KERNELS)}, "
                             f"got {list(self.kernels)}")
        if self.dis_preset not in DIS_PRESETS or not self.distortion_weight > 0:
            raise ValueError(f"block motion: dis_preset one of {list(DIS_PRESETS)} and "
                             f"distortion_weight > 0, got {self}")


# The chroma step ratio's open bound: the dct section's u8 counts 1/64 of luma's step
# (format version 9), so 255/64 is the largest it carries.
MAX_CHROMA_STEP_RATIO = 4.0


@dataclass(frozen=True)
class DctLayerSettings:
    """Whether and how the encoder adds the DCT refinement layer (format version 6) to a
    frame's winner (configs/encoder.yaml, ``dct_layer``).

    The search itself is dvc_edic.encoder.decision.try_dct_layer.
    """

    # the quantizer steps tried: the high-rate optimum for the frame's lambda times each
    # (empty: no layer)
    step_factors: tuple[float, ...] = ()
    deadzone: float = 0.33  # rounding offset of the quantizer: 0.5 rounds, less zeroes more
    # also try it on the best P candidate that skips its learned residual
    on_skip: bool = True
    # levels re-chosen for bits + weight * error under the coder's own cells
    # (dvc_edic.encoder.rdoq), not by the dead zone alone; no preset sets it
    rdoq: bool = False
    # the chroma planes' step over luma's (format version 9): below 1 codes chroma finer
    chroma_step_ratio: float = 1.0

    def __post_init__(self) -> None:
        if any(not (f > 0 and math.isfinite(f)) for f in self.step_factors):
            raise ValueError(f"dct layer step factors must be positive, got {self.step_factors}")
        if not 0 < self.chroma_step_ratio < MAX_CHROMA_STEP_RATIO:
            raise ValueError(f"dct layer chroma_step_ratio must be in (0, "
                             f"{MAX_CHROMA_STEP_RATIO:g}), got {self.chroma_step_ratio}")
        if not 0 <= self.deadzone <= 0.5:
            raise ValueError(f"dct layer deadzone must be in [0, 0.5], got {self.deadzone}")


@dataclass(frozen=True)
class EncoderSettings:
    """What the encoder searches at a P position (the I positions have nothing to choose)."""

    preset: str
    motion: tuple[str, ...]
    skip_residual: bool
    intra_fallback: bool
    dis_preset: str
    intra_quality_offset: float = 0.0  # added to --quality for the GOP's I-frames
    plain_warp: str = PLAIN_WARP_OFF
    refine: RefineSettings = field(default_factory=RefineSettings)  # of each frame's winner
    # of the GOP's scheduled I-frames instead (None: ``refine``): every later frame of the
    # GOP predicts from them, and there are few of them, so they can take more steps
    intra_refine: RefineSettings | None = None
    # added to --quality for the P-frame at GOP position k: offsets[k % len(offsets)]
    p_quality_offsets: tuple[float, ...] = ()
    # added to --quality for the GOP's last P-frames, the frame before the next I-frame
    # last: fewer frames predict through them, so their bits buy less (intra period > 0)
    gop_tail_offsets: tuple[float, ...] = ()
    block: BlockSearchSettings = field(default_factory=BlockSearchSettings)
    # also code the best prediction's residual with the I-frame coder (format version 3)
    intra_residual: bool = False
    # every decision's lambda = the training ladder's x this (mode, block search, refinement)
    lambda_scale: float = 1.0
    # the best residual-carrying P candidate is also coded at the frame's quality + each of
    # these, at the same lambda (dvc_edic.encoder.decision.search_residual_quality)
    residual_quality_deltas: tuple[float, ...] = ()
    dct: DctLayerSettings = field(default_factory=DctLayerSettings)
    # fit the in-loop filter to each frame and send it where it lowers J (format version 8)
    loop_filter: bool = False
    # how much a U or V sample's squared error counts in J against a Y sample's
    # (dvc_edic.encoder.decision.Rd; 1: as training pools them)
    chroma_weight: float = 1.0

    def __post_init__(self) -> None:
        if not self.motion:
            raise InputError(f"encoder preset {self.preset!r}: motion needs at least one source")
        unknown = [m for m in self.motion if m not in MOTION_SOURCES]
        if unknown:
            raise InputError(
                f"encoder preset {self.preset!r}: unknown motion source(s) {unknown}, "
                f"expected some of {list(MOTION_SOURCES)}"
            )
        offsets = (*self.p_quality_offsets, *self.gop_tail_offsets, self.intra_quality_offset)
        if not all(math.isfinite(o) for o in offsets):
            raise InputError(f"encoder preset {self.preset!r}: quality offsets must be finite "
                             f"numbers, got {offsets}")
        if self.plain_warp not in PLAIN_WARP_MODES:
            raise InputError(
                f"encoder preset {self.preset!r}: plain_warp must be one of "
                f"{list(PLAIN_WARP_MODES)}, got {self.plain_warp!r}"
            )
        for name in ("lambda_scale", "chroma_weight"):
            value = getattr(self, name)
            if not (value > 0 and math.isfinite(value)):
                raise InputError(f"encoder preset {self.preset!r}: {name} must be a positive "
                                 f"number, got {value!r}")
        if self.dis_preset not in DIS_PRESETS:
            raise InputError(
                f"dis preset must be one of {list(DIS_PRESETS)}, got {self.dis_preset!r}"
            )

    def refine_for(self, frame_type_is_intra: bool) -> RefineSettings:
        """The refinement of a frame scheduled as an I-frame (True) or a P-frame."""
        if frame_type_is_intra and self.intra_refine is not None:
            return self.intra_refine
        return self.refine

    def _intra_refine_override(self, steps_lr: tuple[int, float | None] | None
                               ) -> RefineSettings | None:
        """--intra-refine STEPS[,LR] over the preset's I-frame refinement (None: keep)."""
        if steps_lr is None:
            return None
        steps, lr = steps_lr
        base = self.refine_for(True)
        return replace(base, steps=steps, lr=base.lr if lr is None else lr)

    def with_overrides(
        self,
        motion: tuple[str, ...] | None = None,
        intra_fallback: bool | None = None,
        intra_quality_offset: float | None = None,
        plain_warp: str | None = None,
        skip_residual: bool | None = None,
        refine_steps: int | None = None,
        intra_refine: tuple[int, float | None] | None = None,
        p_quality_offsets: tuple[float, ...] | None = None,
        gop_tail_offsets: tuple[float, ...] | None = None,
        intra_residual: bool | None = None,
        lambda_scale: float | None = None,
        chroma_weight: float | None = None,
        residual_quality_deltas: tuple[float, ...] | None = None,
        dct_steps: tuple[float, ...] | None = None,
        loop_filter: bool | None = None,
        chroma_step_ratio: float | None = None,
        block_precisions: tuple[int, ...] | None = None,
        block_kernels: tuple[str, ...] | None = None,
    ) -> EncoderSettings:
        """The preset with the switches the user set on the command line (None: keep)."""
        changes: dict[str, Any] = {
            "motion": motion,
            "intra_fallback": intra_fallback,
            "intra_quality_offset": intra_quality_offset,
            "plain_warp": plain_warp,
            "skip_residual": skip_residual,
            "refine": None if refine_steps is None else replace(self.refine, steps=refine_steps),
            "intra_refine": self._intra_refine_override(intra_refine),
            "p_quality_offsets": p_quality_offsets,
            "gop_tail_offsets": gop_tail_offsets,
            "intra_residual": intra_residual,
            "lambda_scale": lambda_scale,
            "chroma_weight": chroma_weight,
            "residual_quality_deltas": residual_quality_deltas,
            "dct": _dct_overrides(self.dct, dct_steps, chroma_step_ratio),
            "loop_filter": loop_filter,
            "block": _block_overrides(self.block, block_precisions, block_kernels),
        }
        out = replace(self, **{k: v for k, v in changes.items() if v is not None})
        if refine_steps is not None and intra_refine is None:
            # --refine-steps alone sets every frame's refinement, the I-frames' too
            out = replace(out, intra_refine=None)
        return out


@functools.cache
def _config() -> dict[str, Any]:
    """Read once per process: --help, the defaults and the chosen preset all need it."""
    return load_yaml(ENCODER_CONFIG)


def preset_names() -> list[str]:
    return list(_config()["presets"])


def default_preset() -> str:
    return str(_config()["default"])


def load_encoder_settings(preset: str | None = None) -> EncoderSettings:
    """The named preset (default: the config's ``default``)."""
    cfg = _config()
    name = str(cfg["default"]) if preset is None else preset
    presets = cfg["presets"]
    if name not in presets:
        raise InputError(
            f"{ENCODER_CONFIG}: unknown encoder preset {name!r}; known presets: {list(presets)}"
        )
    p = presets[name]
    return EncoderSettings(
        preset=name,
        motion=tuple(p["motion"]),
        skip_residual=bool(p["skip_residual"]),
        intra_fallback=bool(p["intra_fallback"]),
        dis_preset=str(cfg["dis"]["preset"]),
        intra_quality_offset=float(p.get("intra_quality_offset", 0.0)),
        plain_warp=str(p.get("plain_warp", PLAIN_WARP_OFF)),
        refine=_merged(name, cfg, "refine", p.get("refine", {}), RefineSettings),
        intra_refine=(None if "intra_refine" not in p else
                      _merged(name, cfg, "refine", p["intra_refine"], RefineSettings)),
        p_quality_offsets=tuple(float(o) for o in p.get("p_quality_offsets", ())),
        gop_tail_offsets=tuple(float(o) for o in p.get("gop_tail_offsets", ())),
        block=_merged(name, cfg, "block_motion", p.get("block_motion", {}),
                      BlockSearchSettings),
        intra_residual=bool(p.get("intra_residual", False)),
        lambda_scale=float(p.get("lambda_scale", 1.0)),
        chroma_weight=float(p.get("chroma_weight", 1.0)),
        residual_quality_deltas=tuple(float(d) for d in p.get("residual_quality_deltas", ())),
        dct=_merged(name, cfg, "dct_layer", p.get("dct_layer", {}), DctLayerSettings),
        loop_filter=bool(p.get("loop_filter", False)),
    )


def _dct_overrides(dct: DctLayerSettings, steps: tuple[float, ...] | None,
                   chroma_step_ratio: float | None) -> DctLayerSettings | None:
    """The layer's settings with the command line's steps and chroma ratio (None: keep)."""
    changes = {k: v for k, v in (("step_factors", steps),
                                 ("chroma_step_ratio", chroma_step_ratio)) if v is not None}
    return replace(dct, **changes) if changes else None


def _block_overrides(block: BlockSearchSettings, precisions: tuple[int, ...] | None,
                     kernels: tuple[str, ...] | None) -> BlockSearchSettings | None:
    changes: dict[str, Any] = {}
    if precisions is not None:
        changes.update(precision_log2=precisions[0], extra_precisions=precisions[1:])
    if kernels is not None:
        changes["kernels"] = kernels
    return replace(block, **changes) if changes else None


_Settings = TypeVar("_Settings", RefineSettings, BlockSearchSettings, DctLayerSettings)


def _merged(
    preset: str, cfg: dict[str, Any], key: str, own: dict[str, Any], kind: type[_Settings]
) -> _Settings:
    """A preset's ``key`` settings: its own keys over the config's shared section of that name."""
    merged = {**cfg.get(key, {}), **own}
    for name, kind_of in (("block_log2", int), ("extra_precisions", int),
                          ("step_factors", float), ("kernels", str)):
        if name in merged:  # YAML gives a list; the settings are hashable
            merged[name] = tuple(kind_of(b) for b in merged[name])
    try:
        return kind(**merged)
    except (TypeError, ValueError) as exc:
        raise InputError(f"{ENCODER_CONFIG}: preset {preset!r}: bad {key} settings "
                         f"{merged}: {exc}") from exc


def load_ratecontrol_settings() -> RateControlSettings:
    """The rate controller's tuning numbers (``ratecontrol:``); they do not depend on the preset."""
    from dvc_edic.encoder.ratecontrol import RateControlSettings  # imports torch

    cfg = _config()
    if "ratecontrol" not in cfg:
        raise InputError(f"{ENCODER_CONFIG}: no 'ratecontrol' section")
    try:
        return RateControlSettings.from_config(cfg["ratecontrol"])
    except InputError as exc:
        raise InputError(f"{ENCODER_CONFIG}: {exc}") from exc
