"""Encoder-only decisions: motion sources, P-frame modes and their presets.

Nothing here runs in the decoder. Every choice made here is written into the
stream as which sections a packet holds, so the decoder follows it without
knowing how it was made.
"""

from dvc_edic.encoder.decision import Candidate, Decision, choose
from dvc_edic.encoder.settings import MOTION_SOURCES, EncoderSettings, load_encoder_settings

__all__ = [
    "MOTION_SOURCES",
    "Candidate",
    "Decision",
    "EncoderSettings",
    "choose",
    "load_encoder_settings",
]
