"""The tree stays ruff-clean: the style rules are enforced, not just written down."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_ruff_clean() -> None:
    ruff = shutil.which("ruff")
    if ruff is None:
        pytest.skip("ruff is not installed (it comes with the [dev] extra)")
    result = subprocess.run(
        [ruff, "check", "--no-cache", str(ROOT)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr


# slow: a fresh interpreter that imports torch only for this. Twin in the default run:
# test_determinism's fresh interpreter, whose `python -m dvc_edic.encode_sequence` imports
# dvc_edic and flows (dvc_edic.models.preset imports flows) and encodes without the extra.
@pytest.mark.slow
def test_package_imports_without_optional_correlation() -> None:
    code = "import dvc_edic, flows; print('ok')"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert out.stdout.strip() == "ok", out.stderr
