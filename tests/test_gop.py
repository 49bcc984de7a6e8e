from __future__ import annotations

import pytest

from dvc_edic.bitstream import FrameType
from dvc_edic.gop import frame_types

INTRA, INTER = FrameType.I, FrameType.P


def test_uvg_style_period_12() -> None:
    types = frame_types(26, 12)
    assert [i for i, t in enumerate(types) if t == INTRA] == [0, 12, 24]
    assert types.count(INTER) == 23


def test_hevc_style_period_10() -> None:
    assert [i for i, t in enumerate(frame_types(21, 10)) if t == INTRA] == [0, 10, 20]


def test_only_first_intra() -> None:
    assert frame_types(5, -1) == [INTRA, INTER, INTER, INTER, INTER]


def test_all_intra_and_bad_period() -> None:
    assert frame_types(3, 1) == [INTRA, INTRA, INTRA]
    with pytest.raises(ValueError):
        frame_types(3, -2)
