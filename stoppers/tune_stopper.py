"""Ray Tune stopper: end a trial once all its scales have stopped.

The per-trial patience state is NOT kept here. A Tune stopper lives in the
driver and is saved with the experiment state only every >= 10 s, while a
trial retried after a worker failure re-reports the epochs after its last
checkpoint; driver-side counters would then drift from the weights. The
trainable therefore owns an :class:`~stoppers.AdaptivePatience`, checkpoints
it with the weights, and reports :func:`~stoppers.report_fields` every epoch;
this stopper only reads the decision (``patience/all_stopped``).

Optionally it also ends the whole experiment once a compute budget is spent.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping
from typing import Any

from ray.tune.stopper import Stopper

from hpcm_tune.errors import InputError
from stoppers.adaptive_patience import ALL_STOPPED_KEY


def _lookup(result: Mapping[str, Any], key: str) -> Any:
    """Find ``key`` as a flat "a/b/c" key or as a nested result["a"]["b"]["c"].

    Raises KeyError if absent.
    """
    if key in result:
        return result[key]
    node: Any = result
    for part in key.split("/"):
        if not isinstance(node, Mapping) or part not in node:
            raise KeyError(key)
        node = node[part]
    return node


class AllScalesStopper(Stopper):
    """Stop a trial exactly when its reported ``patience/all_stopped`` is true.

    Args:
        max_trial_epochs: stop the experiment once the sum over trials of each
            trial's latest ``training_iteration`` reaches this (None: no limit).
            Taking the latest value, not adding every result, means epochs a
            restored trial re-reports are not counted twice.
        max_device_hours: stop the experiment once the sum over trials of
            ``time_total_s`` x ``devices`` (the trial's reported device count,
            1 if not reported) / 3600 reaches this (None: no limit).
        key: the result field holding the trial's all-scales-stopped flag.

    All state is plain dicts of numbers, so the stopper pickles with the
    experiment state and a restored experiment keeps its spent budget.
    """

    def __init__(
        self,
        max_trial_epochs: int | None = None,
        max_device_hours: float | None = None,
        key: str = ALL_STOPPED_KEY,
    ) -> None:
        if max_trial_epochs is not None and (
            isinstance(max_trial_epochs, bool)
            or not isinstance(max_trial_epochs, int)
            or max_trial_epochs < 1
        ):
            raise InputError(
                f"max_trial_epochs must be a positive int or None, got {max_trial_epochs!r}"
            )
        if max_device_hours is not None and (
            isinstance(max_device_hours, bool)
            or not isinstance(max_device_hours, numbers.Real)
            or not math.isfinite(max_device_hours)
            or max_device_hours <= 0
        ):
            raise InputError(
                f"max_device_hours must be a positive number or None, got {max_device_hours!r}"
            )
        self.max_trial_epochs = max_trial_epochs
        self.max_device_hours = None if max_device_hours is None else float(max_device_hours)
        self.key = key
        self._epochs: dict[str, int] = {}
        self._device_seconds: dict[str, float] = {}

    @property
    def trial_epochs(self) -> int:
        """Sum over the trials seen of their latest ``training_iteration``."""
        return sum(self._epochs.values())

    @property
    def device_hours(self) -> float:
        """Sum over the trials seen of their latest time_total_s x devices, in hours."""
        return sum(self._device_seconds.values()) / 3600.0

    def __call__(self, trial_id: str, result: dict[str, Any]) -> bool:
        """Record the trial's budget use; True if all its scales have stopped."""
        self._account(trial_id, result)
        try:
            flag = _lookup(result, self.key)
        except KeyError:
            raise ValueError(
                f"result of trial {trial_id} has no {self.key!r}: the trainable did not report "
                "patience state; add stoppers.report_fields(ap) to every tune.report"
            ) from None
        # Accept bool-likes (numpy bools, 0/1) but not e.g. a NaN float, which is truthy.
        if not isinstance(flag, numbers.Integral) or flag not in (0, 1):
            raise ValueError(f"trial {trial_id}: {self.key!r} must be a bool, got {flag!r}")
        return bool(flag)

    def _account(self, trial_id: str, result: Mapping[str, Any]) -> None:
        if self.max_trial_epochs is not None:
            if "training_iteration" not in result:
                raise ValueError(f"result of trial {trial_id} has no 'training_iteration'")
            self._epochs[trial_id] = int(result["training_iteration"])
        if self.max_device_hours is not None:
            if "time_total_s" not in result:
                raise ValueError(f"result of trial {trial_id} has no 'time_total_s'")
            devices = result.get("devices", 1)
            if isinstance(devices, bool) or not isinstance(devices, numbers.Real) or devices <= 0:
                raise ValueError(
                    f"trial {trial_id}: 'devices' must be a positive number, got {devices!r}"
                )
            self._device_seconds[trial_id] = float(result["time_total_s"]) * float(devices)

    def stop_all(self) -> bool:
        """True once a configured compute budget is spent."""
        if self.max_trial_epochs is not None and self.trial_epochs >= self.max_trial_epochs:
            return True
        return self.max_device_hours is not None and self.device_hours >= self.max_device_hours


def budget_spent(latest: Mapping[str, Mapping[str, Any]], max_trial_epochs: int | None,
                 max_device_hours: float | None) -> bool:
    """Whether the trials' latest results (trial id -> result) spend a sweep's compute budget,
    counted as :meth:`AllScalesStopper.stop_all` counts it. Tune ends the trials still running
    alike when the budget is spent and when the sweep is interrupted (Ctrl-C): this tells
    which, after the fact (a restored sweep's stopper lives in its controller only)."""
    stopper = AllScalesStopper(max_trial_epochs, max_device_hours)
    for trial_id, result in latest.items():
        stopper._account(trial_id, result)
    return stopper.stop_all()
