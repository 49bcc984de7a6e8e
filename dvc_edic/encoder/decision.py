"""Mode decision at a frame position: every candidate coded for real, the lowest J kept.

J = R + lambda * D, with R the packet's real bytes and lambda from the model's
training ladder at the stream's quality: the very loss the model was trained
to minimise, so a mode that wins J is the one training would have preferred.
Candidates are coded in full (no estimate of their rate), so the choice is
exact and the chosen candidate's reconstruction is already the decoder's.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace

import torch

from dvc_edic.bitstream import BITS_PER_BYTE, Packet
from dvc_edic.blockmotion import BlockMotion
from dvc_edic.dctcontext import layer_bytes
from dvc_edic.dctlayer import DctLayer, apply_layer
from dvc_edic.encoder.blocksearch import refine_for_kernel, search_block_motion
from dvc_edic.encoder.dctsearch import (
    chroma_ratio_of,
    error_coefficients,
    optimal_step,
    quantize_coefficients,
)
from dvc_edic.encoder.loopfit import fit_loop_filter
from dvc_edic.encoder.motion import estimate_flow
from dvc_edic.encoder.rdoq import rdo_quantize
from dvc_edic.encoder.refine import Distortion, RefineSettings, refine_latents
from dvc_edic.encoder.settings import (
    BLOCK_SOURCE,
    PLAIN_WARP_OFF,
    PLAIN_WARP_SEARCH,
    SIZE_CHOICE_PROXY,
    BlockSearchSettings,
    DctLayerSettings,
    EncoderSettings,
)
from dvc_edic.io import Frame, max_sample_value
from dvc_edic.loopfilter import Filters, held_filters, section_bytes
from dvc_edic.metrics import plane_psnrs, pooled_mse, psnr_yuv
from dvc_edic.models.edic import EDIC, CodedLatents
from dvc_edic.models.ladder import LADDER_PEAK
from dvc_edic.models.pframe import INTRA_RESIDUAL_OFFSET, PFrameCodec, PFrameLatents
from dvc_edic.models.video import VideoCodecModel
from dvc_edic.packets import intra_packet, p_packet, with_dct_layer, with_loop_filter
from dvc_edic.representation import crop_to, luma_fold

INTRA_MODE = "intra"
SKIP_SUFFIX = "+skip"  # a P mode with no residual sections
NO_MC_SUFFIX = "+nomc"  # a P mode predicting from the warped reference without the MC net
INTRA_RESIDUAL_SUFFIX = "+ires"  # a P mode whose residual the I-frame coder codes
DCT_SUFFIX = "+dct"  # any mode with the DCT refinement layer on top (format version 6)
LOOP_FILTER_SUFFIX = "+lf"  # any mode with the in-loop filter (format version 8)

RoundFrame = Callable[[torch.Tensor], Frame]


@dataclass(frozen=True)
class Picture:
    """The frame being coded: its padded model tensor, its unpadded size, and how a
    reconstruction of it becomes output samples exactly as the decoder writes them."""

    x: torch.Tensor
    size: tuple[int, int]
    round_frame: RoundFrame
    # per channel of x, how much its squared error counts (None: all alike); see Rd
    channel_weights: torch.Tensor | None = None

    def mse(self, x_hat: torch.Tensor) -> torch.Tensor:
        """Pooled MSE over the frame's samples (padding excluded), each channel weighted as
        ``channel_weights`` says, differentiable."""
        error = (crop_to(x_hat, self.size) - crop_to(self.x, self.size)).square()
        if self.channel_weights is not None:
            error = error * self.channel_weights
        return error.mean()


@dataclass(frozen=True)
class Rd:
    """What J = bits + weight * D weighs at a frame.

    ``lam``: the training ladder's lambda (times the preset's scale). ``chroma_weight``:
    how much a U or V sample's squared error counts against a Y sample's. Training pools
    every sample alike, but PSNR-YUV weighs the planes' PSNRs 6:1:1, and a chroma plane's
    MSE is several times smaller than luma's, so a unit of chroma error costs the metric
    more; the same holds for PSNR-RGB, where each chroma sample reaches four pixels
    (docs/encoder.md, "Chroma weight").
    """

    lam: float
    chroma_weight: float = 1.0

    def weight(self, source: Frame) -> float:
        """Bits per unit of (weighted, pooled) MSE in J: lambda * 255^2 * pixels."""
        return rd_weight(source, self.lam)

    def cost(self, source: Frame, recon: Frame, bits: int) -> float:
        return rd_cost(source, recon, bits, self.lam, self.chroma_weight)

    def plane_weights(self, source: Frame) -> tuple[float, float, float]:
        """Bits per squared sample error (in sample units) of the Y, U and V planes: the
        weight spread over the frame's samples, as pooled_mse pools them."""
        samples = source.y.size + source.u.size + source.v.size
        peak = float(max_sample_value(source.bit_depth))
        luma = self.weight(source) / (samples * peak * peak)
        return luma, luma * self.chroma_weight, luma * self.chroma_weight

    def picture(self, x: torch.Tensor, size: tuple[int, int], round_frame: RoundFrame,
                representation: str) -> Picture:
        """The frame being coded, its model tensor's channels weighted as J weighs them (the
        rgb representation's channels mix the planes, so it weighs them alike)."""
        weights = None
        luma = luma_fold(representation) ** 2  # channels holding luma (1: rgb, none apart)
        if self.chroma_weight != 1.0 and luma > 1:
            weights = torch.tensor([1.0] * luma + [self.chroma_weight] * (x.shape[1] - luma),
                                   dtype=x.dtype).view(1, -1, 1, 1)
        return Picture(x, size, round_frame, weights)


def rd_weight(source: Frame, lam: float) -> float:
    """Bits per unit of MSE in J: lambda * 255^2 * pixels."""
    return lam * LADDER_PEAK * LADDER_PEAK * source.y.size


def rd_cost(source: Frame, recon: Frame, bits: int, lam: float,
            chroma_weight: float = 1.0) -> float:
    """J = lambda * 255^2 * MSE * pixels + bits: the training loss L = lambda*D + R, per frame
    (MSE with chroma weighted by ``chroma_weight``; 1: as training pools it)."""
    return rd_weight(source, lam) * pooled_mse(source, recon, chroma_weight) + bits


def code_picture(
    coder: EDIC,
    target: torch.Tensor,
    quality: float,
    distortion: Distortion,
    weight: float,
    refine: RefineSettings,
) -> tuple[CodedLatents, torch.Tensor]:
    """One coder's latents for ``target``: the analysis net's, refined if ``refine`` has steps."""
    y, z = refine_latents(coder, *coder.analyse(target, quality), quality, distortion, weight,
                          refine)
    return coder.compress_latents(y, z, quality)


# recode(refine, weight): the same candidate with refined latents (None: nothing to refine)
Recode = Callable[[RefineSettings, float], "Candidate"]


@dataclass
class Candidate:
    """One way to code the frame, coded for real."""

    mode: str  # "intra", or a motion ("learned", "dis", "zero", "block8") + "+nomc", "+skip"
    packet: Packet
    recon: Frame
    warped: Frame | None = None  # P only: the reference warped by the decoded flow
    prediction: Frame | None = None  # P only: what the residual is coded against
    cost: float = field(default=float("nan"))
    size: int = 0  # bytes of the packet as written
    recode: Recode | None = field(default=None, repr=False)
    refined: bool = False  # its latents were refined (dvc_edic.encoder.refine)
    # the same prediction with its residual coded by the I-frame coder (None: not a P
    # candidate with a residual)
    with_intra_residual: Callable[[], Candidate] | None = field(default=None, repr=False)
    # at_quality(q, own): the same prediction with its residual coded at quality q, the
    # packet carrying q if ``own`` (None: no residual to re-code)
    at_quality: Callable[[float, bool], Candidate] | None = field(default=None, repr=False)
    quality: float | None = None  # the residual's (P candidates with a residual only)
    label: str = ""  # tells apart, in --stats, re-codings of one mode (e.g. "@q5")

    def price(self, source: Frame, rd: Rd) -> None:
        self.size = len(self.packet.to_bytes())
        self.cost = rd.cost(source, self.recon, BITS_PER_BYTE * self.size)


@dataclass
class Decision:
    chosen: Candidate
    runner_up: Candidate | None
    tried: list[Candidate]

    def report(self, source: Frame) -> dict[str, object]:
        """What --stats records about the decision (sizes in bytes, PSNR-YUV in dB)."""
        c = self.chosen
        sections = {s.name: len(s.data) for s in c.packet.sections}
        out: dict[str, object] = {
            "mode": c.mode,
            "sections": sections,
            "overhead_bytes": c.size - sum(sections.values()),
            "J": c.cost,
            "runner_up": None if self.runner_up is None else self.runner_up.mode,
            "runner_up_J": None if self.runner_up is None else self.runner_up.cost,
            "refined": c.refined,
            "residual_quality": c.quality,
            "tried": {t.mode + t.label: t.cost for t in self.tried},
        }
        for key, frame in (("psnr_warped", c.warped), ("psnr_pred", c.prediction)):
            out[key] = None if frame is None else psnr_yuv(*plane_psnrs(source, frame))
        return out


def choose(candidates: list[Candidate], source: Frame, rd: Rd) -> Decision:
    for c in candidates:
        c.price(source, rd)
    ranked = sorted(candidates, key=lambda c: c.cost)
    return Decision(ranked[0], ranked[1] if len(ranked) > 1 else None, candidates)


def try_intra_residual(decision: Decision, source: Frame, rd: Rd) -> Decision:
    """Code the residual of the best residual-carrying candidate with the I-frame coder,
    and keep that if its real J is the lowest.

    The I-frame coder has had far more training than the residual coder; on the
    first frames of the dev clips it coded a residual shifted into [0, 1] for 2-20 %
    less J at most rates (12-23 % more on bikes at low ones). Only the best
    prediction gets it: one more coding per frame, not one per prediction.
    """
    coded = [c for c in decision.tried if c.with_intra_residual is not None]
    if not coded:
        return decision
    base = min(coded, key=lambda c: c.cost)
    assert base.with_intra_residual is not None
    other = base.with_intra_residual()
    other.price(source, rd)
    tried = [*decision.tried, other]
    if other.cost >= decision.chosen.cost:
        return Decision(decision.chosen, decision.runner_up, tried)
    return Decision(other, decision.chosen, tried)


def search_residual_quality(decision: Decision, source: Frame, rd: Rd,
                            qualities: list[tuple[float, bool]]) -> Decision:
    """Re-code the residual of the best residual-carrying candidate at each of
    ``qualities`` ((quality, carried in the packet)), and keep the lowest real J.

    lambda stays the frame's, so this is an RD choice, not a change of target: the
    residual coder's quality ladder was trained in few steps, and at a given lambda a
    neighbouring quality often codes the same residual for less J (the packet pays
    three bytes for its own ``q``). The base is the best candidate with a residual,
    not the winner: a skipped frame may win only because the residual costs too much
    at the stream's quality. I-frames keep theirs: the frames after them predict from
    them, which a greedy choice would not see.
    """
    coded = [c for c in decision.tried if c.at_quality is not None]
    if not coded or not qualities:
        return decision
    base = min(coded, key=lambda c: c.cost)
    assert base.at_quality is not None
    chosen, runner_up, tried = decision.chosen, decision.runner_up, list(decision.tried)
    for quality, own in qualities:
        if quality == base.quality:
            continue
        other = replace(base.at_quality(quality, own), label=f"@q{quality:g}")
        other.price(source, rd)
        tried.append(other)
        if other.cost < chosen.cost:
            chosen, runner_up = other, chosen
    return Decision(chosen, runner_up, tried)


def refine_chosen(decision: Decision, source: Frame, rd: Rd,
                  refine: RefineSettings) -> Decision:
    """Re-code the winner with refined latents, and keep it if its real J is lower.

    Only the winner is refined: refinement lowers every candidate's J by a few
    per cent, far less than the gaps between modes, so deciding first and
    refining once costs one refinement per frame instead of one per candidate.
    """
    chosen = decision.chosen
    if refine.steps == 0 or chosen.recode is None:
        return decision
    better = chosen.recode(refine, rd.weight(source))
    better.price(source, rd)
    if better.cost >= chosen.cost:
        return decision
    return Decision(better, chosen, decision.tried)


def within_budget(decision: Decision, max_bits: float) -> Decision:
    """The lowest-J candidate whose packet fits ``max_bits``; the smallest if none does.

    Rate control's guard against a frame that would eat its whole plan: at low rates
    a P-frame either skips its residual (tens of bytes) or codes one (a thousand),
    and a size model smoothed over both cannot tell which the decision will take.
    Held to what the plan still has, the last frames of a clip no longer overshoot
    it by one residual (carphone at the rate of quality 2: +37 % without, docs/
    encoder.md). Every candidate was coded for real, so the choice stays exact.
    """
    if decision.chosen.size * BITS_PER_BYTE <= max_bits:
        return decision
    fitting = [c for c in decision.tried if c.size * BITS_PER_BYTE <= max_bits]
    pick = (min(fitting, key=lambda c: c.cost) if fitting
            else min(decision.tried, key=lambda c: c.size))
    if pick.size >= decision.chosen.size:
        return decision
    return Decision(pick, decision.chosen, decision.tried)


def _layered(base: Candidate, layer: DctLayer) -> Candidate:
    """``base`` with ``layer`` coding what is left of the frame."""
    return Candidate(
        base.mode + DCT_SUFFIX, with_dct_layer(base.packet, layer_bytes(layer, base.recon)),
        apply_layer(base.recon, layer), base.warped, base.prediction, quality=base.quality,
        label=f"{base.label}@step{layer.step:g}",
    )


def try_dct_layer(decision: Decision, source: Frame, rd: Rd, settings: DctLayerSettings,
                  max_bits: float | None = None) -> Decision:
    """Add the DCT refinement layer to the winner at each of the preset's steps (and to the
    best P candidate without a learned residual), and keep the lowest real J.

    The learned coders, trained for a few CPU-hours, stop gaining quality at the top
    of their ladder (the I-frame coder's transform reconstructs the dev clips' first
    frames at a median 34.5 dB even unquantised), and an 8x8 DCT of what they leave
    keeps the RD curve rising (docs/encoder.md). The layer goes on last, after
    refinement, on decoded samples, so it takes the frame as the decoder has it.
    ``max_bits`` (rate control): a layered packet must fit it.
    """
    if not settings.step_factors:
        return decision
    bases = [decision.chosen]
    skips = [c for c in decision.tried if c.mode.endswith(SKIP_SUFFIX)]
    if settings.on_skip and skips:
        best_skip = min(skips, key=lambda c: c.cost)
        if best_skip is not decision.chosen:
            bases.append(best_skip)
    weight = rd.plane_weights(source)[0]  # Y's: U's and V's steps follow chroma_step_ratio
    centre = optimal_step(weight)
    chroma = chroma_ratio_of(settings.chroma_step_ratio)
    chosen, runner_up, tried = decision.chosen, decision.runner_up, list(decision.tried)
    for base in bases:
        coefs = error_coefficients(source, base.recon)  # once per base, for every step
        for factor in settings.step_factors:
            if settings.rdoq:
                layer = rdo_quantize(coefs, base.recon, centre * factor, settings.deadzone,
                                     weight, chroma)
            else:
                layer = quantize_coefficients(coefs, centre * factor, settings.deadzone, chroma)
            other = _layered(base, layer)
            other.price(source, rd)
            tried.append(other)
            fits = max_bits is None or other.size * BITS_PER_BYTE <= max_bits
            if fits and other.cost < chosen.cost:
                chosen, runner_up = other, chosen
    return Decision(chosen, runner_up, tried)


def try_loop_filter(decision: Decision, source: Frame, rd: Rd, last: Filters,
                    enabled: bool, max_bits: float | None = None) -> tuple[Decision, Filters]:
    """Fit the in-loop filter to the winner's frame and keep it if the real J is lower.

    Returns the decision and the filters the decoder holds after its packet: an I packet
    forgets the previous ones (dvc_edic.loopfilter). It runs last, on the frame as the
    decoder has it after the DCT layer; the next frame then predicts from the filtered
    one, which no J of this frame sees, so the filter is kept only where it pays here.
    ``max_bits`` (rate control): the filtered packet must fit it.
    """
    chosen = decision.chosen
    prior = held_filters(chosen.packet.frame_type, last)
    if not enabled:
        return decision, prior
    fit = fit_loop_filter(source, chosen.recon, prior, rd.plane_weights(source))
    if fit is None:
        return decision, prior
    section = fit.section
    other = Candidate(
        chosen.mode + LOOP_FILTER_SUFFIX,
        with_loop_filter(chosen.packet, section_bytes(section, prior)),
        fit.frame, chosen.warped, chosen.prediction, quality=chosen.quality,
        label=chosen.label,
    )
    other.price(source, rd)
    tried = [*decision.tried, other]
    fits = max_bits is None or other.size * BITS_PER_BYTE <= max_bits
    if fits and other.cost < chosen.cost:
        return Decision(other, chosen, tried), section.remembered(prior)
    return Decision(chosen, decision.runner_up, tried), prior


Chooser = Callable[[list[Candidate], Frame, Rd], Decision]


def intra_candidate(
    model: VideoCodecModel,
    picture: Picture,
    quality: float,
    own_quality: bool = False,
) -> Candidate:
    """``own_quality``: the packet carries its quality (it differs from the stream's)."""

    def distortion(x_hat: torch.Tensor) -> torch.Tensor:
        return picture.mse(x_hat.clamp(0.0, 1.0))

    def recode(settings: RefineSettings, weight: float) -> Candidate:
        latents, x_hat = code_picture(model.intra, picture.x, quality, distortion, weight,
                                      settings)
        return Candidate(INTRA_MODE, intra_packet(latents, quality if own_quality else None),
                         picture.round_frame(x_hat), recode=recode, refined=settings.steps > 0)

    return recode(RefineSettings(), 0.0)


def _predictions(
    pf: PFrameCodec, x: torch.Tensor, reference: torch.Tensor, motion: Motion,
    plain_warp: str,
) -> tuple[torch.Tensor, list[tuple[bool, torch.Tensor]]]:
    """(warped reference, [(uses MC, prediction), ...]) to code residuals against.

    ``proxy`` keeps whichever of the MC net's output and the plainly warped
    reference is closer to the frame, so only one residual is coded; ``search``
    codes both. Block motion always predicts by the plain warp: the MC net was
    trained on the flow net's near-zero fields, and on real motion its output is
    far worse than the warp it starts from (5-19 dB on the dev set).
    """
    if motion.block is not None:
        warped = pf.block_warp(reference, motion.block)
        return warped, [(False, warped)]
    assert motion.flow_hat is not None
    warped = pf.plain_warp(reference, motion.flow_hat)
    with_mc = pf.predict(reference, motion.flow_hat)
    if plain_warp == PLAIN_WARP_OFF:
        return warped, [(True, with_mc)]
    if plain_warp == PLAIN_WARP_SEARCH:
        return warped, [(True, with_mc), (False, warped)]
    mc_better = (x - with_mc).square().mean() <= (x - warped).square().mean()
    return warped, [(True, with_mc) if mc_better else (False, warped)]


@dataclass(frozen=True)
class Motion:
    """One motion candidate of a P position: what its packet holds and the decoded flow."""

    mode: str  # the motion source, e.g. "learned", "zero", "block8"
    mv: CodedLatents | None  # the MV coder's latents (None: no mv_* sections)
    block: BlockMotion | None  # block vectors (None: no bmv section)
    # the decoded dense flow; None for block motion, which is warped block by block
    flow_hat: torch.Tensor | None

    def latents(self, residual: CodedLatents | None, mc: bool) -> PFrameLatents:
        return PFrameLatents(mv=self.mv, residual=residual, mc=mc, block=self.block)


def _with_residual(
    model: VideoCodecModel, picture: Picture, quality: float, own_quality: bool, mode: str,
    motion: Motion, mc: bool, prediction: torch.Tensor, warped_f: Frame, prediction_f: Frame,
    by_intra: bool = False,
) -> Candidate:
    """The candidate that codes ``picture`` as ``prediction`` plus a coded residual:
    by the residual coder, or (``by_intra``) by the I-frame coder, shifted into [0, 1]."""
    coder = model.intra if by_intra else model.pframe.residual_coder
    offset = INTRA_RESIDUAL_OFFSET if by_intra else 0.0
    target = picture.x - prediction
    if by_intra:  # the decoder adds back what it decodes minus the offset, then clamps
        target = (target + offset).clamp(0.0, 1.0)

    def distortion(decoded: torch.Tensor) -> torch.Tensor:
        return picture.mse(PFrameCodec.finish(prediction, decoded - offset))

    def recode(settings: RefineSettings, weight: float) -> Candidate:
        res, decoded = code_picture(coder, target, quality, distortion, weight, settings)
        latents = replace(motion.latents(res, mc), intra_residual=by_intra)
        return Candidate(
            mode + (INTRA_RESIDUAL_SUFFIX if by_intra else ""),
            p_packet(latents, quality if own_quality else None),
            picture.round_frame(PFrameCodec.finish(prediction, decoded - offset)), warped_f,
            prediction_f, recode=recode, refined=settings.steps > 0,
            with_intra_residual=None if by_intra else intra_version,
            at_quality=requalified, quality=quality,
        )

    def requalified(other: float, own: bool) -> Candidate:
        return _with_residual(model, picture, other, own, mode, motion, mc, prediction,
                              warped_f, prediction_f, by_intra=by_intra)

    def intra_version() -> Candidate:
        return _with_residual(model, picture, quality, own_quality, mode, motion, mc,
                              prediction, warped_f, prediction_f, by_intra=True)

    return recode(RefineSettings(), 0.0)


def _block_mode(block: BlockMotion, settings: BlockSearchSettings) -> str:
    """``block16`` for a field of 16-sample blocks; ``block16p2`` when it was searched at
    one of the extra precisions (here 2: vectors in quarter samples)."""
    name = f"{BLOCK_SOURCE}{block.block}"
    if block.precision_log2 != settings.precision_log2:
        name += f"p{block.precision_log2}"
    return f"{name}+cubic" if block.cubic else name


def _kernel_choice(
    pf: PFrameCodec, picture: Picture, reference: torch.Tensor, block: BlockMotion,
    kernels: tuple[str, ...],
) -> BlockMotion:
    """The field with the kernel whose plain warp is closer to the frame (the vectors cost
    the same bits under each): cubic keeps sharp content sharp, bilinear smooths noise."""
    fields = [replace(block, cubic=k == "cubic") for k in kernels]
    if len(fields) == 1:
        return fields[0]
    return min(fields, key=lambda f: float(picture.mse(pf.block_warp(reference, f))))


def _motions(
    model: VideoCodecModel, picture: Picture, reference: torch.Tensor, quality: float,
    settings: EncoderSettings, weight: float,
) -> Iterator[Motion]:
    """Each motion source of the preset; block motion once per block size."""
    pf = model.pframe
    for source in settings.motion:
        if source == BLOCK_SOURCE:
            fields = search_block_motion(picture.x, reference, picture.size,
                                         model.representation, settings.block, weight)
            if settings.block.size_choice == SIZE_CHOICE_PROXY:
                fields = [min(fields, key=lambda f: f.cost)]
            for searched in fields:
                block = _kernel_choice(pf, picture, reference, searched.motion,
                                       settings.block.kernels)
                if block.cubic:
                    block = refine_for_kernel(picture.x, reference, picture.size,
                                              model.representation, block, settings.block,
                                              weight)
                yield Motion(_block_mode(block, settings.block), None, block, None)
            continue
        flow = estimate_flow(source, model, picture.x, reference, settings.dis_preset)
        if flow is None:
            yield Motion(source, None, None, pf.zero_motion(reference))
        else:
            mv, flow_hat = pf.mv_coder.compress(flow, quality)
            yield Motion(source, mv, None, flow_hat)


@torch.no_grad()
def p_candidates(
    model: VideoCodecModel,
    picture: Picture,
    reference: torch.Tensor,
    quality: float,
    settings: EncoderSettings,
    weight: float,
    own_quality: bool = False,
) -> list[Candidate]:
    """Each motion source and prediction, with its residual and (if enabled) without.

    ``weight``: bits per unit of MSE in J (the block search prices its vectors with it).
    ``own_quality``: the packets carry ``quality`` (it differs from the stream's).
    """
    pf = model.pframe
    round_frame = picture.round_frame
    out: list[Candidate] = []
    for motion in _motions(model, picture, reference, quality, settings, weight):
        warped, predictions = _predictions(pf, picture.x, reference, motion, settings.plain_warp)
        warped_f = round_frame(warped)
        for mc, prediction in predictions:
            mode = motion.mode if mc else motion.mode + NO_MC_SUFFIX
            prediction_f = round_frame(prediction) if mc else warped_f  # plain warp: same frame
            out.append(_with_residual(model, picture, quality, own_quality, mode, motion, mc,
                                      prediction, warped_f, prediction_f))
            if settings.skip_residual:
                # exactly what the decoder outputs for a packet without residual sections
                out.append(Candidate(
                    mode + SKIP_SUFFIX, p_packet(motion.latents(None, mc),
                                                 quality if own_quality else None),
                    round_frame(prediction.clamp(0.0, 1.0)), warped_f, prediction_f,
                ))
    return out
