"""The searcher: its restore closes Optuna trials that a killed driver asked for but lost,
and it can be told earlier results (a warm start) with the define-by-run space."""

from __future__ import annotations

import logging
import math
import warnings

import optuna
import pytest
from optuna.distributions import IntDistribution
from optuna.trial import TrialState

from search_spaces import FineTuneSpace, make_sampler
from trainables.optuna_search import ResumableOptunaSearch


def _searcher(url: str) -> ResumableOptunaSearch:
    return ResumableOptunaSearch(space=FineTuneSpace(max_epochs=12), metric="best_loss",
                                 mode="min", study_name="sweep",
                                 storage=optuna.storages.RDBStorage(url),
                                 sampler=optuna.samplers.TPESampler(seed=0))


def test_restore_fails_the_trial_asked_after_the_last_checkpoint_and_asks_it_again(
        tmp_path, caplog):
    url = f"sqlite:///{tmp_path / 'study.db'}"
    searcher = _searcher(url)
    searcher.suggest("done")
    searcher.on_trial_complete("done", {"best_loss": 1.5})
    searcher.suggest("running")  # Tune knows this trial: it is resumed, not failed
    searcher.save(str(tmp_path / "searcher.pkl"))
    lost = searcher.suggest("lost")  # asked, then the driver was killed before a checkpoint

    restored = _searcher(url)
    with caplog.at_level(logging.WARNING):
        restored.restore(str(tmp_path / "searcher.pkl"))

    def states():
        return [t.state for t in optuna.load_study(study_name="sweep", storage=url).trials]

    assert states() == [TrialState.COMPLETE, TrialState.RUNNING, TrialState.FAIL,
                        TrialState.WAITING]
    assert "Optuna trial 2 was asked for by the interrupted driver" in caplog.text
    assert restored.suggest("next") == lost  # the lost configuration is evaluated after all
    restored.on_trial_complete("next", {"best_loss": 1.1})
    restored.on_trial_complete("running", {"best_loss": 1.2})
    assert states() == [TrialState.COMPLETE, TrialState.COMPLETE, TrialState.FAIL,
                        TrialState.COMPLETE]
    assert optuna.load_study(study_name="sweep", storage=url).best_value == 1.1


def test_a_replayed_epoch_keeps_its_first_value_without_a_warning(tmp_path):
    # A trial restored from its checkpoint reports the epochs after it again (Tune's
    # training_iteration is the step): the study keeps the first report, and says nothing.
    searcher = _searcher(f"sqlite:///{tmp_path / 'study.db'}")
    searcher.suggest("t")
    searcher.on_trial_result("t", {"best_loss": 1.5, "training_iteration": 1})
    searcher.on_trial_result("t", {"best_loss": 1.4, "training_iteration": 2})
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # any warning fails the test
        searcher.on_trial_result("t", {"best_loss": 1.45, "training_iteration": 2})
    searcher.on_trial_result("t", {"best_loss": 1.3, "training_iteration": 3})
    assert searcher._ot_study.trials[0].intermediate_values == {1: 1.5, 2: 1.4, 3: 1.3}


def _told(objective) -> ResumableOptunaSearch:
    """A fresh sweep's searcher told 8 earlier results of ``objective`` (a warm start)."""
    searcher = ResumableOptunaSearch(space=FineTuneSpace(max_epochs=12), metric="best_loss",
                                     mode="min", sampler=make_sampler("tpe", 8, seed=0))
    for ratio in (0.01, 0.02, 0.05, 0.1, 0.2, 0.4, 0.7, 1.0):
        params = {"context_lr_ratio": ratio, "freeze_strategy": "none"}
        searcher.add_evaluated_point(params, objective(params))
    return searcher


def test_told_results_are_complete_trials_with_the_spaces_distributions():
    searcher = _told(lambda p: p["context_lr_ratio"])
    point = {"context_lr_ratio": 0.3, "freeze_strategy": "progressive", "unfreeze_h_epoch": 4,
             "unfreeze_context_epoch": 7}
    searcher.add_evaluated_point(point, 0.25, user_attrs={"warm_start_trial": "abc"})
    last = searcher._ot_study.trials[-1]
    assert len(searcher._ot_study.trials) == 9
    assert last.state == TrialState.COMPLETE and last.value == 0.25 and last.params == point
    assert last.user_attrs == {"warm_start_trial": "abc"}
    # The distributions the space gives these values: the context epoch's range follows h.
    assert last.distributions["unfreeze_context_epoch"] == IntDistribution(5, 11)
    # A value the space cannot hold, or a knob it needs but is missing, is refused: nothing told.
    with pytest.raises(ValueError, match="unfreeze_context_epoch"), \
            pytest.warns(UserWarning, match="out of the range"):  # Optuna's FixedTrial warns first
        searcher.add_evaluated_point({**point, "unfreeze_context_epoch": 12}, 0.2)
    with pytest.raises(ValueError, match="freeze_strategy"):
        searcher.add_evaluated_point({"context_lr_ratio": 0.3}, 0.2)
    assert len(searcher._ot_study.trials) == 9


def test_told_results_steer_the_first_proposals():
    """Told more results than its random start-up (2 of 8), TPE models them from its first
    proposal: the same seed proposes low context-LR ratios where they won, high ones where
    they lost (the mean log-ratio of uniform proposals on [0.01, 1] is -1)."""
    def first_proposals(objective) -> float:
        searcher = _told(objective)
        ratios = [searcher.suggest(f"t{i}")["context_lr_ratio"] for i in range(4)]
        return sum(math.log10(r) for r in ratios) / len(ratios)

    low_wins = first_proposals(lambda p: math.log10(p["context_lr_ratio"]) + 3)
    high_wins = first_proposals(lambda p: -math.log10(p["context_lr_ratio"]) + 3)
    assert low_wins < -1 < high_wins
