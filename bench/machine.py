"""Machine description stored with every benchmark result, so runs can be compared."""

from __future__ import annotations

import datetime as _dt
import os
import platform

import torch

from eval.report import cpu_model


def machine_info() -> dict[str, object]:
    return {
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "platform": platform.platform(),
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    }
