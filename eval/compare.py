"""``python -m eval.compare RESULTS.json [...] [--out table.md]``: settings side by side.

An encoder tool earns its place by bits saved per encode time spent. This joins
the results of one or more ``eval.rd`` runs of the same set (e.g. one run per
preset) into one table: each non-anchor codec's BD-rate against the anchor, per
sequence and averaged, with the median encode and decode speed per sequence.
Speeds are frames over the wall time of the CLI call, start-up included, on
whatever the machine was doing then: compare rows of one run, not across runs.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from dvc_edic.cli import run_cli
from dvc_edic.errors import InputError
from eval.report import write_text_atomic


def _fps(points: list[dict[str, Any]], key: str) -> float | None:
    rates = [len(p["per_frame"]) / p[key] for p in points if p.get(key) and p.get("per_frame")]
    return statistics.median(rates) if rates else None


def rows(report: dict[str, Any]) -> list[tuple[str, float | None, dict[str, Any]]]:
    """(codec, average BD-rate %, {sequence: (BD-rate %, encode fps, decode fps)})."""
    metric = report["bd"]["metric"]
    anchor = report["bd"]["anchor"]
    by_seq = report["bd_rate"][metric]
    averages = report["bd_rate_class_average"][metric]
    out = []
    for codec, per_seq in report["results"].items():
        if codec == anchor or report["codecs"][codec]["kind"] != "dvc_edic":
            continue
        cells = {}
        for seq, points in per_seq.items():
            bd = by_seq.get(codec, {}).get(seq, {}).get("bd_rate_pct")
            cells[seq] = (bd, _fps(points, "encode_s"), _fps(points, "decode_s"))
        avg = [v.get("bd_rate_pct") for v in averages.get(codec, {}).values()]
        out.append((codec, avg[0] if len(avg) == 1 else None, cells))
    return out


def _num(value: float | None, fmt: str) -> str:
    return "–" if value is None else format(value, fmt)


def table(reports: list[dict[str, Any]]) -> str:
    sequences: list[str] = []
    for r in reports:
        sequences += [s for s in r["sequences"] if s not in sequences]
    anchors = sorted({r["bd"]["anchor"] for r in reports})
    head = (
        f"BD-rate ({reports[0]['bd']['metric']}) vs {', '.join(anchors)}; fps = median over "
        "the rate points of frames / wall time of the encode (decode) command, start-up "
        "included.\n\n"
        "| codec | average | "
        + " | ".join(f"{s} BD-rate | {s} enc fps | {s} dec fps" for s in sequences)
        + " |\n|---|---|" + "---|---|---|" * len(sequences) + "\n"
    )
    lines = []
    for r in reports:
        for codec, avg, cells in rows(r):
            parts = [f"{codec}", _num(avg, "+.1f") + " %"]
            for s in sequences:
                bd, enc, dec = cells.get(s, (None, None, None))
                parts += [_num(bd, "+.1f") + " %", _num(enc, ".2f"), _num(dec, ".2f")]
            lines.append("| " + " | ".join(parts) + " |")
    return head + "\n".join(lines) + "\n"


def _load(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise InputError(f"{path}: results file not found (written by python -m eval.rd)")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise InputError(f"{path}: not a JSON results file ({exc})") from exc


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m eval.compare", description=__doc__.split("\n")[0])
    p.add_argument("results", nargs="+", help="results.json files written by eval.rd")
    p.add_argument("--out", help="also write the markdown table here")
    args = p.parse_args(argv)
    reports = [_load(Path(f)) for f in args.results]
    text = table(reports)
    print(text, end="")
    if args.out:
        write_text_atomic(Path(args.out), text)
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main, None))
