"""The scheduler choice: FIFO, or ASHA on the trial's own epoch counter that lets leaders run."""

import pytest

from stoppers.scheduler import TIME_ATTR, ResumableASHA, asha_grace_period, make_scheduler


def test_fifo_is_tunes_default_and_unknown_names_are_refused():
    assert make_scheduler("fifo", 12) is None
    with pytest.raises(ValueError, match="unknown scheduler 'pbt'"):
        make_scheduler("pbt", 12)


@pytest.mark.parametrize("epochs, milestones", [(12, [3, 9]), (300, [34, 102]), (3, [3]), (1, [1])])
def test_asha_rungs_follow_the_epoch_budget(epochs, milestones):
    asha = make_scheduler("asha", epochs)
    assert isinstance(asha, ResumableASHA)
    assert asha._time_attr == TIME_ATTR == "trained_epochs"  # never training_iteration
    assert sorted(asha.rungs) == milestones
    assert milestones[0] == asha_grace_period(epochs)
    # Leaders run past the last rung until the per-scale stopper (or the budget) ends them.
    assert all(not bracket._stop_last_trials for bracket in asha._brackets)
