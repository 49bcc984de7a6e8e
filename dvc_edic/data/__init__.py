"""Training data: video clips, Vimeo-90k septuplets, photos, and synthetic motion.

Every dataset yields float32 tensors in the model representation (yuv420 by
default: 6 channels at half resolution), is deterministic given
(seed, epoch via set_epoch, index), and has a `description` for logs and
weights metadata. data/README.md says how to obtain and lay out the data sets.
"""

from __future__ import annotations

from dvc_edic.data.base import RandomCropDataset
from dvc_edic.data.build import DATASET_TYPES, MixedDataset, build_dataset
from dvc_edic.data.cache import LruCache
from dvc_edic.data.clips import DEFAULT_CACHE_FRAMES, VideoClipDataset
from dvc_edic.data.images import ImageFolderDataset
from dvc_edic.data.sources import (
    EVALUATION_SEQUENCES,
    is_evaluation_sequence,
    resolve_sources,
    split_holdout,
)
from dvc_edic.data.synthetic import SyntheticMotionDataset
from dvc_edic.data.vimeo import VimeoSeptupletDataset

__all__ = [
    "DATASET_TYPES",
    "DEFAULT_CACHE_FRAMES",
    "EVALUATION_SEQUENCES",
    "ImageFolderDataset",
    "LruCache",
    "MixedDataset",
    "RandomCropDataset",
    "SyntheticMotionDataset",
    "VideoClipDataset",
    "VimeoSeptupletDataset",
    "build_dataset",
    "is_evaluation_sequence",
    "resolve_sources",
    "split_holdout",
]
