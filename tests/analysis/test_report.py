"""The report's overview: what the sweep was (its ratio range too), and where its search began."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from analysis.report import _overview
from analysis.results import Experiment


def _overview_text(options: dict) -> str:
    exp = Experiment(path=Path("sweep"), options=options, trials=pd.DataFrame({"trial_id": ["a"]}),
                     epochs=pd.DataFrame())
    return _overview(exp)[1][1]


def test_the_overview_says_where_a_warm_started_search_began():
    base = {"epochs": 12, "preset": "optuna", "trial": {"model": "tiny", "lmbda": 0.0003}}
    assert "Warm-started" not in _overview_text(base)
    trials = [{"trial_id": "x", "params": {}, "best_loss": 0.3}] * 3
    same = {**base, "warm_start": {"source": "/r/a", "epochs": 12, "trials": trials,
                                   "differences": []}}
    assert _overview_text(same).endswith(
        "Warm-started from `/r/a`: its 3 trials (the same task) told to the sampler.")
    other = {**base, "warm_start": {"source": "/r/a", "epochs": 20, "trials": trials,
                                    "differences": ["epochs 20 -> 12"]}}
    assert _overview_text(other).endswith(
        "Warm-started from `/r/a`: another task (epochs 20 -> 12), its best configs run first.")


def test_the_overview_names_a_ratio_range_beyond_the_reports():
    base = {"epochs": 12, "preset": "optuna", "trial": {"model": "tiny", "lmbda": 0.0003}}
    assert "Context-LR ratios" not in _overview_text(base)  # an older marker: the report's
    assert "Context-LR ratios" not in _overview_text({**base, "max_context_lr_ratio": 1.0})
    assert _overview_text({**base, "max_context_lr_ratio": 4.0}).endswith(
        "Context-LR ratios searched up to 4.")
