"""The shared names agree with what the packages really do with them."""

from __future__ import annotations

import optuna

from hpcm_tune.names import FREEZE_STRATEGIES, SEARCH_PRESETS, SEARCHED_KNOBS, WIDE_KNOBS
from search_spaces import FineTuneSpace, preset_points


def _suggested(space: FineTuneSpace, trials: int = 40) -> dict[str, set]:
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    study.optimize(space, n_trials=trials)
    names: dict[str, set] = {}
    for trial in study.trials:
        for name, value in trial.params.items():
            names.setdefault(name, set()).add(value)
    return names


def test_the_search_space_suggests_exactly_the_searched_knobs():
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    narrow, wide = _suggested(FineTuneSpace(max_epochs=12)), _suggested(
        FineTuneSpace(max_epochs=12, wide=True))
    assert set(wide) == set(SEARCHED_KNOBS)  # summaries and analyses keep exactly these
    assert set(narrow) == set(SEARCHED_KNOBS) - set(WIDE_KNOBS)
    assert wide["freeze_strategy"] == set(FREEZE_STRATEGIES)


def test_every_search_preset_has_points_of_searched_knobs():
    for preset in SEARCH_PRESETS:
        points = preset_points(preset, 12)
        assert points and all(set(p) <= set(SEARCHED_KNOBS) for p in points), preset
