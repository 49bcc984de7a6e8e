"""Training logs: CSV files (always), TensorBoard (when installed), a tqdm bar.

bpp in train.csv is *estimated* from likelihoods; only val.csv holds sizes
of real bytes (the codec's "real bits only" rule applies to results, and
the two files keep them apart).

On resume, rows after the checkpoint's step are dropped first: they were
logged by the interrupted run after its last save and are about to be
recomputed, so keeping them would show those steps twice.
"""

from __future__ import annotations

import csv
import math
import os
import warnings
from pathlib import Path
from typing import Any

from tqdm import tqdm

TRAIN_CSV = "train.csv"
VAL_CSV = "val.csv"
TENSORBOARD_DIR = "tb"


def _truncate_after(path: Path, step: int) -> None:
    if not path.is_file():
        return
    with path.open(newline="", encoding="utf-8") as f:
        rows = list(csv.reader(f))
    if not rows:
        return
    header, body = rows[0], rows[1:]
    kept = [r for r in body if r and int(r[0]) <= step]
    if len(kept) == len(body):
        return
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows(kept)


def _add_columns(path: Path, columns: list[str]) -> None:
    """Rewrite a log under a newer header: its rows keep their values, new columns stay empty.

    Lets a run written by an older version (e.g. val.csv before the ``weights``
    column) be resumed by this one without losing its history.
    """
    with path.open(newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    temp = path.with_name(f".{path.name}.part")
    with temp.open("w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)
    os.replace(temp, path)


class CsvLog:
    """Append rows of a fixed set of columns; the header is written once."""

    def __init__(self, path: Path, columns: list[str]) -> None:
        self.path = path
        self.columns = columns

    def write(self, row: dict[str, Any]) -> None:
        new = not self.path.is_file() or self.path.stat().st_size == 0
        if not new:
            with self.path.open(newline="", encoding="utf-8") as f:
                header = next(csv.reader(f), [])
            if header != self.columns and set(header) < set(self.columns):
                _add_columns(self.path, self.columns)
            elif header != self.columns:
                raise ValueError(
                    f"{self.path}: existing columns {header} differ from this run's "
                    f"{self.columns}; use another file (e.g. another out_dir)"
                )
        with self.path.open("a", newline="", encoding="utf-8") as f:
            writer = csv.writer(f)
            if new:
                writer.writerow(self.columns)
            writer.writerow([_cell(row.get(c, "")) for c in self.columns])


def _cell(value: Any) -> Any:
    if isinstance(value, float):
        return repr(value)  # full precision: the resume test compares these exactly
    return value


TRAIN_COLUMNS = ["step", "phase", "task", "loss", "bpp_est", "psnr", "epe", "lr",
                 "steps_per_s", "elapsed_s"]
# `weights`: ema or raw, the weights validated (dvc_edic.train.ema)
VAL_COLUMNS = ["step", "phase", "task", "quality", "items", "bpp", "psnr", "warp_psnr", "epe",
               "weights"]


class TrainLogger:
    """Rank 0's view of the logs; other ranks get ``enabled=False`` and write nothing."""

    def __init__(
        self,
        out_dir: Path,
        *,
        enabled: bool,
        tensorboard: bool,
        progress: bool,
        total_steps: int,
        start_step: int,
    ) -> None:
        self.enabled = enabled
        self.train_csv = CsvLog(out_dir / TRAIN_CSV, TRAIN_COLUMNS)
        self.val_csv = CsvLog(out_dir / VAL_CSV, VAL_COLUMNS)
        self.tb = None
        if enabled:
            out_dir.mkdir(parents=True, exist_ok=True)
            _truncate_after(self.train_csv.path, start_step)
            _truncate_after(self.val_csv.path, start_step)
            if tensorboard:
                self.tb = _tensorboard(out_dir / TENSORBOARD_DIR, start_step)
        self.bar = tqdm(
            total=total_steps, initial=start_step, disable=not (enabled and progress),
            dynamic_ncols=True, unit="step",
        )

    def train(self, row: dict[str, Any]) -> None:
        self.bar.set_postfix(
            {k: f"{row[k]:.4g}" for k in ("loss", "bpp_est", "psnr", "epe")
             if isinstance(row.get(k), float) and math.isfinite(row[k])},
            refresh=False,
        )
        if not self.enabled:
            return
        self.train_csv.write(row)
        if self.tb is not None:
            for key in ("loss", "bpp_est", "psnr", "epe", "lr", "steps_per_s"):
                if isinstance(row.get(key), float):
                    self.tb.add_scalar(f"train/{key}", row[key], row["step"])

    def val(self, rows: list[dict[str, Any]]) -> None:
        if not self.enabled:
            return
        for row in rows:
            self.val_csv.write(row)
            if self.tb is not None:
                for key in ("bpp", "psnr", "warp_psnr", "epe"):
                    if isinstance(row.get(key), float):
                        self.tb.add_scalar(f"val/q{row['quality']}/{key}", row[key], row["step"])
        summary = "  ".join(
            f"q={r['quality']}: " + ", ".join(
                f"{k} {r[k]:.4g}" for k in ("bpp", "psnr", "warp_psnr", "epe")
                if isinstance(r.get(k), float)
            )
            for r in rows
        )
        weights = f" ({rows[0]['weights']} weights)" if rows[0].get("weights") else ""
        self.message(f"validation at step {rows[0]['step']}{weights}: {summary}")

    def message(self, text: str) -> None:
        if self.enabled:
            self.bar.write(text)

    def advance(self, steps: int = 1) -> None:
        self.bar.update(steps)

    def close(self) -> None:
        self.bar.close()
        if self.tb is not None:
            self.tb.flush()
            self.tb.close()


def _tensorboard(path: Path, start_step: int) -> Any:
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:  # tensorboard is an optional ([dev]) dependency
        warnings.warn("tensorboard is not installed: logging to CSV only", stacklevel=3)
        return None
    return SummaryWriter(str(path), purge_step=start_step if start_step > 0 else None)
