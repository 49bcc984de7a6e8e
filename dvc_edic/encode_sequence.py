"""Encode a video into a dvc_edic bitstream.

python -m dvc_edic.encode_sequence video_352x288_30.yuv [-o out.dvce] [--quality 4]
python -m dvc_edic.encode_sequence video_352x288_30.yuv --bitrate 500   # or --bpp 0.2
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

from dvc_edic.bitstream import BITS_PER_BYTE, BitstreamWriter, header_size
from dvc_edic.bitstream.limits import PRECISION_LOG2_MAX, WARP_KERNELS
from dvc_edic.cli import (
    UNTRAINED_NOTE,
    add_common_flags,
    add_max_pixels_flag,
    check_threads,
    limits_from_flags,
    plural,
    progress_bar,
    run_cli,
    setup_threads,
    status,
)
from dvc_edic.encoder.settings import (
    MAX_CHROMA_STEP_RATIO,
    MOTION_SOURCES,
    PLAIN_WARP_MODES,
    default_preset,
    load_encoder_settings,
    preset_names,
)
from dvc_edic.errors import InputError
from dvc_edic.io import Frame, VideoInfo, open_video
from dvc_edic.io.atomic import AtomicFile, check_output_path

# torch takes seconds to import, so the modules that need them are
# imported inside main() once the command line and the input have been checked:
# --help, a usage error or a bad input answer at once, and the first progress
# line appears before the wait (tests/test_startup.py checks what is imported).
if TYPE_CHECKING:
    from dvc_edic.codec import SequenceEncoder
    from dvc_edic.encoder.ratecontrol import RateController
    from dvc_edic.models.ladder import QualityRange

STREAM_SUFFIX = ".dvce"
DEFAULT_QUALITY = 4.0
DEFAULT_INTRA_PERIOD = 12
KILO = 1000.0
# --bitrate/--bpp code the first frames aside first, to measure an I- and a P-frame
PROBE_FRAMES = 2
_Number = TypeVar("_Number", int, float, str)  # what a comma-separated flag holds
PERCENT = 100.0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m dvc_edic.encode_sequence",
        description=(
            "Encode a video with dvc_edic: I-frames by the EDIC image codec, P-frames by DVC-style "
            "motion-compensated coding. Input: raw planar YUV 4:2:0 (.yuv, 8- or 10-bit), .y4m, "
            "or any container PyAV opens (.mp4, .mkv, ...). For .yuv, width, height and fps come "
            "from the flags or from a name like Name_1920x1080_50.yuv."
        ),
        epilog=UNTRAINED_NOTE,
    )
    p.add_argument("input", help="video to encode")
    p.add_argument(
        "-o",
        "--output",
        default=None,
        help=f"output stream (default: the input's name with {STREAM_SUFFIX}, next to it)",
    )
    p.add_argument(
        "--quality",
        type=float,
        default=None,
        help="1 (lowest rate) to 8 (highest), the same for every frame; fractions interpolate "
        f"(default {DEFAULT_QUALITY:g}). --bitrate and --bpp are the alternatives",
    )
    p.add_argument(
        "--bitrate",
        type=float,
        default=None,
        metavar="KBPS",
        help="instead of --quality: aim the whole stream (header included) at KBPS kilobits "
        "per second at the input's frame rate. A one-pass rate controller picks each frame's "
        "quality from the sizes of the frames coded so far (configs/encoder.yaml, "
        "ratecontrol); frames whose quality differs from the header's carry their own. "
        "Within 5 %% of the target on the dev set (docs/encoder.md); a target outside what "
        "qualities 1..8 cost cannot be met, and the summary says so",
    )
    p.add_argument(
        "--bpp",
        type=float,
        default=None,
        metavar="BPP",
        help="instead of --quality: aim the whole stream at BPP bits per luma pixel per frame, "
        "as --bitrate does",
    )
    p.add_argument(
        "--intra-period",
        type=int,
        default=DEFAULT_INTRA_PERIOD,
        help=f"frames per GOP; -1 = only the first frame is intra (default {DEFAULT_INTRA_PERIOD})",
    )
    p.add_argument(
        "--preset",
        choices=preset_names(),
        default=default_preset(),
        help="encoder effort, as in x264: slower presets try more candidates per P-frame "
        "(motion sources, skipping the residual, intra) and keep the one of lowest "
        "rate + lambda * distortion; the decoder is the same for all "
        f"(configs/encoder.yaml; default {default_preset()})",
    )
    p.add_argument(
        "--motion",
        type=_motion_sources,
        default=None,
        metavar="SRC[,SRC...]",
        help="where P-frame motion comes from, one or more of: block (searched block "
        "vectors, coded exactly), learned (the flow net, coded by the MV autoencoder), dis "
        "(OpenCV's DIS optical flow, coded by the MV autoencoder), zero (no motion coded); "
        "auto: all of them. Each is tried and the cheapest kept. Default: the preset's list",
    )
    p.add_argument(
        "--intra-quality-offset",
        type=float,
        default=None,
        metavar="Q",
        help="code the GOP's I-frames at the quality (--quality, or the rate controller's) "
        "+ Q (clamped to the ladder), as x264's "
        "ipratio does: every later frame of the GOP predicts from them. Default: the preset's",
    )
    p.add_argument(
        "--plain-warp",
        choices=PLAIN_WARP_MODES,
        default=None,
        help="let P-frames predict from the warped reference without the motion-compensation "
        "net: off; proxy (keep whichever prediction is closer to the frame); search (code "
        "both, keep the cheaper). Default: the preset's",
    )
    p.add_argument(
        "--p-quality-offsets",
        type=_offsets,
        default=None,
        metavar="O0,O1,...",
        help="with --quality: code the P-frame at GOP position k at --quality + O[k mod n] "
        "(clamped to the ladder), e.g. 0.75,0,0,0 codes every 4th frame better, as "
        "hierarchical quality does. Default: the preset's (none)",
    )
    p.add_argument(
        "--gop-tail-offsets",
        type=_offsets,
        default=None,
        metavar="O1,...,On",
        help="with --quality and an intra period: code the GOP's last n P-frames at "
        "--quality + these offsets, the frame before the next I-frame last; fewer frames "
        "predict from them; write negative ones with '=', e.g. --gop-tail-offsets=-0.5,-1. "
        "0 turns it off. Default: the preset's",
    )
    p.add_argument(
        "--refine-steps",
        type=int,
        default=None,
        metavar="N",
        help="optimise each frame's coded latents for rate + lambda * distortion with N "
        "gradient steps through the frozen decoder (0: off); the result is kept only where "
        "it costs less. Default: the preset's",
    )
    p.add_argument(
        "--intra-refine",
        type=_intra_refine,
        default=None,
        metavar="N[,LR]",
        help="refine the GOP's I-frames with N steps (at learning rate LR), apart from "
        "--refine-steps: every later frame of the GOP predicts from them. Default: the "
        "preset's, or --refine-steps' when only that is given",
    )
    p.add_argument(
        "--block-precisions",
        type=_precisions,
        default=None,
        metavar="P1,P2,...",
        help="block motion vectors in 1/2^P model-grid samples (3: quarter-pel luma for "
        "yuv420, 2: half-pel); each precision listed is searched at every block size and "
        "coded as a candidate, the first one finest. Default: the preset's",
    )
    p.add_argument(
        "--block-kernels",
        type=_kernels,
        default=None,
        metavar="K1,K2",
        help="interpolation of the block fields' warp: bilinear, cubic, or both (each "
        "field takes the one that predicts the frame closer). Default: the preset's",
    )
    p.add_argument(
        "--no-skip-residual",
        dest="skip_residual",
        action="store_false",
        default=None,
        help="always code a residual at P positions (by default the encoder also tries each "
        "prediction alone, which the decoder outputs as is)",
    )
    p.add_argument(
        "--intra-residual",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="also code the best P prediction's residual with the I-frame coder, and keep "
        "it where it costs less (format version 3). Default: the preset's",
    )
    p.add_argument(
        "--lambda-scale",
        type=float,
        default=None,
        metavar="S",
        help="multiply the lambda of every encoder decision (modes, block search, refinement) "
        "by S; the training ladder's lambda is 1. Default: the preset's",
    )
    p.add_argument(
        "--chroma-weight",
        type=_chroma_weight,
        default=None,
        metavar="W",
        help="count a U or V sample's squared error W times a Y sample's in every encoder "
        "decision (modes, refinement, the DCT layer's and the loop filter's choices); 1 "
        "weighs them as training does, above 1 codes chroma finer, which PSNR-YUV and "
        "PSNR-RGB reward. Default: the preset's",
    )
    p.add_argument(
        "--dct-steps",
        type=_step_factors,
        default=None,
        dest="dct_steps",
        metavar="F1,F2,...|none",
        help="the DCT refinement layer (format version 6): the quantizer steps tried on each "
        "frame's winner, as factors of the step that suits the frame's lambda, e.g. "
        "0.7,1,1.4; none: never add the layer. Default: the preset's",
    )
    p.add_argument(
        "--chroma-step",
        type=_chroma_step,
        default=None,
        dest="chroma_step_ratio",
        metavar="R",
        help="the DCT layer's step for U and V over its step for Y (format version 9), in "
        "(0, 4): below 1 codes chroma finer, which PSNR-YUV's 6:1:1 weights reward; 1 gives "
        "every plane the same step. Default: the preset's",
    )
    p.add_argument(
        "--loop-filter",
        choices=("on", "off"),
        default=None,
        help="the in-loop adaptive filter (format version 8): on fits a small filter to each "
        "decoded frame and sends it where it lowers rate + lambda * distortion; off never "
        "does. Default: the preset's (on)",
    )
    p.add_argument(
        "--residual-quality-search",
        type=_offsets,
        default=None,
        dest="residual_quality_deltas",
        metavar="D1,D2,...",
        help="at P positions, also code the best residual-carrying candidate's residual at "
        "the frame's quality + each D (clamped to the ladder; the packet then carries its "
        "quality), keeping whatever has the lowest rate + lambda * distortion at the "
        "frame's lambda, e.g. -1,1. Default: the preset's (none)",
    )
    p.add_argument(
        "--no-intra-fallback",
        dest="intra_fallback",
        action="store_false",
        default=None,
        help="code every P position as a P-frame; by default (medium, slow) the encoder also "
        "tries intra there and keeps whichever costs less in rate + lambda * distortion",
    )
    p.add_argument("--frames", type=int, default=None, help="encode at most this many frames")
    p.add_argument("--width", type=int, default=None, help="width of a raw .yuv input")
    p.add_argument("--height", type=int, default=None, help="height of a raw .yuv input")
    p.add_argument(
        "--fps", type=str, default=None, help="frame rate of a raw .yuv (e.g. 30000/1001)"
    )
    p.add_argument("--bit-depth", type=int, default=None, help="bit depth of a raw .yuv (8 or 10)")
    p.add_argument("--stats", metavar="JSON", default=None,
                   help="write per-frame statistics here (and, with --bitrate or --bpp, the "
                   "target, the achieved rate and the error in %%)")
    add_max_pixels_flag(p, "encode")
    add_common_flags(p)
    return p


def default_output(inp: Path) -> Path:
    return inp.with_suffix(STREAM_SUFFIX)


def _check_rate_flags(args: argparse.Namespace) -> None:
    """--quality, --bitrate and --bpp are three ways to say the same thing: one at most."""
    given = [f"--{name} {getattr(args, name):g}" for name in ("quality", "bitrate", "bpp")
             if getattr(args, name) is not None]
    if len(given) > 1:
        raise InputError(
            f"--quality, --bitrate and --bpp are alternatives: expected at most one of them, "
            f"got {' and '.join(given)}"
        )
    for name in ("bitrate", "bpp"):
        value = getattr(args, name)
        if value is not None and not value > 0:  # also refuses nan
            raise InputError(f"--{name} must be a number above 0, got {value:g}")


def _rate_controller(
    args: argparse.Namespace, header_bits: int, info: VideoInfo, intra_period: int,
    quality_offset: Callable[[int], float], qualities: QualityRange, frames: int | None,
) -> RateController | None:
    """The controller for --bitrate/--bpp (None with --quality)."""
    if args.bitrate is None and args.bpp is None:
        return None
    from dvc_edic.encoder.ratecontrol import RateController
    from dvc_edic.encoder.settings import load_ratecontrol_settings

    pixels = info.width * info.height
    if args.bitrate is not None:
        bits_per_frame = args.bitrate * KILO / float(info.fps)
    else:
        bits_per_frame = args.bpp * pixels
    return RateController(
        load_ratecontrol_settings(), bits_per_frame, pixels, intra_period, qualities,
        frame_count=frames, quality_offset=quality_offset, spent_bits=header_bits,
    )


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    check_threads(args.threads)
    _check_rate_flags(args)
    inp = Path(args.input)
    out = Path(args.output) if args.output else default_output(inp)
    if args.frames is not None and args.frames < 1:
        raise InputError(f"--frames must be at least 1, got {args.frames}")
    if args.refine_steps is not None and args.refine_steps < 0:
        raise InputError(f"--refine-steps must be 0 or more, got {args.refine_steps}")
    limits = limits_from_flags(args.max_pixels)
    settings = load_encoder_settings(args.preset).with_overrides(
        motion=args.motion, intra_fallback=args.intra_fallback,
        intra_quality_offset=args.intra_quality_offset, plain_warp=args.plain_warp,
        skip_residual=args.skip_residual, refine_steps=args.refine_steps,
        intra_refine=args.intra_refine, block_precisions=args.block_precisions,
        block_kernels=args.block_kernels,
        p_quality_offsets=args.p_quality_offsets, gop_tail_offsets=args.gop_tail_offsets,
        intra_residual=args.intra_residual,
        lambda_scale=args.lambda_scale, chroma_weight=args.chroma_weight,
        residual_quality_deltas=args.residual_quality_deltas,
        dct_steps=args.dct_steps, chroma_step_ratio=args.chroma_step_ratio,
        loop_filter=None if args.loop_filter is None else args.loop_filter == "on",
    )
    with open_video(
        inp,
        width=args.width,
        height=args.height,
        fps=args.fps,
        bit_depth=args.bit_depth,
        max_frames=args.frames,
    ) as reader:
        info = reader.info
        check_output_path(out, overwrite=args.force, inputs=[inp])  # again when writing
        status(_first_line(inp, out, info, args), args.quiet)
        from dvc_edic.codec import SequenceEncoder, check_frame_size
        from dvc_edic.weights import load_model

        setup_threads(args.threads)
        # Before any coding (opening read at most a header, or one probe frame of a container).
        check_frame_size(info.width, info.height, limits, str(inp))
        model = load_model(args.weights)
        quality = DEFAULT_QUALITY if args.quality is None else args.quality
        encoder = SequenceEncoder(model, info, quality, args.intra_period, limits,
                                  settings=settings)
        control = _rate_controller(
            args, header_size(encoder.header) * BITS_PER_BYTE, info, args.intra_period,
            encoder.quality_offset, model.quality_range, _frame_total(info, args),
        )
        frames: Iterable[Frame] = reader
        if control is not None:
            rest = iter(reader)
            head = list(itertools.islice(rest, PROBE_FRAMES))
            # measure what an I- and a P-frame cost on this content, rather than guess
            for ftype, coded, bits in encoder.probe(head, control.settings.prior_quality):
                control.calibrate(ftype, coded, bits)
            frames = itertools.chain(head, rest)
            # The header holds the controller's first choice (the header's size does not
            # depend on it); frames coded at another quality carry their own.
            encoder = SequenceEncoder(model, info, control.next_quality(), args.intra_period,
                                      limits, settings=settings)
        summary = _encode(info, frames, encoder, out, inp, args, control)
    _print_summary(summary, out)
    if args.stats:
        Path(args.stats).write_text(json.dumps(summary, indent=2))
    return 0


def _first_line(inp: Path, out: Path, info: VideoInfo, args: argparse.Namespace) -> str:
    """What is about to be coded, said before the seconds that loading the model takes."""
    total = _frame_total(info, args)
    frames = "frames" if total is None else plural(total, "frame")
    if args.bitrate is not None:
        rate = f"target {args.bitrate:g} kbps"
    elif args.bpp is not None:
        rate = f"target {args.bpp:g} bpp"
    else:
        rate = f"quality {DEFAULT_QUALITY if args.quality is None else args.quality:g}"
    return (f"encode {inp} -> {out}: {frames} {info.width}x{info.height} {info.bit_depth}-bit "
            f"at {float(info.fps):.6g} fps | preset {args.preset}, {rate}")


def _comma_separated(text: str, kind: type[_Number], expected: str) -> tuple[_Number, ...]:
    """The comma-separated values of a flag, each read by ``kind``; ``expected`` says
    what a good value looks like when one is not."""
    try:
        return tuple(kind(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}") from None


def _offsets(text: str) -> tuple[float, ...]:
    """--p-quality-offsets, --residual-quality-search: comma-separated numbers."""
    values = _comma_separated(text, float, "comma-separated numbers such as 0.75,0,0,0")
    if not all(math.isfinite(v) for v in values):
        raise argparse.ArgumentTypeError(f"offsets must be finite numbers, got {text!r}")
    return values


def _intra_refine(text: str) -> tuple[int, float | None]:
    """--intra-refine: a step count, optionally with a learning rate (e.g. 40,0.003)."""
    steps_text, _, lr_text = text.partition(",")
    try:
        steps = int(steps_text)
        lr = float(lr_text) if lr_text else None
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected STEPS or STEPS,LR such as 40,0.003, got {text!r}") from None
    if steps < 0 or (lr is not None and not (lr > 0 and math.isfinite(lr))):
        raise argparse.ArgumentTypeError(
            f"expected steps >= 0 and a positive learning rate, got {text!r}")
    return steps, lr


def _precisions(text: str) -> tuple[int, ...]:
    """--block-precisions: distinct comma-separated precisions in 0..PRECISION_LOG2_MAX."""
    values = _comma_separated(text, int, "comma-separated integers such as 3,2")
    if len(set(values)) != len(values) or not all(
            0 <= v <= PRECISION_LOG2_MAX for v in values):
        raise argparse.ArgumentTypeError(
            f"expected distinct precisions in 0..{PRECISION_LOG2_MAX}, got {text!r}")
    return values


def _kernels(text: str) -> tuple[str, ...]:
    """--block-kernels: distinct comma-separated names of WARP_KERNELS."""
    values = _comma_separated(text, str, f"comma-separated names among {list(WARP_KERNELS)}")
    if len(set(values)) != len(values) or not set(values) <= set(WARP_KERNELS):
        raise argparse.ArgumentTypeError(
            f"expected distinct kernels among {list(WARP_KERNELS)}, got {text!r}")
    return values


def _step_factors(text: str) -> tuple[float, ...]:
    """--dct-steps: comma-separated positive factors, or none (no layer)."""
    if text == "none":
        return ()
    values = _offsets(text)
    if not all(v > 0 for v in values):
        raise argparse.ArgumentTypeError(f"step factors must be positive, got {text!r}")
    return values


def _number(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None


def _chroma_weight(text: str) -> float:
    """--chroma-weight: a positive, finite number."""
    value = _number(text)
    if not 0 < value < math.inf:
        raise argparse.ArgumentTypeError(f"the chroma weight must be above 0, got {text!r}")
    return value


def _chroma_step(text: str) -> float:
    """--chroma-step: a ratio in (0, 4), what the section's byte (in 1/64) can carry."""
    value = _number(text)
    if not 0 < value < MAX_CHROMA_STEP_RATIO:
        raise argparse.ArgumentTypeError(
            f"the chroma step ratio must be in (0, {MAX_CHROMA_STEP_RATIO:g}), got {text!r}")
    return value


def _motion_sources(text: str) -> tuple[str, ...]:
    """--motion: comma-separated sources, or auto for every one."""
    if text == "auto":
        return MOTION_SOURCES
    sources = tuple(dict.fromkeys(t.strip() for t in text.split(",")))
    unknown = [t for t in sources if t not in MOTION_SOURCES]
    if unknown:
        raise argparse.ArgumentTypeError(
            f"unknown motion source(s) {unknown}: expected some of {list(MOTION_SOURCES)}, "
            "comma-separated, or auto")
    return sources


def _frame_total(info: VideoInfo, args: argparse.Namespace) -> int | None:
    """How many frames will be coded, if the input says (the progress bar's total, and
    how many frames the rate controller plans for)."""
    if args.frames is None:
        return info.num_frames
    return min(args.frames, info.num_frames or args.frames)


def _encode(info: VideoInfo, reader: Iterable[Frame], encoder: SequenceEncoder, out: Path,
            inp: Path, args, control: RateController | None = None) -> dict:
    from dvc_edic.metrics import frame_metrics
    from dvc_edic.packets import frame_quality

    pixels = info.width * info.height
    fps = float(info.fps)
    total = _frame_total(info, args)
    qualities = encoder.model.quality_range
    chosen: list[float] = []  # the controller's quality for each frame
    frames: list[dict] = []
    with AtomicFile(out, overwrite=args.force, inputs=[inp]) as sink:
        start = time.perf_counter()
        writer = BitstreamWriter(sink, encoder.header, encoder.limits)
        bits = 0
        with progress_bar(total, "encode", args.quiet) as bar:
            for frame in reader:
                q = None if control is None else control.next_quality()
                cap = None if control is None else control.max_frame_bits()
                packet, recon = encoder.encode(frame, q, cap)
                size = writer.write_packet(packet)
                bits += size * BITS_PER_BYTE
                coded_q = frame_quality(packet, encoder.quality, qualities)
                if control is not None:
                    assert q is not None
                    control.update(packet.frame_type, q, coded_q, size * BITS_PER_BYTE)
                    chosen.append(q)
                stats = {"index": len(frames), "type": packet.frame_type.name, "bytes": size,
                         "quality": coded_q}
                stats.update(
                    frame_metrics(frame, recon, matrix=info.matrix, full_range=info.full_range)
                )
                assert encoder.last_decision is not None
                stats.update(encoder.last_decision.report(frame))
                frames.append(stats)
                elapsed = time.perf_counter() - start
                bar.update(1)
                bar.set_postfix(
                    fps=f"{len(frames) / elapsed:.2f}",
                    kbps=f"{bits * fps / len(frames) / KILO:.1f}",
                    q=f"{coded_q:.2f}",
                    psnr=f"{stats['psnr_yuv']:.2f}",
                )
        if not frames:
            raise InputError(f"{inp}: no frames to encode")
        writer.finalize()
    elapsed = time.perf_counter() - start
    n = len(frames)
    file_bytes = out.stat().st_size
    mean = {k: sum(f[k] for f in frames) / n for k in ("psnr_y", "psnr_yuv", "psnr_rgb")}
    bpp = file_bytes * BITS_PER_BYTE / (pixels * n)
    kbps = file_bytes * BITS_PER_BYTE * fps / n / KILO
    return {
        "input": str(inp),
        "output": str(out),
        "width": info.width,
        "height": info.height,
        "fps": fps,
        "frames": n,
        "quality": encoder.quality,
        "intra_period": encoder.intra_period,
        "intra_fallbacks": encoder.fallbacks,
        "preset": encoder.settings.preset,
        "motion": list(encoder.settings.motion),
        "modes": dict(Counter(f["mode"] for f in frames)),
        "model_id": encoder.header.model_id,
        "file_bytes": file_bytes,
        "bpp": bpp,
        "kbps": kbps,
        "rate_control": _rate_report(args, control, chosen, bpp, kbps, qualities),
        **mean,
        "encode_fps": n / elapsed,
        "per_frame": frames,
    }


def _rate_report(args: argparse.Namespace, control: RateController | None,
                 chosen: list[float], bpp: float, kbps: float,
                 qualities: QualityRange) -> dict | None:
    """What --stats and the summary say about the rate target (None with --quality)."""
    if control is None:
        return None
    unit, target, achieved = (("kbps", args.bitrate, kbps) if args.bitrate is not None
                              else ("bpp", args.bpp, bpp))
    error = (achieved - target) / target * PERCENT
    note = None
    if error > 0 and max(chosen) <= qualities.low:
        note = f"the target is below what quality {qualities.low:g} costs on this input"
    elif error < 0 and min(chosen) >= qualities.high:
        note = f"the target is above what quality {qualities.high:g} costs on this input"
    return {
        "unit": unit,
        "target": target,
        "achieved": achieved,
        "error_percent": error,
        "quality_min": min(chosen),
        "quality_max": max(chosen),
        "quality_mean": sum(chosen) / len(chosen),
        "note": note,
        "settings": asdict(control.settings),
    }


def _rate_summary(rc: dict | None) -> str:
    if rc is None:
        return ""
    digits = 1 if rc["unit"] == "kbps" else 4
    text = (f" | target {rc['target']:.{digits}f} {rc['unit']}: achieved "
            f"{rc['achieved']:.{digits}f} ({rc['error_percent']:+.1f} %), quality "
            f"{rc['quality_min']:.2f}-{rc['quality_max']:.2f}")
    return text + (f" ({rc['note']})" if rc["note"] else "")


def _print_summary(s: dict, out: Path) -> None:
    print(
        f"{out}: {plural(s['frames'], 'frame')} {s['width']}x{s['height']}, "
        f"{s['file_bytes']} bytes | "
        f"{s['bpp']:.4f} bpp, {s['kbps']:.1f} kbps{_rate_summary(s['rate_control'])} | "
        f"PSNR-Y {s['psnr_y']:.2f} dB, "
        f"PSNR-YUV {s['psnr_yuv']:.2f} dB, PSNR-RGB {s['psnr_rgb']:.2f} dB | "
        f"{s['encode_fps']:.2f} fps encode (preset {s['preset']})"
        + " | modes: " + ", ".join(f"{mode} {n}" for mode, n in sorted(s["modes"].items()))
        + (f" ({s['intra_fallbacks']} P positions coded intra)" if s["intra_fallbacks"] else "")
    )


def cli(argv: Sequence[str] | None = None) -> int:
    return run_cli(main, argv)


if __name__ == "__main__":
    sys.exit(cli())
