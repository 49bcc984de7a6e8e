"""How long the command-line tools keep a user waiting before they answer.

    python -m bench.bench_startup [--runs 5] [--out bench/results/startup.json]

(or ``python bench/bench_startup.py``: it needs only the standard library and numpy).

Two numbers, each the median wall time of ``--runs`` fresh interpreters
(subprocesses, as a user starts them):

- ``--help``: ``python -m dvc_edic.encode_sequence --help`` until it exits (and
  the same for decode_sequence and image). Target: 1.5 s on an idle 2-core machine.
- first line: ``python -m dvc_edic.encode_sequence clip.yuv ...`` until text first
  appears on its stderr (read unbuffered, so a progress bar's first frame, which
  ends in no newline, counts too); the encode is then interrupted (Ctrl-C, as a
  user would). Target: 3 s.

Both depend on the imports the tools do before answering: torch takes seconds
to import, so the tools import it only after printing. What those imports cost
is recorded beside the two numbers (``import_s``: ``python -c "import torch"``,
the same for dvc_edic.codec, the codec as an encode loads it after its first
line, and for compressai, which the codec no longer imports: its package init
imports torch_geometric and scipy.stats, the seconds dvc_edic saves by owning
the two layers it used), since it is the wait between the first line and the
first frame. A startup benchmark on a loaded machine measures the load as much
as the code, so the load average before and after is recorded with the numbers.

The clip is a synthetic 176x144 raw YUV written to a temporary folder, and the
run uses the shipped weights (or the untrained fallback): neither changes how
soon the first line appears, which is printed before the model loads.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_OUT = ROOT / "bench" / "results" / "startup.json"
HELP_TOOLS = ("dvc_edic.encode_sequence", "dvc_edic.decode_sequence", "dvc_edic.image")
IMPORTS = ("torch", "compressai", "dvc_edic.codec")  # each alone in a fresh interpreter
WIDTH, HEIGHT, FRAMES = 176, 144, 2
HELP_TARGET_S = 1.5
FIRST_LINE_TARGET_S = 3.0
TIMEOUT_S = 120.0  # a run that takes this long is broken, not slow


def _env() -> dict[str, str]:
    """The user's environment, with passive OpenMP waiting as the tools themselves set."""
    return {**os.environ, "OMP_WAIT_POLICY": "PASSIVE"}


def time_help(module: str) -> float:
    """Wall seconds from starting ``python -m module --help`` to its exit."""
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-m", module, "--help"], cwd=ROOT, env=_env(), check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=TIMEOUT_S)
    return time.perf_counter() - t0


def time_import(module: str) -> float:
    """Wall seconds of ``python -c "import module"``, interpreter start-up included."""
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-c", f"import {module}"], cwd=ROOT, env=_env(), check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=TIMEOUT_S)
    return time.perf_counter() - t0


def time_first_line(clip: Path, out: Path) -> tuple[float, str]:
    """Wall seconds from starting an encode until text first appears on its stderr, and
    that line (up to a newline or a carriage return, which ends a progress bar's frame)."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, "-m", "dvc_edic.encode_sequence", str(clip), "-o", str(out), "--force"],
        cwd=ROOT, env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )
    elapsed = None
    text = b""
    try:
        assert proc.stderr is not None
        fd = proc.stderr.fileno()
        while True:
            byte = os.read(fd, 1)  # unbuffered: the moment the tool writes, not when a line ends
            if not byte:
                break
            if elapsed is None and not byte.isspace():
                elapsed = time.perf_counter() - t0
            if elapsed is not None and byte in b"\r\n":
                break
            text += byte
        proc.send_signal(signal.SIGINT)  # what the user would do; the tool cleans up
        proc.communicate(timeout=TIMEOUT_S)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    if elapsed is None:
        raise RuntimeError(f"the encoder exited with code {proc.returncode} before printing")
    return elapsed, text.decode(errors="replace").strip()


def write_clip(path: Path) -> Path:
    """A random 8-bit 4:2:0 clip: its content does not change the time to the first line."""
    rng = np.random.default_rng(0)
    size = WIDTH * HEIGHT * 3 // 2 * FRAMES
    path.write_bytes(rng.integers(0, 256, size, dtype=np.uint8).tobytes())
    return path


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.bench_startup",
                                description=__doc__.split("\n")[0])
    p.add_argument("--runs", type=int, default=5, help="interpreters started per number")
    p.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = p.parse_args(argv)
    load_before = os.getloadavg()
    help_runs = {m: [time_help(m) for _ in range(args.runs)] for m in HELP_TOOLS}
    with tempfile.TemporaryDirectory() as tmp:
        clip = write_clip(Path(tmp) / f"bench_{WIDTH}x{HEIGHT}_30.yuv")
        firsts = [time_first_line(clip, Path(tmp) / "bench.dvce") for _ in range(args.runs)]
    import_runs = {m: [time_import(m) for _ in range(args.runs)] for m in IMPORTS}
    load_after = os.getloadavg()
    first_runs = [t for t, _ in firsts]
    result = {
        "help_s": {m: statistics.median(t) for m, t in help_runs.items()},
        "help_runs_s": help_runs,
        "help_target_s": HELP_TARGET_S,
        "first_line_s": statistics.median(first_runs),
        "first_line_runs_s": first_runs,
        "first_line_target_s": FIRST_LINE_TARGET_S,
        "first_line": firsts[0][1],
        "import_s": {m: statistics.median(t) for m, t in import_runs.items()},
        "import_runs_s": import_runs,
        "runs": args.runs,
        "load_average_before": list(load_before),
        "load_average_after": list(load_after),
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "note": "median wall time of fresh interpreters; a loaded machine (see the load "
                "averages) inflates every number",
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    for m, t in result["help_s"].items():
        print(f"{m} --help: {t:.2f} s (median of {args.runs}; target {HELP_TARGET_S} s)")
    print(f"encode first line: {result['first_line_s']:.2f} s (target {FIRST_LINE_TARGET_S} s): "
          f"{result['first_line']}")
    for m, t in result["import_s"].items():
        print(f"python -c 'import {m}': {t:.2f} s (median of {args.runs})")
    print(f"load average {load_before[0]:.2f} before, {load_after[0]:.2f} after, "
          f"{os.cpu_count()} cores -> {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
