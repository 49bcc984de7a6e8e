"""Group-of-pictures structure: which frames are intra.

A pure function of the frame index and the intra period, so encoder and
decoder agree without signalling anything but the period in the header (the
packet's frame type is still checked against it).
"""

from __future__ import annotations

from dvc_edic.bitstream import FrameType

ONLY_FIRST_INTRA = -1  # intra period meaning "one I-frame, then P-frames to the end"


def frame_type(index: int, intra_period: int) -> FrameType:
    if index < 0:
        raise ValueError(f"frame index must be >= 0, got {index}")
    if intra_period == ONLY_FIRST_INTRA or intra_period == 0:
        return FrameType.I if index == 0 else FrameType.P
    if intra_period < 0:
        raise ValueError(f"intra period must be -1 or positive, got {intra_period}")
    return FrameType.I if index % intra_period == 0 else FrameType.P


def frame_types(count: int, intra_period: int) -> list[FrameType]:
    return [frame_type(i, intra_period) for i in range(count)]
