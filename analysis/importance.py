"""Importance of the searched knobs for the best loss, with Optuna's importance evaluators.

The finished trials are replayed into an in-memory Optuna study (their searched values and
``best_loss``, the value the sweep optimised). Conditional parameters are handled in two
passes, because Optuna's evaluators only rank parameters present in every trial:

* ``all trials``: the unconditional knobs (``context_lr_ratio``, ``freeze_strategy``, and
  ``base_lr`` / ``h_multiplier`` in a wide search) over every finished trial;
* ``progressive only``: among the trials with progressive unfreezing, the unfreeze epochs
  together with the other knobs that vary there.

Importances are normalised to sum to 1 within each pass; with a handful of trials they are
a hint, not a measurement (the report says how many trials each pass used).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd

    from analysis.results import Experiment

CONDITIONAL = {"unfreeze_h_epoch": "progressive", "unfreeze_context_epoch": "progressive"}
MIN_TRIALS = 3


def _distribution(name: str, values: "pd.Series", epochs: int | None):
    import optuna

    from hpcm_tune.names import FREEZE_STRATEGIES
    from search_spaces.spaces import CONTEXT_LR_RANGE

    d = optuna.distributions
    if name == "freeze_strategy":
        choices = tuple(dict.fromkeys(list(FREEZE_STRATEGIES) + sorted(set(values))))
        return d.CategoricalDistribution(choices)
    if name in CONDITIONAL:
        low = int(values.min())
        high = int(values.max())
        if epochs:
            low, high = min(low, 1), max(high, epochs - 1)
        return d.IntDistribution(low, max(high, low + 1))
    low, high = float(values.min()), float(values.max())
    if name == "context_lr_ratio":
        low, high = min(low, CONTEXT_LR_RANGE[0]), max(high, CONTEXT_LR_RANGE[1])
    if high <= low:
        high = low * 2 if low > 0 else low + 1
    return d.FloatDistribution(low, high, log=low > 0)


def _importances(trials: "pd.DataFrame", params: list[str], epochs: int | None,
                 evaluator: str, seed: int) -> dict[str, float]:
    import optuna

    params = [p for p in params if trials[p].nunique(dropna=True) > 1]
    if not params or len(trials) < MIN_TRIALS:
        return {}
    dists = {p: _distribution(p, trials[p].dropna(), epochs) for p in params}
    study = optuna.create_study(direction="minimize")
    for _, row in trials.iterrows():
        values = {p: (int(row[p]) if isinstance(dists[p], optuna.distributions.IntDistribution)
                      else row[p].item() if hasattr(row[p], "item") else row[p]) for p in params}
        study.add_trial(optuna.trial.create_trial(
            params=values, distributions=dists, value=float(row["best_loss"])))
    if evaluator == "fanova":
        ev = optuna.importance.FanovaImportanceEvaluator(seed=seed)
    elif evaluator == "mdi":
        ev = optuna.importance.MeanDecreaseImpurityImportanceEvaluator(seed=seed)
    elif evaluator == "ped-anova":
        ev = optuna.importance.PedAnovaImportanceEvaluator()
    else:
        raise ValueError(f"unknown importance evaluator {evaluator!r}: fanova, mdi or ped-anova")
    result = optuna.importance.get_param_importances(study, evaluator=ev, params=params)
    return {k: float(v) for k, v in result.items()}


def parameter_importance(exp: "Experiment", evaluator: str = "fanova",
                         seed: int = 0) -> "pd.DataFrame":
    """Importance of each searched knob for ``best_loss``.

    Returns a DataFrame with columns ``scope`` ("all trials" / "progressive only"),
    ``param``, ``importance`` (sums to 1 within a scope) and ``trials`` (how many trials the
    scope used). Empty when fewer than 3 trials finished or nothing varied.
    """
    import logging

    import optuna
    import pandas as pd

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    logging.getLogger("optuna").setLevel(logging.WARNING)
    done = exp.finished()
    epochs = exp.options.get("epochs")
    rows: list[dict[str, Any]] = []
    unconditional = [p for p in exp.searched if p not in CONDITIONAL]
    for p, v in _importances(done, unconditional, epochs, evaluator, seed).items():
        rows.append({"scope": "all trials", "param": p, "importance": v, "trials": len(done)})
    if "freeze_strategy" in done:
        prog = done[done["freeze_strategy"] == "progressive"]
        params = [p for p in exp.searched if p != "freeze_strategy"]
        params = [p for p in params if p in prog and prog[p].notna().all()]
        for p, v in _importances(prog, params, epochs, evaluator, seed).items():
            rows.append({"scope": "progressive only", "param": p, "importance": v,
                         "trials": len(prog)})
    out = pd.DataFrame(rows, columns=["scope", "param", "importance", "trials"])
    return out[out["importance"].map(lambda v: math.isfinite(v))].reset_index(drop=True)
