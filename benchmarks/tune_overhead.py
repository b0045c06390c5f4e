#!/usr/bin/env python3
"""Tune overhead: epoch time of the same fine-tune run inside Ray Tune and called directly.

    python benchmarks/tune_overhead.py              # tiny, bundled photos, 6 epochs, 3 repeats
    python benchmarks/tune_overhead.py --quick      # 3 epochs, 1 repeat

Both sides run ``trainables.trial.run_trial`` with the same config, seed and thread count
(``--threads``, default all cores; the Tune trial asks for that many CPUs): directly with a
local session (checkpoint to a folder), and as one Tune trial of ``hpcm_trainable``
(checkpoint through ``tune.report``, copied by Tune into its storage). Per-epoch time is the
time between two consecutive reports, training + validation + checkpoint included; the first
epoch is a warm-up and is left out. Runs alternate (direct, Tune, direct, Tune, ...) so that
load drifts hit both sides. Ray's start-up is reported apart. Target: ratio <= 1.02.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from trainables.spec import TrialSpec

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")  # bind 127.0.0.1, as the CLI


def threaded_trainable(config: dict) -> None:
    """hpcm_trainable with the benchmark's torch thread count (Ray sets 1 per CPU otherwise)."""
    import torch

    from trainables.tune_trainable import hpcm_trainable

    config = dict(config)
    torch.set_num_threads(config.pop("threads"))  # not a trial setting
    hpcm_trainable(config)


def trial_spec(args, checkpoint: str) -> TrialSpec:
    """The pre-trained tiny at its own lambda; no per-scale stopper: every run trains all
    epochs."""
    from trainables.spec import TrialSpec

    return TrialSpec(model="tiny", checkpoint=checkpoint).replace(
        lmbda=0.0483, crops_per_image=args.crops, epochs=args.epochs, seed=0)


def direct_epochs(spec: TrialSpec, threads: int) -> list[float]:
    import torch

    from trainables.local_session import LocalSession
    from trainables.trial import run_trial

    class Timed(LocalSession):
        def report(self, metrics, state):
            super().report(metrics, state)
            stamps.append(time.perf_counter())

    torch.set_num_threads(threads)
    stamps: list[float] = []
    with tempfile.TemporaryDirectory(prefix="hpcm-overhead-") as out:
        run_trial(spec, Timed(Path(out), resume=False))
    return [b - a for a, b in zip(stamps, stamps[1:])]


def tune_epochs(spec: TrialSpec, threads: int, storage: str, name: str) -> list[float]:
    from ray import tune

    tuner = tune.Tuner(
        tune.with_resources(threaded_trainable, {"cpu": threads}),
        param_space={**spec.to_config(), "threads": threads},
        run_config=tune.RunConfig(name=name, storage_path=storage, verbose=0,
                                  checkpoint_config=tune.CheckpointConfig(num_to_keep=1)))
    result = tuner.fit()[0]
    if result.error:
        raise SystemExit(f"the Tune trial failed: {result.error}")
    return result.metrics_dataframe["time_this_iter_s"].tolist()[1:]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--crops", type=int, default=4, help="crops per training photo")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument("--checkpoint", help="starting model (default: the pre-trained tiny)")
    parser.add_argument("--quick", action="store_true", help="3 epochs, 1 crop, 1 repeat")
    args = parser.parse_args()
    if args.quick:
        args.epochs, args.crops, args.repeats = 3, 1, 1
    import logging

    logging.basicConfig(level=logging.WARNING)
    if args.checkpoint is None:
        from trainables.pretrain import pretrained_tiny

        args.checkpoint = str(pretrained_tiny())
    spec = trial_spec(args, str(Path(args.checkpoint).resolve()))

    import ray

    start = time.perf_counter()
    ray.init(address="local", num_cpus=args.threads, include_dashboard=False,
             log_to_driver=False)
    ray_start = time.perf_counter() - start
    direct, tuned = [], []
    try:
        with tempfile.TemporaryDirectory(prefix="hpcm-overhead-tune-") as storage:
            for r in range(args.repeats):
                direct += direct_epochs(spec, args.threads)
                tuned += tune_epochs(spec, args.threads, storage, f"overhead-{r}")
    finally:
        ray.shutdown()
    d, t = statistics.median(direct), statistics.median(tuned)
    print(f"tiny, bundled photos, {args.crops} crops/photo, batch 8, {args.threads} threads, "
          f"{args.epochs} epochs x {args.repeats} repeat(s); first epoch of each run left out")
    print(f"{'':<10}{'median s/epoch':>16}{'mean':>8}{'min':>8}{'max':>8}{'epochs':>8}")
    for label, xs in (("direct", direct), ("Tune", tuned)):
        print(f"{label:<10}{statistics.median(xs):>16.3f}{statistics.mean(xs):>8.3f}"
              f"{min(xs):>8.3f}{max(xs):>8.3f}{len(xs):>8}")
    print(f"Tune / direct epoch time: {t / d:.3f} (target <= 1.02: "
          f"{'met' if t / d <= 1.02 else 'NOT met'}); ray.init took {ray_start:.1f} s once")


if __name__ == "__main__":
    main()
