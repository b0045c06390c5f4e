"""Per-scale early stopping with adaptive patience.

HPCM codes its latent in three lattices (s1, s2, s3) and a fine-tuning trial
reports one loss per scale each epoch. ``AdaptivePatience`` tracks every scale
on its own: a scale stops once it has gone ``patience`` epochs without
improving by more than ``min_delta``, and that patience grows while the scale
still improves quickly and shrinks while it has stalled. The trial is done
when every scale has stopped.

This module deliberately has no Ray import: the trainable owns an instance,
checkpoints ``state_dict()`` together with the model weights, and reports
``report_fields(ap)`` so a driver-side Tune stopper only reads the decision.
"""

from __future__ import annotations

import logging
import math
import numbers
from collections.abc import Mapping, Sequence
from typing import Any

from hpcm_tune.errors import InputError
from hpcm_tune.names import SCALES

log = logging.getLogger(__name__)

#: Decisions returned by :meth:`AdaptivePatience.step`, per scale.
IMPROVED = "improved"
NO_IMPROVEMENT = "no_improvement"
STOPPED = "stopped"
WARMUP = "warmup"  # an epoch before ``warmup_epochs``: recorded, not judged

_STATE_VERSION = 1


def _check_int(name: str, value: Any, minimum: int) -> int:
    # bool is an int subclass; True as a patience is a bug, not a 1.
    if isinstance(value, bool) or not isinstance(value, int):
        raise InputError(f"{name} must be an int, got {value!r}")
    if value < minimum:
        raise InputError(f"{name} must be >= {minimum}, got {value}")
    return value


def _check_rate(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise InputError(f"{name} must be a number, got {value!r}")
    if not math.isfinite(value) or value < 0:
        raise InputError(f"{name} must be finite and >= 0, got {value}")
    return float(value)


class AdaptivePatience:
    """Early stopping per scale; the trial stops once every scale has stopped.

    Per epoch and per scale not yet stopped:

    * the value is appended to the scale's history;
    * it is an improvement only if it beats the best value by MORE than
      ``min_delta`` (best, best epoch update, counter resets) -> ``"improved"``;
    * otherwise the counter grows -> ``"no_improvement"``, and once the counter
      reaches the scale's current patience the scale stops -> ``"stopped"``.

    Then, for each scale still running with at least two values, the
    improvement rate over the last ``window`` values is (first - last) / count
    for ``mode="min"`` (last - first for ``"max"``), clipped at 0 so that a
    worsening trend never counts as progress. The mean of the last
    ``rate_window`` rates moves the patience: above ``fast_rate`` it grows by
    ``patience_up`` (up to ``max_patience``), below ``slow_rate`` it shrinks by
    ``patience_down`` (down to ``min_patience``).

    ``warmup_epochs`` (default 0, an addition to the report's algorithm) leaves
    epochs ``0 .. warmup_epochs - 1`` unjudged: their values enter the history
    (so rates and plots see them) but set no best, count no patience and move
    none -> ``"warmup"``. Fine-tuning often gets worse while its learning rates
    warm up and settle; a short patience would otherwise stop it there.

    ``relative`` (default False: the report's absolute algorithm) measures every gain
    as a fraction of the value it improves on: ``min_delta``, ``fast_rate`` and
    ``slow_rate`` then mean "0.1 %" rather than "0.001 loss units", so one setting fits
    losses of any scale (see :func:`budget_settings`).

    Epochs must strictly increase across calls to :meth:`step`, so restoring
    a checkpoint and re-running epochs replays decisions instead of counting
    them twice.
    """

    def __init__(
        self,
        scales: Sequence[str] = SCALES,
        patience: int = 50,
        min_patience: int = 10,
        max_patience: int = 200,
        min_delta: float = 1e-4,
        mode: str = "min",
        window: int = 10,
        rate_window: int = 5,
        fast_rate: float = 0.01,
        slow_rate: float = 0.001,
        patience_up: int = 10,
        patience_down: int = 5,
        warmup_epochs: int = 0,
        relative: bool = False,
    ) -> None:
        if isinstance(scales, str) or not isinstance(scales, Sequence):
            raise InputError(f"scales must be a sequence of names, got {scales!r}")
        if not scales:
            raise InputError("scales must name at least one scale")
        for scale in scales:
            if not isinstance(scale, str) or not scale:
                raise InputError(f"scales must be non-empty strings, got {scale!r}")
        if len(set(scales)) != len(scales):
            raise InputError(f"scales must be unique, got {list(scales)}")
        _check_int("min_patience", min_patience, 1)
        _check_int("patience", patience, 1)
        _check_int("max_patience", max_patience, 1)
        if not min_patience <= patience <= max_patience:
            raise InputError(
                "need min_patience <= patience <= max_patience, got "
                f"min_patience={min_patience}, patience={patience}, max_patience={max_patience}"
            )
        _check_rate("min_delta", min_delta)
        if mode not in ("min", "max"):
            raise InputError(f"mode must be 'min' or 'max', got {mode!r}")
        _check_int("window", window, 2)
        _check_int("rate_window", rate_window, 1)
        _check_rate("fast_rate", fast_rate)
        _check_rate("slow_rate", slow_rate)
        if slow_rate > fast_rate:
            # Otherwise a rate could be both "fast" and "slow" at once.
            raise InputError(f"slow_rate ({slow_rate}) must be <= fast_rate ({fast_rate})")
        # 0 is allowed: it turns the adaptation off in that direction.
        _check_int("patience_up", patience_up, 0)
        _check_int("patience_down", patience_down, 0)
        _check_int("warmup_epochs", warmup_epochs, 0)
        if not isinstance(relative, bool):
            raise InputError(f"relative must be a bool, got {relative!r}")

        self.scales: tuple[str, ...] = tuple(scales)
        self.initial_patience = patience
        self.min_patience = min_patience
        self.max_patience = max_patience
        self.min_delta = float(min_delta)
        self.mode = mode
        self.window = window
        self.rate_window = rate_window
        self.fast_rate = float(fast_rate)
        self.slow_rate = float(slow_rate)
        self.patience_up = patience_up
        self.patience_down = patience_down
        self.warmup_epochs = warmup_epochs
        self.relative = relative

        self._last_epoch: int | None = None
        self._history: dict[str, list[tuple[int, float]]] = {s: [] for s in self.scales}
        self._rates: dict[str, list[tuple[int, float]]] = {s: [] for s in self.scales}
        self._patience_history: dict[str, list[tuple[int, int]]] = {s: [] for s in self.scales}
        self._best: dict[str, float | None] = {s: None for s in self.scales}
        self._best_epoch: dict[str, int | None] = {s: None for s in self.scales}
        self._counter: dict[str, int] = {s: 0 for s in self.scales}
        self._patience: dict[str, int] = {s: patience for s in self.scales}
        self._stop_epoch: dict[str, int | None] = {s: None for s in self.scales}

    # ------------------------------------------------------------------ config
    def config(self) -> dict[str, Any]:
        """Constructor arguments, enough to build an equivalent fresh instance."""
        return {
            "scales": list(self.scales),
            "patience": self.initial_patience,
            "min_patience": self.min_patience,
            "max_patience": self.max_patience,
            "min_delta": self.min_delta,
            "mode": self.mode,
            "window": self.window,
            "rate_window": self.rate_window,
            "fast_rate": self.fast_rate,
            "slow_rate": self.slow_rate,
            "patience_up": self.patience_up,
            "patience_down": self.patience_down,
            "warmup_epochs": self.warmup_epochs,
            "relative": self.relative,
        }

    # --------------------------------------------------------------- read-only
    @property
    def history(self) -> dict[str, list[tuple[int, float]]]:
        """Per scale, the (epoch, value) pairs it took (none after it stopped)."""
        return {s: list(h) for s, h in self._history.items()}

    @property
    def rates(self) -> dict[str, list[tuple[int, float]]]:
        """Per scale, the (epoch, improvement rate) computed after each step."""
        return {s: list(r) for s, r in self._rates.items()}

    @property
    def patience_history(self) -> dict[str, list[tuple[int, int]]]:
        """Per scale, the (epoch, patience) in force after each step it took."""
        return {s: list(p) for s, p in self._patience_history.items()}

    @property
    def best(self) -> dict[str, float | None]:
        """Per scale, the best value so far (None before the first step)."""
        return dict(self._best)

    @property
    def best_epoch(self) -> dict[str, int | None]:
        """Per scale, the epoch of the best value (None before the first step)."""
        return dict(self._best_epoch)

    @property
    def counter(self) -> dict[str, int]:
        """Per scale, epochs since the last improvement."""
        return dict(self._counter)

    @property
    def patience(self) -> dict[str, int]:
        """Per scale, the current (adapted) patience."""
        return dict(self._patience)

    @property
    def stopped(self) -> dict[str, bool]:
        """Per scale, whether it has stopped."""
        return {s: e is not None for s, e in self._stop_epoch.items()}

    @property
    def stop_epoch(self) -> dict[str, int | None]:
        """Per scale, the epoch it stopped at (None while it runs)."""
        return dict(self._stop_epoch)

    def should_stop(self) -> bool:
        """True once every scale has stopped."""
        return all(e is not None for e in self._stop_epoch.values())

    # ------------------------------------------------------------------- logic
    def _gain(self, old: float, new: float) -> float:
        """How much better ``new`` is than ``old`` (negative if worse); with ``relative``,
        as a fraction of ``|old|``."""
        gain = old - new if self.mode == "min" else new - old
        if self.relative:
            return gain / abs(old) if old else gain  # from 0, a relative gain is undefined
        return gain

    def step(self, epoch: int, metrics: Mapping[str, float]) -> dict[str, str]:
        """Feed one epoch of per-scale values; return each scale's decision.

        Raises ValueError, leaving the state untouched, if ``epoch`` does not
        come after the previous one, a scale is missing, or a value is not a
        finite number.
        """
        if isinstance(epoch, bool) or not isinstance(epoch, int):
            raise ValueError(f"epoch must be an int, got {epoch!r}")
        if self._last_epoch is not None and epoch <= self._last_epoch:
            raise ValueError(
                f"epoch {epoch} is not after the last stepped epoch {self._last_epoch}; "
                "restore an earlier state_dict to replay epochs instead of counting them twice"
            )
        values: dict[str, float] = {}
        for scale in self.scales:
            if scale not in metrics:
                raise ValueError(
                    f"metrics for epoch {epoch} lack scale {scale!r} (got keys {list(metrics)})"
                )
            value = metrics[scale]
            # numbers.Real covers numpy scalars; bool is excluded on purpose.
            if isinstance(value, bool) or not isinstance(value, numbers.Real):
                raise ValueError(f"scale {scale!r} at epoch {epoch}: {value!r} is not a real number")
            value = float(value)
            if not math.isfinite(value):
                raise ValueError(
                    f"scale {scale!r} at epoch {epoch} is {value}: the trial diverged"
                )
            values[scale] = value

        self._last_epoch = epoch
        decisions: dict[str, str] = {}
        for scale in self.scales:
            if self._stop_epoch[scale] is not None:
                decisions[scale] = STOPPED
                continue
            value = values[scale]
            self._history[scale].append((epoch, value))
            if epoch < self.warmup_epochs:
                decisions[scale] = WARMUP
                self._patience_history[scale].append((epoch, self._patience[scale]))
                continue
            best = self._best[scale]
            if best is None or self._gain(best, value) > self.min_delta:
                self._best[scale] = value
                self._best_epoch[scale] = epoch
                self._counter[scale] = 0
                decisions[scale] = IMPROVED
            else:
                self._counter[scale] += 1
                decisions[scale] = NO_IMPROVEMENT
                # >=, not ==: patience may have shrunk below the counter.
                if self._counter[scale] >= self._patience[scale]:
                    self._stop_epoch[scale] = epoch
                    decisions[scale] = STOPPED
            if decisions[scale] != STOPPED:
                # A scale that just stopped keeps the patience it stopped with.
                self._adapt(scale, epoch)
            self._patience_history[scale].append((epoch, self._patience[scale]))
        return decisions

    def _adapt(self, scale: str, epoch: int) -> None:
        """Move the scale's patience by its recent improvement rate."""
        history = self._history[scale]
        if len(history) < 2:
            return
        recent = history[-self.window :]
        # Only progress counts: the original report took abs() here, which
        # made a worsening trend look like fast improvement.
        gain = max(self._gain(recent[0][1], recent[-1][1]), 0.0)
        self._rates[scale].append((epoch, gain / len(recent)))
        last_rates = [r for _, r in self._rates[scale][-self.rate_window :]]
        mean_rate = sum(last_rates) / len(last_rates)
        if mean_rate > self.fast_rate:
            self._patience[scale] = min(self._patience[scale] + self.patience_up, self.max_patience)
        elif mean_rate < self.slow_rate:
            self._patience[scale] = max(self._patience[scale] - self.patience_down, self.min_patience)

    # ------------------------------------------------------------ persistence
    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue exactly, as JSON-serialisable plain types."""
        return {
            "version": _STATE_VERSION,
            "config": self.config(),
            "last_epoch": self._last_epoch,
            "scales": {
                s: {
                    "history": [[e, v] for e, v in self._history[s]],
                    "rates": [[e, r] for e, r in self._rates[s]],
                    "patience_history": [[e, p] for e, p in self._patience_history[s]],
                    "best": self._best[s],
                    "best_epoch": self._best_epoch[s],
                    "counter": self._counter[s],
                    "patience": self._patience[s],
                    "stop_epoch": self._stop_epoch[s],
                }
                for s in self.scales
            },
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore a :meth:`state_dict`; it must come from the same configuration.

        A different configuration would not replay the same decisions, so it
        is refused rather than silently mixed.
        """
        version = state.get("version")
        if version != _STATE_VERSION:
            raise ValueError(f"unsupported AdaptivePatience state version {version!r}")
        # States saved before warmup_epochs / relative existed had neither.
        if {"warmup_epochs": 0, "relative": False, **state["config"]} != self.config():
            raise ValueError(
                f"state was saved with config {state['config']}, this instance has {self.config()}"
            )
        per_scale = state["scales"]
        if set(per_scale) != set(self.scales):
            raise ValueError(f"state has scales {sorted(per_scale)}, expected {list(self.scales)}")
        self._last_epoch = state["last_epoch"]
        for s in self.scales:
            entry = per_scale[s]
            self._history[s] = [(int(e), float(v)) for e, v in entry["history"]]
            self._rates[s] = [(int(e), float(r)) for e, r in entry["rates"]]
            self._patience_history[s] = [(int(e), int(p)) for e, p in entry["patience_history"]]
            self._best[s] = entry["best"]
            self._best_epoch[s] = entry["best_epoch"]
            self._counter[s] = int(entry["counter"])
            self._patience[s] = int(entry["patience"])
            self._stop_epoch[s] = entry["stop_epoch"]


def budget_settings(epochs: int) -> dict[str, Any]:
    """Relative-mode settings derived from the epoch budget alone, for any loss scale.

    Patience is a sixth of the budget (the report's 50 of 300 epochs), bounded by a 24th and
    a half of it; the rate window a tenth; the first twelfth of the budget (at least one
    epoch: the learning-rate warm-up) is not judged. Gains are relative: an improvement must
    beat the best by 0.1 %; more than 1 % per epoch is fast, under 0.1 % slow.
    """
    _check_int("epochs", epochs, 1)
    patience = max(2, math.ceil(epochs / 6))
    return {
        "relative": True,
        "patience": patience,
        "min_patience": max(1, math.ceil(epochs / 24)),
        "max_patience": max(patience, math.ceil(epochs / 2)),
        "min_delta": 1e-3,
        "window": max(2, math.ceil(epochs / 10)),
        "rate_window": max(1, math.ceil(epochs / 60)),
        "fast_rate": 1e-2,
        "slow_rate": 1e-3,
        "patience_up": max(1, math.ceil(patience / 5)),
        "patience_down": max(1, math.ceil(patience / 10)),
        "warmup_epochs": max(1, math.ceil(epochs / 12)),
    }


def stopper_settings(mode: str, epochs: int,
                     overrides: dict[str, Any] | None = None) -> dict[str, Any] | None:
    """The per-scale stopper of a ``mode``: ``"budget"`` (:func:`budget_settings`),
    ``"report"`` (the class defaults: the original report's absolute settings) or ``"off"``
    (None: no per-scale stopping), with ``overrides`` applied; checked once here rather than
    in every trial.

    Raises:
        InputError: an unknown mode, overrides with ``"off"``, or settings AdaptivePatience
            refuses.
    """
    overrides = overrides or {}
    if mode not in ("budget", "report", "off"):
        raise InputError(f"unknown stopper mode {mode!r}; choose budget, report or off")
    if mode == "off":
        if overrides:
            raise InputError(f"stopping is off: no settings apply, got {sorted(overrides)}")
        return None
    settings = {**(budget_settings(epochs) if mode == "budget" else {}), **overrides}
    AdaptivePatience(**settings)  # validates
    if settings.get("warmup_epochs", 0) >= epochs:
        log.warning("the per-scale stopper judges no epoch: its warm-up (%d epochs) covers the "
                    "whole budget of %d", settings["warmup_epochs"], epochs)
    return settings


#: Key of the trial-level flag in :func:`report_fields`; the Tune stopper reads it.
ALL_STOPPED_KEY = "patience/all_stopped"


def report_fields(ap: AdaptivePatience) -> dict[str, float | int | bool]:
    """Flat per-epoch result fields describing ``ap``'s state, for ``tune.report``.

    Keys: ``patience/all_stopped`` (bool), ``patience/num_stopped`` (int), and
    per scale ``patience/<scale>/stopped`` (bool), ``/patience`` (int),
    ``/counter`` (int, epochs since the last improvement), ``/best`` (float),
    ``/best_epoch`` (int), ``/stop_epoch`` (int) and ``/rate`` (float, mean of
    the recent improvement rates). Unset values are NaN for floats and -1 for
    epochs, so each column keeps one type across rows.
    """
    stopped = ap.stopped
    fields: dict[str, float | int | bool] = {
        ALL_STOPPED_KEY: ap.should_stop(),
        "patience/num_stopped": sum(stopped.values()),
    }
    best, best_epoch, stop_epoch = ap.best, ap.best_epoch, ap.stop_epoch
    patience, counter, rates = ap.patience, ap.counter, ap.rates
    for s in ap.scales:
        recent = [r for _, r in rates[s][-ap.rate_window :]]
        prefix = f"patience/{s}/"
        fields[prefix + "stopped"] = stopped[s]
        fields[prefix + "patience"] = patience[s]
        fields[prefix + "counter"] = counter[s]
        fields[prefix + "best"] = math.nan if best[s] is None else best[s]
        fields[prefix + "best_epoch"] = -1 if best_epoch[s] is None else best_epoch[s]
        fields[prefix + "stop_epoch"] = -1 if stop_epoch[s] is None else stop_epoch[s]
        fields[prefix + "rate"] = sum(recent) / len(recent) if recent else math.nan
    return fields
