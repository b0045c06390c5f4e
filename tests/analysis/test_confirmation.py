"""Seed confirmation: which sweep trials are re-run, and how their seeds are compared.

The experiments are built from tables (as ``analysis.load_experiment`` returns them); the
whole flow on a real sweep (``tune_main.py confirm`` and ``analyze``) is tested in
``tests/trainables/test_sweep.py``.
"""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd
import pytest

from analysis.confirmation import compare, pick_candidates, summary_lines
from analysis.results import Experiment
from hpcm_tune.errors import InputError
from hpcm_tune.names import CULLED

SEARCHED = ["context_lr_ratio", "freeze_strategy", "unfreeze_h_epoch",
            "unfreeze_context_epoch"]
A = {"context_lr_ratio": 0.9, "freeze_strategy": "none"}
B = {"context_lr_ratio": 0.5, "freeze_strategy": "progressive", "unfreeze_h_epoch": 1,
     "unfreeze_context_epoch": 3}
C = {"context_lr_ratio": 0.1, "freeze_strategy": "entropy"}
PLAIN = {"context_lr_ratio": 1.0, "freeze_strategy": "none"}  # plain fine-tuning


def _experiment(rows: list[tuple[str, dict, int, float, str]], options: dict | None = None,
                lmbda: float | None = None) -> Experiment:
    """Trials ``(trial id, config, seed, best loss, stop reason)``; knobs a config leaves out
    are NaN, as in a loaded experiment (the epoch knobs are floats in their column)."""
    table = pd.DataFrame([{"trial_id": t, **{k: config.get(k, math.nan) for k in SEARCHED},
                           "family": config["freeze_strategy"], "seed": seed,
                           "best_loss": loss, "stop_reason": reason,
                           **({"lmbda": lmbda} if lmbda is not None else {})}
                          for t, config, seed, loss, reason in rows])
    return Experiment(path=Path("exp"), options=options or {}, trials=table,
                      epochs=pd.DataFrame(), searched=SEARCHED)


def _candidate(trial_id: str, config: dict, loss: float, reason: str = "max epochs") -> dict:
    return {"trial_id": trial_id, "config": config, "seed": 0, "best_loss": loss,
            "stop_reason": reason}


def _confirmation(candidates: list[dict], rows: list[tuple], seeds=(1, 2)) -> Experiment:
    return _experiment(rows, {"confirm": {"source": "results/sweep", "candidates": candidates,
                                          "seeds": list(seeds)}})


def test_the_top_trials_are_picked_best_first_with_their_own_knobs_only():
    sweep = _experiment([("a", A, 0, 0.30, "max epochs"), ("b", B, 0, 0.20, "max epochs"),
                         ("c", C, 0, 0.25, CULLED), ("d", C, 0, math.nan, "error")])
    picked = pick_candidates(sweep, 2)
    assert [c["trial_id"] for c in picked] == ["b", "c"]
    # The epoch knobs come back as ints (JSON and the trials' configs compare equal).
    assert picked[0]["config"] == B and picked[1]["config"] == C
    assert picked[1]["stop_reason"] == CULLED and picked[0]["seed"] == 0
    assert [c["trial_id"] for c in pick_candidates(sweep, 10)] == ["b", "c", "a"]


def test_plain_fine_tuning_is_confirmed_beside_the_top_configs():
    sweep = _experiment([("a", A, 0, 0.20, "max epochs"), ("b", B, 0, 0.21, "max epochs"),
                         ("c", C, 0, 0.22, "max epochs"), ("p", PLAIN, 0, 0.23, "max epochs")])
    picked = pick_candidates(sweep, 2)
    assert [(c["trial_id"], c["rank"], c.get("label")) for c in picked] == [
        ("a", 1, None), ("b", 2, None), ("p", 4, "plain fine-tuning")]
    assert [c["trial_id"] for c in pick_candidates(sweep, 2, with_plain=False)] == ["a", "b"]
    assert [c["trial_id"] for c in pick_candidates(sweep, 4)] == ["a", "b", "c", "p"]  # once
    assert [c["trial_id"] for c in pick_candidates(_experiment(
        [("a", A, 0, 0.2, "max epochs"), ("c", C, 0, 0.3, "max epochs")]), 1)] == ["a"]
    # The verdict names it, with its rank in the sweep.
    exp = _confirmation(
        [_candidate("a", A, 0.20), {**_candidate("p", PLAIN, 0.23), "rank": 4,
                                    "label": "plain fine-tuning"}],
        [("a1", A, 1, 0.25, "max epochs"), ("p1", PLAIN, 1, 0.24, "max epochs"),
         ("a2", A, 2, 0.25, "max epochs"), ("p2", PLAIN, 2, 0.26, "max epochs")])
    lines = summary_lines(compare(exp))
    assert lines[1].startswith("sweep #4 (plain fine-tuning) p (context_lr_ratio 1, ")
    assert lines[2].startswith("winner vs plain fine-tuning p: ahead at 2 of 3 seeds")
    assert lines[2].endswith("a tie")


@pytest.mark.parametrize("make, top, message", [
    (lambda: _experiment([("a", A, 0, 0.3, "max epochs")]), 0, "--top must be 1 or more"),
    (lambda: _experiment([("a", A, 0, math.nan, "error")]), 2, "no finished trial"),
    (lambda: _confirmation([_candidate("a", A, 0.3)], [("x", A, 1, 0.3, "max epochs")]), 2,
     "is a confirmation already; confirm the sweep it came from, results/sweep"),
    (lambda: _lambdas(), 2, "several lambdas"),
])
def test_what_cannot_be_confirmed_is_refused(make, top, message):
    with pytest.raises(InputError, match=message):
        pick_candidates(make(), top)


def _lambdas() -> Experiment:
    a = _experiment([("a", A, 0, 0.3, "max epochs")], lmbda=0.01)
    b = _experiment([("b", A, 0, 0.4, "max epochs")], lmbda=0.05)
    return Experiment(path=a.path, options={}, trials=pd.concat([a.trials, b.trials]),
                      epochs=a.epochs, searched=SEARCHED)


def test_the_winner_is_compared_seed_by_seed_and_the_lowest_mean_is_recommended():
    """A seed shifts both configs alike (seed 2 by -10 %): paired, the winner's lead holds
    at every seed, although its seed-0 loss is above the runner-up's seed-2 loss."""
    exp = _confirmation(
        [_candidate("w", A, 0.300), _candidate("r", B, 0.303)],
        [("w1", A, 1, 0.290, "max epochs"), ("r1", B, 1, 0.295, "all scales stopped"),
         ("w2", A, 2, 0.270, "max epochs"), ("r2", B, 2, 0.272, "max epochs")])
    result = compare(exp)
    assert result["seeds"] == result["common_seeds"] == [0, 1, 2]
    winner, other = result["candidates"]
    assert winner["losses"] == {0: 0.300, 1: 0.290, 2: 0.270}
    assert winner["trials"] == {0: "w (sweep)", 1: "w1", 2: "w2"}
    assert winner["mean"] == pytest.approx((0.300 + 0.290 + 0.270) / 3)
    (versus,) = result["versus"]
    assert versus["ahead"] == 3 and versus["verdict"] == "holds"
    assert versus["gaps_pct"] == pytest.approx([1.0, 100 * (0.295 / 0.290 - 1),
                                                100 * (0.272 / 0.270 - 1)])
    assert result["best"] == "w"
    lines = summary_lines(result)
    assert any(line.startswith("winner vs r: ahead at 3 of 3 seeds") and
               line.endswith("its lead holds") for line in lines)
    assert lines[-1].startswith('use: w\'s config {"context_lr_ratio": 0.9')


def test_a_reversed_lead_recommends_the_other_config():
    exp = _confirmation(
        [_candidate("w", A, 0.300), _candidate("r", C, 0.301)],
        [("w1", A, 1, 0.300, "max epochs"), ("r1", C, 1, 0.290, "max epochs"),
         ("w2", A, 2, 0.300, "max epochs"), ("r2", C, 2, 0.290, "max epochs")])
    result = compare(exp)
    # Behind at seeds 1 and 2, ahead at the sweep's seed 0: mixed, a tie ...
    assert result["versus"][0]["verdict"] == "tie" and result["versus"][0]["ahead"] == 1
    # ... but the other config has the lower mean over the three seeds.
    assert result["best"] == "r"
    exp = _confirmation(
        [_candidate("w", A, 0.300), _candidate("r", C, 0.301, reason=CULLED)],
        [("w1", A, 1, 0.300, "max epochs"), ("r1", C, 1, 0.290, "max epochs"),
         ("w2", A, 2, 0.300, "max epochs"), ("r2", C, 2, 0.290, "max epochs")])
    result = compare(exp)
    # The culled sweep trial's best-so-far is no seed: behind at both new seeds, reversed.
    assert result["candidates"][1]["losses"] == {1: 0.290, 2: 0.290}
    assert result["common_seeds"] == [1, 2]
    assert result["versus"][0]["verdict"] == "reversed" and result["best"] == "r"
    assert "reversed: r is ahead at every seed" in "\n".join(summary_lines(result))


def test_trials_that_did_not_finish_their_budget_are_no_seed():
    exp = _confirmation(
        [_candidate("w", A, 0.300), _candidate("r", B, 0.303)],
        [("w1", A, 1, 0.290, "max epochs"), ("r1", B, 1, 0.280, "budget"),
         ("r2", B, 2, math.nan, "error")], seeds=(1, 2))
    result = compare(exp)
    assert result["candidates"][1]["losses"] == {0: 0.303}
    # Only seed 0 is shared: one seed is no verdict.
    assert result["versus"][0]["verdict"] == "tie"
    assert result["common_seeds"] == [0]
    assert "one seed: run more with --seeds" in "\n".join(summary_lines(result))


def test_a_sweep_is_not_a_confirmation():
    with pytest.raises(InputError, match="is not a confirmation"):
        compare(_experiment([("a", A, 0, 0.3, "max epochs")]))
