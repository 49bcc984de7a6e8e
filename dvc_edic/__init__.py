"""dvc_edic: a learned video codec (DVC-style P-frames on EDIC image coders)."""

from __future__ import annotations

import os
import warnings

# With OpenMP's default spin-waiting, torch's threads burn their cores while
# waiting, and coding runs 10-30x slower as soon as any other process wants a
# core. Passive waiting costs nothing measurable on an idle machine. Only
# effective when set before torch is first imported (the CLIs import us first).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

# compressai scripts a helper with torch.jit at import time, which current torch
# flags as deprecated; the warning says nothing about this package's behaviour.
warnings.filterwarnings("ignore", message=r".*torch\.jit\.script.*", category=FutureWarning)

from dvc_edic.errors import BitstreamError, DvcEdicError, InputError, WeightsError  # noqa: E402

__all__ = ["BitstreamError", "DvcEdicError", "InputError", "WeightsError", "__version__"]
__version__ = "0.1.0"
