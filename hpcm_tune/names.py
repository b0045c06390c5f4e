"""Names that several packages must spell alike: each is defined here and imported where used.

Only the standard library may be imported here (``tune_main.py --help`` and the stoppers
read these names without importing torch, Ray or Optuna).
"""

from __future__ import annotations

#: The marker file of an experiment folder: the sweep options, written by ``run``. Only
#: folders holding it are resumed (restoring unpickles Tune's state) or read as sweeps.
MARKER = "hpcm_tune_experiment.json"
#: A trial's training state (weights, optimizer, schedule, RNG, stopper) in each checkpoint.
STATE_FILE = "trial_state.pt"

#: Why a trial ended, as the console and the analysis both say it: every scale's patience
#: ran out (the per-scale stopper), or a scheduler such as ASHA culled it at a rung.
ALL_STOPPED = "all scales stopped"
CULLED = "culled by the scheduler"

#: HPCM's three coding lattices: the per-scale losses every trial reports, in coding order.
SCALES: tuple[str, ...] = ("s1", "s2", "s3")

#: The knobs a sweep searches (``search_spaces.FineTuneSpace``), in display order; the
#: search space suggests them under these names and they are top-level keys of a trial config.
SEARCHED_KNOBS: tuple[str, ...] = ("context_lr_ratio", "freeze_strategy", "unfreeze_h_epoch",
                                   "unfreeze_context_epoch", "base_lr", "h_multiplier")
#: The searched knobs that only ``--wide-space`` adds.
WIDE_KNOBS: tuple[str, ...] = ("base_lr", "h_multiplier")


def searched_knobs(wide: bool, fixed_config: dict | None = None) -> tuple[str, ...]:
    """The knobs a sweep sets per trial: its search space's (with or without
    ``--wide-space``), or, for a sweep of one fixed config, that config's."""
    if fixed_config is not None:
        return tuple(fixed_config)
    return SEARCHED_KNOBS if wide else tuple(k for k in SEARCHED_KNOBS if k not in WIDE_KNOBS)


#: What is frozen while fine-tuning (``trainables.layer_lr``).
FREEZE_STRATEGIES: tuple[str, ...] = ("none", "entropy", "progressive")
#: The search presets: which configurations a sweep tries first (``search_spaces.presets``).
SEARCH_PRESETS: tuple[str, ...] = ("optuna", "seed-context-lr", "seed-freeze",
                                   "seed-ablation")
#: The Optuna samplers a sweep can use (``search_spaces.samplers``).
SAMPLERS: tuple[str, ...] = ("tpe", "random")
#: The trial schedulers besides the per-scale stopper (``stoppers.scheduler``).
SCHEDULERS: tuple[str, ...] = ("leader-gap", "asha", "hyperband", "fifo")
