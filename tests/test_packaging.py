"""The package as a user installs it: a wheel built from this tree, used from elsewhere.

A checkout hides what a wheel lacks (configs found through the source tree, files
that are not package data), so one test builds a wheel offline, installs it into a
temporary folder and encodes a frame from outside the checkout (under -m slow: the
build takes a while). setup.py maps the top-level configs/ into the wheel as
dvc_edic/configs/; dvc_edic.config looks there first and falls back to the
checkout's folder, which the other test checks in the default run.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from dvc_edic.bitstream import BitstreamReader
from dvc_edic.config import config_root
from tests.conftest import ROOT, smooth_frame, write_yuv

# What a wheel is built from: the build files and the packages' folders (setup.py).
BUILD_FILES = ("pyproject.toml", "setup.py", "README.md")
SOURCE_DIRS = ("dvc_edic", "flows", "eval", "configs")
NOT_SOURCES = shutil.ignore_patterns("__pycache__", "*.egg-info", "results")
PIP_TIMEOUT_S = 300


def _pip(*args: str | Path) -> None:
    """pip offline: nothing may be downloaded, so a missing build tool fails here."""
    done = subprocess.run([sys.executable, "-m", "pip", *map(str, args), "--no-index",
                           "--disable-pip-version-check", "-q"],
                          capture_output=True, text=True, timeout=PIP_TIMEOUT_S)
    assert done.returncode == 0, done.stdout + done.stderr


def test_config_root_prefers_the_packaged_configs(tmp_path: Path) -> None:
    """A wheel's dvc_edic/configs/ wins; a checkout (plain or `pip install -e`) has only
    the top-level configs/ beside the package."""
    package = tmp_path / "dvc_edic"
    package.mkdir()
    assert config_root(package) == tmp_path / "configs"
    (package / "configs").mkdir()
    assert config_root(package) == package / "configs"
    assert (config_root() / "models" / "cpu.yaml").is_file()
    assert (config_root() / "encoder.yaml").is_file()


@pytest.mark.slow  # builds and installs a wheel; test_config_root_... is its fast twin
def test_a_wheel_installed_elsewhere_encodes_a_frame(tmp_path: Path) -> None:
    """Build the wheel (offline, no build isolation), install it into a bare folder and
    encode one frame with the default presets and the shipped weights, in a fresh
    interpreter whose working directory is outside the checkout."""
    src, dist, target, outside = (tmp_path / d for d in ("src", "dist", "site", "outside"))
    src.mkdir()
    for name in BUILD_FILES:
        shutil.copy2(ROOT / name, src / name)
    for name in SOURCE_DIRS:
        shutil.copytree(ROOT / name, src / name, ignore=NOT_SOURCES)
    _pip("wheel", "--no-deps", "--no-build-isolation", src, "-w", dist)
    (wheel,) = dist.glob("dvc_edic-*.whl")
    _pip("install", "--no-deps", "--target", target, wheel)
    shutil.rmtree(src)  # nothing may come from the tree the wheel was built from
    assert (target / "dvc_edic" / "configs" / "models" / "cpu.yaml").is_file()

    outside.mkdir()
    clip = write_yuv(outside / "clip_64x48_30.yuv", [smooth_frame(48, 64, 0)])
    env = os.environ | {"PYTHONPATH": str(target), "OMP_WAIT_POLICY": "PASSIVE"}
    probe = ("import dvc_edic, dvc_edic.config as c, sys; "
             "print(dvc_edic.__file__); print(c.CONFIG_ROOT)")
    where = subprocess.run([sys.executable, "-c", probe], cwd=outside, env=env,
                           capture_output=True, text=True, check=False)
    assert where.returncode == 0, where.stderr
    package_file, configs = where.stdout.split()
    assert Path(package_file).is_relative_to(target), package_file
    assert Path(configs) == target / "dvc_edic" / "configs"
    enc = subprocess.run([sys.executable, "-m", "dvc_edic.encode_sequence", clip.name,
                          "--preset", "fast", "-q"],
                         cwd=outside, env=env, capture_output=True, text=True, check=False)
    assert enc.returncode == 0, enc.stderr
    assert "UNTRAINED" not in enc.stderr  # the weights came with the wheel
    reader = BitstreamReader((outside / "clip_64x48_30.dvce").read_bytes())
    assert len(list(reader)) == 1
