"""dvc_edic: a learned video codec (DVC-style P-frames on EDIC image coders)."""

from __future__ import annotations

import os
import warnings

# With OpenMP's default spin-waiting, torch's threads burn their cores while
# waiting, and coding runs 10-30x slower as soon as any other process wants a
# core. Passive waiting costs nothing measurable on an idle machine. Only
# effective when set before torch is first imported (the CLIs import us first).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


def ignore_known_warnings() -> None:
    """Silence warnings that say nothing about this package's behaviour.

    compressai scripts a helper with torch.jit when it is imported, which current
    torch flags as deprecated. The codec itself no longer imports compressai
    (dvc_edic.entropy.factorized says why), but the tests that compare it with
    compressai and bench.bench_image do. Called here, and again by the CLIs
    after they reset the warning filters (dvc_edic.cli.run_cli).
    """
    warnings.filterwarnings("ignore", message=r".*torch\.jit\.script.*", category=FutureWarning)


ignore_known_warnings()

from dvc_edic.errors import (  # noqa: E402
    BitstreamError,
    DvcEdicError,
    DvcEdicWarning,
    InputError,
    WeightsError,
)

__all__ = [
    "BitstreamError",
    "DvcEdicError",
    "DvcEdicWarning",
    "InputError",
    "WeightsError",
    "__version__",
]
__version__ = "0.1.0"
