"""Warm start: a new sweep's search begins from an earlier sweep (``run --warm-start SWEEP``).

What carries over depends on whether the earlier trials' best losses measure the same thing
as this sweep's will:

- **the same task** (the same start model, data, lambda, learning rates, epoch budget and
  searched knobs; the seed, the stopper and checkpointing may differ): every finished trial
  is told to the sampler as a completed Optuna trial. TPE models the landscape from its first
  proposal instead of sampling its start-up at random, and no config runs again only to learn
  what is known (the preset's points that the earlier sweep ran are skipped);
- **another task** (a new lambda, a new domain, another budget): its losses are on another
  scale, so only its ranking carries over: its best configs (as many as TPE's random start-up,
  unfreeze epochs rescaled to the new budget) run first, after the preset's points.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hpcm_tune.errors import InputError
from hpcm_tune.files import is_uri
from hpcm_tune.tune_files import read_params
from search_spaces.presets import rescale_unfreeze_epochs
from search_spaces.spaces import FineTuneSpace

if TYPE_CHECKING:
    from trainables.sweep import SweepOptions

log = logging.getLogger(__name__)

#: Trial settings that change neither what a trial's best loss measures nor its scale (the
#: sweep's epoch budget is compared as ``epochs``).
NOT_THE_TASK = ("seed", "checkpoint_every", "keep_scale_best", "stopper",
                "max_nonfinite_in_a_row")


@dataclass
class WarmStart:
    """An earlier sweep's finished trials for a new sweep's search (kept in its marker)."""

    source: str  # the earlier sweep's folder
    epochs: int  # its epoch budget
    #: ``{"trial_id", "params" (the searched knobs), "best_loss"}``, best first.
    trials: list[dict[str, Any]] = field(default_factory=list)
    #: How its task differs from the new sweep's, one "setting old -> new" each; none: the same.
    differences: list[str] = field(default_factory=list)

    @property
    def same_task(self) -> bool:
        return not self.differences

    def trials_within(self, space: FineTuneSpace) -> list[dict[str, Any]]:
        """The trials whose knobs lie in ``space`` (a sweep that searched ratios above 1, or
        a wider base LR, warm-starting one that does not); the others are logged."""
        inside = [t for t in self.trials if space.contains(t["params"])]
        if len(inside) < len(self.trials):
            wide = (f", base LR [{space.base_lr_range[0]:.3g}, {space.base_lr_range[1]:.3g}]"
                    if space.wide else "")
            log.info("warm start: %d earlier trial(s) left out: their knobs lie outside this "
                     "sweep's space (context-LR ratio [%g, %g]%s)",
                     len(self.trials) - len(inside), *space.context_lr_range, wide)
        return inside

    def best_configs(self, count: int, epochs: int, space: FineTuneSpace) -> list[dict[str, Any]]:
        """The ``count`` best distinct configs within ``space``, for an epoch budget of
        ``epochs``."""
        configs: list[dict[str, Any]] = []
        for trial in self.trials_within(space):
            config = rescale_unfreeze_epochs(trial["params"], self.epochs, epochs)
            if config not in configs:
                configs.append(config)
            if len(configs) == count:
                break
        return configs


def task_differences(earlier: SweepOptions, now: SweepOptions) -> list[str]:
    """The settings in which ``earlier``'s task differs from ``now``'s, as "name old -> new"
    (the searched knobs and :data:`NOT_THE_TASK` aside)."""
    def task(options: SweepOptions) -> dict[str, Any]:
        return {**options.trial.to_config(), "epochs": options.epochs,
                "wide_space": options.wide_space, "lambdas": options.lambdas}

    old, new = task(earlier), task(now)
    ignored = {*NOT_THE_TASK, *now.searched}
    return [f"{key} {old.get(key)!r} -> {new.get(key)!r}" for key in sorted({*old, *new})
            if key not in ignored and _identity(key, old.get(key)) != _identity(key, new.get(key))]


def _identity(key: str, value: Any) -> Any:
    """A start checkpoint file is the same wherever it lies (another clone, a moved folder):
    compared by content."""
    if key == "checkpoint" and value and Path(value).is_file():
        return hashlib.sha256(Path(value).read_bytes()).hexdigest()
    return value


def load_warm_start(path: str, options: SweepOptions) -> WarmStart:
    """The finished trials of the sweep at ``path`` for the new sweep ``options`` (logged:
    which of the two warm starts it gives, and why).

    Raises:
        InputError: ``path`` is no local hpcm-tune sweep folder, or none of its trials
            finished an epoch.
    """
    from analysis.results import UNFINISHED, load_experiment
    from trainables.sweep import SweepError, read_marker

    if is_uri(path):
        raise InputError(f"--warm-start {path}: give a local folder (copy the sweep from "
                         "its storage first)")
    try:
        earlier = read_marker(path)
    except SweepError as exc:
        raise InputError(f"--warm-start: {exc}") from exc
    experiment = load_experiment(path)
    finished = experiment.finished()
    trials = []
    for _, row in finished.iterrows():
        config = read_params(experiment.path / row["trial_dir"])  # the values as Tune gave them
        params = {k: config[k] for k in options.searched if k in config}
        trials.append({"trial_id": str(row["trial_id"]), "params": params,
                       "best_loss": float(row["best_loss"])})
    if not trials:
        raise InputError(f"--warm-start {path}: no trial of that sweep finished an epoch; "
                         "give a sweep with results")
    warm = WarmStart(source=str(Path(path).resolve()), epochs=earlier.epochs, trials=trials,
                     differences=task_differences(earlier, options))
    if warm.same_task:
        unended = int(finished["stop_reason"].isin(UNFINISHED).sum())
        log.info("warm start: the %d trials of %s with results (the same task%s) are told "
                 "to the sampler before it proposes anything", len(trials), warm.source,
                 f"; {unended} of them not ended, told at their best so far, as a culled "
                 "trial is" if unended else "")
    else:
        log.info("warm start: %s is another task (%s): its losses do not compare with this "
                 "sweep's, so its best configs run first", warm.source,
                 "; ".join(warm.differences))
    return warm

