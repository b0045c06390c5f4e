"""Warm start from an earlier sweep: which task it is, what carries over, what the searcher
gets (a real sweep warm-started end to end: tests/trainables/test_sweep.py)."""

from __future__ import annotations

import logging
import shutil

import pytest
from optuna.trial import TrialState

from hpcm_tune.errors import InputError
from search_spaces import PLAIN, RECOMMENDED, startup_trials
from search_spaces.spaces import FineTuneSpace
from tests.reliability.helpers import cli_error
from trainables.spec import TrialSpec
from trainables.sweep import SweepOptions, _optuna_search
from trainables.warm_start import WarmStart, load_warm_start, task_differences


def _options(checkpoint, **changes) -> SweepOptions:
    trial = TrialSpec(model="tiny", checkpoint=str(checkpoint)).replace(lmbda=0.0003)
    values = dict(name="sweep", storage_path="results", trial=trial, epochs=12, num_samples=8)
    return SweepOptions(**{**values, **changes})


def test_the_task_is_what_defines_the_loss(pretrained_tiny_path, tmp_path):
    options = _options(pretrained_tiny_path)
    # The seed, the stopper and checkpointing change no loss; the searched knobs are searched.
    same = _options(pretrained_tiny_path, seed=3, trial=options.trial.replace(
        seed=3, stopper={"patience": 2}, checkpoint_every=4, context_lr_ratio=0.5))
    assert task_differences(same, options) == []
    # The same checkpoint file in another folder (another clone) is the same start model.
    copy = tmp_path / "elsewhere.pt"
    shutil.copy(pretrained_tiny_path, copy)
    assert task_differences(_options(copy), options) == []
    other = _options(pretrained_tiny_path, epochs=20,
                     trial=options.trial.replace(lmbda=0.0009, crops_per_image=4))
    assert task_differences(other, options) == [
        "crops_per_image 4 -> 2", "epochs 20 -> 12", "lmbda 0.0009 -> 0.0003"]
    copy.write_bytes(copy.read_bytes()[:-1] + b"x")  # another start model, same name
    assert [d.split(" ")[0] for d in task_differences(_options(copy), options)] == ["checkpoint"]


REPORT_SPACE = FineTuneSpace(max_epochs=12)


def _warm(differences: list[str]) -> WarmStart:
    progressive = {"context_lr_ratio": 0.3, "freeze_strategy": "progressive",
                   "unfreeze_h_epoch": 4, "unfreeze_context_epoch": 8}
    trials = [{"trial_id": "a", "params": progressive, "best_loss": 0.25},
              {"trial_id": "b", "params": dict(RECOMMENDED), "best_loss": 0.26},
              {"trial_id": "c", "params": {**progressive, "unfreeze_h_epoch": 5},
               "best_loss": 0.27},
              {"trial_id": "d", "params": {"context_lr_ratio": 0.02, "freeze_strategy": "none"},
               "best_loss": 0.3}]
    return WarmStart(source="/earlier", epochs=12, trials=trials, differences=differences)


def test_best_configs_are_distinct_best_first_with_unfreeze_epochs_rescaled():
    warm = _warm(["epochs 12 -> 6"])
    # Rescaled to 6 epochs, the two progressive configs (h 4 and 5) are one: 2 and 4.
    assert warm.best_configs(3, 6, REPORT_SPACE) == [
        {"context_lr_ratio": 0.3, "freeze_strategy": "progressive", "unfreeze_h_epoch": 2,
         "unfreeze_context_epoch": 4},
        RECOMMENDED,
        {"context_lr_ratio": 0.02, "freeze_strategy": "none"}]
    assert warm.best_configs(1, 24, REPORT_SPACE)[0]["unfreeze_context_epoch"] == 16


def test_trials_outside_the_new_ratio_range_are_left_out(caplog, pretrained_tiny_path):
    """A sweep that searched ratios above 1 warm-starting one that searches up to 1."""
    warm = _warm([])
    warm.trials.insert(0, {"trial_id": "w", "best_loss": 0.2,
                           "params": {"context_lr_ratio": 2.5, "freeze_strategy": "none"}})
    with caplog.at_level(logging.INFO, logger="trainables.warm_start"):
        narrow = warm.best_configs(2, 12, REPORT_SPACE)
    assert [c["context_lr_ratio"] for c in narrow] == [0.3, 0.1]
    assert ("1 earlier trial(s) left out: their knobs lie outside this sweep's space "
            "(context-LR ratio [0.01, 1])") in caplog.text
    faster = FineTuneSpace(max_epochs=12, max_context_lr_ratio=4.0)
    assert warm.best_configs(1, 12, faster)[0]["context_lr_ratio"] == 2.5
    # The same task: told to the sampler, but not a point outside its space (Optuna refuses).
    told = [t for t in _study(_options(pretrained_tiny_path, warm_start=warm)).trials
            if t.state == TrialState.COMPLETE]
    assert [t.user_attrs["warm_start_trial"] for t in told] == ["a", "b", "c", "d"]
    wide = _study(_options(pretrained_tiny_path, warm_start=warm, scheduler="fifo",
                           max_context_lr_ratio=4.0))
    assert [t.user_attrs["warm_start_trial"] for t in wide.trials
            if t.state == TrialState.COMPLETE] == ["w", "a", "b", "c", "d"]


def test_a_wide_space_leaves_out_base_lrs_outside_its_range(caplog):
    warm = _warm([])
    for trial, lr in zip(warm.trials, (5e-4, 1e-4, 2e-3, 3e-3)):
        trial["params"] = {**trial["params"], "base_lr": lr, "h_multiplier": 0.5}
    wide = FineTuneSpace(max_epochs=12, wide=True, base_lr=5e-4)  # base LRs [1.25e-4, 2e-3]
    with caplog.at_level(logging.INFO, logger="trainables.warm_start"):
        assert [t["trial_id"] for t in warm.trials_within(wide)] == ["a", "c"]
    assert "2 earlier trial(s) left out" in caplog.text
    assert "base LR [0.000125, 0.002]" in caplog.text
    assert len(warm.trials_within(REPORT_SPACE)) == 4  # the base LR is no knob there


def _study(options: SweepOptions):
    return _optuna_search(options)._ot_study


def test_the_same_task_is_told_and_what_it_ran_is_not_run_again(pretrained_tiny_path):
    study = _study(_options(pretrained_tiny_path, warm_start=_warm([])))
    told = [t for t in study.trials if t.state == TrialState.COMPLETE]
    assert [t.value for t in told] == [0.25, 0.26, 0.27, 0.3]
    assert [t.user_attrs["warm_start_trial"] for t in told] == ["a", "b", "c", "d"]
    # Of the preset's points, the recommended config was trial b: not run again; plain
    # fine-tuning did not run: the one point left to run first.
    waiting = [t for t in study.trials if t.state == TrialState.WAITING]
    assert [t.system_attrs["fixed_params"] for t in waiting] == [PLAIN]


def test_another_task_runs_its_best_configs_first(pretrained_tiny_path):
    options = _options(pretrained_tiny_path, num_samples=16,
                       warm_start=_warm(["lmbda 0.0009 -> 0.0003"]))
    study = _study(options)
    assert not [t for t in study.trials if t.state == TrialState.COMPLETE]  # no loss carried
    first = [t.system_attrs["fixed_params"] for t in study.trials
             if t.state == TrialState.WAITING]  # enqueued, not yet asked
    # The preset's points, then as many of the earlier best configs as TPE's start-up (4 of
    # 16 trials), the recommended config not twice.
    assert startup_trials(16) == 4
    assert first == [RECOMMENDED, PLAIN, *[
        c for c in options.warm_start.best_configs(4, 12, REPORT_SPACE) if c != RECOMMENDED]]


def test_a_folder_that_is_no_sweep_is_refused(tmp_path, pretrained_tiny_path):
    with pytest.raises(InputError, match="--warm-start: .* is not a hpcm-tune experiment"):
        load_warm_start(str(tmp_path), _options(pretrained_tiny_path))
    with pytest.raises(InputError, match="give a local folder"):
        load_warm_start("s3://bucket/sweep", _options(pretrained_tiny_path))


@pytest.mark.parametrize("extra, message", [
    (["--warm-start", "/nonexistent/sweep"], "--warm-start: /nonexistent/sweep is not a hpcm-tune"),
    (["--warm-start", "/nonexistent/sweep", "--config", "{}"], "--config runs no search"),
])
def test_bad_warm_start_is_one_line_before_ray_starts(extra, message, capsys, tmp_path,
                                                     pretrained_tiny_path):
    config = tmp_path / "config.json"
    config.write_text('{"context_lr_ratio": 0.5, "freeze_strategy": "none"}')
    extra = [str(config) if arg == "{}" else arg for arg in extra]
    argv = ["run", "--checkpoint", str(pretrained_tiny_path), "--lmbda", "0.0483",
            "--storage-path", str(tmp_path / "results"), *extra]
    assert message in cli_error(capsys, argv)
    assert not (tmp_path / "results").exists()
