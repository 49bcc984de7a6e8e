"""Format versions: the one the writer produces and the ones the reader still accepts.

Version 2 changed only the packet payload (compact sections, P-frame modes), so
header and packet code both branch on these numbers; keeping them here gives the
two one definition.
"""

from __future__ import annotations

# Bump on any layout change. Writers write FORMAT_VERSION; readers accept every
# version in READABLE_VERSIONS, so streams made before a bump keep decoding.
FORMAT_VERSION = 2
READABLE_VERSIONS = (1, 2)
# First version whose sections are (id, varint length, data) without a shape.
COMPACT_SECTIONS_VERSION = 2
# First version whose packets may leave out parts (P modes) or carry a quality.
P_MODES_VERSION = 2
