"""``python -m eval.compare RESULTS.json [...] [--out table.md]``: settings side by side.

An encoder tool earns its place by bits saved per encode time spent. This joins
the results of one or more ``eval.rd`` runs of the same set (e.g. one run per
preset) into one table: each non-anchor codec's BD-rate against the anchor, per
sequence and averaged, with the median encode and decode speed per sequence.
Speeds are frames over the wall time of the CLI call, start-up included, on
whatever the machine was doing then: compare rows of one run, not across runs.

``--against-first [--rates 1,3,5,8]`` answers the question a change asks: how
many bits does each later run's dvc_edic curve save against the first run's
(new weights against old, slow against medium), BD-rate per sequence over the
rate points both runs coded, with each point's byte and PSNR change.
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
from eval.bd import MIN_POINTS, bd_compare
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


def _points(report: dict[str, Any], codec: str, seq: str,
            rates: set[float] | None) -> dict[float, dict[str, Any]]:
    return {p["rate_param"]: p for p in report["results"].get(codec, {}).get(seq, [])
            if rates is None or p["rate_param"] in rates}


def against_first(reports: list[dict[str, Any]], names: list[str],
                  rates: set[float] | None = None, codec: str = "dvc_edic") -> str:
    """BD-rate of each later report's ``codec`` curve against the first report's, with the
    first report's BD metric and interpolation (as eval.rd measured it against the anchor)."""
    base = reports[0]
    metric, method = base["bd"]["metric"], base["bd"]["method"]
    lines = [f"BD-rate ({metric}) of {codec} against {names[0]}, over the rate points both "
             "coded; per point: bytes change / quality change.\n"]
    for name, report in zip(names[1:], reports[1:], strict=True):
        lines.append(f"{name}:")
        found = []
        for seq in base["results"].get(codec, {}):
            a, b = _points(base, codec, seq, rates), _points(report, codec, seq, rates)
            common = sorted(set(a) & set(b))
            if len(common) < MIN_POINTS:
                lines.append(f"  {seq}: fewer than {MIN_POINTS} common rate points")
                continue
            pa, pb = [a[r] for r in common], [b[r] for r in common]
            bd = bd_compare([p["bpp"] for p in pa], [p["avg"][metric] for p in pa],
                            [p["bpp"] for p in pb], [p["avg"][metric] for p in pb],
                            method=method)
            found.append(bd.bd_rate_pct)
            per_point = " ".join(
                f"{r:g}: {q['bits'] / p['bits'] - 1:+.2%} / "
                f"{q['avg'][metric] - p['avg'][metric]:+.3f}"
                for r, p, q in zip(common, pa, pb, strict=True))
            lines.append(f"  {seq}: {_num(bd.bd_rate_pct, '+.2f')} %  [{per_point}]")
        if found and None not in found:
            lines.append(f"  average: {statistics.mean(found):+.2f} %")
    return "\n".join(lines) + "\n"


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
    p.add_argument("--against-first", action="store_true",
                   help="BD-rate of each later run's dvc_edic curve against the first run's")
    p.add_argument("--rates", help="with --against-first: only these rate points (e.g. 1,3,5,8)")
    args = p.parse_args(argv)
    reports = [_load(Path(f)) for f in args.results]
    if args.rates and not args.against_first:
        raise InputError("--rates applies to --against-first only")
    if args.against_first:
        if len(reports) < 2:
            raise InputError("--against-first needs at least two results files")
        try:
            rates = None if not args.rates else {float(r) for r in args.rates.split(",")}
        except ValueError as exc:
            raise InputError(f"--rates must be numbers separated by commas, got "
                             f"{args.rates!r}") from exc
        text = against_first(reports, list(args.results), rates)
    else:
        text = table(reports)
    print(text, end="")
    if args.out:
        write_text_atomic(Path(args.out), text)
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main, None))
