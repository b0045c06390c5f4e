"""Optuna define-by-run search spaces for the fine-tuning sweep.

Spaces are callable objects defined in this importable module, never lambdas, closures or
``__main__`` functions: OptunaSearch pickles its space with the experiment state, and a
space it cannot import again makes ``Tuner.restore`` fail (or, worse, restart silently).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import optuna

from hpcm_tune.errors import InputError
from hpcm_tune.names import FREEZE_STRATEGIES, WIDE_KNOBS

#: The original report's range: it only ever slowed the context model down.
CONTEXT_LR_RANGE = (0.01, 1.0)
#: ``wide`` also searches the base LR (the transforms') log-uniform within this factor of the
#: task's, both ways: a fine-tune's LR is refined around the one a user would pick (on the
#: demo task the best lies at twice it), not drawn from decades away, where most draws of a
#: short sweep would be wasted (an absolute [1e-5, 1e-3] drew 10 of 18 below a fifth of it).
BASE_LR_FACTOR = 4.0
#: ... and the hyperprior's LR as a share of the base LR (log-uniform).
H_MULTIPLIER_RANGE = (0.1, 1.0)
#: A value within this share of its range's log width from an end lies "at" that end: a
#: search whose best lies there may have its optimum outside the range.
RANGE_END_SHARE = 0.1


@dataclass(frozen=True)
class RangeEnd:
    """A searched value at an end of its range (``FineTuneSpace.ends_reached``)."""

    knob: str
    value: float
    low: float
    high: float

    @property
    def top(self) -> bool:
        """At the top end (else at the bottom)."""
        return math.log(self.value / self.low) > math.log(self.high / self.value)


@dataclass(frozen=True)
class FineTuneSpace:
    """The searched knobs of one fine-tune.

    ``context_lr_ratio`` log-uniform in [0.01, ``max_context_lr_ratio``] (above 1 the
    context model trains faster than the transforms); ``freeze_strategy`` in
    {none, entropy, progressive}; only for progressive unfreezing,
    ``unfreeze_h_epoch < unfreeze_context_epoch < max_epochs``. ``wide`` also searches
    ``base_lr`` within :data:`BASE_LR_FACTOR` of the task's ``base_lr`` and
    ``h_multiplier`` in :data:`H_MULTIPLIER_RANGE`.
    """

    max_epochs: int
    wide: bool = False
    max_context_lr_ratio: float = CONTEXT_LR_RANGE[1]
    base_lr: float = 1e-4  # the task's: the centre of the searched range when wide

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
        if not 0 < self.base_lr < math.inf:
            raise InputError(f"base_lr must be a finite number > 0, got {self.base_lr}")

    @property
    def context_lr_range(self) -> tuple[float, float]:
        return CONTEXT_LR_RANGE[0], self.max_context_lr_ratio

    @property
    def base_lr_range(self) -> tuple[float, float]:
        return self.base_lr / BASE_LR_FACTOR, self.base_lr * BASE_LR_FACTOR

    @property
    def ranges(self) -> dict[str, tuple[float, float]]:
        """The searched numeric knobs' ranges (each log-uniform), the unfreeze epochs aside:
        the budget bounds those."""
        ranges = {"context_lr_ratio": self.context_lr_range}
        if self.wide:
            ranges.update(base_lr=self.base_lr_range, h_multiplier=H_MULTIPLIER_RANGE)
        return ranges

    def contains(self, point: Mapping[str, Any]) -> bool:
        """Whether ``point``'s searched values lie in this space (an earlier sweep's trial)."""
        return all(low <= point[key] <= high for key, (low, high) in self.ranges.items()
                   if key in point)

    def ends_reached(self, point: Mapping[str, Any]) -> list[RangeEnd]:
        """``point``'s values within :data:`RANGE_END_SHARE` of their range's log width from
        an end (a winner there suggests widening the range past it)."""
        ends = []
        for key, (low, high) in self.ranges.items():
            value = point.get(key)
            if value is None or not low <= value <= high:
                continue
            margin = RANGE_END_SHARE * math.log(high / low)
            if min(math.log(value / low), math.log(high / value)) <= margin:
                ends.append(RangeEnd(key, float(value), low, high))
        return ends

    def __call__(self, trial: optuna.Trial) -> dict[str, Any] | None:
        trial.suggest_float("context_lr_ratio", *self.context_lr_range, log=True)
        strategy = trial.suggest_categorical("freeze_strategy", FREEZE_STRATEGIES)
        if strategy == "progressive":
            h = trial.suggest_int("unfreeze_h_epoch", 1, self.max_epochs - 2)
            trial.suggest_int("unfreeze_context_epoch", h + 1, self.max_epochs - 1)
        if self.wide:
            trial.suggest_float("base_lr", *self.base_lr_range, log=True)
            trial.suggest_float("h_multiplier", *H_MULTIPLIER_RANGE, log=True)
        return None

    def complete(self, point: Mapping[str, Any], task: Mapping[str, Any]) -> dict[str, Any]:
        """``point`` (a preset's config) with the wide knobs it leaves open set to the task's
        (``task``: a trial's flat config). Left to the sampler, a baseline would train at a
        drawn base LR and no longer be the config it is named after."""
        if not self.wide:
            return dict(point)
        return {**{k: task[k] for k in WIDE_KNOBS}, **point}
