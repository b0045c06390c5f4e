"""The winner's reading: a runner-up next to the winner's config is not a tie of configs."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from analysis.report import confidence
from analysis.results import Experiment


def _experiment(rows: list[tuple[str, float, str, float]],
                culled: tuple[str, ...] = ()) -> Experiment:
    trials = pd.DataFrame(
        [{"trial_id": t, "best_loss": loss, "best_epoch": 5,
          "stop_reason": "culled by the scheduler" if t in culled else "epoch budget",
          "family": strategy, "freeze_strategy": strategy, "context_lr_ratio": ratio}
         for t, loss, strategy, ratio in rows])
    return Experiment(path=Path("."), options={}, trials=trials, epochs=pd.DataFrame(),
                      searched=["context_lr_ratio", "freeze_strategy"])


def test_a_neighbouring_runner_up_is_read_against_the_best_different_config():
    exp = _experiment([("w", 0.5500, "entropy", 0.93), ("n", 0.5507, "entropy", 0.90),
                       ("a", 0.5560, "entropy", 0.13), ("b", 0.5590, "none", 0.50),
                       ("c", 0.5620, "progressive", 0.05)])
    winner = exp.winner()
    assert winner["runner_up"]["trial_id"] == "n" and winner["runner_up"]["neighbour"]
    assert winner["best_other"]["trial_id"] == "a"
    text = confidence(winner)
    assert "neighbour of the winner's config" in text and "(a) is" in text
    assert "clearly ahead" in text and "tie" not in text


def test_a_close_different_config_is_still_a_tie():
    # The runner-up differs (ratio 0.3 vs 0.93): its 0.02 % gap is a tie of two configs.
    exp = _experiment([("w", 0.5500, "entropy", 0.93), ("r", 0.5501, "entropy", 0.30),
                       ("a", 0.5560, "none", 0.13), ("b", 0.5590, "none", 0.50)])
    winner = exp.winner()
    assert not winner["runner_up"]["neighbour"]
    assert winner["best_other"]["trial_id"] == "r"
    assert "treat the top configs as a tie" in confidence(winner)


def test_neighbours_need_the_same_strategy_and_close_knobs():
    exp = _experiment([("w", 0.55, "entropy", 0.9), ("x", 0.56, "none", 0.9),
                       ("y", 0.56, "entropy", 0.5), ("z", 0.56, "entropy", 0.7)])
    rows = {r["trial_id"]: r for _, r in exp.trials.iterrows()}
    assert not exp.neighbours(rows["w"], rows["x"])  # another strategy
    assert not exp.neighbours(rows["w"], rows["y"])  # 1.8x apart
    assert exp.neighbours(rows["w"], rows["z"])  # 1.29x apart


def test_culled_trials_do_not_widen_the_yardstick():
    # Trials culled at an early rung have far higher (unconverged) losses: measured against
    # their spread, every gap between trained-on trials would look like a tie.
    rows = [("w", 0.5586, "entropy", 0.93), ("n", 0.5593, "entropy", 0.90),
            ("d", 0.5620, "none", 0.36), ("e", 0.5650, "entropy", 0.30),
            ("c1", 0.63, "entropy", 0.02), ("c2", 0.64, "none", 0.05), ("c3", 0.65, "none", 0.1)]
    winner = _experiment(rows, culled=("c1", "c2", "c3")).winner()
    assert winner["best_other"]["trial_id"] == "d"
    assert winner["best_other"]["gap_in_std"] > 1
    assert "clearly ahead" in confidence(winner)
    assert _experiment(rows).winner()["best_other"]["gap_in_std"] < 0.5  # all trials: a tie
