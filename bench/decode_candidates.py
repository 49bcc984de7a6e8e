"""What the decoder's full-resolution nets would cost in other shapes, at 1080p.

    python -m bench.decode_candidates [--repeats 3] [--out bench/results/decode_candidates.json]

What is left of a 1080p decode after the code-path work of issue 17 is mostly
convolution at full resolution, which runs near the kernel's rate; going
faster means a smaller net, which needs retraining. This measures the shipped
shapes (`cpu` preset) against narrower or shallower ones before anyone spends
training time on them: CPU time of one forward pass in inference mode, one
thread (so a loaded machine inflates it less than wall time), with random
weights of the right shapes (speed does not depend on their values), as
``decode_sequence`` runs it (blocked layout, freed memory kept). The
multiply-accumulates of each net are counted from its convolutions, so the
achieved rate (GMAC/s) is reported too.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import torch
from torch import nn

from bench.bench_sequence import ROOT
from bench.machine import machine_info
from dvc_edic.memory import keep_freed_memory
from dvc_edic.models.layers import EnhancementNet
from dvc_edic.models.pframe import MotionCompensation
from dvc_edic.models.preset import Preset

# The 4:2:0 model tensor of a 1080p frame: half the luma size, padded to the stride.
HEIGHT, WIDTH = 544, 960
DEFAULT_OUT = ROOT / "bench" / "results" / "decode_candidates.json"
MS = 1000.0
GIGA = 1e9


def _candidates(preset: Preset) -> list[tuple[str, nn.Module, tuple[int, int, int]]]:
    """(name, net, (in channels, height, width)); the first of each kind is the shipped one."""
    ch = preset.intra.in_channels
    mc, intra = preset.motion_compensation, preset.intra.enhancement
    residual = preset.residual.enhancement
    mv = preset.mv.enhancement
    full, half = (HEIGHT, WIDTH), (HEIGHT // 2, WIDTH // 2)
    return [
        (f"MC net {mc.channels} ch, {mc.blocks} block (shipped)",
         MotionCompensation(ch, mc.channels, mc.blocks), (ch, *full)),
        (f"MC net 16 ch, {mc.blocks} block",
         MotionCompensation(ch, 16, mc.blocks), (ch, *full)),
        (f"MC net {mc.channels} ch at half resolution (frames pixel-unshuffled)",
         MotionCompensation(4 * ch, mc.channels, mc.blocks), (4 * ch, *half)),
        (f"I-frame enhancement {intra.channels} ch, {intra.blocks} blocks (shipped)",
         EnhancementNet(ch, intra.channels, intra.blocks), (ch, *full)),
        (f"I-frame enhancement 16 ch, {intra.blocks} blocks",
         EnhancementNet(ch, 16, intra.blocks), (ch, *full)),
        (f"I-frame enhancement {intra.channels} ch, 1 block",
         EnhancementNet(ch, intra.channels, 1), (ch, *full)),
        (f"residual enhancement {residual.channels} ch, {residual.blocks} block (shipped)",
         EnhancementNet(ch, residual.channels, residual.blocks), (ch, *full)),
        (f"MV enhancement {mv.channels} ch, {mv.blocks} block (shipped)",
         EnhancementNet(2, mv.channels, mv.blocks), (2, *full)),
    ]  # fmt: skip


def _inputs(net: nn.Module, shape: tuple[int, int, int]) -> tuple[torch.Tensor, ...]:
    c, h, w = shape
    if isinstance(net, MotionCompensation):  # warped, reference, flow (2 channels at any size)
        return torch.rand(1, c, h, w), torch.rand(1, c, h, w), torch.randn(1, 2, h, w)
    return (torch.rand(1, c, h, w),)


def _macs(net: nn.Module, height: int, width: int) -> int:
    """Multiply-accumulates of the net's stride-1 convolutions on one height x width picture."""
    return sum(
        m.out_channels * m.in_channels // m.groups * m.kernel_size[0] * m.kernel_size[1]
        * height * width
        for m in net.modules()
        if isinstance(m, nn.Conv2d)
    )  # fmt: skip


def measure(repeats: int) -> list[dict[str, object]]:
    torch.manual_seed(0)
    rows = []
    with torch.inference_mode():
        for name, net, shape in _candidates(Preset.load("cpu")):
            net.eval()
            for p in net.parameters():  # the zero-initialised tails too
                p.normal_(0, 0.1)
            inputs = _inputs(net, shape)
            net(*inputs)  # first call: oneDNN primitive creation, weight reorders
            best = min(_cpu_seconds(net, inputs) for _ in range(repeats))
            macs = _macs(net, shape[1], shape[2])
            rows.append({"net": name, "input": list(shape), "cpu_ms": round(MS * best, 1),
                         "gmac": round(macs / GIGA, 2),
                         "gmac_per_s": round(macs / GIGA / best, 1)})  # fmt: skip
            print(f"{name:55s} {MS * best:7.1f} ms  {macs / GIGA:6.2f} GMAC", flush=True)
    return rows


def _cpu_seconds(net: nn.Module, inputs: tuple[torch.Tensor, ...]) -> float:
    start = time.process_time()
    net(*inputs)
    return time.process_time() - start


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeats", type=int, default=3, help="forward passes; the fastest counts")
    ap.add_argument("--out", default=str(DEFAULT_OUT))
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    keep_freed_memory()
    load_before = os.getloadavg()
    rows = measure(args.repeats)
    report = {
        "what": "CPU time of one inference forward pass at the 1080p model-tensor size "
                f"({WIDTH}x{HEIGHT}), 1 thread, random weights; fastest of {args.repeats}",
        "nets": rows,
        "load_average_before": [round(x, 2) for x in load_before],
        "load_average_after": [round(x, 2) for x in os.getloadavg()],
        "machine": machine_info(),
    }  # fmt: skip
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
