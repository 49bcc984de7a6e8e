"""Encoder-only decisions: motion sources, P-frame modes and their presets.

Nothing here runs in the decoder. Every choice made here is written into the
stream as which sections a packet holds, so the decoder follows it without
knowing how it was made.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from dvc_edic.encoder.settings import MOTION_SOURCES, EncoderSettings, load_encoder_settings

if TYPE_CHECKING:
    from dvc_edic.encoder.decision import Candidate, Decision, choose

# The decision module imports torch and the models; it is loaded on first use
# (PEP 562), so that importing the settings (the CLIs' --help) stays instant.
_LAZY = {"Candidate", "Decision", "choose"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        from dvc_edic.encoder import decision

        return getattr(decision, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "MOTION_SOURCES",
    "Candidate",
    "Decision",
    "EncoderSettings",
    "choose",
    "load_encoder_settings",
]
