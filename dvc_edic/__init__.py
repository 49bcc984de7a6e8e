"""dvc_edic: a learned video codec (DVC-style P-frames on EDIC image coders)."""

from __future__ import annotations

import warnings

# compressai scripts a helper with torch.jit at import time, which current torch
# flags as deprecated; the warning says nothing about this package's behaviour.
warnings.filterwarnings("ignore", message=r".*torch\.jit\.script.*", category=FutureWarning)

from dvc_edic.errors import BitstreamError, DvcEdicError, InputError, WeightsError  # noqa: E402

__all__ = ["BitstreamError", "DvcEdicError", "InputError", "WeightsError", "__version__"]
__version__ = "0.1.0"
