"""benchmarks/sweep_efficiency.py: its scoring and replay rules on made-up curves, and its
quick mode end to end (real sweeps, as CI can afford them)."""

from __future__ import annotations

import importlib.util
import json
import math
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "benchmarks" / "sweep_efficiency.py"
_spec = importlib.util.spec_from_file_location("sweep_efficiency", SCRIPT)
bench = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(bench)


def _run(curves: list[list[float]]) -> dict:
    """A sweep's record: trial t's epochs reported one after another."""
    return {"reports": [{"trial": f"t{t}", "loss": loss, "device_s": 1.0}
                        for t, curve in enumerate(curves) for loss in curve],
            "full_budget_epochs": sum(len(c) for c in curves)}


def test_score_counts_the_epochs_until_within_half_a_percent():
    run = _run([[1.10, 1.05, 1.02], [1.04, 1.004, 1.0]])
    scored = bench.score(run, reference=1.0)
    assert scored["epochs_to_target"] == 5  # 1.004 is the first loss within 0.5 % of 1.0
    assert scored["epochs"] == 6 and scored["gap"] == 0.0
    assert math.isinf(bench.score(run, reference=0.9)["epochs_to_target"])


def test_full_budget_device_hours_extrapolate_each_trial_from_its_later_epochs():
    run = _run([[1.2, 1.1], [1.3, 1.2, 1.1, 1.0]])  # a trial culled after 2 of 4 epochs
    run["full_budget_epochs"] = 8
    run["reports"][0]["device_s"] = 5.0  # its first epoch paid for the trial's setup
    run["reports"][2]["device_s"] = 3.0
    # 5 + 3 x 1 and 3 + 3 x 1 device-seconds
    assert math.isclose(bench.full_budget_device_hours(run) * 3600, 14.0)
    assert math.isnan(bench.full_budget_device_hours({"reports": [], "full_budget_epochs": 8}))


def test_the_goal_needs_the_target_within_thirty_percent_in_epochs_and_device_hours():
    curves = [[1.3, 1.2, 1.0], [1.3, 1.25, 1.2], [1.3, 1.25, 1.2], [1.3, 1.25, 1.2]]
    run = _run(curves)  # within 0.5 % after 3 of 12 trial-epochs: 25 %
    met = bench.score(run, reference=1.0)
    assert met["to_target_vs_full_budget"] == 0.25 and bench.goal(met, met)
    run["reports"][0]["device_s"] = 2.0  # a slow first epoch: 4 of 13 device-seconds
    slow = bench.score(run, reference=1.0)
    assert slow["to_target_vs_full_budget"] == 0.25 and not bench.goal(slow, slow)
    late = bench.score(_run(curves[::-1]), reference=1.0)  # the good trial last: 12 of 12
    assert late["epochs_to_target"] == 12 and not bench.goal(late, late)
    assert not bench.goal(met, {**met, "epochs_to_target": 2})  # ASHA got there sooner
    assert not bench.goal(bench.score(run, reference=0.99), met)  # never within 0.5 %


def test_asha_rule_keeps_the_top_third_of_what_a_rung_has_seen():
    rule = bench.asha_rule((2,), reduction=3)
    recorded: dict = {}
    assert not rule({}, [1.0, 0.9], recorded, [])  # first at the rung: nothing to compare with
    assert not rule({}, [1.0], recorded, [])  # not a rung
    assert rule({}, [1.0, 0.95], recorded, [])  # behind the only earlier one
    # 0.92 is behind the lower third of {0.9, 0.95} (0.917); 0.91 is not.
    assert rule({}, [1.0, 0.92], recorded, [])
    assert not rule({}, [1.0, 0.91], recorded, [])


def test_asha_rule_decides_as_rays_asynchronous_hyperband():
    from types import SimpleNamespace

    from ray.tune.schedulers.async_hyperband import _Bracket

    losses = [0.9, 0.95, 0.92, 0.91, 0.85, 0.99, 0.88, 0.9, 0.87]
    bracket = _Bracket(min_t=2, max_t=100, reduction_factor=3, s=0, stop_last_trials=False)
    rays = [bracket.on_result(SimpleNamespace(trial_id=str(i)), 2, -loss) == "STOP"
            for i, loss in enumerate(losses)]
    rule, recorded = bench.asha_rule((2,), reduction=3), {}
    assert [rule({}, [1.0, loss], recorded, []) for loss in losses] == rays
    assert any(rays) and not all(rays)


def test_extrapolation_stops_a_trial_whose_paired_gap_predicts_a_loss_beyond_the_margin():
    plain, slow = ({"context_lr_ratio": r, "freeze_strategy": "none"} for r in (1.0, 0.1))
    leader = [(plain, [1.0, 0.9, 0.85, 0.8])]
    rule = bench.extrapolation_rule(first=2, margin=0.01, trend=False, epochs=4)
    # 0.5 % behind the leader at every epoch: kept; 2 % behind at epoch 2: stopped
    assert not rule(slow, [1.004, 0.9045], {}, leader)
    assert rule(slow, [1.02, 0.918], {}, leader)
    assert not rule(slow, [1.5], {}, leader)  # before the first epoch it judges
    # A gap that closes by 1 % an epoch: the trend predicts it ends ahead, the last gap not.
    closing = [1.03, 0.92, 0.86]
    assert bench.extrapolation_rule(2, 0.01, False, 4)(slow, closing, {}, leader)
    assert not bench.extrapolation_rule(2, 0.01, True, 4)(slow, closing, {}, leader)
    # With as_fast, only a leader that trained as fast so far judges a trial.
    fast = {"context_lr_ratio": 2.0, "freeze_strategy": "none"}
    assert rule(fast, [1.02, 0.918], {}, leader)
    assert not bench.extrapolation_rule(2, 0.01, False, 4, as_fast=True)(
        fast, [1.02, 0.918], {}, leader)


def test_replay_spends_only_the_epochs_a_rule_allows():
    config = {"context_lr_ratio": 1.0, "freeze_strategy": "none"}
    curves = [(config, c) for c in ([1.0, 0.9, 0.8], [1.2, 1.1, 1.0], [1.0, 0.88, 0.79])]
    spent, best = bench.replay(curves, bench.extrapolation_rule(2, 0.01, False, 3))
    assert spent == 3 + 2 + 3  # the second trial is stopped at epoch 2
    assert best == 0.79


def test_the_json_keeps_sweeps_of_seeds_without_a_full_budget_method(tmp_path, capsys):
    # Methods re-run without a full-budget one (their references come from an earlier file)
    # are left out of the table but must reach --json: it is all that remains of them.
    from argparse import Namespace

    trials = [{"trial_id": "t0", "config": {"context_lr_ratio": 0.1, "freeze_strategy": "entropy"},
               "best_loss": 0.9, "epochs": 2},
              {"trial_id": "t1", "config": {"context_lr_ratio": 0.5, "freeze_strategy": "none"},
               "best_loss": 1.0, "epochs": 2}]
    runs = {1: {"tpe+asha": _run([[1.0, 0.9], [1.1, 1.0]]) | {"trials": trials}}}
    out = tmp_path / "study.json"
    bench.report(runs, Namespace(epochs=2, trials=2, json=str(out), plot=None, replot=None,
                                 max_context_lr_ratio=4.0, wide_space=True), wall=1.0)
    saved = json.loads(out.read_text())
    assert saved["runs"]["1"]["tpe+asha"]["reports"] == runs[1]["tpe+asha"]["reports"]
    # What --replot reads back.
    assert saved["settings"]["max_context_lr_ratio"] == 4.0 and saved["settings"]["wide_space"]
    assert "context-LR ratios up to 4, base LR and h multiplier searched" in capsys.readouterr().out


def test_each_recorded_sweep_is_read_as_the_report_reads_it():
    # The curves share their noise except a +-0.0004 wobble (the gap noise ~0.0013), last
    # epoch best: t2 wins with 0.9996, t1 (plain fine-tuning) ends 0.05 % behind it (1.0001),
    # and t0, which ran the recommended config, 2 % behind.
    shared = [0.05 / (e + 1) for e in range(8)]
    finals = {"t0": 1.02, "t1": 0.9997, "t2": 1.0}
    curves = [[final + shared[e] - shared[-1] + 0.0004 * (-1) ** (e + t) for e in range(8)]
              for t, final in enumerate(finals.values())]
    configs = [{"context_lr_ratio": 0.1, "freeze_strategy": "entropy"},
               {"context_lr_ratio": 1.0, "freeze_strategy": "none"},
               {"context_lr_ratio": 0.9, "freeze_strategy": "none"}]
    run = _run(curves)
    # t0's record predates trial ids: matched to its reports by epochs and best loss.
    run["trials"] = [{"config": configs[0], "best_loss": min(curves[0]), "epochs": 8},
                     *[{"trial_id": f"t{t}", "config": configs[t], "best_loss": min(curves[t]),
                        "epochs": 8} for t in (1, 2)]]
    exp = bench.experiment(run, "tpe+fifo", epochs=8)
    assert sorted(exp.trials["trial_id"]) == ["t0", "t1", "t2"]
    readings = bench.report_readings({0: {"tpe+fifo": run, "grid": run}}, epochs=8)
    [recommended], [runner_up] = readings["recommended"], readings["runner_up"]
    assert recommended["reading"] == "clear" and 1.9 < recommended["gap_pct"] < 2.1
    assert runner_up["reading"] == "tie" and readings["plain"] == [runner_up]


def test_quick_mode_runs_real_sweeps_and_scores_them(tmp_path):
    out = tmp_path / "quick.json"
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), "--quick", "--methods", "grid,tpe+asha,tpe+leader-gap",
         "--json", str(out)],
        cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert f"goal: {bench.DEFAULT_METHOD} within 0.5 %" in proc.stdout
    assert "of 1 seeds (seed 0: " in proc.stdout
    summary = json.loads(out.read_text())
    grid = summary["scores"]["grid"][0]
    asha, default = (summary["scores"][m][0] for m in ("tpe+asha", bench.DEFAULT_METHOD))
    assert grid["epochs"] == 6 * 3  # the report's 6 configs at the 3-epoch budget
    assert 4 <= min(asha["epochs"], default["epochs"])  # 4 trials, each at least 1 epoch
    assert max(asha["epochs"], default["epochs"]) <= 4 * 3
    assert min(grid["gap"], asha["gap"], default["gap"]) == 0.0  # one found the reference
    assert summary["goal_met"] == {"0": bench.goal(default, asha)}  # per seed (JSON keys)
