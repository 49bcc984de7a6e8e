"""The tools answer --help without importing torch, and code without compressai.

Those imports take seconds, so the CLIs import torch only once the command
line and the input have been checked, and never compressai (whose package init
pulls in torch_geometric and scipy.stats): dvc_edic owns the two classes it
used (dvc_edic.entropy.factorized, dvc_edic.models.gdn). This runs in fresh
interpreters, since the test process has long imported both; the time itself
is measured by bench/bench_startup.py, not here.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
from PIL import Image

from tests.conftest import smooth_frame, write_yuv

ROOT = Path(__file__).resolve().parents[1]
HEAVY = ("torch", "compressai", "torch_geometric", "scipy", "cv2", "av")

PROBE = f"""
import contextlib, io, json, sys
from dvc_edic import decode_sequence, encode_sequence, image
for tool in (encode_sequence, decode_sequence, image):
    with contextlib.redirect_stdout(io.StringIO()), contextlib.suppress(SystemExit):
        tool.main(["--help"])
print(json.dumps(sorted(m for m in {HEAVY!r} if m in sys.modules)))
"""


def test_help_imports_neither_torch_nor_compressai() -> None:
    result = subprocess.run([sys.executable, "-c", PROBE], cwd=ROOT, capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == [], f"--help imported {result.stdout.strip()}"


def test_every_tool_answers_help_as_python_dash_m() -> None:
    """The `python -m` entry points themselves (the `__main__` blocks), in fresh
    interpreters: the CLI tests call the tools' cli() in process, and --help costs a
    fraction of a second here because it imports no torch."""
    for tool in ("dvc_edic.encode_sequence", "dvc_edic.decode_sequence", "dvc_edic.image"):
        result = subprocess.run([sys.executable, "-m", tool, "--help"], cwd=ROOT,
                                capture_output=True, text=True, timeout=120)
        assert result.returncode == 0, result.stderr
        assert result.stdout.startswith("usage:"), result.stdout


CODING_PROBE = """
import json, sys
from dvc_edic import decode_sequence, encode_sequence, image
weights, clip, stream, decoded, png, picture, back = sys.argv[1:]
common = ["--weights", weights]
steps = {
    "encode_sequence": (encode_sequence, [clip, "-o", stream, "--preset", "fast", "-q", *common]),
    "decode_sequence": (decode_sequence, [stream, "-o", decoded, "-q", *common]),
    "image encode": (image, ["encode", png, picture, *common]),
    "image decode": (image, ["decode", picture, back, *common]),
}
seen = {}
for step, (tool, argv) in steps.items():
    if tool.cli(argv) != 0:
        sys.exit(f"{step} failed")
    seen[step] = sorted(m for m in ("compressai", "torch_geometric") if m in sys.modules)
print(json.dumps(seen))
"""


def test_coding_and_decoding_never_import_compressai(tiny_weights: Path, tmp_path: Path) -> None:
    """A video and a picture coded and decoded in a fresh interpreter: after each step,
    neither compressai nor what its package init imports has been loaded."""
    clip = write_yuv(tmp_path / "clip_64x48_30.yuv", [smooth_frame(48, 64, s) for s in (1, 2)])
    f = smooth_frame(32, 48, 3)
    rgb = np.stack([f.y, np.resize(f.u, f.y.shape), np.resize(f.v, f.y.shape)], axis=-1)
    Image.fromarray(np.ascontiguousarray(rgb)).save(tmp_path / "in.png")
    names = ("c.dvce", "c.yuv", "in.png", "in.dvce", "back.png")
    args = [str(tiny_weights), str(clip), *(str(tmp_path / n) for n in names)]
    result = subprocess.run([sys.executable, "-c", CODING_PROBE, *args], cwd=ROOT,
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    seen = json.loads(result.stdout.strip().splitlines()[-1])
    assert list(seen) == ["encode_sequence", "decode_sequence", "image encode", "image decode"]
    assert all(found == [] for found in seen.values()), f"imported along the way: {seen}"
