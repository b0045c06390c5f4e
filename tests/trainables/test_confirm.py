"""The options of a confirmation sweep (``tune_main.py confirm``), from a sweep's."""

from __future__ import annotations

import pytest

from hpcm_tune.errors import InputError
from trainables.confirm import confirmation_options
from trainables.spec import TrialSpec
from trainables.sweep import SweepOptions, param_space

CANDIDATES = [
    {"trial_id": "a", "config": {"context_lr_ratio": 0.9, "freeze_strategy": "none"},
     "seed": 3, "best_loss": 0.26, "stop_reason": "max epochs"},
    {"trial_id": "b", "config": {"context_lr_ratio": 0.5, "freeze_strategy": "progressive",
                                 "unfreeze_h_epoch": 1, "unfreeze_context_epoch": 2},
     "seed": 3, "best_loss": 0.27, "stop_reason": "culled by the scheduler"},
]


@pytest.mark.parametrize("fixed", [None, {"context_lr_ratio": 0.9, "freeze_strategy": "none"}])
def test_every_candidate_runs_at_every_new_seed_with_the_sweeps_task_and_no_culling(fixed):
    sweep = SweepOptions(name="s", storage_path="/r", trial=TrialSpec().replace(lmbda=0.01), epochs=6,
                         num_samples=16, seed=3, scheduler="asha", budget_epochs=40,
                         optuna_storage="sqlite:///x.db", cpus_per_trial=2, gpus_per_trial=1,
                         fixed_config=fixed)
    options = confirmation_options(sweep, "/r/s", CANDIDATES, seeds=2, name="s-confirm",
                                   storage_path="/elsewhere", gpus_per_trial=0)
    assert options.confirm.seeds == [4, 5] and options.num_samples == 4
    assert options.confirm.points() == [
        {**CANDIDATES[0]["config"], "seed": 4}, {**CANDIDATES[0]["config"], "seed": 5},
        {**CANDIDATES[1]["config"], "seed": 4}, {**CANDIDATES[1]["config"], "seed": 5}]
    assert (options.scheduler, options.budget_epochs, options.optuna_storage) == ("fifo", None,
                                                                                 None)
    assert options.fixed_config is None and options.lambdas is None  # the points set the knobs
    assert (options.cpus_per_trial, options.gpus_per_trial) == (2, 0)
    assert (options.path, options.epochs, options.trial) == ("/elsewhere/s-confirm", 6,
                                                             sweep.trial)
    # The knobs come from the points alone: none in the param space (the unfreeze epochs of
    # candidate a must not appear in its trials).
    space = param_space(options)
    assert not {"context_lr_ratio", "freeze_strategy", "unfreeze_h_epoch"} & set(space)
    assert SweepOptions.from_json(options.to_json()).confirm == options.confirm


def test_no_new_seed_is_refused():
    with pytest.raises(InputError, match="--seeds must be 1 or more"):
        confirmation_options(SweepOptions(name="s", storage_path="/r"), "/r/s", CANDIDATES,
                             seeds=0, name="c", storage_path="/r")
