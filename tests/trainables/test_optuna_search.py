"""The searcher's restore closes Optuna trials that a killed driver asked for but lost."""

from __future__ import annotations

import logging

import optuna
from optuna.trial import TrialState

from search_spaces import FineTuneSpace
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
