"""The scheduler choice: FIFO, ASHA (one bracket, or all of them: asynchronous Hyperband) on
the trial's own epoch counter that lets leaders run, or the leader-gap prediction."""

import math
import random
from collections import Counter

import pytest

from stoppers.adaptive_patience import ALL_STOPPED_KEY
from stoppers.scheduler import (TIME_ATTR, LeaderGap, ResumableASHA, asha_grace_period,
                                leader_gap_first_epoch, make_scheduler, predicted_shortfall)


def test_fifo_is_tunes_default_and_unknown_names_are_refused():
    assert make_scheduler("fifo", 12) is None
    with pytest.raises(ValueError, match="unknown scheduler 'pbt'"):
        make_scheduler("pbt", 12)


@pytest.mark.parametrize("epochs, milestones", [(12, [3, 9]), (300, [34, 102]), (3, [3]), (1, [1])])
def test_asha_rungs_follow_the_epoch_budget(epochs, milestones):
    asha = make_scheduler("asha", epochs)
    assert isinstance(asha, ResumableASHA)
    assert asha._time_attr == TIME_ATTR == "trained_epochs"  # never training_iteration
    assert sorted(asha.bracket_rungs(0)) == milestones
    assert milestones[0] == asha_grace_period(epochs)
    # Leaders run past the last rung until the per-scale stopper (or the budget) ends them.
    assert all(not bracket._stop_last_trials for bracket in asha._brackets)


@pytest.mark.parametrize("epochs, first_rungs", [
    (12, [3, 9, None]), (60, [7, 21, None]), (3, [3, None]), (1, [1, None])])
def test_hyperband_has_a_bracket_per_first_rung_and_one_without_rungs(epochs, first_rungs):
    hyperband = make_scheduler("hyperband", epochs)
    assert isinstance(hyperband, ResumableASHA) and hyperband._time_attr == TIME_ATTR
    firsts = [min(hyperband.bracket_rungs(i), default=None)
              for i in range(len(hyperband._brackets))]
    assert firsts == first_rungs
    asha = make_scheduler("asha", epochs)
    assert sorted(hyperband.bracket_rungs(0)) == sorted(asha.bracket_rungs(0))
    assert all(not bracket._stop_last_trials for bracket in hyperband._brackets)


def test_a_trials_bracket_follows_its_knobs_and_seed_with_rays_weights():
    hyperband = make_scheduler("hyperband", 12)
    config = {"context_lr_ratio": 0.3, "freeze_strategy": "none", "seed": 0, "lmbda": 0.01}
    # The same knobs and seed: the same bracket, whatever else the config holds.
    assert hyperband.bracket_of(config) == hyperband.bracket_of(dict(config, lmbda=0.02))
    rng = random.Random(0)
    configs = [{"context_lr_ratio": rng.uniform(0.01, 1), "freeze_strategy": "none",
                "seed": rng.randrange(3)} for _ in range(3000)]
    counts = Counter(hyperband.bracket_of(c) for c in configs)
    # Ray's softmax of the rung counts (2, 1, 0): e^0, e^-1, e^-2 normalised.
    weights = [math.exp(-k) for k in range(3)]
    for index, weight in enumerate(weights):
        assert counts[index] / len(configs) == pytest.approx(weight / sum(weights), abs=0.03)
    # ASHA's one bracket takes every trial.
    assert {make_scheduler("asha", 12).bracket_of(c) for c in configs[:50]} == {0}


def test_a_trial_joins_the_same_bracket_in_a_restarted_driver():
    """Ray draws a trial's bracket from its global random state; a driver restarted by
    ``resume`` must put every restored trial back where the killed one had put it."""
    from ray.tune.experiment import Trial

    configs = [{"context_lr_ratio": 0.01 * (k + 1), "freeze_strategy": "none", "seed": 0}
               for k in range(30)]

    def brackets_in_a_new_driver() -> list[int]:
        hyperband = make_scheduler("hyperband", 12)
        hyperband.set_search_properties("loss", "min")
        trials = [Trial("hpcm", config=c, trial_id=f"t{k}", stub=True)
                  for k, c in enumerate(configs)]
        for trial in trials:
            hyperband.on_trial_add(None, trial)
        return [hyperband._brackets.index(hyperband._trial_info[t.trial_id]) for t in trials]

    first = brackets_in_a_new_driver()
    assert first == brackets_in_a_new_driver() == [
        make_scheduler("hyperband", 12).bracket_of(c) for c in configs]
    assert len(set(first)) == 3


@pytest.mark.parametrize("scheduler", ["asha", "hyperband"])
def test_a_baseline_behind_at_a_rung_is_recorded_there_but_not_culled(scheduler):
    """The report measures the winner against the baselines at full budget; the others are
    culled as before, the baseline's loss among those they are ranked against."""
    from ray.tune.experiment import Trial
    from ray.tune.schedulers import TrialScheduler

    from search_spaces import PLAIN, RECOMMENDED

    asha = make_scheduler(scheduler, 12)
    asha.set_search_properties("loss", "min")
    lead = {"context_lr_ratio": 0.9, "freeze_strategy": "none", "seed": 0}
    behind = [("recommended", {**RECOMMENDED, "seed": 0}), ("other", {**RECOMMENDED, "seed": 0,
               "context_lr_ratio": 0.11}), ("plain", {**PLAIN, "seed": 0})]
    trials = {name: Trial("hpcm", config=config, trial_id=name, stub=True)
              for name, config in [("lead", lead), *behind]}
    for trial in trials.values():
        asha.on_trial_add(None, trial)
    # Put them all in the first bracket (Hyperband's has rungs at 3 and 9), as ASHA's only one.
    for trial in trials.values():
        asha._trial_info[trial.trial_id] = asha._brackets[0]
    rung = asha_grace_period(12)
    actions = {name: asha.on_trial_result(None, trial, {TIME_ATTR: rung, "loss": loss})
               for (name, trial), loss in zip(trials.items(), (0.30, 0.32, 0.32, 0.33))}
    assert actions == {"lead": TrialScheduler.CONTINUE, "recommended": TrialScheduler.CONTINUE,
                       "other": TrialScheduler.STOP, "plain": TrialScheduler.CONTINUE}
    assert asha.bracket_rungs(0)[rung] == {"lead": 0.30, "recommended": 0.32, "other": 0.32,
                                           "plain": 0.33}


def test_the_predicted_shortfall_carries_the_epoch_paired_gap_to_the_leaders_end():
    leader = [1.0, 0.9, 0.8, 0.82]
    # 0.05 behind at epoch 2: the leader's best from there on plus that, against its best.
    assert predicted_shortfall([1.1, 0.95], leader) == pytest.approx((0.8 + 0.05) / 0.8 - 1)
    # Behind at epoch 4, where the leader has over-fitted: the trial's best so far counts.
    assert predicted_shortfall([1.0, 0.9, 0.81, 0.9], leader) == pytest.approx(0.81 / 0.8 - 1)
    # Ahead at the same epoch: predicted to end ahead, whatever its absolute loss.
    assert predicted_shortfall([0.99, 0.95, 0.79], leader) < 0
    # The leader ended (its scales converged) before the trial's epoch: no pairing.
    assert predicted_shortfall([1.0] * 5, leader) is None
    assert predicted_shortfall([], leader) is None


@pytest.mark.parametrize("epochs, first", [(12, 4), (300, 100), (6, 2), (3, 2), (1, 1)])
def test_leader_gap_judges_from_a_third_of_the_budget(epochs, first):
    assert leader_gap_first_epoch(epochs) == first
    assert make_scheduler("leader-gap", epochs).first_epoch == first


def _leader_gap(epochs: int = 12) -> LeaderGap:
    scheduler = make_scheduler("leader-gap", epochs)
    scheduler.set_search_properties("loss", "min")
    return scheduler


def _report(scheduler: LeaderGap, trial, losses: list[float], **last) -> list[str]:
    """Each epoch's decision, the trial's last result with ``last``; a trial that ran its
    losses to the end (not culled) completes with the last."""
    from ray.tune.schedulers import TrialScheduler

    actions = []
    for epoch, loss in enumerate(losses, start=1):
        result = {TIME_ATTR: epoch, "loss": loss, **(last if epoch == len(losses) else {})}
        if epoch == len(losses) and last:  # ended by the per-scale stopper: Tune asks it first
            scheduler.on_trial_complete(None, trial, result)
            return actions
        actions.append(scheduler.on_trial_result(None, trial, result))
        if actions[-1] == TrialScheduler.STOP:
            scheduler.on_trial_complete(None, trial, result)
            return actions
    scheduler.on_trial_complete(None, trial, result)
    return actions


def test_leader_gap_culls_a_trial_predicted_to_end_behind_the_leader_and_never_a_baseline():
    from ray.tune.experiment import Trial
    from ray.tune.schedulers import TrialScheduler

    from search_spaces import PLAIN, RECOMMENDED

    def trial(name: str, config: dict) -> Trial:
        return Trial("hpcm", config={**config, "seed": 0}, trial_id=name, stub=True)

    other = {"context_lr_ratio": 0.3, "freeze_strategy": "none"}
    scheduler = _leader_gap(epochs=6)  # judges from epoch 2
    leader_curve = [1.0, 0.9, 0.85, 0.84, 0.83, 0.83]
    # The first trial, alone (and a baseline), runs to its budget and leads.
    assert set(_report(scheduler, trial("first", RECOMMENDED), [x + 0.1 for x in leader_curve])
               ) == {TrialScheduler.CONTINUE}
    assert scheduler.leader() == "first"
    assert set(_report(scheduler, trial("lead", other), leader_curve)) == {TrialScheduler.CONTINUE}
    assert scheduler.leader() == "lead"
    # 2 % behind at epoch 1 is not judged; at epoch 2 it is: culled.
    behind = [x * 1.02 for x in leader_curve]
    assert _report(scheduler, trial("behind", {**other, "context_lr_ratio": 0.2}), behind) == [
        TrialScheduler.CONTINUE, TrialScheduler.STOP]
    # A baseline as far behind trains on (the report measures the winner against it at full
    # budget).
    assert set(_report(scheduler, trial("plain", PLAIN), behind)) == {TrialScheduler.CONTINUE}
    # Behind by less than the margin (0.5 %), or behind early and ahead later: kept.
    close = [x * 1.004 for x in leader_curve]
    assert set(_report(scheduler, trial("close", {**other, "context_lr_ratio": 0.4}), close)
               ) == {TrialScheduler.CONTINUE}
    fast = [1.2, 0.9, 0.84, 0.82, 0.81, 0.80]
    assert set(_report(scheduler, trial("fast", {**other, "context_lr_ratio": 2.0}), fast)
               ) == {TrialScheduler.CONTINUE}
    assert scheduler.leader() == "fast"
    # A leader ended by its scales at epoch 3: a trial past that epoch is not judged (the
    # per-scale stopper's business), before it, against the short curve.
    scheduler = _leader_gap(epochs=6)
    _report(scheduler, trial("short", other), [1.0, 0.9, 0.85], **{ALL_STOPPED_KEY: True})
    assert scheduler.leader() == "short"
    late = [1.0, 0.95, 0.9, 1.0, 1.0]
    assert _report(scheduler, trial("late", {**other, "context_lr_ratio": 0.2}), late) == [
        TrialScheduler.CONTINUE, TrialScheduler.STOP]
    assert set(_report(scheduler, trial("long", {**other, "context_lr_ratio": 0.6}),
                       [1.0, 0.9, 0.85, 2.0, 2.0])) == {TrialScheduler.CONTINUE}


def test_leader_gap_judges_the_first_trials_against_the_best_running_one():
    """Trials that start together have no ended leader: the best of those that reached the
    epoch leads, the gap is then a same-epoch comparison."""
    from ray.tune.experiment import Trial
    from ray.tune.schedulers import TrialScheduler

    scheduler = _leader_gap(epochs=6)
    trials = [Trial("hpcm", config={"context_lr_ratio": r, "freeze_strategy": "none", "seed": 0},
                    trial_id=f"t{k}", stub=True) for k, r in enumerate((0.3, 0.2, 0.4))]
    ahead, behind, slow = trials

    def report(trial, epoch: int, loss: float) -> str:
        return scheduler.on_trial_result(None, trial, {TIME_ATTR: epoch, "loss": loss})

    assert report(ahead, 1, 1.0) == report(behind, 1, 1.02) == TrialScheduler.CONTINUE
    assert report(slow, 1, 1.03) == TrialScheduler.CONTINUE  # epoch 1: not judged
    # Epoch 2: the first to report it has no one to compare with; the next 2 % behind it is
    # culled; one that has not reached epoch 2 yet is not a leader.
    assert report(ahead, 2, 0.9) == TrialScheduler.CONTINUE
    assert scheduler.leader(epoch=2) == "t0" and scheduler.leader(epoch=3) is None
    assert report(behind, 2, 0.918) == TrialScheduler.STOP
    assert report(slow, 2, 0.903) == TrialScheduler.CONTINUE  # 0.33 % behind: kept


def test_leader_gap_judges_a_trial_only_against_leaders_that_train_as_fast():
    """Short-horizon bias: a faster learning rate behind a slower leader may overtake it once
    its LR decays, so only a leader that trained every group at least as fast judges it."""
    from ray.tune.experiment import Trial
    from ray.tune.schedulers import TrialScheduler

    def trial(name: str, **knobs) -> Trial:
        config = {"base_lr": 5e-4, "context_lr_ratio": 0.5, "freeze_strategy": "none", **knobs}
        return Trial("hpcm", config={**config, "seed": 0}, trial_id=name, stub=True)

    scheduler = _leader_gap(epochs=6)
    slow_leader = [1.0, 0.9, 0.85, 0.84, 0.83, 0.83]
    _report(scheduler, trial("slow", context_lr_ratio=0.2), slow_leader)
    behind = [x * 1.02 for x in slow_leader]
    # 2 % behind a leader with a slower context model or a lower base LR: not judged by it.
    for name, knobs in [("ratio", {"context_lr_ratio": 0.4}), ("lr", {"base_lr": 1e-3}),
                        ("both", {"base_lr": 1e-3, "context_lr_ratio": 0.1})]:
        assert set(_report(scheduler, trial(name, **knobs), behind)
                   ) == {TrialScheduler.CONTINUE}, name
        assert scheduler.leader() == "slow"
    # The same curve behind a leader as fast (or faster): culled at the first judged epoch.
    assert _report(scheduler, trial("as_fast", context_lr_ratio=0.2), behind) == [
        TrialScheduler.CONTINUE, TrialScheduler.STOP]
    assert _report(scheduler, trial("slower", context_lr_ratio=0.15, freeze_strategy="entropy"),
                   behind) == [TrialScheduler.CONTINUE, TrialScheduler.STOP]
    # A context model still frozen has trained no faster than the slow leader's: judged by it
    # until it unfreezes (epoch 3, 0-based), not after.
    progressive = {"context_lr_ratio": 0.4, "freeze_strategy": "progressive",
                   "unfreeze_h_epoch": 1, "unfreeze_context_epoch": 3}
    assert scheduler.on_trial_result(None, trial("p", **progressive), {TIME_ATTR: 1, "loss": 1.1}
                                     ) == TrialScheduler.CONTINUE
    assert scheduler.leader(epoch=3, other_than="p") == "slow"
    assert scheduler.leader(epoch=4, other_than="p") not in ("slow", "p")


def test_leader_gap_refuses_a_metric_to_maximise():
    with pytest.raises(ValueError, match="ranks losses: mode 'max'"):
        make_scheduler("leader-gap", 12).set_search_properties("accuracy", "max")
