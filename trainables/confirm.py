"""Seed confirmation: a finished sweep's top configs trained again at new seeds.

A sweep ranks its configs at one training seed. A seed (its crops, flips, order and
quantisation noise) shifts every config's loss alike, by up to 2 % on the demo task, while a
converged search's top configs are often a fraction of a percent apart: the order of the top
two may be the seed's. ``tune_main.py confirm SWEEP`` runs the top configs again, same task
and epoch budget, at new seeds (no scheduler: every trial runs to its budget or its per-scale
stopper); ``analysis.confirmation`` picks the candidates and compares them seed by seed,
paired, so that a seed's shared shift cancels. The sweep's own result of a config counts as
one more seed when that trial was not culled.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from hpcm_tune.errors import InputError

if TYPE_CHECKING:
    from trainables.sweep import SweepOptions


@dataclass
class Confirmation:
    """What a confirmation sweep runs: ``candidates`` (the sweep's winner first), each at
    every seed of ``seeds``; saved in the experiment's marker.

    A candidate is ``{"trial_id", "config" (searched knobs), "seed", "best_loss",
    "stop_reason", "rank"}`` (and ``"label"`` for a baseline): its trial in the ``source``
    sweep, ranked there from 1.
    """

    source: str
    candidates: list[dict[str, Any]]
    seeds: list[int]

    def points(self) -> list[dict[str, Any]]:
        """Every trial's searched knobs and seed, candidate by candidate."""
        return [{**c["config"], "seed": seed} for c in self.candidates for seed in self.seeds]


def confirmation_options(source: "SweepOptions", source_path: str,
                         candidates: list[dict[str, Any]], seeds: int, name: str,
                         storage_path: str, cpus_per_trial: float | None = None,
                         gpus_per_trial: float | None = None,
                         max_concurrent: int | None = None) -> "SweepOptions":
    """The options of an experiment ``storage_path``/``name`` that trains ``candidates`` at
    ``seeds`` new seeds (the ones after the source sweep's), as the source sweep at
    ``source_path`` trained them: its task, budget and resources (unless given), no
    scheduler, no search."""
    if seeds < 1:
        raise InputError(f"--seeds must be 1 or more, got {seeds}")
    new_seeds = [source.seed + i for i in range(1, seeds + 1)]
    confirmation = Confirmation(source=source_path, candidates=candidates, seeds=new_seeds)
    return dataclasses.replace(
        source, name=name, storage_path=storage_path, num_samples=len(confirmation.points()),
        scheduler="fifo", fixed_config=None, lambdas=None,  # the points set the knobs
        optuna_storage=None, budget_epochs=None, budget_device_hours=None, warm_start=None,
        cpus_per_trial=source.cpus_per_trial if cpus_per_trial is None else cpus_per_trial,
        gpus_per_trial=source.gpus_per_trial if gpus_per_trial is None else gpus_per_trial,
        max_concurrent=max_concurrent or source.max_concurrent, confirm=confirmation)
