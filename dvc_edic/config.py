"""Model presets and other YAML configuration.

Presets live in the repository's top-level ``configs/`` folder so that users
can read and edit them; shipped weights carry their own copy of the preset in
their metadata, so a decoder never depends on the YAML files on disk matching.
An installed wheel carries the same folder inside the package, as
``dvc_edic/configs/`` (setup.py maps it there), so the presets load from a wheel
too.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Mapping, Sequence
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


# ------------------------------------------------------------- field checks
# Shared by the typed configs built from YAML sections (the model preset's, the
# entropy coder's, the flow estimator's), so that every refusal reads the same way:
# the field's dotted path, what was expected, and what was found.


def check_keys(
    d: object, where: str, required: Sequence[str], optional: Sequence[str] = ()
) -> Mapping[str, Any]:
    """The section itself, once it is a mapping with exactly the known keys.

    Unknown keys are refused rather than ignored: a misspelt optional key would
    otherwise leave its default in force without a word.
    """
    if not isinstance(d, Mapping):
        raise InputError(f"{where}: expected a mapping, got {type(d).__name__}")
    known = [*required, *optional]
    unknown = sorted(str(k) for k in set(d) - set(known))
    missing = [k for k in required if k not in d]
    if unknown or missing:
        raise InputError(
            f"{where}: expected keys {known}, got unknown {unknown} and missing {missing}"
        )
    return d


def check_int(where: str, value: object, low: int, high: int | None = None) -> int:
    """An integer (not a bool, not a float) in [low, high]; no ``high``: unbounded."""
    if (isinstance(value, int) and not isinstance(value, bool) and value >= low
            and (high is None or value <= high)):
        return value
    span = f">= {low}" if high is None else f"in [{low}, {high}]"
    raise InputError(f"{where}: expected an integer {span}, got {value!r}")


def check_positive(where: str, value: object) -> float:
    """A finite number above zero, as a float (YAML writes ``2`` for ``2.0``)."""
    if isinstance(value, (int, float)) and not isinstance(value, bool) and 0 < value < math.inf:
        return float(value)
    raise InputError(f"{where}: expected a finite number > 0, got {value!r}")


def check_choice(where: str, value: object, choices: Collection[str]) -> str:
    if isinstance(value, str) and value in choices:
        return value
    raise InputError(f"{where}: expected one of {tuple(choices)}, got {value!r}")


def check_bool(where: str, value: object) -> bool:
    if not isinstance(value, bool):
        raise InputError(f"{where}: expected true or false, got {value!r}")
    return value


def check_list(where: str, value: object, length: int | None = None) -> list[Any]:
    """A YAML list, of ``length`` items when given (its items are the caller's to check)."""
    if not isinstance(value, (list, tuple)) or (length is not None and len(value) != length):
        size = "a list" if length is None else f"a list of {length} items"
        raise InputError(f"{where}: expected {size}, got {value!r}")
    return list(value)


def check_int_list(
    where: str, value: object, low: int, length: int | None = None
) -> tuple[int, ...]:
    """A non-empty list of integers >= ``low`` (of ``length`` items when given)."""
    items = check_list(where, value, length)
    if not items:
        raise InputError(f"{where}: expected at least one item, got {value!r}")
    return tuple(check_int(f"{where}[{i}]", v, low) for i, v in enumerate(items))
