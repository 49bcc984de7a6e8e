"""Codec adapters: each turns (raw source, rate point) into a bitstream and a decoded YUV.

Everything after that (metrics, rates, BD) is shared, which is what makes the
comparison fair: the adapters never compute a quality number themselves, and bits
are always the size of the file the encoder wrote.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, Protocol

from dvc_edic.errors import BitstreamError, InputError
from eval import anchors
from eval.breakdown import bit_breakdown
from eval.report import file_sha256
from eval.sets import CodecSpec
from eval.sources import RawSource

# Modules of the dvc_edic command-line tools the adapter drives.
DVC_ENCODE_MODULE = "dvc_edic.encode_sequence"
DVC_DECODE_MODULE = "dvc_edic.decode_sequence"
# Flags every dvc_edic tool takes: overwrite our own work files, no progress bar.
QUIET_OVERWRITE = ("--force", "--quiet")
# Longest a single dvc_edic encode or decode may run before we call it hung (seconds).
DVC_TIMEOUT_S = 24 * 3600


@dataclass
class PointRun:
    """What one codec produced for one rate point."""

    bitstream: Path
    decoded: Path
    bits: int
    decoded_frames: int | None
    encode_s: float
    decode_s: float
    info: dict[str, Any] = field(default_factory=dict)


class CodecAdapter(Protocol):
    name: str
    kind: str

    def cache_key(self, src: RawSource, rate: float) -> dict[str, Any]: ...

    def run_point(self, src: RawSource, rate: float, work: Path) -> PointRun: ...


def rate_label(rate: float) -> str:
    """A rate point as a file-name-safe label (23.0 -> '23', 22.5 -> '22.5')."""
    return str(int(rate)) if float(rate).is_integer() else repr(float(rate))


class AnchorAdapter:
    """x264 or x265 through ffmpeg or PyAV; rate points are crf values."""

    def __init__(self, spec: CodecSpec) -> None:
        self.name = spec.name
        self.kind = spec.kind
        settings = dict(spec.settings)
        self.preset = str(settings.pop("preset", anchors.DEFAULT_PRESET))
        tune = settings.pop("tune", anchors.DEFAULT_TUNE)
        self.tune = None if tune in (None, "", "none") else str(tune)
        self.extra_params = {
            str(k): str(v) for k, v in (settings.pop("params", None) or {}).items()
        }
        self.backend = settings.pop("backend", None) or anchors.backend()
        if self.backend not in ("ffmpeg", "pyav"):
            raise InputError(
                f"codec {self.name}: backend must be ffmpeg or pyav, got {self.backend!r}"
            )
        if self.backend == "ffmpeg" and anchors.ffmpeg_path() is None:
            raise InputError(f"codec {self.name}: backend ffmpeg asked for, but no ffmpeg on PATH")
        if settings:
            raise InputError(f"codec {self.name}: unknown settings {sorted(settings)}")

    def settings(self, src: RawSource, rate: float) -> anchors.AnchorSettings:
        return anchors.AnchorSettings(
            codec=self.kind,
            crf=float(rate),
            intra_period=src.intra_period,
            frames=src.frames,
            preset=self.preset,
            tune=self.tune,
            extra_params=self.extra_params,
        )

    def cache_key(self, src: RawSource, rate: float) -> dict[str, Any]:
        s = self.settings(src, rate)
        return {"kind": self.kind, "backend": self.backend, "options": anchors.encoder_options(s)}

    def run_point(self, src: RawSource, rate: float, work: Path) -> PointRun:
        s = self.settings(src, rate)
        stream = work / f"{rate_label(rate)}{anchors.SUFFIXES[self.kind]}"
        decoded = work / f"{rate_label(rate)}.dec.yuv"
        start = time.perf_counter()
        info = anchors.encode(src, s, stream, use=self.backend)
        mid = time.perf_counter()
        count = anchors.decode(stream, self.kind, src, decoded, use=self.backend)
        end = time.perf_counter()
        return PointRun(stream, decoded, info.pop("bits"), count, mid - start, end - mid, info)


class DvcEdicAdapter:
    """The dvc_edic codec through its command-line tools; rate points are quality levels."""

    def __init__(self, spec: CodecSpec) -> None:
        self.name = spec.name
        self.kind = spec.kind
        settings = dict(spec.settings)
        self.python = str(settings.pop("python", sys.executable))
        self.extra_encode = [str(a) for a in settings.pop("encode_args", None) or []]
        self.extra_decode = [str(a) for a in settings.pop("decode_args", None) or []]
        if settings:
            raise InputError(f"codec {self.name}: unknown settings {sorted(settings)}")

    def encode_command(self, src: RawSource, rate: float, out: Path) -> list[str]:
        flags = {
            "-o": out,
            "--quality": rate_label(rate),
            "--intra-period": src.intra_period,
            "--frames": src.frames,
            "--width": src.width,
            "--height": src.height,
            "--fps": src.fps,
            "--bit-depth": src.bit_depth,
        }
        args = [str(x) for pair in flags.items() for x in pair]
        return [
            self.python,
            "-m",
            DVC_ENCODE_MODULE,
            str(src.path),
            *args,
            *QUIET_OVERWRITE,
            *self.extra_encode,
        ]

    def decode_command(self, stream: Path, out: Path) -> list[str]:
        return [
            self.python,
            "-m",
            DVC_DECODE_MODULE,
            str(stream),
            "-o",
            str(out),
            *QUIET_OVERWRITE,
            *self.extra_decode,
        ]

    def cache_key(self, src: RawSource, rate: float) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "encode_args": self.extra_encode,
            "decode_args": self.extra_decode,
            "version": _dvc_version(),
            "code": dvc_code_digest(),
            "weights": weights_identity(self.extra_encode),
        }

    def _run(self, cmd: list[str], what: str) -> float:
        start = time.perf_counter()
        proc = subprocess.run(
            cmd, capture_output=True, text=True, check=False, timeout=DVC_TIMEOUT_S
        )
        if proc.returncode != 0:
            raise BitstreamError(
                f"{what} failed (exit {proc.returncode}): {' '.join(cmd)}\n{proc.stderr[-2000:]}"
            )
        return time.perf_counter() - start

    def run_point(self, src: RawSource, rate: float, work: Path) -> PointRun:
        stream = work / f"q{rate_label(rate)}.bin"
        decoded = work / f"q{rate_label(rate)}.dec.yuv"
        stats = work / f"q{rate_label(rate)}.stats.json"
        command = [*self.encode_command(src, rate, stream), "--stats", str(stats)]
        enc_s = self._run(command, f"dvc_edic encode of {src.path}")
        if not stream.is_file():
            raise BitstreamError(f"dvc_edic encode of {src.path} exited 0 but wrote no {stream}")
        dec_s = self._run(self.decode_command(stream, decoded), f"dvc_edic decode of {stream}")
        if not decoded.is_file():
            raise BitstreamError(f"dvc_edic decode of {stream} exited 0 but wrote no {decoded}")
        # the CLI always writes --stats; a stand-in encoder (tests) may not
        summary = json.loads(stats.read_text(encoding="utf-8")) if stats.is_file() else {}
        info = {
            "encoder": "dvc_edic",
            "encoder_version": _dvc_version(),
            "command": command,
            # P positions the encoder coded intra (R + lambda*D was lower); 0 = fixed GOP
            "intra_fallbacks": summary.get("intra_fallbacks"),
            "frame_types": "".join(f["type"] for f in summary.get("per_frame", [])),
            "breakdown": bit_breakdown(summary.get("per_frame", [])),
        }
        bits = 8 * stream.stat().st_size
        return PointRun(stream, decoded, bits, None, enc_s, dec_s, info)


@lru_cache(maxsize=8)
def _file_digest(path: Path, size: int, mtime_ns: int) -> str:
    """file_sha256, computed once per (path, size, mtime): every point asks for it."""
    return file_sha256(path)


def weights_identity(args: Sequence[str]) -> str:
    """What decides the dvc_edic points besides the code: the weights the CLI will load.

    Cached points made with other weights must not be reused, so the key holds the
    file's digest (or says the seeded untrained model is used).
    """
    from dvc_edic.weights import DEFAULT_WEIGHTS

    path = DEFAULT_WEIGHTS
    if "--weights" in args[:-1]:
        path = Path(args[list(args).index("--weights") + 1])
    if not path.is_file():
        return "untrained" if path == DEFAULT_WEIGHTS else f"missing {path}"
    stat = path.stat()
    return "sha256:" + _file_digest(path.resolve(), stat.st_size, stat.st_mtime_ns)


# What the dvc_edic CLIs run on: the package, the flow nets and the presets.
CODE_SUFFIXES = (".py", ".yaml")
CODE_DIGEST_CHARS = 16


@lru_cache(maxsize=1)
def dvc_code_digest() -> str:
    """A digest of every source and preset file the dvc_edic CLIs run on.

    The version string changes only at releases, so without this a cached point
    made by an older encoder (another search, another packet format) would be
    reused as if it were the current one's.
    """
    import dvc_edic
    import flows
    from dvc_edic.config import CONFIG_ROOT

    return tree_digest((Path(dvc_edic.__file__).parent, Path(flows.__file__).parent, CONFIG_ROOT))


def tree_digest(roots: Sequence[Path]) -> str:
    """SHA-256 prefix over the names and bytes of the source files below ``roots``."""
    digest = hashlib.sha256()
    for root in roots:
        for path in sorted(root.rglob("*")):
            if path.suffix in CODE_SUFFIXES and path.is_file():
                digest.update(path.relative_to(root).as_posix().encode())
                digest.update(path.read_bytes())
    return digest.hexdigest()[:CODE_DIGEST_CHARS]


def _dvc_version() -> str:
    try:
        import dvc_edic

        return str(getattr(dvc_edic, "__version__", "unknown"))
    except ImportError:
        return "unknown"


ADAPTERS: dict[str, type] = {
    "x264": AnchorAdapter,
    "x265": AnchorAdapter,
    "dvc_edic": DvcEdicAdapter,
}


def make_adapter(spec: CodecSpec) -> CodecAdapter:
    if spec.kind not in ADAPTERS:
        raise InputError(
            f"codec {spec.name}: kind must be one of {sorted(ADAPTERS)}, got {spec.kind!r}"
        )
    return ADAPTERS[spec.kind](spec)
