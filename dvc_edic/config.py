"""Model presets and other YAML configuration.

Presets live in the repository's top-level ``configs/`` folder so that users
can read and edit them; shipped weights carry their own copy of the preset in
their metadata, so a decoder never depends on the YAML files on disk matching.
An installed wheel carries the same folder inside the package, as
``dvc_edic/configs/`` (setup.py maps it there), so the presets load from a wheel
too.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from dvc_edic.errors import InputError

PACKAGE_DIR = Path(__file__).resolve().parent


def config_root(package_dir: Path = PACKAGE_DIR) -> Path:
    """The configs folder: the package's own in an installed wheel, else the checkout's.

    A wheel holds ``dvc_edic/configs/``; a checkout (plain or installed with
    ``pip install -e``) has only the top-level ``configs/`` beside the package.
    """
    packaged = package_dir / "configs"
    return packaged if packaged.is_dir() else package_dir.parent / "configs"


CONFIG_ROOT = config_root()
MODEL_PRESET_DIR = CONFIG_ROOT / "models"


def load_yaml(path: str | Path) -> dict[str, Any]:
    """Read a YAML mapping, failing with a message that names the file."""
    p = Path(path)
    if not p.is_file():
        raise InputError(f"{p}: config file not found")
    try:
        with p.open("r", encoding="utf-8") as f:
            data = yaml.safe_load(f)
    except yaml.YAMLError as exc:
        raise InputError(f"{p}: not valid YAML ({exc})") from exc
    if not isinstance(data, dict):
        raise InputError(f"{p}: expected a mapping at the top level, got {type(data).__name__}")
    return data


def load_preset(name_or_path: str | Path) -> dict[str, Any]:
    """Load a model preset by name (``cpu``, ``paper``) or by YAML path."""
    p = Path(name_or_path)
    if p.suffix in (".yaml", ".yml"):
        return load_yaml(p)
    candidate = MODEL_PRESET_DIR / f"{name_or_path}.yaml"
    if not candidate.is_file():
        known = sorted(q.stem for q in MODEL_PRESET_DIR.glob("*.yaml"))
        raise InputError(f"unknown model preset {name_or_path!r}; known presets: {known}")
    return load_yaml(candidate)
