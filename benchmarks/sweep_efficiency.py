#!/usr/bin/env python3
"""Sweep efficiency on the demo task: how much compute each search method spends to get
within 0.5 % of the best loss any method found, over several seeds.

    python benchmarks/sweep_efficiency.py                   # 16 trials, 12 epochs, seeds 0-2
    python benchmarks/sweep_efficiency.py --quick           # 4 trials, 3 epochs, 1 seed: a smoke run
    python benchmarks/sweep_efficiency.py --json out.json --plot out.png

Every method is ``trainables.sweep.run_sweep`` (the path of ``tune_main.py run``) on the demo
task (``trainables.demo.DEMO_TASK``: the pre-trained tiny fine-tuned to a lower rate), with
the same trial count and epoch budget; in repeat ``r`` every method uses seed ``r`` for its
sampler and its training, so a configuration trains the same way whichever method picked
it. Only the search differs:

- grid: the original report's ablation (``--preset seed-ablation``: its 6 distinct configs),
  every trial at full budget;
- random+fifo, tpe+fifo: Optuna's random sampler / our TPE, every trial at full budget;
- tpe+stopper: TPE, the per-scale stopper ends converged trials;
- tpe+asha: TPE, ASHA culls trials behind at a rung, never a baseline;
- tpe+asha+stopper: TPE, ASHA and the per-scale stopper (``--stopper budget``);
- tpe+hyperband: TPE, asynchronous Hyperband (ASHA's brackets, ``--scheduler hyperband``);
- tpe+leader-gap: TPE, a trial predicted to end 0.5 % behind the leader is culled, never a
  baseline (``--scheduler leader-gap``, the CLI's default).

Reference per seed: the best validation loss any method found (a seed needs one method
that runs every trial to its budget: grid, random+fifo or tpe+fifo). Per method and seed: the
trial-epochs (and device-hours) spent, in the order the epochs were reported, until the
method's best-so-far loss came within 0.5 % of the reference (never, if it did not), the
total, and the final gap. Printed per seed, or as mean and sd over the seeds, with the goal
per seed: the default within 0.5 % with no more compute than tpe+asha and at most 30 % of
running its trials at full budget, in trial-epochs and in device-hours (a trial's first
epoch includes its setup; its later epochs extrapolate it to the budget). The grid's runs
also give the task's knob sensitivity: the spread of the 6 configs' best losses against
each config's seed-to-seed sd.

What a curve-predicting scheduler could reach on the task: the full-budget sweeps' recorded
curves are replayed under early-stopping rules (ASHA's rungs; learning-curve extrapolation
of each trial's epoch-paired gap to the leader, Domhan et al. 2015 in spirit, the leader
being any trial or only one that trained as fast), with every earlier trial's curve known,
which favours the rules over a real parallel sweep.

How the report reads each searched sweep's winner: every sweep rebuilt as the
``analysis.Experiment`` that ``tune_main.py analyze`` would load, and its winner's lead over the
runner-up and over the original report's recommended config (its first trial) read in the
sweep's own gap noise (clear, modest or tie).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")  # bind 127.0.0.1, as the CLI

from hpcm_tune.names import ALL_STOPPED, CULLED, searched_knobs  # noqa: E402 (after sys.path)

# method -> (sampler, scheduler, per-scale stopper on, preset)
METHODS: dict[str, tuple[str, str, bool, str]] = {
    "grid": ("random", "fifo", False, "seed-ablation"),
    "random+fifo": ("random", "fifo", False, "optuna"),
    "tpe+fifo": ("tpe", "fifo", False, "optuna"),
    "tpe+stopper": ("tpe", "fifo", True, "optuna"),
    "tpe+asha": ("tpe", "asha", False, "optuna"),
    "tpe+asha+stopper": ("tpe", "asha", True, "optuna"),
    "tpe+hyperband": ("tpe", "hyperband", False, "optuna"),
    "tpe+leader-gap": ("tpe", "leader-gap", False, "optuna"),
}
KNOBS = searched_knobs(wide=True)  # what a benchmark sweep may search (a trial records its own)
DEFAULT_METHOD = "tpe+leader-gap"  # the CLI's default: --sampler tpe --scheduler leader-gap
WITHIN = 0.005
GOAL_SHARE = 0.30  # of the full budget


def _full_budget(method: str) -> bool:
    """Whether the method runs every trial to its budget (no scheduler, no stopper)."""
    return METHODS[method][1] == "fifo" and not METHODS[method][2]


def run_method(method: str, args, checkpoint: str, storage: str, seed: int) -> dict:
    """One sweep; returns its epoch reports in the order they were made, and its trials."""
    from stoppers import stopper_settings
    from trainables.demo import demo_spec
    from trainables.sweep import SweepOptions, run_sweep

    sampler, scheduler, stopper, preset = METHODS[method]
    trial = demo_spec(checkpoint, crops_per_image=args.crops,
                      stopper=stopper_settings("budget" if stopper else "off", args.epochs))
    num_samples = 6 if method == "grid" else args.trials
    options = SweepOptions(name=f"{method}-{seed}", storage_path=storage, trial=trial,
                           epochs=args.epochs, num_samples=num_samples, preset=preset,
                           seed=seed, sampler=sampler, scheduler=scheduler, max_failures=0,
                           max_concurrent=args.concurrent,
                           max_context_lr_ratio=args.max_context_lr_ratio,
                           wide_space=args.wide_space)
    results = run_sweep(options)
    reports = []
    for result in results:
        df = result.metrics_dataframe
        for _, row in df.iterrows():
            reports.append({"trial": result.metrics["trial_id"], "timestamp": row["timestamp"],
                            "time_total_s": row["time_total_s"], "loss": row["loss"],
                            "device_s": row["time_this_iter_s"] * row.get("devices", 1)})
    reports.sort(key=lambda r: (r["timestamp"], r["time_total_s"]))
    trials = [{"trial_id": r.metrics["trial_id"],
               "config": {k: r.config.get(k) for k in searched_knobs(args.wide_space)
                          if r.config.get(k) is not None},
               "best_loss": float(r.metrics_dataframe["loss"].min()),
               "epochs": len(r.metrics_dataframe)} for r in results]
    return {"reports": reports, "trials": trials, "errors": len(results.errors),
            "full_budget_epochs": num_samples * args.epochs}


def experiment(run: dict, method: str, epochs: int):
    """A recorded sweep as ``analysis.Experiment`` (what ``tune_main.py analyze`` reads)."""
    import pandas as pd

    from analysis.results import Experiment

    rows, per_epoch = [], []
    for trial_id, trial, curve in _trial_curves(run):
        ended = ("max epochs" if len(curve) == epochs else CULLED
                 if METHODS[method][1] != "fifo" else ALL_STOPPED)
        rows.append({"trial_id": trial_id, "best_loss": min(curve), "epochs_run": len(curve),
                     "best_epoch": curve.index(min(curve)), "stop_reason": ended,
                     "family": trial["config"]["freeze_strategy"], **trial["config"]})
        per_epoch += [{"trial_id": trial_id, "epoch": e, "loss": v} for e, v in enumerate(curve)]
    trials = pd.DataFrame(rows)
    searched = [k for k in KNOBS if k in trials]
    return Experiment(path=Path(method), options={}, trials=trials,
                      epochs=pd.DataFrame(per_epoch), searched=searched)


def report_readings(runs: dict[int, dict[str, dict]], epochs: int) -> dict[str, list[dict]]:
    """How the report reads each searched sweep's winner (``analysis.lead_reading``): its lead
    over the runner-up and over the baselines (``search_spaces.BASELINES``), which every
    searched method runs first (preset ``optuna``), in the sweep's own gap noise."""
    from analysis.results import lead_reading
    from search_spaces import BASELINES

    readings: dict[str, list[dict]] = {"runner_up": [], **{b.key: [] for b in BASELINES}}
    for by_method in runs.values():
        for method, run in by_method.items():
            if method == "grid":
                continue
            winner = experiment(run, method, epochs).winner()
            for key, rows in readings.items():
                if winner[key]:
                    rows.append({"method": method, "reading": lead_reading(winner[key]),
                                 "gap_pct": winner[key]["gap_pct"],
                                 "gap_in_noise": winner[key]["gap_in_noise"]})
    return readings


def full_budget_device_hours(run: dict) -> float:
    """Device-hours of running the sweep's trials to the full budget: each trial's first
    epoch (it includes the trial's setup) plus its later epochs at their mean time."""
    times: dict[str, list[float]] = {}
    for report in run["reports"]:
        times.setdefault(report["trial"], []).append(report["device_s"])
    if not times:  # no trial reported an epoch
        return math.nan
    per_trial = run["full_budget_epochs"] // len(times)
    return sum(t[0] + (per_trial - 1) * statistics.mean(t[1:] or t[:1])
               for t in times.values()) / 3600


def score(run: dict, reference: float) -> dict:
    """Compute to get within WITHIN of ``reference``, totals, and the final gap."""
    best, epochs, device_s = math.inf, 0, 0.0
    to_target = {"epochs": math.inf, "device_hours": math.inf}
    for report in run["reports"]:
        epochs += 1
        device_s += report["device_s"]
        best = min(best, report["loss"])
        if best <= reference * (1 + WITHIN) and math.isinf(to_target["epochs"]):
            to_target = {"epochs": epochs, "device_hours": device_s / 3600}
    full_hours = full_budget_device_hours(run)
    return {"epochs_to_target": to_target["epochs"],
            "device_hours_to_target": to_target["device_hours"],
            "epochs": epochs, "device_hours": device_s / 3600,
            "compute_vs_full_budget": epochs / run["full_budget_epochs"],
            "to_target_vs_full_budget": to_target["epochs"] / run["full_budget_epochs"],
            "full_budget_device_hours": full_hours,
            "device_hours_to_target_vs_full_budget": to_target["device_hours"] / full_hours,
            "gap": best / reference - 1}


def goal(ours: dict, asha: dict) -> bool:
    """The issue's goal for one seed: within WITHIN of the reference, having spent no more
    than tpe+asha did to get there and at most GOAL_SHARE of the full budget (in
    trial-epochs and in device-hours)."""
    return (ours["gap"] <= WITHIN
            and ours["epochs_to_target"] <= asha["epochs_to_target"]
            and ours["to_target_vs_full_budget"] <= GOAL_SHARE
            and ours["device_hours_to_target_vs_full_budget"] <= GOAL_SHARE)


def _per_seed(values: list[float], digits: int = 0) -> str:
    return ", ".join("never" if math.isinf(v) else f"{v:.{digits}f}" for v in values)


def _goal_text(row: dict, met: bool) -> str:
    if math.isinf(row["epochs_to_target"]):
        spent = f"never (ends {row['gap']:+.2%})"
    else:
        spent = (f"{row['epochs_to_target']} trial-epochs ({row['to_target_vs_full_budget']:.0%}),"
                 f" {row['device_hours_to_target']:.3f} device-h "
                 f"({row['device_hours_to_target_vs_full_budget']:.0%} of "
                 f"{row['full_budget_device_hours']:.3f})")
    return f"seed {row['seed']}: {spent}: {'met' if met else 'missed'}"


def _mean_sd(values: list[float]) -> str:
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.mean(values):.4g} ± {sd:.2g}"


def sensitivity(runs: list[dict]) -> dict:
    """The grid's configs over the seeds: spread of the mean best losses vs seed-to-seed sd."""
    by_config: dict[str, list[float]] = {}
    paired: dict[str, list[float]] = {}  # minus the seed's mean over configs
    for run in runs:
        seed_mean = statistics.mean(t["best_loss"] for t in run["trials"])
        for trial in run["trials"]:
            config = json.dumps(trial["config"], sort_keys=True)
            by_config.setdefault(config, []).append(trial["best_loss"])
            paired.setdefault(config, []).append(trial["best_loss"] - seed_mean)
    sd = lambda v: statistics.stdev(v) if len(v) > 1 else 0.0  # noqa: E731
    means = {c: statistics.mean(v) for c, v in by_config.items()}
    sds = {c: sd(v) for c, v in by_config.items()}
    best, worst = min(means.values()), max(means.values())
    largest_paired = max(sd(v) for v in paired.values())
    return {"configs": {c: {"mean": means[c], "sd": sds[c], "paired_sd": sd(paired[c]),
                            "runs": by_config[c]} for c in by_config},
            "spread": worst / best - 1, "largest_sd": max(sds.values()),
            "spread_over_sd": (worst - best) / max(sds.values()) if max(sds.values()) else math.inf,
            "largest_paired_sd": largest_paired,
            "spread_over_paired_sd": (worst - best) / largest_paired if largest_paired else math.inf}


def early_rank_correlation(runs: list[dict], epochs: int) -> dict[int, list[float]]:
    """How well a trial's best-so-far loss after k epochs ranks the final best losses (what
    a rung after k epochs relies on): Spearman's rho per full-budget run, for each k."""
    from scipy.stats import spearmanr

    rhos: dict[int, list[float]] = {}
    for run in runs:
        full = [c for c in _curves(run).values() if len(c) == epochs]
        if len(full) < 3:
            continue
        final = [min(c) for c in full]
        for k in range(1, epochs):
            rho = spearmanr([min(c[:k]) for c in full], final).correlation
            if math.isfinite(rho):
                rhos.setdefault(k, []).append(rho)
    return rhos


Replayed = tuple[dict, list[float]]  # a trial's config and its losses by epoch


def _curves(run: dict) -> dict[str, list[float]]:
    """Each trial's losses, epoch by epoch, by trial id, in the order the trials first reported."""
    curves: dict[str, list[float]] = {}
    for report in run["reports"]:
        curves.setdefault(report["trial"], []).append(report["loss"])
    return curves


def _trial_curves(run: dict) -> list[tuple[str, dict, list[float]]]:
    """Each trial's id, record (config, best loss) and losses, in the run's order of trials.
    Runs recorded before their trials carried ``trial_id`` (the study of 2026-11-28) are
    matched to their reports by epoch count and best loss, which identify them."""
    curves, out = _curves(run), []
    for trial in run["trials"]:
        trial_id = trial.get("trial_id") or next(
            t for t, c in curves.items() if len(c) == trial["epochs"]
            and min(c) == trial["best_loss"] and t not in {row[0] for row in out})
        out.append((trial_id, trial, curves[trial_id]))
    return out


def asha_rule(rungs: tuple[int, ...], reduction: float = 3) -> Callable:
    """Ray's asynchronous rung rule: at a rung, stop a trial whose best-so-far is worse than
    the 1/reduction quantile of the best-so-far losses recorded there before it (Ray keeps the
    top 1/reduction of what it has seen; the first trial at a rung always passes)."""
    def rule(config: dict, curve: list[float], recorded: dict[int, list[float]],
             finished: list[Replayed]) -> bool:
        epoch = len(curve)
        if epoch not in rungs:
            return False
        earlier = recorded.setdefault(epoch, [])
        behind = bool(earlier) and min(curve) > float(np.nanpercentile(earlier, 100 / reduction))
        earlier.append(min(curve))
        return behind
    return rule


def extrapolation_rule(first: int, margin: float, trend: bool, epochs: int,
                       as_fast: bool = False) -> Callable:
    """Learning-curve extrapolation against the leader (the finished trial with the lowest
    loss): from epoch ``first`` on, stop a trial predicted to end more than ``margin`` behind
    the leader's best. The prediction: the epoch-paired gap to the leader (the noise both
    curves share cancels) carried over the leader's later epochs, the ``--scheduler
    leader-gap`` rule (``stoppers.scheduler.predicted_shortfall``); with ``trend``, the gap's
    linear trend carried to the last epoch. With ``as_fast``, the leader is chosen among the
    trials that trained each layer group at least as fast as the trial so far
    (``LayerLRConfig.trains_as_fast_as``, as the scheduler's leader is): a guard against
    short-horizon bias, which a faster learning rate behind a slower leader would otherwise
    meet (docs/demo-task.md)."""
    from stoppers.scheduler import predicted_shortfall
    from trainables.layer_lr import LayerLRConfig

    def rule(config: dict, curve: list[float], recorded, finished: list[Replayed]) -> bool:
        epoch = len(curve)
        if as_fast:
            own = LayerLRConfig.from_flat(config)
            finished = [(c, leader) for c, leader in finished
                        if LayerLRConfig.from_flat(c).trains_as_fast_as(own, epoch)]
        if epoch < first or epoch == epochs or not finished:
            return False
        leader = min((leader for _, leader in finished), key=min)
        if not trend:
            return predicted_shortfall(curve, leader) > margin
        if epoch < 3:
            return False
        # The trend from epoch 2 on: epoch 1 is the LR warm-up.
        gaps = np.array(curve) - np.array(leader[:epoch])
        slope, intercept = np.polyfit(np.arange(2, epoch + 1), gaps[1:], 1)
        return leader[epochs - 1] + slope * epochs + intercept > min(leader) * (1 + margin)
    return rule


def replay_rules(epochs: int) -> dict[str, Callable[[], Callable]]:
    """The early-stopping rules replayed: ASHA's rungs and learning-curve extrapolation."""
    rules: dict[str, Callable[[], Callable]] = {
        "asha rungs 3, 9": lambda: asha_rule((3, 9)),
        "asha rungs 2, 6": lambda: asha_rule((2, 6)),
    }
    variants = {"last gap, leaders as fast": (False, True), "last gap, any leader": (False, False),
                "trend, any leader": (True, False)}
    for first in (2, 3, 4):
        for margin in (0.005, 0.01):
            for variant, (trend, as_fast) in variants.items():
                name = f"extrapolate from epoch {first}, {variant}, margin {margin:.1%}"
                rules[name] = (lambda f=first, m=margin, t=trend, a=as_fast:
                               extrapolation_rule(f, m, t, epochs, a))
    return rules


def replay(trials: list[Replayed], rule: Callable) -> tuple[int, float]:
    """One full-budget sweep's curves under a stopping rule, the trials one after another
    with everything the earlier ones reported known (more than a parallel sweep knows):
    the trial-epochs spent and the best loss seen."""
    spent, best, recorded, finished = 0, math.inf, {}, []
    for config, curve in trials:
        for epoch in range(1, len(curve) + 1):
            spent += 1
            best = min(best, curve[epoch - 1])
            if rule(config, curve[:epoch], recorded, finished):
                break
        else:
            finished.append((config, curve))
    return spent, best


def replay_study(runs: dict[int, dict[str, dict]], epochs: int) -> dict[str, dict]:
    """Every rule over every full-budget sweep (random / TPE + FIFO): compute as a share of
    the full budget and the final gap to the seed's reference."""
    out: dict[str, dict] = {}
    for name, make in replay_rules(epochs).items():
        shares, gaps = [], []
        for by_method in runs.values():
            reference = min(t["best_loss"] for run in by_method.values() for t in run["trials"])
            for method, run in by_method.items():
                if method == "grid" or not _full_budget(method):
                    continue
                first_report = list(_curves(run))  # replayed in this order
                trials = [(trial["config"], curve) for _, trial, curve in
                          sorted(_trial_curves(run), key=lambda t: first_report.index(t[0]))
                          if len(curve) == epochs]
                spent, best = replay(trials, make())
                shares.append(spent / (len(trials) * epochs))
                gaps.append(best / reference - 1)
        if shares:
            out[name] = {"compute": shares, "gap": gaps}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=int, default=12, help="epoch budget per trial")
    parser.add_argument("--trials", type=int, default=16, help="trials per method (grid: 6)")
    parser.add_argument("--repeats", type=int, default=3, help="seeds 0..repeats-1")
    parser.add_argument("--crops", type=int, help="crops per training photo (default: the demo's)")
    parser.add_argument("--concurrent", type=int, default=2, help="trials at once")
    parser.add_argument("--methods", default=",".join(METHODS))
    parser.add_argument("--max-context-lr-ratio", type=float, default=1.0, metavar="R",
                        help="search context-LR ratios up to R (default 1, the report's range)")
    parser.add_argument("--wide-space", action="store_true",
                        help="also search the base LR and the h multiplier (run --wide-space)")
    parser.add_argument("--checkpoint", help="starting model (default: the pre-trained tiny)")
    parser.add_argument("--json", help="also write the raw figures to this file")
    parser.add_argument("--plot", help="draw the demo task's knob sensitivity (grid) here")
    parser.add_argument("--reuse", metavar="JSON",
                        help="take the sweeps a earlier --json file holds instead of running "
                        "them again (the same settings and seed train the same way)")
    parser.add_argument("--replot", metavar="JSON",
                        help="no runs: report (and --plot) what a --json file holds")
    parser.add_argument("--quick", action="store_true", help="4 trials, 3 epochs, 1 seed, 1 crop")
    args = parser.parse_args()
    if args.quick:
        args.epochs, args.trials, args.repeats, args.crops = 3, 4, 1, 1
    methods = [m for m in args.methods.split(",") if m]
    unknown = set(methods) - set(METHODS)
    if unknown:
        parser.error(f"unknown methods {sorted(unknown)}; choose among {', '.join(METHODS)}")
    if args.replot:
        saved = json.loads(Path(args.replot).read_text())
        runs = {int(seed): by_method for seed, by_method in
                saved.get("runs", saved.get("partial_runs", {})).items()}
        wall = saved.get("wall_min", math.nan) * 60
        settings = saved.get("settings", {})
        args.max_context_lr_ratio = settings.get("max_context_lr_ratio", 1.0)
        args.wide_space = settings.get("wide_space", False)
    else:
        runs, wall = run_all(args, methods)
    report(runs, args, wall)


def run_all(args, methods: list[str]) -> tuple[dict[int, dict[str, dict]], float]:
    """Every method at every seed; each sweep's figures saved as it ends.

    The sweeps that stop early come first for all seeds, then the full-budget ones (which
    cost the most), so that a study cut short still has every seed's reference and the
    methods the goal is about.
    """
    import ray

    if args.checkpoint is None:
        from trainables.pretrain import pretrained_tiny

        args.checkpoint = str(pretrained_tiny())
    checkpoint = str(Path(args.checkpoint).resolve())
    ray.init(address="local", num_cpus=os.cpu_count(), include_dashboard=False,
             log_to_driver=False)
    runs: dict[int, dict[str, dict]] = {seed: {} for seed in range(args.repeats)}
    if args.reuse:
        saved = json.loads(Path(args.reuse).read_text())
        for seed, by_method in saved.get("runs", saved.get("partial_runs", {})).items():
            if int(seed) in runs:
                runs[int(seed)].update({m: r for m, r in by_method.items() if m in methods})
    early = [m for m in methods if not _full_budget(m)]
    order = [("grid", s) for s in runs if "grid" in methods] + [
        (m, s) for group in (early, [m for m in methods if m not in early and m != "grid"])
        for s in runs for m in group]
    start = time.perf_counter()
    try:
        with tempfile.TemporaryDirectory(prefix="hpcm-sweep-bench-") as storage:
            for method, seed in order:
                if method not in runs[seed]:
                    runs[seed][method] = run_method(method, args, checkpoint, storage, seed)
                    if args.json:  # after every sweep: a long study keeps what it measured
                        Path(args.json).write_text(json.dumps({"partial_runs": runs},
                                                              default=str))
                    best = min(t["best_loss"] for t in runs[seed][method]["trials"])
                    print(f"  seed {seed} {method:<17} {len(runs[seed][method]['reports']):4d} "
                          f"trial-epochs, best {best:.5f}", flush=True)
    finally:
        ray.shutdown()
    return runs, time.perf_counter() - start


def report(runs: dict[int, dict[str, dict]], args, wall: float) -> None:
    """The table, the goal, the task's knob sensitivity; JSON and plot if asked for."""
    # A study cut short: each method over the seeds it ran at; a seed without a full-budget
    # method (the reference needs one) is left out of the table, never out of the JSON.
    measured = runs
    runs = {seed: by_method for seed, by_method in runs.items()
            if any(_full_budget(m) for m in by_method)}
    methods = [m for m in METHODS if any(m in by_method for by_method in runs.values())]
    scores: dict[str, list[dict]] = {m: [] for m in methods}
    for seed, by_method in runs.items():
        reference = min(t["best_loss"] for run in by_method.values() for t in run["trials"])
        for method, run in by_method.items():
            scores[method].append({"seed": seed, **score(run, reference)})
    print(f"\ndemo task, {args.epochs} epochs per trial, {args.trials} trials per method "
          f"(grid 6), context-LR ratios up to {args.max_context_lr_ratio:g}"
          f"{', base LR and h multiplier searched' if args.wide_space else ''}, "
          f"seeds {sorted(measured)}, {os.cpu_count()} CPUs, {wall / 60:.1f} min")
    if runs:
        print(f"{'method':<18}  {'epochs to 0.5 % (per seed)':>26}  {'device-h to 0.5 %':>22}"
              f"{'total epochs':>16}{'device-h':>16}{'of full budget':>16}{'final gap':>20}")
    else:
        print("no table: no seed ran a full-budget method (grid, random+fifo, tpe+fifo), "
              "which the reference needs")
    for method, rows in scores.items():
        col = lambda key: [r[key] for r in rows]  # noqa: E731
        gaps = col("gap")
        print(f"{method + f' ({len(rows)})' * (len(rows) < len(runs)):<18}"
              f"  {_per_seed(col('epochs_to_target')):>26}"  # 5 seeds overflow: keep a gap
              f"  {_per_seed(col('device_hours_to_target'), 3):>22}"
              f"{_mean_sd(col('epochs')):>16}{_mean_sd(col('device_hours')):>16}"
              f"{statistics.mean(col('compute_vs_full_budget')):>15.0%} "
              f"{statistics.mean(gaps):>+11.2%} ± {statistics.pstdev(gaps):.2%}")
    summary: dict = {"settings": vars(args), "scores": scores, "wall_min": wall / 60}
    if DEFAULT_METHOD in scores and "tpe+asha" in scores:
        asha = {r["seed"]: r for r in scores["tpe+asha"]}
        verdicts = [(r, goal(r, asha[r["seed"]])) for r in scores[DEFAULT_METHOD]
                    if r["seed"] in asha]
        summary["goal_met"] = {r["seed"]: met for r, met in verdicts}
        print(f"goal: {DEFAULT_METHOD} within 0.5 % with no more compute than tpe+asha and "
              f"<= {GOAL_SHARE:.0%} of its trials' full budget: met in "
              f"{sum(met for _, met in verdicts)} of {len(verdicts)} seeds ("
              + "; ".join(_goal_text(r, met) for r, met in verdicts) + ")")
    # The early ranking and the replays need no grid: every seed's full-budget sweeps count.
    full_budget = [run for by_method in measured.values() for m, run in by_method.items()
                   if _full_budget(m)]
    rhos = early_rank_correlation(full_budget, args.epochs)
    if rhos:
        summary["early_rank_rho"] = rhos
        print("ranking after k epochs vs the final best losses (Spearman rho over "
              f"{len(full_budget)} full-budget runs, min..max): " + "; ".join(
                  f"k={k}: {min(v):+.2f}..{max(v):+.2f}" for k, v in sorted(rhos.items())))
    replayed = replay_study(measured, args.epochs)
    if replayed:
        summary["replay"] = replayed
        print("early stopping replayed on the full-budget sweeps' recorded curves (trials one "
              "after another, each knowing all earlier reports): compute of full budget, "
              "final gap, sweeps within 0.5 %")
        for name, row in replayed.items():
            within = sum(g <= WITHIN for g in row["gap"])
            print(f"  {name:<52}{statistics.mean(row['compute']):>5.0%}  "
                  f"{statistics.mean(row['gap']):+.2%} (max {max(row['gap']):+.2%})  "
                  f"{within} of {len(row['gap'])}")
    readings = report_readings(measured, args.epochs)
    if readings["runner_up"]:
        summary["report_readings"] = readings
        print(f"the report's reading of each searched sweep's winner "
              f"({len(readings['runner_up'])} sweeps), in the sweep's gap noise:")
        from search_spaces import BASELINES

        for key, label in [*((b.key, b.label) for b in BASELINES),
                           ("runner_up", "the runner-up")]:
            rows = readings[key]
            if not rows:
                continue
            counts = ", ".join(f"{r} {sum(x['reading'] == r for x in rows)}"
                               for r in ("clear", "modest", "tie"))
            noises = [x["gap_in_noise"] for x in rows if math.isfinite(x["gap_in_noise"])]
            print(f"  over {label}: {counts} (gap {min(x['gap_pct'] for x in rows):+.2f} .. "
                  f"{max(x['gap_pct'] for x in rows):+.2f} %, " + (
                      f"{min(noises):.1f} .. {max(noises):.1f} noises)" if noises else
                      "no noise estimate: trials too short)"))
    if "grid" in methods:
        sens = sensitivity([by_method["grid"] for by_method in runs.values()])
        summary["sensitivity"] = sens
        print(f"knob sensitivity (grid, {len(runs)} seeds): spread of the configs' mean best "
              f"losses {sens['spread']:.2%}, largest per-config seed sd {sens['largest_sd']:.5f}, "
              f"spread / sd {sens['spread_over_sd']:.1f}; paired within each seed (the seed's "
              f"shift shared by every config removed): largest sd {sens['largest_paired_sd']:.5f}, "
              f"spread / sd {sens['spread_over_paired_sd']:.1f}")
        for config, row in sorted(sens["configs"].items(), key=lambda kv: kv[1]["mean"]):
            print(f"  {row['mean']:.5f} ± {row['sd']:.5f} (paired ± {row['paired_sd']:.5f})  "
                  f"{config}")
        if args.plot:
            plot_sensitivity(sens, Path(args.plot))
    if args.json and not args.replot:
        summary["runs"] = measured
        Path(args.json).write_text(json.dumps(summary, indent=1, default=str))


def plot_sensitivity(sens: dict, path: Path) -> None:
    """Each grid config's best loss per seed (dots) and mean ± sd (bar)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = sorted(sens["configs"].items(), key=lambda kv: kv[1]["mean"])
    def label(config: dict) -> str:
        unfreeze = (f" at {config['unfreeze_h_epoch']}/{config['unfreeze_context_epoch']}"
                    if config["freeze_strategy"] == "progressive" else "")
        return f"ratio {config['context_lr_ratio']:g}, {config['freeze_strategy']}{unfreeze}"

    labels = [label(json.loads(c)) for c, _ in rows]
    fig, ax = plt.subplots(figsize=(8, 3.8))
    for i, (_, row) in enumerate(rows):
        ax.errorbar(i, row["mean"], yerr=row["sd"], fmt="s", color="tab:blue", capsize=5)
        ax.plot([i] * len(row["runs"]), row["runs"], ".", color="tab:gray")
    ax.set_xticks(range(len(rows)), labels, rotation=20, ha="right", fontsize=8)
    ax.set_ylabel("best validation loss")
    ax.set_title(f"Demo task: the report's 6 configs over {len(rows[0][1]['runs'])} seeds: "
                 f"spread {sens['spread']:.2%}, {sens['spread_over_sd']:.1f}x the largest sd\n"
                 f"({sens['spread_over_paired_sd']:.1f}x with each seed's shared shift removed)",
                 fontsize=10)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    print(f"plot: {path}")


if __name__ == "__main__":
    main()
