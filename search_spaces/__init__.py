"""Search spaces and warm-start presets for Optuna (through Ray Tune's OptunaSearch)."""

from search_spaces.presets import PRESETS, RECOMMENDED, preset_points
from search_spaces.samplers import SAMPLERS, make_sampler, startup_trials
from search_spaces.spaces import FREEZE_STRATEGIES, FineTuneSpace

__all__ = ["FREEZE_STRATEGIES", "FineTuneSpace", "PRESETS", "RECOMMENDED", "SAMPLERS",
           "make_sampler", "preset_points", "startup_trials"]
