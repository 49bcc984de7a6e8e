"""Format versions: the one the writer produces and the ones the reader still accepts.

Versions 2 to 9 changed only the packets (2: compact sections, P-frame modes;
3: block motion, intra-coded residuals; 4: lean packet framing; 5: the plain warp
samples luma at its own resolution; 6: the DCT refinement layer; 7: its entropy
coding with contexts from decoded levels; 8: the in-loop adaptive filter and
the layer's wider head row; 9: the layer's chroma step; 10: the cubic plain warp of
block motion; 11: block-motion residuals in contexts, the layer's heads in groups;
12: y coded under short windows), so header,
packet and codec code all branch on these numbers; keeping them here gives them
one definition.
"""

from __future__ import annotations

# Bump on any layout change. Writers write FORMAT_VERSION; readers accept every
# version in READABLE_VERSIONS, so streams made before a bump keep decoding.
FORMAT_VERSION = 12
READABLE_VERSIONS = (1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12)
# First version whose sections are (id, varint length, data) without a shape.
COMPACT_SECTIONS_VERSION = 2
# First version whose packets may leave out parts (P modes) or carry a quality.
P_MODES_VERSION = 2
# First version whose P packets may carry their motion as block vectors (``bmv``) and
# their residual coded by the I-frame coder (``ires_*``).
BLOCK_MOTION_VERSION = 3
# First version with lean packets: a one-byte tag for sync and frame type, a varint
# payload length, sections named by one bit mask, no length for fixed-size sections
# or the last one, and ANS strings without the zero high bytes of their last word.
LEAN_PACKET_VERSION = 4
# First version whose plain warp (``nomc`` packets, block motion) warps the yuv420 luma
# plane at luma resolution (representation.warp_planes); before, the model tensor was
# warped as it is, interpolating between luma pixels two apart. Same packet layout.
FINE_WARP_VERSION = 5
# First version whose packets (I and P) may carry a ``dct`` section: an 8x8 integer DCT
# residual added to the decoded frame's samples (dvc_edic.dctlayer).
DCT_LAYER_VERSION = 6
# First version whose ``dct`` section is coded as dvc_edic.dctcontext lays it out: cell
# scales coded in the stream, no R, contexts from each block's lower bands.
CONTEXT_LAYER_VERSION = 7
# First version whose packets (I and P) may carry an ``lf`` section: the in-loop adaptive
# filter fitted to the frame (dvc_edic.loopfilter).
LOOP_FILTER_VERSION = 8
# First version whose ``dct`` heads are coded under a wider row (dvc_edic.dctcontext).
WIDE_HEAD_VERSION = 8
# First version whose ``dct`` section carries the chroma planes' step as a ratio to luma's.
CHROMA_STEP_VERSION = 9
# First version whose ``bmv`` head may set bit 15: the plain warp of that field samples with
# the cubic kernel (flows.warp.CUBIC_A) instead of bilinear. Same packet layout.
CUBIC_WARP_VERSION = 10
# First version whose ``bmv`` section may code its residuals in contexts: each residual's
# table chosen by its left and top neighbours' (dvc_edic.blockmotion.CONTEXT_THRESHOLDS).
MV_CONTEXT_VERSION = 11
# First version whose ``dct`` heads take one of three rows and predictors by what predicts
# them (dvc_edic.dctcontext.HEAD_GROUPS).
GROUPED_HEAD_VERSION = 11
# First version whose GMM-coded latents (every ``y`` section) code each element under a
# short window of symbols sized from its own mixture, with escapes beyond it, instead of
# the tensor's whole support (dvc_edic.entropy.window). Same packet layout.
Y_WINDOW_VERSION = 12
