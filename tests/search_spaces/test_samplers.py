"""The sampler learns within the sweep's budget: random start-up sized to it, then TPE."""

import math
import warnings

import optuna
import pytest

from search_spaces import FineTuneSpace, make_sampler, startup_trials


def _proposals(objective, num_samples: int, seed: int = 0) -> list[dict]:
    study = optuna.create_study(sampler=make_sampler("tpe", num_samples, seed))
    space = FineTuneSpace(max_epochs=12)
    for _ in range(num_samples):
        trial = study.ask()
        space(trial)
        study.tell(trial, objective(trial.params))
    return [t.params for t in study.trials]


def _low_ratio_wins(p):  # a landscape whose best context-LR ratio is 0.01
    return math.log10(p["context_lr_ratio"]) + 3


def _high_ratio_wins(p):  # ... and its mirror image: best at 1.0
    return -math.log10(p["context_lr_ratio"]) + 3


@pytest.mark.parametrize("num_samples, startup", [(4, 2), (8, 2), (16, 4), (40, 10), (100, 10)])
def test_startup_is_sized_from_the_number_of_trials(num_samples, startup):
    assert startup_trials(num_samples) == startup
    assert make_sampler("tpe", num_samples, 0)._n_startup_trials == startup


def test_after_the_startup_the_proposals_depend_on_the_results():
    n = 16
    low, high = _proposals(_low_ratio_wins, n), _proposals(_high_ratio_wins, n)
    k = startup_trials(n)
    # Same seed: the random start-up proposes the same points whatever the results ...
    assert low[:k] == high[:k]
    # ... then each search moves towards its own optimum: away from -1, the mean log-ratio
    # of uniform random proposals on [0.01, 1].
    later = lambda ps: sum(math.log10(p["context_lr_ratio"]) for p in ps[k:]) / (n - k)  # noqa: E731
    assert later(low) < -1 < later(high)
    assert later(high) - later(low) > 0.5


def test_random_sampler_ignores_the_results():
    def proposals(objective):
        study = optuna.create_study(sampler=make_sampler("random", 16, 0))
        for _ in range(16):
            trial = study.ask()
            FineTuneSpace(max_epochs=12)(trial)
            study.tell(trial, objective(trial.params))
        return [t.params for t in study.trials]

    assert proposals(_low_ratio_wins) == proposals(_high_ratio_wins)


def test_tpe_options_raise_no_experimental_warning_and_unknown_names_are_refused():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        make_sampler("tpe", 8, 0)
    with pytest.raises(ValueError, match="unknown sampler 'cmaes'"):
        make_sampler("cmaes", 8, 0)
