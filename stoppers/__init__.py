"""Per-scale early stopping for HPCM fine-tuning sweeps.

``AdaptivePatience`` and ``report_fields`` have no Ray dependency; the Ray
Tune stopper is imported lazily so that a trainable or an analysis script can
use the plain class without importing Ray.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from stoppers.adaptive_patience import (
    ALL_STOPPED_KEY,
    IMPROVED,
    NO_IMPROVEMENT,
    STOPPED,
    WARMUP,
    AdaptivePatience,
    budget_settings,
    report_fields,
    stopper_settings,
)

if TYPE_CHECKING:
    from stoppers.tune_stopper import AllScalesStopper

__all__ = [
    "ALL_STOPPED_KEY",
    "IMPROVED",
    "NO_IMPROVEMENT",
    "STOPPED",
    "WARMUP",
    "AdaptivePatience",
    "AllScalesStopper",
    "budget_settings",
    "report_fields",
    "stopper_settings",
]


def __getattr__(name: str) -> Any:
    # Lazy: importing ray costs seconds and is not needed for the plain class.
    if name == "AllScalesStopper":
        from stoppers.tune_stopper import AllScalesStopper

        return AllScalesStopper
    raise AttributeError(f"module 'stoppers' has no attribute {name!r}")
