"""The Ray Tune trainable of a sweep: ``hpcm_trainable`` runs ``trainables.trial.run_trial``
with a ``TuneSession`` (Tune's checkpoints and reports).

Tune pickles the trainable by its module path with the experiment state, so this module's
name is part of every sweep folder that ``resume`` restores. It imports torch and the model
only when a trial runs: the driver that hands the trainable to Tune never trains.
"""

from __future__ import annotations

import logging
import sys
import tempfile
from pathlib import Path
from typing import Any

from trainables.spec import TrialSpec


class TuneSession:
    """Ray Tune's function-API session: ``tune.get_checkpoint`` and ``tune.report``."""

    def restore(self) -> dict | None:
        from ray import tune

        from trainables.trial import load_state

        checkpoint = tune.get_checkpoint()
        if checkpoint is None:
            return None
        with checkpoint.as_directory() as directory:
            return load_state(Path(directory))

    def report(self, metrics: dict[str, Any], state: dict | None) -> None:
        from ray import tune

        from trainables.trial import save_state

        if state is None:
            tune.report(metrics)
            return
        with tempfile.TemporaryDirectory(prefix="hpcm-ckpt-") as directory:
            save_state(state, Path(directory))
            tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(directory))


def hpcm_trainable(config: dict) -> None:
    """Ray Tune function trainable: one HPCM fine-tune per trial (``config``: a
    ``TrialSpec``'s flat form with the searched knobs)."""
    import ray

    from trainables.trial import run_trial

    # Worker processes start without logging set up; the device choice must be visible.
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(levelname)s %(name)s: %(message)s")
    context = ray.get_runtime_context()
    gpus = context.get_assigned_resources().get("GPU", 0)
    # Device-hours count a half-GPU trial as half a device; a CPU-only trial as one.
    run_trial(TrialSpec.from_config(config), TuneSession(), gpu_ids=ray.get_gpu_ids(),
              tags={"node_id": context.get_node_id(), "devices": gpus or 1})
