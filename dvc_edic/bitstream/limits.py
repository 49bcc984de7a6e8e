"""Bounds the reader enforces before it allocates anything.

A stream is untrusted input: every length or count it declares is compared
with these bounds (and with the bytes actually left in the file) before a
buffer of that size exists. The defaults cover every stream this codec
writes; a caller decoding something unusual can pass a wider `Limits`.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

from dvc_edic.errors import InputError

# Largest frame side the default reader accepts (pixels); 16K covers 8K video twice over.
# A side alone bounds nothing useful (a 16384x64 strip is cheap): the area below does.
DEFAULT_MAX_SIDE = 16384
# Largest frame area (width x height) the default reader accepts. Decoder memory
# grows with the area, and a flat frame legitimately codes to a few bytes, so a
# 1 KB stream may honestly declare any size: only this cap keeps it from costing
# gigabytes. 4096x2304 covers DCI 4K (4096x2160) and 4K UHD (3840x2160) with margin;
# a 4K UHD decode with the `cpu` preset peaks at about 2.25 GB resident.
DEFAULT_MAX_PIXELS_FRAME = (4096, 2304)  # (width, height) the default area is named after
DEFAULT_MAX_PIXELS = DEFAULT_MAX_PIXELS_FRAME[0] * DEFAULT_MAX_PIXELS_FRAME[1]
# About 77 hours at 60 fps; far beyond any test sequence, far below the u32 field.
DEFAULT_MAX_FRAME_COUNT = 1 << 24
# Finest block motion vector precision the 'bmv' section carries: 1/2^3 of a model-grid
# sample (1/4 luma pixel for yuv420). A format constant, here so that the encoder's
# settings can check it without importing the coder.
PRECISION_LOG2_MAX = 3
# The plain warp's interpolation kernels (flows.warp): bilinear, and from format version
# 10 the cubic one a block field may flag. Here so that the settings can check names.
WARP_KERNELS = ("bilinear", "cubic")
# Model ids are short names such as "edic-cpu-v1".
DEFAULT_MAX_MODEL_ID_LEN = 64
# A P-frame stores a handful of sections (MV y/z, residual y/z, side info).
DEFAULT_MAX_SECTIONS = 64
DEFAULT_MAX_SECTION_NAME_LEN = 32
# Latent shapes are (M, h, w); side info is 0-d or 1-d.
DEFAULT_MAX_NDIM = 4
# No axis of any tensor derived from a 16K frame comes near this.
DEFAULT_MAX_DIM = 1 << 20
# Product of a shape's dims; bounds what a decoder may allocate from a shape.
DEFAULT_MAX_SECTION_ELEMENTS = 1 << 31
# One coded frame; 1 GiB exceeds a raw 16-bit 16K 4:2:0 frame (~805 MB).
DEFAULT_MAX_PAYLOAD_BYTES = 1 << 30

# What the field widths of format version 1 can express at all.
U8_MAX = 0xFF
U16_MAX = 0xFFFF
U32_MAX = 0xFFFF_FFFF

# None: the format itself sets no bound (a product of dims can be any size).
_FORMAT_CAPS: dict[str, int | None] = {
    "max_width": U32_MAX,
    "max_height": U32_MAX,
    "max_pixels": U32_MAX * U32_MAX,  # the largest width x height two u32 fields hold
    "max_frame_count": U32_MAX,
    "max_model_id_len": U8_MAX,
    "max_sections": U16_MAX,
    "max_section_name_len": U8_MAX,
    "max_ndim": U8_MAX,
    "max_dim": U32_MAX,
    "max_section_elements": None,
    "max_payload_bytes": U32_MAX,
}


@dataclass(frozen=True)
class Limits:
    """Upper bounds on what a stream may declare; every field is inclusive."""

    max_width: int = DEFAULT_MAX_SIDE
    max_height: int = DEFAULT_MAX_SIDE
    max_pixels: int = DEFAULT_MAX_PIXELS
    max_frame_count: int = DEFAULT_MAX_FRAME_COUNT
    max_model_id_len: int = DEFAULT_MAX_MODEL_ID_LEN
    max_sections: int = DEFAULT_MAX_SECTIONS
    max_section_name_len: int = DEFAULT_MAX_SECTION_NAME_LEN
    max_ndim: int = DEFAULT_MAX_NDIM
    max_dim: int = DEFAULT_MAX_DIM
    max_section_elements: int = DEFAULT_MAX_SECTION_ELEMENTS
    max_payload_bytes: int = DEFAULT_MAX_PAYLOAD_BYTES

    def __post_init__(self) -> None:
        # A limit beyond the field width would promise streams the format cannot hold.
        for field in fields(self):
            value = getattr(self, field.name)
            cap = _FORMAT_CAPS[field.name]
            in_range = isinstance(value, int) and value >= 0 and (cap is None or value <= cap)
            if isinstance(value, bool) or not in_range:
                bound = "" if cap is None else str(cap)
                raise InputError(
                    f"Limits.{field.name}: expected an int in 0..{bound}, got {value!r}"
                )


DEFAULT_LIMITS = Limits()
