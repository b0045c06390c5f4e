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

:class:`LeaderGap` culls on a prediction instead of a rank: from a third of the budget on,
a trial's gap to the leader at the same epoch, carried over the leader's later epochs,
predicts the best loss the trial will reach; it is culled when that is more than ``margin``
(0.5 %) behind the leader's best. The leader: the trial with the lowest loss among those not
culled that have reached that epoch, ended or still running (a sweep's first trials run at
once; for them the gap is a same-epoch comparison with the margin), and that trained every
layer group at least as fast as the trial so far (``LayerLRConfig.trains_as_fast_as``: no
group later, at a lower LR or with a longer warm-up). The pairing by epoch cancels what both
curves share (the learning-rate schedule, the over-fitting of a small training set), and a
trial is judged against the level it must reach, not against whoever else happens to be at
the same rung: a faster context learning rate that is behind after a ninth of the budget
(where ASHA's first rung ranks it) is not culled for that. The leader's speed guards against
short-horizon bias: a higher learning rate is behind a lower one for most of the budget and
ahead at its end, once its LR has decayed (on the demo task with ``--wide-space`` the rule
without it culled the winners at 2 seeds of 3), so a trial is judged only against leaders it
cannot expect to overtake for that reason. Its knowledge (the curves, the trials' configs and
which were culled) is rebuilt from the trials' ``result.json`` on a restore, in report order,
as ASHA's rungs are.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
from collections.abc import Sequence
from typing import Any

from ray.tune.schedulers import AsyncHyperBandScheduler, FIFOScheduler, TrialScheduler

from hpcm_tune.errors import InputError
from hpcm_tune.names import SCHEDULERS, SEARCHED_KNOBS
from hpcm_tune.tune_files import RESULT_FILE, parse_results
from search_spaces.presets import is_baseline
from stoppers.adaptive_patience import ALL_STOPPED_KEY
from trainables.layer_lr import LayerLRConfig

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


class RestoredDecisions:
    """What a culling scheduler needs to survive a driver restart (mixed in before Tune's
    scheduler class): the trials restored with reports are kept for ``_replay``, which
    rebuilds the scheduler's state from them before its next decision; a trial the killed
    driver had culled but Tune restored as pending or running (its state was saved before the
    cull) is ended at once instead of trained again (Optuna keeps its reported values, as
    PRUNED): ``_replay`` adds such trials to ``_culled_on_replay``."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._to_replay: list = []
        self._culled_on_replay: set[str] = set()

    def _replay(self) -> None:
        raise NotImplementedError

    def on_trial_add(self, tune_controller, trial) -> None:
        super().on_trial_add(tune_controller, trial)
        if TIME_ATTR in trial.last_result:  # restored: it reported before the driver stopped
            self._to_replay.append(trial)

    def choose_trial_to_run(self, tune_controller):
        self._replay()
        for trial in tune_controller.get_trials():
            if trial.trial_id in self._culled_on_replay and trial.status == trial.PENDING:
                self._culled_on_replay.discard(trial.trial_id)
                log.info("trial %s was culled before the driver stopped: ended", trial.trial_id)
                tune_controller.stop_trial(trial)
        return super().choose_trial_to_run(tune_controller)

    def _culled_before_restart(self, trial) -> bool:
        """Replays what was restored; whether ``trial`` was culled before the restart."""
        self._replay()
        if trial.trial_id not in self._culled_on_replay:
            return False
        self._culled_on_replay.discard(trial.trial_id)
        log.info("trial %s was culled before the driver stopped: stopping it", trial.trial_id)
        return True


class ResumableASHA(RestoredDecisions, AsyncHyperBandScheduler):
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

    def on_trial_result(self, tune_controller, trial, result: dict) -> str:
        if self._culled_before_restart(trial):
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
        reports = _in_report_order(trials, self._metric)
        for trial, result in reports:
            bracket = self._trial_info[trial.trial_id]
            action = bracket.on_result(trial, result[TIME_ATTR],
                                       self._metric_op * result[self._metric])
            if (action == TrialScheduler.STOP and trial.status != trial.TERMINATED
                    and not is_baseline(trial.config)):
                self._culled_on_replay.add(trial.trial_id)
        log.info("ASHA rungs rebuilt from %d reports of %d restored trials: %s", len(reports),
                 len(trials), [{m: len(r) for m, r in self.bracket_rungs(i).items()}
                               for i in range(len(self._brackets))])


def leader_gap_first_epoch(epochs: int) -> int:
    """The first epoch :class:`LeaderGap` judges: a third of the budget, at least 2 (or the
    budget). On the demo task, over context-LR ratios up to 4, the ranking after a ninth of
    the budget is no better than chance; judged from a third on, the sweeps ended within
    0.5 % of the best found at 3 seeds of 3 (README, the demo task)."""
    return min(epochs, max(2, math.ceil(epochs / 3)))


def predicted_shortfall(curve: Sequence[float], leader: Sequence[float]) -> float | None:
    """How far behind the leader's best a trial's best is predicted to end, relative (0.01:
    1 % worse): its gap to the leader at its latest epoch, carried over the leader's later
    epochs, or its own best so far if lower. ``curve`` and ``leader`` are losses by epoch
    from the first; None while the leader has not reached the trial's epoch."""
    epoch = len(curve)
    if not curve or epoch > len(leader):
        return None
    carried = curve[-1] - leader[epoch - 1] + min(leader[epoch - 1:])
    return min(min(curve), carried) / min(leader) - 1


class LeaderGap(RestoredDecisions, FIFOScheduler):
    """Culls a trial whose epoch-paired gap to the leader predicts it ends more than
    ``margin`` behind the leader's best (see the module's docstring); never a baseline.
    Losses only (mode ``min``)."""

    def __init__(self, max_t: int, first_epoch: int | None = None,
                 margin: float = 0.005) -> None:
        super().__init__()
        self.max_t, self.margin = max_t, margin
        self.first_epoch = first_epoch or leader_gap_first_epoch(max_t)
        self._losses: dict[str, dict[int, float]] = {}  # trial id -> epoch -> loss
        self._configs: dict[str, LayerLRConfig] = {}  # trial id -> its learning rates
        self._culled: set[str] = set()  # never a leader

    def set_search_properties(self, metric: str | None, mode: str | None, **spec) -> bool:
        if mode not in (None, "min"):
            raise InputError(f"the leader-gap scheduler ranks losses: mode {mode!r} is not "
                             "'min'")
        return super().set_search_properties(metric, mode, **spec)

    def curve(self, trial_id: str) -> list[float]:
        """The trial's losses from epoch 1 up to the first epoch it has not reported."""
        losses = self._losses.get(trial_id, {})
        out: list[float] = []
        while len(out) + 1 in losses:
            out.append(losses[len(out) + 1])
        return out

    def leader(self, epoch: int = 1, other_than: str = "") -> str | None:
        """The trial with the lowest loss among those not culled that have reached
        ``epoch``, ended or still running; with ``other_than``, among those that trained
        every layer group at least as fast as that trial in its first ``epoch`` epochs."""
        judged = self._configs.get(other_than)
        reached = [t for t in self._losses if t != other_than and t not in self._culled
                   and len(self.curve(t)) >= epoch
                   and (judged is None or self._configs[t].trains_as_fast_as(judged, epoch))]
        return min(reached, key=lambda t: min(self.curve(t)), default=None)

    def on_trial_result(self, tune_controller, trial, result: dict) -> str:
        if self._culled_before_restart(trial):
            return TrialScheduler.STOP
        return TrialScheduler.STOP if self._record(trial, result) else TrialScheduler.CONTINUE

    def on_trial_complete(self, tune_controller, trial, result: dict) -> None:
        # The per-scale stopper's last result reaches the scheduler here only: Tune asks the
        # stopper first.
        self._replay()
        self._record(trial, result, judge=False)

    def _record(self, trial, result: dict, judge: bool = True) -> bool:
        """Note a report; with ``judge``, whether it culls the trial."""
        if TIME_ATTR not in result or self._metric not in result:
            return False
        epoch = int(result[TIME_ATTR])
        self._losses.setdefault(trial.trial_id, {})[epoch] = float(result[self._metric])
        if trial.trial_id not in self._configs:  # once per trial, not per report
            self._configs[trial.trial_id] = LayerLRConfig.from_flat(trial.config)
        if not judge or not self.first_epoch <= epoch < self.max_t or is_baseline(trial.config):
            return False
        leader = self.leader(epoch, other_than=trial.trial_id)
        if leader is None:
            return False
        shortfall = predicted_shortfall(self.curve(trial.trial_id), self.curve(leader))
        if shortfall is None or shortfall <= self.margin:
            return False
        self._culled.add(trial.trial_id)
        log.info("trial %s culled at epoch %d: its gap to trial %s (as fast or faster) "
                 "predicts it ends %.2f %% behind", trial.trial_id, epoch, leader,
                 100 * shortfall)
        return True

    def _replay(self) -> None:
        """Rebuild the curves and the culled trials from the restored trials' reports, in the
        order they were made; a trial not yet ended whose last report culls it is ended (a
        driver killed after the decision, before Tune saved it)."""
        if not self._to_replay:
            return
        trials, self._to_replay = self._to_replay, []
        reports = _in_report_order(trials, self._metric)
        last = {trial.trial_id: result for trial, result in reports}
        for trial, result in reports:
            final = result is last[trial.trial_id]
            if final and trial.status == trial.TERMINATED:
                self._record(trial, result, judge=False)
                # Ended early, not by its scales: culled (or stopped with the sweep).
                if result[TIME_ATTR] < self.max_t and not result.get(ALL_STOPPED_KEY):
                    self._culled.add(trial.trial_id)
            elif self._record(trial, result, judge=final):
                self._culled_on_replay.add(trial.trial_id)
        log.info("leader-gap curves rebuilt from %d reports of %d restored trials: leader %s",
                 len(reports), len(trials), self.leader())


def _in_report_order(trials: list, metric: str) -> list[tuple[Any, dict[str, Any]]]:
    """Every (trial, result) the restored ``trials`` reported, in the order reported."""
    reports = [(r.get("timestamp", 0), r[TIME_ATTR], trial, r)
               for trial in trials for r in _reported(trial)
               if TIME_ATTR in r and metric in r]
    return [(trial, r) for _, _, trial, r in
            sorted(reports, key=lambda x: (x[0], x[1], x[2].trial_id))]


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


def make_scheduler(name: str, epochs: int) -> ResumableASHA | LeaderGap | None:
    """The scheduler called ``name`` for an epoch budget (None: Tune's FIFO)."""
    if name == "fifo":
        return None
    if name == "asha":
        return ResumableASHA(max_t=epochs)
    if name == "hyperband":
        return ResumableASHA(max_t=epochs, brackets=hyperband_brackets(
            epochs, asha_grace_period(epochs), reduction_factor=3))
    if name == "leader-gap":
        return LeaderGap(max_t=epochs)
    raise InputError(f"unknown scheduler {name!r}; choose one of {', '.join(SCHEDULERS)}")
