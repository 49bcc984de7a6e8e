"""Format versions: the one the writer produces and the ones the reader still accepts.

Versions 2 and 3 changed only the packet payload (2: compact sections, P-frame
modes; 3: block motion, intra-coded residuals), so header and packet code both branch on these
numbers; keeping them here gives the two one definition.
"""

from __future__ import annotations

# Bump on any layout change. Writers write FORMAT_VERSION; readers accept every
# version in READABLE_VERSIONS, so streams made before a bump keep decoding.
FORMAT_VERSION = 3
READABLE_VERSIONS = (1, 2, 3)
# First version whose sections are (id, varint length, data) without a shape.
COMPACT_SECTIONS_VERSION = 2
# First version whose packets may leave out parts (P modes) or carry a quality.
P_MODES_VERSION = 2
# First version whose P packets may carry their motion as block vectors (``bmv``) and
# their residual coded by the I-frame coder (``ires_*``).
BLOCK_MOTION_VERSION = 3
