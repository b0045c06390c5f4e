"""Search spaces and warm-start presets for Optuna (through Ray Tune's OptunaSearch)."""

from search_spaces.presets import (BASELINES, PLAIN, RECOMMENDED, Baseline, is_baseline,
                                   preset_points)
from search_spaces.samplers import make_sampler, startup_trials
from search_spaces.spaces import FineTuneSpace

__all__ = ["BASELINES", "Baseline", "FineTuneSpace", "PLAIN", "RECOMMENDED", "is_baseline",
           "make_sampler", "preset_points", "startup_trials"]
