"""How each coder's latents become packet sections, and back.

One place names the sections (``z``/``y`` of the I-frame coder, ``mv_*`` and
``res_*`` of the P-frame coders), so the encoder, the decoder and the encoder's
search agree on them. A P packet may leave out its motion or its residual
sections: that is how the stream says "zero motion" or "no residual". A ``q``
section gives the frame a quality of its own, instead of the header's. A ``dct``
section (format version 6, I and P packets alike) refines the decoded frame's
samples (dvc_edic.dctlayer): it is read apart from the coders' latents, as is an
``lf`` section (version 8), the in-loop filter applied after it (dvc_edic.loopfilter).

Packets are built for the current format version; from version 4 on a ``z``
string is stored without the zero high bytes of its last ANS word (the ``y``
strings always were), so reading one needs the stream's version.
"""

from __future__ import annotations

import struct

from dvc_edic.bitstream import QUALITY_SCALE, FrameType, Packet, Section, quantize_quality
from dvc_edic.bitstream.version import (
    BLOCK_MOTION_VERSION,
    DCT_LAYER_VERSION,
    FINE_WARP_VERSION,
    FORMAT_VERSION,
    LEAN_PACKET_VERSION,
    LOOP_FILTER_VERSION,
    P_MODES_VERSION,
)
from dvc_edic.blockmotion import decode_block_motion, encode_block_motion
from dvc_edic.entropy.ans import trim_words, untrim_words
from dvc_edic.errors import BitstreamError
from dvc_edic.loopfilter import SECTION as LOOP_FILTER_NAME
from dvc_edic.models.edic import EDIC, CodedLatents
from dvc_edic.models.ladder import QualityRange
from dvc_edic.models.pframe import PFrameLatents

INTRA_PREFIX = ""
MV_PREFIX = "mv_"
RESIDUAL_PREFIX = "res_"
# The residual coded by the I-frame coder (format version 3), instead of res_*.
INTRA_RESIDUAL_PREFIX = "ires_"
LATENT_PARTS = ("z", "y")  # packet order within one coder's sections
QUALITY_SECTION = "q"
# An empty section: the P-frame's prediction is the warped reference, without the MC net.
NO_MC_SECTION = "nomc"
# The motion as block vectors (dvc_edic.blockmotion), instead of the mv_* latents.
BLOCK_MOTION_SECTION = "bmv"
QUALITY_FIELD = struct.Struct("<H")  # quality x QUALITY_SCALE, as in the header
# The DCT refinement layer's data (dvc_edic.dctlayer), added to the decoded samples.
DCT_SECTION = "dct"
# The in-loop adaptive filter (dvc_edic.loopfilter), applied after the DCT layer.
LOOP_FILTER_SECTION = LOOP_FILTER_NAME


def latent_sections(prefix: str, latents: CodedLatents) -> list[Section]:
    """Shapes are kept for version-1 writers; version 2 derives them and stores none."""
    shapes = {"z": latents.z_shape, "y": latents.y_shape}
    data = {"z": trim_words(latents.z), "y": latents.y}
    return [Section(f"{prefix}{part}", tuple(shapes[part]), data[part]) for part in LATENT_PARTS]


def _quality_sections(quality: float | None) -> list[Section]:
    """None: the frame uses the header's quality and the packet says nothing."""
    if quality is None:
        return []
    return [Section(QUALITY_SECTION, (), QUALITY_FIELD.pack(round(quality * QUALITY_SCALE)))]


def intra_packet(latents: CodedLatents, quality: float | None = None) -> Packet:
    sections = _quality_sections(quality) + latent_sections(INTRA_PREFIX, latents)
    return Packet(FrameType.I, tuple(sections))


def p_packet(latents: PFrameLatents, quality: float | None = None) -> Packet:
    sections = _quality_sections(quality)
    if not latents.mc:
        sections.append(Section(NO_MC_SECTION, (), b""))
    if latents.mv is not None:
        sections += latent_sections(MV_PREFIX, latents.mv)
    if latents.block is not None:
        sections.append(Section(BLOCK_MOTION_SECTION, (), encode_block_motion(latents.block)))
    if latents.residual is not None:
        prefix = INTRA_RESIDUAL_PREFIX if latents.intra_residual else RESIDUAL_PREFIX
        sections += latent_sections(prefix, latents.residual)
    return Packet(FrameType.P, tuple(sections))


def with_dct_layer(packet: Packet, data: bytes) -> Packet:
    """The same packet with a refinement layer's bytes added (a packet has at most one)."""
    return _with_section(packet, DCT_SECTION, data)


def with_loop_filter(packet: Packet, data: bytes) -> Packet:
    """The same packet with an in-loop filter section added (a packet has at most one)."""
    return _with_section(packet, LOOP_FILTER_SECTION, data)


def dct_layer_data(packet: Packet, version: int) -> bytes | None:
    """The packet's refinement-layer bytes, or None when it has none."""
    return _section_data(packet, DCT_SECTION, version, DCT_LAYER_VERSION)


def loop_filter_data(packet: Packet, version: int) -> bytes | None:
    """The packet's in-loop filter section, or None when it has none."""
    return _section_data(packet, LOOP_FILTER_SECTION, version, LOOP_FILTER_VERSION)


def _with_section(packet: Packet, name: str, data: bytes) -> Packet:
    return Packet(packet.frame_type, (*packet.sections, Section(name, (), data)))


def _section_data(packet: Packet, name: str, version: int, since: int) -> bytes | None:
    """An optional section's bytes; a stream older than the section's version has none."""
    if name not in _names(packet):
        return None
    if version < since:
        raise BitstreamError(
            f"{packet.frame_type.name}-frame packet has a {name!r} section, which format "
            f"version {version} does not have (it needs version {since})"
        )
    return packet.section(name).data


def frame_quality(packet: Packet, stream_quality: float, qualities: QualityRange) -> float:
    """The packet's own quality if it has a ``q`` section, else the stream's (which the
    decoder has checked against ``qualities``, the model's range)."""
    if QUALITY_SECTION not in _names(packet):
        return stream_quality
    data = packet.section(QUALITY_SECTION).data
    if len(data) != QUALITY_FIELD.size:
        raise BitstreamError(
            f"section 'q': expected {QUALITY_FIELD.size} bytes, got {len(data)}"
        )
    (milli,) = QUALITY_FIELD.unpack(data)
    quality = quantize_quality(milli / QUALITY_SCALE)
    if quality not in qualities:
        raise BitstreamError(f"section 'q': quality {quality:g} is outside {qualities}")
    return quality


def _names(packet: Packet) -> set[str]:
    return {s.name for s in packet.sections}


def _coder_latents(
    packet: Packet, prefix: str, coder: EDIC, size: tuple[int, int], version: int
) -> CodedLatents | None:
    """The coder's latents, or None when the packet holds none of its sections.

    Shapes come from the model for the frame size (a version-2 stream stores
    none); a version-1 section's stored shape is passed on, and the coder refuses
    it if it differs.
    """
    names = {f"{prefix}{part}" for part in LATENT_PARTS}
    present = names & _names(packet)
    if not present:
        return None
    if present != names:
        raise BitstreamError(
            f"{packet.frame_type.name}-frame packet has {sorted(present)} but not "
            f"{sorted(names - present)}; a coder's sections come together or not at all"
        )
    y_shape, z_shape = coder.latent_shapes(size)
    z = packet.section(f"{prefix}z")
    y = packet.section(f"{prefix}y")
    z_data = z.data
    if version >= LEAN_PACKET_VERSION:
        z_data = untrim_words(z_data, f"section {z.name!r}")
    return CodedLatents(z=z_data, y=y.data, z_shape=z.shape or z_shape,
                        y_shape=y.shape or y_shape, version=version)  # fmt: skip


def _check_only(packet: Packet, prefixes: tuple[str, ...]) -> None:
    allowed = {f"{p}{part}" for p in prefixes for part in LATENT_PARTS}
    allowed |= {QUALITY_SECTION, NO_MC_SECTION, BLOCK_MOTION_SECTION, DCT_SECTION,
                LOOP_FILTER_SECTION}
    extra = _names(packet) - allowed
    if extra:
        raise BitstreamError(
            f"{packet.frame_type.name}-frame packet has unexpected sections {sorted(extra)}; "
            f"expected some of {sorted(allowed)}"
        )


def intra_latents(
    packet: Packet, coder: EDIC, size: tuple[int, int], version: int = FORMAT_VERSION
) -> CodedLatents:
    _check_only(packet, (INTRA_PREFIX,))
    for p_only in (NO_MC_SECTION, BLOCK_MOTION_SECTION):
        if p_only in _names(packet):
            raise BitstreamError(f"I-frame packet has a {p_only!r} section (P-frames only)")
    latents = _coder_latents(packet, INTRA_PREFIX, coder, size, version)
    if latents is None:
        raise BitstreamError("I-frame packet has no z/y sections")
    return latents


def p_latents(
    packet: Packet, mv_coder: EDIC, residual_coder: EDIC, intra_coder: EDIC,
    size: tuple[int, int], version: int,
) -> PFrameLatents:
    """What a P packet of a stream of format ``version`` holds; versions before P modes
    need every part, and block motion and intra-coded residuals need version 3."""
    _check_only(packet, (MV_PREFIX, RESIDUAL_PREFIX, INTRA_RESIDUAL_PREFIX))
    names = _names(packet)
    no_mc = NO_MC_SECTION in names
    if no_mc and packet.section(NO_MC_SECTION).data:
        raise BitstreamError(f"section {NO_MC_SECTION!r} must be empty")
    block = None
    if BLOCK_MOTION_SECTION in names:
        if version < BLOCK_MOTION_VERSION:
            raise BitstreamError(
                f"P-frame packet has a {BLOCK_MOTION_SECTION!r} section, which format version "
                f"{version} does not have (block motion needs version {BLOCK_MOTION_VERSION})"
            )
        block = decode_block_motion(packet.section(BLOCK_MOTION_SECTION).data, size, version)
    residual = _coder_latents(packet, RESIDUAL_PREFIX, residual_coder, size, version)
    intra_residual = _coder_latents(packet, INTRA_RESIDUAL_PREFIX, intra_coder, size, version)
    if intra_residual is not None:
        if residual is not None:
            raise BitstreamError("P-frame packet has both res_* and ires_* sections; a frame "
                                 "has one residual")
        if version < BLOCK_MOTION_VERSION:
            raise BitstreamError(f"P-frame packet has ires_* sections, which format version "
                                 f"{version} does not have (they need version "
                                 f"{BLOCK_MOTION_VERSION})")
    latents = PFrameLatents(
        mv=_coder_latents(packet, MV_PREFIX, mv_coder, size, version),
        residual=residual if intra_residual is None else intra_residual,
        mc=not no_mc,
        block=block,
        intra_residual=intra_residual is not None,
        fine_warp=version >= FINE_WARP_VERSION,
    )
    if version < P_MODES_VERSION and (latents.mv is None or latents.residual is None or no_mc):
        raise BitstreamError(
            f"P-frame packet has sections {sorted(names)}; format version 1 "
            "needs the motion and the residual sections"
        )
    return latents
