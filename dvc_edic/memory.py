"""Keep freed memory for reuse, so that large tensors stop costing page faults.

glibc's malloc serves every block above its mmap threshold (which it never
raises past 32 MiB) with a fresh ``mmap`` and returns it to the kernel on
``free``. Decoding a 1080p frame allocates and frees dozens of tensors of
30-70 MB (the full-resolution activations of the enhancement and MC nets), so
each one is faulted in page by page, and zeroed by the kernel, every time.
Serving large blocks from the heap and never trimming it makes a freed block
reusable by the next tensor: on the project's 2-core machine (shared with
other work when measured) a 1080p frame took 7 to 21 % less CPU time, with
about 7 times fewer page faults. The cost is resident memory, since freed
blocks are kept and are reused only where they fit: the peak of a 1080p decode
rose from 1.15 to 1.40-1.42 GiB, at the default frame-size limit (4096x2304)
from 2.1-2.2 to 2.6-2.8 GiB (it varies from run to run with how blocks fit).
Being process-wide, it is for a tool that owns its process (``decode_sequence``
run from its own command line), not for the library.
"""

from __future__ import annotations

import ctypes
import platform
import sys

# mallopt() parameters, from glibc's <malloc.h>.
M_TRIM_THRESHOLD = -1
M_MMAP_MAX = -4
NEVER_TRIM = 2**31 - 1  # the largest int mallopt takes: the heap top is never given back


def keep_freed_memory() -> bool:
    """Make glibc's malloc keep and reuse freed large blocks; False where it is not glibc.

    Only speed and resident size change: tensors hold the same values wherever
    their memory comes from.
    """
    if not sys.platform.startswith("linux") or platform.libc_ver()[0] != "glibc":
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    mallopt.restype = ctypes.c_int
    return bool(mallopt(M_MMAP_MAX, 0)) and bool(mallopt(M_TRIM_THRESHOLD, NEVER_TRIM))
