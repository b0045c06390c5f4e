"""Optuna samplers sized to the sweep's budget.

Optuna's TPE samples at random for its first ``n_startup_trials`` (10 by default): a sweep
of 8 trials would never leave that phase, and "TPE" would be random search. The start-up
here is a quarter of the trials (2 to 10). ``multivariate`` + ``group`` model the knobs
that appear together (the unfreeze epochs exist only for progressive unfreezing), and
``constant_liar`` keeps parallel workers from proposing the point a running trial holds.
"""

from __future__ import annotations

import warnings

import optuna

from hpcm_tune.errors import InputError
from hpcm_tune.names import SAMPLERS


def startup_trials(num_samples: int) -> int:
    """Random start-up trials of TPE for a sweep of ``num_samples`` trials."""
    return max(2, min(10, num_samples // 4))


def make_sampler(name: str, num_samples: int, seed: int) -> optuna.samplers.BaseSampler:
    """The sampler called ``name`` ("tpe" or "random") for a sweep of ``num_samples``."""
    if name == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    if name == "tpe":
        with warnings.catch_warnings():  # these three options are marked experimental
            warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning,
                                    message="Argument ``(multivariate|group|constant_liar)``")
            return optuna.samplers.TPESampler(
                n_startup_trials=startup_trials(num_samples), multivariate=True, group=True,
                constant_liar=True, seed=seed)
    raise InputError(f"unknown sampler {name!r}; choose one of {', '.join(SAMPLERS)}")
