"""Search presets: which configurations a sweep tries first.

Every preset is the same Optuna TPE search (seeded), warm-started with fixed points that
run before TPE proposes its own:

- ``optuna`` (default): the two configs a user would run without a sweep, its baselines:
  the original report's recommended config (ratio 0.1, entropy frozen) and plain
  fine-tuning (the context model at the transforms' LR, nothing frozen; the hyperprior at
  half of it, as everywhere); the report measures the winner against both. With a wide
  space every point keeps the task's base LR and h multiplier
  (``FineTuneSpace.complete``);
- ``seed-context-lr``: context ratios 1.0, 0.5, 0.1, 0.01 (entropy frozen);
- ``seed-freeze``: none, entropy, and progressive unfreezing at epochs 100/200 of the
  report's 500-epoch progressive run (1/5 and 2/5 of the budget), scaled to this sweep's
  epoch budget (ratio 0.1);
- ``seed-ablation``: both of the above, i.e. the report's 7 ablation runs. Its ratio and
  freeze ablations share the (0.1, entropy) run, so this preset holds 6 distinct points.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from hpcm_tune.errors import InputError
from hpcm_tune.names import SEARCH_PRESETS

REPORT_EPOCHS = 500  # the report's progressive run, which its unfreeze epochs 100 / 200 refer to
RECOMMENDED: dict[str, Any] = {"context_lr_ratio": 0.1, "freeze_strategy": "entropy"}
PLAIN: dict[str, Any] = {"context_lr_ratio": 1.0, "freeze_strategy": "none"}


@dataclass(frozen=True)
class Baseline:
    """A config that a sweep's winner is measured against: what a user would run without it.
    A scheduler never culls it (``stoppers.scheduler``): a control is measured at full budget."""

    key: str  # its entry in ``analysis.Experiment.winner()``
    label: str
    config: dict[str, Any]

    def ran_in(self, trial: Mapping[str, Any]) -> bool:
        """Whether ``trial`` (a trial's config, or its row of the trials table) ran this."""
        for key, value in self.config.items():
            mine = trial.get(key)
            if isinstance(value, str):
                if mine != value:
                    return False
            elif not isinstance(mine, float | int) or not math.isclose(mine, value, rel_tol=1e-9):
                return False  # absent, None or NaN (a knob this trial did not have) included
        return True


def is_baseline(trial: Mapping[str, Any]) -> bool:
    """Whether ``trial`` ran one of :data:`BASELINES`."""
    return any(b.ran_in(trial) for b in BASELINES)


BASELINES = (Baseline("recommended", "the original report's recommended config", RECOMMENDED),
             Baseline("plain", "plain fine-tuning", PLAIN))


def _context_lr_points() -> list[dict[str, Any]]:
    return [{"context_lr_ratio": r, "freeze_strategy": "entropy"} for r in (1.0, 0.5, 0.1, 0.01)]


def rescale_unfreeze_epochs(point: dict[str, Any], from_epochs: int,
                            to_epochs: int) -> dict[str, Any]:
    """``point`` for an epoch budget of ``to_epochs`` instead of ``from_epochs``: progressive
    unfreezing at the same fractions of the budget, rounded, and kept in the search space
    (``1 <= unfreeze_h_epoch < unfreeze_context_epoch < to_epochs``)."""
    if point.get("freeze_strategy") != "progressive":
        return dict(point)
    scale = to_epochs / from_epochs
    h = min(to_epochs - 2, max(1, round(point["unfreeze_h_epoch"] * scale)))
    c = min(to_epochs - 1, max(h + 1, round(point["unfreeze_context_epoch"] * scale)))
    return {**point, "unfreeze_h_epoch": h, "unfreeze_context_epoch": c}


def _freeze_points(max_epochs: int) -> list[dict[str, Any]]:
    progressive = {"context_lr_ratio": 0.1, "freeze_strategy": "progressive",
                   "unfreeze_h_epoch": 100, "unfreeze_context_epoch": 200}
    return [
        {"context_lr_ratio": 0.1, "freeze_strategy": "none"},
        {"context_lr_ratio": 0.1, "freeze_strategy": "entropy"},
        rescale_unfreeze_epochs(progressive, REPORT_EPOCHS, max_epochs),
    ]


def preset_points(preset: str, max_epochs: int) -> list[dict[str, Any]]:
    """The warm-start points of ``preset`` for an epoch budget of ``max_epochs``."""
    if preset == "optuna":
        return [dict(b.config) for b in BASELINES]
    if preset == "seed-context-lr":
        return _context_lr_points()
    if preset == "seed-freeze":
        return _freeze_points(max_epochs)
    if preset == "seed-ablation":
        points = _context_lr_points()
        return points + [p for p in _freeze_points(max_epochs) if p not in points]
    raise InputError(f"unknown search preset {preset!r}; choose one of "
                     f"{', '.join(SEARCH_PRESETS)}")
