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


def test_asha_rule_stops_a_trial_behind_at_a_rung_and_only_there():
    rule = bench.asha_rule((2,), reduction=2)
    recorded: dict = {}
    assert not rule([1.0, 0.9], recorded, [])  # first at the rung: nothing to compare with
    assert not rule([1.0], recorded, [])  # not a rung
    assert rule([1.0, 0.95], recorded, [])  # worse than the median of {0.9, 0.95}
    assert not rule([1.0, 0.8], recorded, [])


def test_extrapolation_stops_a_trial_whose_paired_gap_predicts_a_loss_beyond_the_margin():
    leader = [1.0, 0.9, 0.85, 0.8]
    rule = bench.extrapolation_rule(first=2, margin=0.01, trend=False, epochs=4)
    # 0.5 % behind the leader at every epoch: kept; 2 % behind at epoch 2: stopped
    assert not rule([1.004, 0.9045], {}, [leader])
    assert rule([1.02, 0.918], {}, [leader])
    assert not rule([1.5], {}, [leader])  # before the first epoch it judges
    # A gap that closes by 1 % an epoch: the trend predicts it ends ahead, the last gap not.
    closing = [1.03, 0.92, 0.86]
    assert bench.extrapolation_rule(2, 0.01, False, 4)(closing, {}, [leader])
    assert not bench.extrapolation_rule(2, 0.01, True, 4)(closing, {}, [leader])


def test_replay_spends_only_the_epochs_a_rule_allows():
    curves = [[1.0, 0.9, 0.8], [1.2, 1.1, 1.0], [1.0, 0.88, 0.79]]
    spent, best = bench.replay(curves, bench.extrapolation_rule(2, 0.01, False, 3))
    assert spent == 3 + 2 + 3  # the second trial is stopped at epoch 2
    assert best == 0.79


def test_quick_mode_runs_real_sweeps_and_scores_them(tmp_path):
    out = tmp_path / "quick.json"
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), "--quick", "--methods", "grid,tpe+asha",
         "--json", str(out)],
        cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "goal: tpe+asha within 0.5 %" in proc.stdout
    summary = json.loads(out.read_text())
    grid, asha = summary["scores"]["grid"][0], summary["scores"]["tpe+asha"][0]
    assert grid["epochs"] == 6 * 3  # the report's 6 configs at the 3-epoch budget
    assert 4 <= asha["epochs"] <= 4 * 3  # 4 trials, each at least 1 epoch
    assert min(grid["gap"], asha["gap"]) == 0.0  # one of them found the reference
