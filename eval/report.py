"""What a results file records besides numbers, and the README-ready markdown table.

A BD-rate is only meaningful with its context: which machine, which encoder builds,
which command. All of it goes into results.json so a number can be traced back.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import importlib
import json
import os
import platform
import subprocess
import sys
from collections.abc import Mapping, Sequence
from importlib import metadata
from pathlib import Path
from typing import Any

from dvc_edic.io.atomic import AtomicFile

# Packages whose versions change numbers (decoders, metrics, BD interpolation).
VERSIONED_PACKAGES = (
    "torch",
    "av",
    "numpy",
    "scipy",
    "bjontegaard",
    "pytorch-msssim",
    "pillow",
    "compressai",
    "dvc_edic",
)
# Decimal places in the markdown table.
PCT_DECIMALS = 2
DB_DECIMALS = 3
# Read size when hashing a file.
DIGEST_CHUNK = 1 << 20


def cpu_model() -> str:
    """The CPU's marketing name, so results from different machines can be told apart."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _git_commit() -> str | None:
    here = Path(__file__).resolve().parent
    try:
        proc = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=here,
            capture_output=True,
            text=True,
            check=False,
            timeout=10,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    if proc.returncode != 0:
        return None
    return proc.stdout.strip() or None


def _module_version(name: str) -> str | None:
    """__version__ of an importable but not installed module (a source checkout)."""
    try:
        module = importlib.import_module(name.replace("-", "_"))
    except ImportError:
        return None
    return str(getattr(module, "__version__", None) or "") or None


def machine_info(module: str, argv: Sequence[str] | None = None) -> dict[str, Any]:
    """CPU, cores, OS, package versions, command line and date of this run."""
    versions: dict[str, str | None] = {"python": platform.python_version()}
    for pkg in VERSIONED_PACKAGES:
        try:
            versions[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            versions[pkg] = _module_version(pkg)
    return {
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "platform": platform.platform(),
        "versions": versions,
        "command": [sys.executable, "-m", module, *(sys.argv[1:] if argv is None else argv)],
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "git_commit": _git_commit(),
    }


def file_sha256(path: Path) -> str:
    """Hex SHA-256 of a file, read in chunks (weights files are tens of MB)."""
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(DIGEST_CHUNK), b""):
            h.update(chunk)
    return h.hexdigest()


def write_text_atomic(path: Path, text: str) -> None:
    """Write a file so that a killed run leaves either the old file or the new one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with AtomicFile(path, overwrite=True) as f:
        f.write(text.encode("utf-8"))


def write_json_atomic(path: Path, data: Any) -> None:
    write_text_atomic(path, json.dumps(data, indent=1, allow_nan=False) + "\n")


def _cell(entry: Mapping[str, Any] | None) -> str:
    if not entry:
        return "n/a"
    if entry.get("bd_rate_pct") is None:
        return "n/a *" if entry.get("notes") else "n/a"
    text = f"{entry['bd_rate_pct']:+.{PCT_DECIMALS}f}%"
    if entry.get("bd_psnr_db") is not None:
        text += f" ({entry['bd_psnr_db']:+.{DB_DECIMALS}f} dB)"
    if entry.get("notes"):
        text += " *"
    return text


def markdown_table(
    title: str,
    anchor: str,
    metric: str,
    method: str,
    bd: Mapping[str, Mapping[str, Any]],
    sequences: Sequence[str],
    averages: Mapping[str, Mapping[str, Any]],
    setup: str,
) -> str:
    """BD-rate (BD-PSNR) of every codec against the anchor: one row per sequence, then averages.

    `bd[codec][sequence]` and `averages[codec][class]` hold BDResult JSON dicts.
    """
    codecs = [c for c in bd if c != anchor]
    lines = [
        f"### {title}: BD-rate vs {anchor}",
        "",
        f"BD-rate on {metric} over bpp ({method} interpolation, `bjontegaard` package); "
        f"BD-PSNR in brackets; negative BD-rate = fewer bits than {anchor}. {setup}",
        "",
        "| Sequence | " + " | ".join(codecs) + " |",
        "|---|" + "---|" * len(codecs),
    ]
    noted = False
    for seq in sequences:
        cells = [_cell(bd[c].get(seq)) for c in codecs]
        noted |= any(c.endswith("*") for c in cells)
        lines.append(f"| {seq} | " + " | ".join(cells) + " |")
    classes = sorted({k for c in codecs for k in averages.get(c, {})})
    for cls in classes:
        cells = [_cell(averages.get(c, {}).get(cls)) for c in codecs]
        lines.append(f"| **Average {cls}** | " + " | ".join(f"**{x}**" for x in cells) + " |")
    if noted:
        lines += ["", "\\* the bjontegaard package warned (see results.json, `notes`)."]
    return "\n".join(lines) + "\n"
