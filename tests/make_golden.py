"""Writes tests/data/f12/: a committed stream that pins what today's decoder outputs.

Run from the repository root (``python -m tests.make_golden``) only when the format
changes on purpose; the test that reads it (tests/test_encoder_search.py) must
otherwise keep passing, so that a decoder speed-up can be shown not to move a byte.

The stream is the middle 112x80 of carphone's first 4 frames, coded at quality 8 by
the medium preset with the untrained tiny weights of tests/data/v1: their poor base
frames make the encoder take the DCT layer, the in-loop filter and block motion, the
integer parts of the decoder that speed work touches.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from dvc_edic.bitstream import BitstreamReader
from dvc_edic.codec import SequenceEncoder
from dvc_edic.encoder.settings import load_encoder_settings
from dvc_edic.weights import load_weights
from tests.test_encoder_search import V1_DIR, _code, _decode, _info, _middle, frames_sha256

GOLDEN_DIR = Path(__file__).parent / "data" / "f12"
STREAM = "carphone_112x80_4f_q8.dvce"
FRAMES = 4
QUALITY = 8.0
PRESET = "medium"


def main() -> None:
    model = load_weights(V1_DIR / "tiny.safetensors")
    frames = _middle(FRAMES)
    enc = SequenceEncoder(model, _info(frames[0]), QUALITY, -1,
                          settings=load_encoder_settings(PRESET))
    data, recons, _ = _code(enc, frames)
    assert _decode(model, data) == recons
    reader = BitstreamReader(data)
    sections = sorted({s.name for p in reader for s in p.sections})
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                            text=True, check=True).stdout.strip()
    GOLDEN_DIR.mkdir(parents=True, exist_ok=True)
    (GOLDEN_DIR / STREAM).write_bytes(data)
    (GOLDEN_DIR / STREAM.replace(".dvce", ".json")).write_text(json.dumps({
        "made_by_commit": commit, "format_version": reader.header.version,
        "weights": "tests/data/v1/tiny.safetensors", "frames": FRAMES, "quality": QUALITY,
        "preset": PRESET, "sections": sections, "bytes": len(data),
        "decoded_sha256": frames_sha256(recons),
    }, indent=2) + "\n")


if __name__ == "__main__":
    main()
