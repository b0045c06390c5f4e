#!/usr/bin/env python3
"""Start-up time of the CLI: ``tune_main.py --help`` against a bare interpreter, side by side.

    python benchmarks/startup.py            # 7 runs of each, medians
    python benchmarks/startup.py --quick    # 3 runs

Also times ``run --help`` and the heavy imports the CLI defers (torch, ray, optuna), so the
ratio shows what --help would cost if they were imported at the top. Target: --help < 1 s.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def wall(cmd: list[str], runs: int) -> float:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run(cmd, cwd=REPO, check=True, stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--quick", action="store_true", help="3 runs of each")
    args = parser.parse_args()
    runs = 3 if args.quick else args.runs
    py = sys.executable
    rows = [
        ("python -c pass", [py, "-c", "pass"]),
        ("tune_main.py --help", [py, "tune_main.py", "--help"]),
        ("tune_main.py run --help", [py, "tune_main.py", "run", "--help"]),
        ("import torch", [py, "-c", "import torch"]),
        ("import ray.tune", [py, "-c", "import ray.tune"]),
        ("import optuna", [py, "-c", "import optuna"]),
    ]
    results = {label: wall(cmd, runs) for label, cmd in rows}
    base = results["python -c pass"]
    print(f"median wall time of {runs} runs each ({py})")
    print(f"{'command':<26}{'seconds':>9}{'x bare python':>15}")
    for label, seconds in results.items():
        print(f"{label:<26}{seconds:>9.3f}{seconds / base:>15.1f}")
    helped = results["tune_main.py --help"]
    print(f"--help: {helped:.3f} s (target < 1 s: {'met' if helped < 1 else 'NOT met'}); "
          f"{helped - base:.3f} s above a bare interpreter")


if __name__ == "__main__":
    main()
