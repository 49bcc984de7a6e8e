"""The tools answer --help without importing torch or compressai.

Those imports take seconds (compressai pulls in torch_geometric), so the CLIs
import them only once the command line and the input have been checked. This
runs in a fresh interpreter, since the test process has long imported torch;
the time itself is measured by bench/bench_startup.py, not here.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

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
