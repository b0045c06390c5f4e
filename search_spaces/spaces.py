"""Optuna define-by-run search spaces for the fine-tuning sweep.

Spaces are callable objects defined in this importable module, never lambdas, closures or
``__main__`` functions: OptunaSearch pickles its space with the experiment state, and a
space it cannot import again makes ``Tuner.restore`` fail (or, worse, restart silently).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import optuna

from hpcm_tune.errors import InputError
from hpcm_tune.names import FREEZE_STRATEGIES

#: The original report's range (it only ever slowed the context model down) ...
CONTEXT_LR_RANGE = (0.01, 1.0)
#: ... and ``wide``'s, where the context model may also train faster than the transforms.
WIDE_CONTEXT_LR_RANGE = (0.01, 4.0)


@dataclass(frozen=True)
class FineTuneSpace:
    """The searched knobs of one fine-tune.

    ``context_lr_ratio`` log-uniform in [0.01, 1]; ``freeze_strategy`` in
    {none, entropy, progressive}; only for progressive unfreezing,
    ``unfreeze_h_epoch < unfreeze_context_epoch < max_epochs``. ``wide`` searches the
    ratio in [0.01, 4] and also ``base_lr`` and ``h_multiplier``.
    """

    max_epochs: int
    wide: bool = False

    def __post_init__(self) -> None:
        if self.max_epochs < 3:
            raise InputError(
                f"the search space needs at least 3 epochs for progressive unfreezing, "
                f"got {self.max_epochs}")

    @property
    def context_lr_range(self) -> tuple[float, float]:
        return WIDE_CONTEXT_LR_RANGE if self.wide else CONTEXT_LR_RANGE

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
