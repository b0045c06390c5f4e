"""Trial schedulers composed with the per-scale stopper: FIFO, or a resumable ASHA or
asynchronous Hyperband.

The two end trials for different reasons. ASHA culls a trial that is behind its peers at a
rung (ranked on the best-so-far loss); it never ends a leader that has converged, which is
the per-scale stopper's job, so the leaders may run past ASHA's last rung
(``stop_last_trials=False``) until every scale has stopped or the budget is spent. Tune asks
the stopper before the scheduler (``RunConfig(stop=...)`` first).

Asynchronous Hyperband (Li et al., "A System for Massively Parallel Hyperparameter Tuning",
MLSys 2020) is ASHA with all of its brackets: a trial joins the bracket whose first rung is
at 1/9 of the budget, at 1/3, or one with no rung at all (Ray's softmax weights, ~66/24/9 %
at these sizes). It hedges against an early ranking that misleads, e.g. a faster learning
rate that is behind after a few epochs and ahead at the end, at the price of more compute.

Neither culls a baseline (``search_spaces.BASELINES``: the report's recommendation, plain
fine-tuning), which the report measures the winner against: a baseline behind at a rung is
still recorded there, as the other trials' yardstick, and trains on to its budget (or until
the per-scale stopper ends it), so that the report's comparison is at full budget, not
between a best-so-far after a few epochs and a winner's after all of them.

Ray Tune leaves the scheduler out of its experiment state (ray #30838): after a killed
driver, ``Tuner.restore`` starts from the ASHA pickled with the Tuner, with empty rungs.
:class:`ResumableASHA` rebuilds them from what the trials reported (their ``result.json``),
in the order it was reported, so the cutoffs and the cull decisions are those of the run
that was interrupted. Its time axis is the trial's own epoch counter (``trained_epochs``),
which a restored trial continues, never ``training_iteration``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
from typing import Any

from ray.tune.schedulers import AsyncHyperBandScheduler, TrialScheduler

from hpcm_tune.errors import InputError
from hpcm_tune.names import SCHEDULERS, SEARCHED_KNOBS
from hpcm_tune.tune_files import RESULT_FILE, parse_results
from search_spaces.presets import is_baseline

log = logging.getLogger(__name__)

TIME_ATTR = "trained_epochs"


def asha_grace_period(epochs: int) -> int:
    """First rung: a ninth of the budget, so rungs fall at g, 3g (9g is the budget); at least
    3 epochs (or the budget): the first ends the learning-rate warm-up and the second, the
    first at full rate, is often worse than it, so a best-so-far before the third ranks the
    trials on the start model alone."""
    return min(epochs, max(3, math.ceil(epochs / 9)))


def hyperband_brackets(max_t: int, grace_period: int, reduction_factor: float) -> int:
    """Every bracket of asynchronous Hyperband: one per possible first rung (grace_period
    times a power of the reduction factor below max_t), and the one without rungs."""
    return int(math.log(max_t / grace_period) / math.log(reduction_factor)) + 2


class ResumableASHA(AsyncHyperBandScheduler):
    """Asynchronous successive halving whose rungs survive a driver restart; with several
    brackets, asynchronous Hyperband."""

    def __init__(self, max_t: int, reduction_factor: float = 3,
                 grace_period: int | None = None, brackets: int = 1) -> None:
        # metric and mode come from TuneConfig (one place for the searcher, the scheduler
        # and the results; Tune refuses them twice).
        super().__init__(time_attr=TIME_ATTR, max_t=max_t,
                         grace_period=grace_period or asha_grace_period(max_t),
                         reduction_factor=reduction_factor, brackets=brackets,
                         stop_last_trials=False)
        self._to_replay: list = []
        self._culled_on_replay: set[str] = set()

    def bracket_rungs(self, index: int) -> dict[int, dict[str, float]]:
        """A bracket's milestone -> {trial id: the metric recorded there}, in the metric's
        own sign (ASHA has one bracket, index 0)."""
        return {int(milestone): {t: self._metric_op * v for t, v in recorded.items()}
                for milestone, recorded in self._brackets[index]._rungs}

    def bracket_of(self, config: dict[str, Any]) -> int:
        """The bracket a trial joins, drawn with Ray's weights (a softmax of the brackets'
        rung counts) from a hash of its searched knobs and the sweep's seed instead of Ray's
        global random state: a resumed sweep puts a restored trial back in its bracket, and
        a sweep run again with its seed puts every config where it was before."""
        sizes = [len(bracket._rungs) for bracket in self._brackets]
        weights = [math.exp(size - max(sizes)) for size in sizes]
        knobs = json.dumps({k: config[k] for k in (*SEARCHED_KNOBS, "seed") if k in config},
                           sort_keys=True, default=str)
        digest = hashlib.sha256(knobs.encode()).digest()
        draw = int.from_bytes(digest[:8], "big") / 2 ** 64 * sum(weights)
        for index, weight in enumerate(weights):
            draw -= weight
            if draw < 0:
                return index
        return len(weights) - 1

    def on_trial_add(self, tune_controller, trial) -> None:
        super().on_trial_add(tune_controller, trial)  # checks metric and mode
        self._trial_info[trial.trial_id] = self._brackets[self.bracket_of(trial.config)]
        if TIME_ATTR in trial.last_result:  # restored: it reported before the driver stopped
            self._to_replay.append(trial)

    def choose_trial_to_run(self, tune_controller):
        self._replay()
        # A trial culled before the driver stopped, but not yet recorded as ended: end it
        # now rather than train it again (Optuna keeps its reported values, as PRUNED).
        for trial in tune_controller.get_trials():
            if trial.trial_id in self._culled_on_replay and trial.status == trial.PENDING:
                self._culled_on_replay.discard(trial.trial_id)
                log.info("trial %s was culled at a rung before the driver stopped: ended",
                         trial.trial_id)
                tune_controller.stop_trial(trial)
        return super().choose_trial_to_run(tune_controller)

    def on_trial_result(self, tune_controller, trial, result: dict) -> str:
        self._replay()
        if trial.trial_id in self._culled_on_replay:
            log.info("trial %s was culled at a rung before the driver stopped: stopping it",
                     trial.trial_id)
            self._culled_on_replay.discard(trial.trial_id)
            return TrialScheduler.STOP
        action = super().on_trial_result(tune_controller, trial, result)
        if action == TrialScheduler.STOP and is_baseline(trial.config):
            log.info("trial %s runs a baseline: behind at a rung, but not culled", trial.trial_id)
            return TrialScheduler.CONTINUE
        return action

    def _replay(self) -> None:
        """Feed the restored trials' reports to the rungs in the order they were made."""
        if not self._to_replay:
            return
        trials, self._to_replay = self._to_replay, []
        reports = [(r.get("timestamp", 0), r[TIME_ATTR], trial, r)
                   for trial in trials for r in _reported(trial)
                   if TIME_ATTR in r and self._metric in r]
        for _, _, trial, result in sorted(reports, key=lambda x: (x[0], x[1], x[2].trial_id)):
            bracket = self._trial_info[trial.trial_id]
            action = bracket.on_result(trial, result[TIME_ATTR],
                                       self._metric_op * result[self._metric])
            if (action == TrialScheduler.STOP and trial.status != trial.TERMINATED
                    and not is_baseline(trial.config)):
                self._culled_on_replay.add(trial.trial_id)
        log.info("ASHA rungs rebuilt from %d reports of %d restored trials: %s", len(reports),
                 len(trials), [{m: len(r) for m, r in self.bracket_rungs(i).items()}
                               for i in range(len(self._brackets))])


def _reported(trial) -> list[dict[str, Any]]:
    """Every result the trial reported, from its ``result.json`` (local or remote storage)."""
    fs = trial.storage.storage_filesystem
    path = f"{trial.storage.trial_fs_path}/{RESULT_FILE}"
    try:
        with fs.open_input_stream(path) as f:
            text = f.readall().decode()
    except FileNotFoundError:
        return []
    return parse_results(text, path)


def make_scheduler(name: str, epochs: int) -> ResumableASHA | None:
    """The scheduler called ``name`` for an epoch budget (None: Tune's FIFO)."""
    if name == "fifo":
        return None
    if name == "asha":
        return ResumableASHA(max_t=epochs)
    if name == "hyperband":
        return ResumableASHA(max_t=epochs, brackets=hyperband_brackets(
            epochs, asha_grace_period(epochs), reduction_factor=3))
    raise InputError(f"unknown scheduler {name!r}; choose one of {', '.join(SCHEDULERS)}")
