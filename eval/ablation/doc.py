"""docs/ablations.md from results.json: the table, the RD plots and one paragraph per claim.

Every number in the page comes from results.json, and every verdict from a rule
stated in the page (:func:`verdict`): a claim that EDIC saves bits holds ("yes")
when each of its variants needs more than ``verdict.margin_pct`` percent more bits
than EDIC for the same PSNR-RGB (BD-rate) with the whole budget, and none points
the other way with half of it; it fails ("no") when each needs that much fewer; a
claim that EDIC is on par holds when none needs that much fewer; anything else is
"unclear". A
run whose budget is below ``budget.min_cpu_minutes`` is a smoke test: the page
says so at the top and draws no verdict. Without results (``--pending``) the page
states the method and the command, and that nothing has been measured yet.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from eval.ablation.plan import FEWER_BITS, ON_PAR, Claim, Plan, parse_plan
from eval.ablation.runner import SECONDS_PER_MINUTE, share_key
from eval.image_rd import bd_or_note
from eval.plots import plot_rd
from eval.report import write_text_atomic

BD_METHOD = "pchip"
YES, NO, UNCLEAR, SMOKE = "yes", "no", "unclear", "none (smoke run)"
MEGA = 1e6
PLOT_FOLDER = "ablations"  # beside the page: docs/ablations/rd_*.png
COMMAND = "python -m eval.ablation run"


@dataclass(frozen=True)
class Row:
    """One variant at one share of the budget."""

    name: str
    label: str
    curve: dict[str, list[float]]
    steps: list[int]  # per run
    cpu_minutes: float  # all runs
    decode_s: float | None
    complexity: Mapping[str, Any]
    bd: dict[str, Any] | None  # against the reference; None for the reference itself
    dominated: list[float] = dataclasses.field(default_factory=list)  # qualities left out


def pareto_front(points: Iterable[Mapping[str, Any]]) -> tuple[list[Mapping[str, Any]],
                                                               list[Mapping[str, Any]]]:
    """The points no cheaper point matches in PSNR, by rate, and the rest.

    A briefly trained variable-rate model can give a higher quality level more bits
    and no more PSNR; no encoder would choose that level, and BD-rate needs a rising
    curve, so such points leave the curve (the page names them)."""
    kept: list[Mapping[str, Any]] = []
    dropped: list[Mapping[str, Any]] = []
    for p in sorted(points, key=lambda p: p["bpp"]):
        if kept and p["psnr_rgb"] <= kept[-1]["psnr_rgb"]:
            dropped.append(p)
        else:
            kept.append(p)
    return kept, dropped


def rows(results: Mapping[str, Any], plan: Plan, share: float) -> dict[str, Row]:
    """Every variant measured at ``share``, with its BD against the reference."""
    key = share_key(share)
    out: dict[str, Row] = {}
    for name, entry in results["variants"].items():
        runs = [r["measurements"][key] for r in entry["runs"].values()
                if key in r["measurements"]]
        expected = 1 if entry["kind"] == "edic" else len(plan.levels)
        if len(runs) < max(expected, len(entry["runs"])) or not runs:
            continue  # not every run of the variant has got there yet (or begun)
        points, dominated = pareto_front(p for m in runs for p in m["points"])
        decode = next((m["decode"] for m in runs if "decode" in m), None)
        out[name] = Row(
            name=name, label=entry["label"],
            curve={k: [p[k] for p in points] for k in ("bpp", "psnr_rgb", "rate_param")},
            dominated=[p["rate_param"] for p in dominated],
            steps=[m["steps"] for m in runs],
            cpu_minutes=sum(m["cpu_s"] for m in runs) / SECONDS_PER_MINUTE,
            decode_s=None if decode is None else decode["seconds"],
            complexity=entry.get("complexity", {}), bd=None)
    reference = out.get(plan.reference)
    if reference is None:
        return out
    for name, row in out.items():
        if name != plan.reference:
            bd = bd_or_note(reference.curve, row.curve, plan.reference, name, BD_METHOD)
            out[name] = dataclasses.replace(row, bd=bd)
    return out


def bd_rate(row: Row | None) -> float | None:
    return None if row is None or row.bd is None else row.bd["bd_rate_pct"]


def bd_psnr(row: Row | None) -> float | None:
    return None if row is None or row.bd is None else row.bd["bd_psnr_db"]


def _negated(value: float | None) -> float | None:
    return None if value is None else -value


def verdict(full: float | None, half: float | None, margin: float,
            test: str = FEWER_BITS) -> str:
    """One variant against the reference (BD-rate in %, positive: the variant needs more
    bits than the reference).

    fewer_bits: yes when the variant needs more than ``margin`` % more bits with the
    whole budget and half of it does not point the other way; no when it needs that
    much fewer. on_par: yes when the variant needs at most ``margin`` % fewer bits at
    both measuring points (the reference is as good or better), no when it needs more
    than that fewer at both; a ranking that changes between them is unclear.
    """
    if full is None:
        return UNCLEAR
    if test == ON_PAR:
        held = [b >= -margin for b in (full, half) if b is not None]
        return YES if all(held) else NO if not any(held) else UNCLEAR
    for sign, word in ((1.0, YES), (-1.0, NO)):
        if sign * full > margin:
            return word if half is None or sign * half >= -margin else UNCLEAR
    return UNCLEAR


def ranking_changed(full: float | None, half: float | None, margin: float) -> bool:
    """Whether the variant and the reference swapped places between the two measuring
    points, each time by more than ``margin`` %."""
    return full is not None and half is not None and full * half < 0 \
        and min(abs(full), abs(half)) > margin


def claim_verdict(verdicts: Sequence[str]) -> str:
    if verdicts and all(v == YES for v in verdicts):
        return YES
    if verdicts and all(v == NO for v in verdicts):
        return NO
    return UNCLEAR


# ------------------------------------------------------------------ text
def shown(path: Path) -> str:
    """A path as the page shows it: relative to the folder the command runs in, if inside."""
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{value:+.1f} %"


def _seconds(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f} s"


def _bd_cell(row: Row) -> str:
    if row.bd is None:
        return "reference"
    db = row.bd["bd_psnr_db"]
    return (_pct(row.bd["bd_rate_pct"]) + ("" if db is None else f" ({db:+.2f} dB)")
            + (" *" if row.bd["notes"] else ""))


def table(table_rows: Mapping[str, Row], threads: int) -> list[str]:
    lines = [
        f"| variant | BD-rate (BD-PSNR) vs EDIC, PSNR-RGB | decode 768×512, {threads} threads | "
        "parameters | kMAC/pixel (decoder / all) | training steps | CPU-minutes |",
        "|---|---|---|---|---|---|---|",
    ]
    notes = []
    for row in table_rows.values():
        c = row.complexity
        steps = str(sum(row.steps)) + ("" if len(row.steps) == 1 else
                                       f" ({' + '.join(map(str, row.steps))})")
        macs = (f"{c['decoder_kmac_per_pixel']:.1f} / {c['kmac_per_pixel']:.1f}"
                if c else "n/a")
        params = f"{c['parameters'] / MEGA:.2f} M" if c else "n/a"
        lines.append(f"| {row.label} | {_bd_cell(row)} | {_seconds(row.decode_s)} | {params} "
                     f"| {macs} | {steps} | {row.cpu_minutes:.1f} |")
        if row.bd and row.bd["notes"]:
            notes.append(f"- \\* {row.label}: {'; '.join(row.bd['notes'])}")
        if row.dominated:
            notes.append(f"- {row.label}: quality {', '.join(f'{q:g}' for q in row.dominated)} "
                         "left out of the curve (more bits than a lower quality for no more "
                         "PSNR-RGB)")
    return [*lines, *(["", *notes] if notes else [])]


def method(plan: Plan) -> list[str]:
    ev = plan.evaluation
    runs = len(plan.levels)
    split = (f"the {runs} runs share the variant's budget ({plan.cpu_minutes / runs:g} "
             "CPU-minutes each), so the variant costs what an EDIC variant costs, and each "
             f"of its models trains for 1/{runs} of what one EDIC model gets: the price of "
             "single-rate models is part of what is compared (`baselines.split_budget: "
             "false` gives each run the whole budget instead)"
             if plan.split_budget else
             f"each of the {runs} runs gets the whole budget ({runs} times an EDIC variant's)")
    holdout = ("all the photos of the folder" if ev.holdout is None else
               f"the photos stage 1 holds back (fraction {ev.holdout[0]:g}, seed "
               f"{ev.holdout[1]})")
    crop = "" if ev.crop is None else f", centre-cropped to {ev.crop[1]}×{ev.crop[0]}"
    first = "" if ev.max_images is None else f" (the first {ev.max_images})"
    switches = yaml.safe_dump(dict(ev.encoder), default_flow_style=True, sort_keys=False).strip()
    folder = plan.raw["evaluation"]["images"]  # as the plan writes it (~ unexpanded)
    return [
        "## How it was measured",
        "",
        f"- **Training.** Every variant trains with `python -m dvc_edic.train`'s loop from "
        f"`{plan.base}` (its data, crops, batch, seed, optimizer and learning-rate schedule), "
        f"with {', '.join(f'`{t}`' for t in plan.train) or 'no changes'}, from random "
        "weights, on the same batches in the same order, under the same loss (λ·255²·MSE "
        "over the Y, U and V samples + bits per pixel from the likelihoods).",
        f"- **Budget.** {plan.cpu_minutes:g} CPU-minutes a variant: the process CPU time "
        "of its optimizer steps, every thread summed (`cpu_budget_minutes`; loading the "
        "batches is left out: it is the same work per step whatever trains; idle threads "
        "wait without spinning, as the package sets `OMP_WAIT_POLICY=PASSIVE`); the "
        "schedule's decays fall at the same shares of it, and the steps it buys depend on "
        "the machine, so the tables give them. "
        f"Measured at {', '.join(f'{s:g}' for s in plan.measure_at)} of the budget, "
        "on the EMA of the weights.",
        f"- **Variable rate.** The EDIC variants are one variable-rate model each (quality "
        f"drawn per sample, as in stage 1), measured at qualities "
        f"{', '.join(f'{q:g}' for q in ev.edic_qualities)}. CompressAI's models are "
        f"single-rate: one run per λ of quality levels "
        f"{', '.join(f'{q:g}' for q in plan.levels)} of the same ladder; {split}.",
        f"- **Rate and quality.** Real bytes on {holdout} of `{folder}`{first}{crop}; "
        "PSNR-RGB on 8-bit RGB, both averaged over the photos. Every coder codes the "
        "same BT.709 full-range 4:2:0 picture (dvc_edic.image's conversion) and its "
        "output goes back to RGB the same way. EDIC variants write dvc_edic.image streams "
        f"with the encoder's tools set as `{switches}`; CompressAI's write their own "
        "`compress` strings behind an 8-byte header (size, y's length). Every coder is "
        "charged its entropy-coded bytes plus those 8: an EDIC stream's container header "
        "(model id, weights hash, CRC; about 110 bytes) is left out, as CompressAI's "
        "strings identify no weights (results.json keeps the streams' whole length).",
        f"- **Decode time.** The decoder alone on a {ev.decode.width}×{ev.decode.height} "
        f"centre crop of the first photo coded at quality {ev.decode.level:g}, "
        f"{ev.decode.threads} threads, the fastest of {ev.decode.repeats} after one "
        "warm-up decode. mbt2018's decoder is CompressAI's: one Python-level step per "
        "latent position, so its time says more of that implementation than of the model. "
        "kMAC/pixel counts convolutions per source pixel (the decoder's "
        "modules, and encoder and decoder together); parameters are the image coder's.",
        "- **Curves.** A quality level that gets more bits than a lower one for no more "
        "PSNR-RGB (briefly trained variable-rate models do this at the top of their ladder) "
        "leaves its variant's curve, as no encoder would choose it and BD-rate needs a "
        "rising curve; the notes under each table name such levels. BD-PSNR (dB, positive: "
        "the variant is better) stands beside each BD-rate: on the flat curves of a short "
        "budget a small PSNR difference is a large BD-rate.",
        f"- **Verdicts.** A claim that EDIC saves bits holds (yes) when each of its variants "
        f"needs more than {plan.margin_pct:g} % more bits than EDIC (BD-rate, pchip) with "
        "the whole budget and none points the other way with half of it; no when each "
        "needs that much fewer; otherwise unclear. Where two curves share no PSNR range "
        f"(BD-rate undefined) the same rule runs on BD-PSNR with a {plan.margin_db:g} dB "
        "margin. A claim that EDIC is on par holds when "
        f"no variant needs more than {plan.margin_pct:g} % fewer bits than EDIC at either "
        "measuring point, and fails when one does at both.",
    ]


def claim_paragraph(claim: Claim, plan: Plan, full: Mapping[str, Row],
                    half: Mapping[str, Row], smoke: bool) -> list[str]:
    reference = full.get(plan.reference)
    sentences, verdicts = [], []
    for name in claim.variants:
        row = full.get(name)
        if row is None:
            sentences.append(f"{plan.variant(name).label}: not measured yet.")
            verdicts.append(UNCLEAR)
            continue
        b_full, b_half = bd_rate(row), bd_rate(half.get(name))
        text = (f"{row.label}: BD-rate {_pct(b_full)} against EDIC with the whole budget, "
                f"{_pct(b_half)} with {plan.measure_at[0]:g} of it")
        margin = plan.margin_pct
        if b_full is None and bd_psnr(row) is not None:
            # the curves share no PSNR range (BD-rate is undefined) but do share rates:
            # judge by BD-PSNR, negated so that positive still means worse than EDIC
            b_full, b_half = -bd_psnr(row), _negated(bd_psnr(half.get(name)))
            margin = plan.margin_db
            text += (f"; the curves share no PSNR range, so BD-PSNR decides: {-b_full:+.2f} "
                     f"dB against EDIC with the whole budget"
                     + ("" if b_half is None else f", {-b_half:+.2f} dB with "
                        f"{plan.measure_at[0]:g} of it")
                     + f" (margin {plan.margin_db:g} dB)")
        verdicts.append(verdict(b_full, b_half, margin, claim.test))
        if ranking_changed(b_full, b_half, margin):
            text += " (the ranking against EDIC changed between the two)"
        if reference is not None and row.decode_s is not None:
            text += (f"; it decodes {plan.evaluation.decode.width}×"
                     f"{plan.evaluation.decode.height} in {_seconds(row.decode_s)} against "
                     f"EDIC's {_seconds(reference.decode_s)}")
            if reference.decode_s:
                text += f" ({row.decode_s / reference.decode_s:.2f} times EDIC's time)"
        sentences.append(text + ".")
    outcome = SMOKE if smoke else claim_verdict(verdicts)
    expects = ("as the claim expects" if claim.test == FEWER_BITS else
               f"the claim holds while it stays above -{plan.margin_pct:g} %")
    return [f"### {claim.text}: **{outcome}**", "", " ".join(sentences) + " (BD-rate above "
            f"0: more bits than EDIC for the same PSNR-RGB; {expects}.)", ""]


def status(results: Mapping[str, Any] | None, plan: Plan, full: Mapping[str, Row]) -> list[str]:
    if results is None:
        return [f"> **Status: not run yet.** Nothing on this page is a measurement. The run "
                f"is one command, `{COMMAND}`: {len(plan.variants)} variants × "
                f"{plan.cpu_minutes:g} CPU-minutes of training, then the measurements (the "
                "plan's header says how long that takes); it rewrites this page with the "
                "results."]
    machine = results["machine"]
    when = f"{machine.get('date', 'n/a')}, commit {machine.get('git_commit', 'n/a')}"
    lines = [f"> Measured by `{COMMAND}` ({when}; {machine.get('cpu', 'n/a')})."]
    if plan.is_smoke:
        lines.append(f"> **Smoke run: {plan.cpu_minutes:g} CPU-minutes a variant, below the "
                     f"{plan.min_cpu_minutes:g} a result needs. The numbers show that the "
                     "machinery works, not whether the claims hold; no verdict is drawn.**")
    retimed = [m["decode"]["retimed"] for entry in results["variants"].values()
               for r in entry["runs"].values() for m in r["measurements"].values()
               if "retimed" in m.get("decode", {})]
    if retimed:
        dates = sorted(t["date"] for t in retimed)
        loads = [t["load_average"][0] for t in retimed]
        lines.append(f"> Decode times with the whole budget: timed again back to back by "
                     f"`python -m eval.ablation retime` ({len(retimed)} runs, {dates[0]} to "
                     f"{dates[-1]}; 1-minute load average {min(loads):.2f}-{max(loads):.2f} "
                     "as each began); the timings taken as each run ended are kept in "
                     "results.json as `decode_first`.")
    missing = [v.label for v in plan.variants if v.name not in full]
    if results["status"] != "complete" or missing:
        lines.append(f"> **Partial:** not measured with the whole budget yet: "
                     f"{', '.join(missing) or 'n/a'}.")
    return lines


def plots(full: Mapping[str, Row], half: Mapping[str, Row], folder: Path) -> list[Path]:
    made = []
    for name, table_rows in (("full", full), ("half", half)):
        if table_rows:
            curves = {r.label: r.curve for r in table_rows.values()}
            made.append(plot_rd(curves, f"Held-back photos, {name} budget",
                                folder / f"rd_{name}.png", panels=("psnr_rgb",)))
    return made


def render(results: Mapping[str, Any] | None, plan: Plan, doc: Path) -> str:
    """The page; its plots are written beside it, in ``ablations/``."""
    full = {} if results is None else rows(results, plan, plan.measure_at[-1])
    half = ({} if results is None or len(plan.measure_at) < 2
            else rows(results, plan, plan.measure_at[0]))
    threads = plan.evaluation.decode.threads
    lines = ["# Ablations: EDIC's claims at an equal training budget", "",
             *status(results, plan, full), "",
             "Issue 15: EDIC against Ballé's and Minnen's hyperprior coders, its mixture "
             "against one Gaussian, its enhancement and its channel attention on and off, "
             "each trained the same way for the same CPU time. The plan is "
             f"`{shown(plan.path)}`; `python -m eval.ablation retime` then times every "
             "decoder again back to back on idle cores, and `python -m eval.ablation report "
             "RESULTS` rewrites this page from the run folder's results.json "
             "(runs/ablation/ by default).", "",
             *method(plan), ""]
    if results is not None:
        images = ", ".join(results["images"])
        lines += ["## Results", "", f"Photos: {images}.", ""]
        for title, table_rows, name in (("The whole budget", full, "full"),
                                        (f"{plan.measure_at[0]:g} of the budget", half, "half")):
            if table_rows:
                lines += [f"### {title}", "", *table(table_rows, threads), "",
                          f"![RD curves, {name} budget]({PLOT_FOLDER}/rd_{name}.png)", ""]
        plots(full, half, doc.parent / PLOT_FOLDER)
        lines += ["## The claims", ""]
        for claim in plan.claims:
            lines += claim_paragraph(claim, plan, full, half, plan.is_smoke)
    lines.append(f"_Written by eval.ablation.doc on {_dt.date.today().isoformat()}._")
    return "\n".join(lines) + "\n"


def write_doc(results: Mapping[str, Any] | None, plan: Plan, doc: Path) -> Path:
    write_text_atomic(doc, render(results, plan, doc))
    return doc


def plan_of(results: Mapping[str, Any]) -> Plan:
    """The plan a results file was made with, as it was then."""
    return parse_plan(dict(results["plan"]), Path(results["plan_path"]))
