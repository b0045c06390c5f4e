"""Optuna define-by-run search spaces for the fine-tuning sweep.

Spaces are callable objects defined in this importable module, never lambdas, closures or
``__main__`` functions: OptunaSearch pickles its space with the experiment state, and a
space it cannot import again makes ``Tuner.restore`` fail (or, worse, restart silently).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import optuna

from hpcm_tune.errors import InputError
from hpcm_tune.names import FREEZE_STRATEGIES

#: The original report's range: it only ever slowed the context model down.
CONTEXT_LR_RANGE = (0.01, 1.0)


@dataclass(frozen=True)
class FineTuneSpace:
    """The searched knobs of one fine-tune.

    ``context_lr_ratio`` log-uniform in [0.01, ``max_context_lr_ratio``] (above 1 the
    context model trains faster than the transforms); ``freeze_strategy`` in
    {none, entropy, progressive}; only for progressive unfreezing,
    ``unfreeze_h_epoch < unfreeze_context_epoch < max_epochs``. ``wide`` also searches
    ``base_lr`` and ``h_multiplier``.
    """

    max_epochs: int
    wide: bool = False
    max_context_lr_ratio: float = CONTEXT_LR_RANGE[1]

    def __post_init__(self) -> None:
        if self.max_epochs < 3:
            raise InputError(
                f"the search space needs at least 3 epochs for progressive unfreezing, "
                f"got {self.max_epochs}")
        # At least the report's range, so that every preset's point lies in the space.
        if not CONTEXT_LR_RANGE[1] <= self.max_context_lr_ratio < math.inf:
            raise InputError(
                f"the largest context-LR ratio searched must be a number >= 1 (it widens the "
                f"report's range [0.01, 1]), got {self.max_context_lr_ratio}")

    @property
    def context_lr_range(self) -> tuple[float, float]:
        return CONTEXT_LR_RANGE[0], self.max_context_lr_ratio

    def __call__(self, trial: optuna.Trial) -> dict[str, Any] | None:
        trial.suggest_float("context_lr_ratio", *self.context_lr_range, log=True)
        strategy = trial.suggest_categorical("freeze_strategy", FREEZE_STRATEGIES)
        if strategy == "progressive":
            h = trial.suggest_int("unfreeze_h_epoch", 1, self.max_epochs - 2)
            trial.suggest_int("unfreeze_context_epoch", h + 1, self.max_epochs - 1)
        if self.wide:
            trial.suggest_float("base_lr", 1e-5, 1e-3, log=True)
            trial.suggest_float("h_multiplier", 0.1, 1.0, log=True)
        return None
