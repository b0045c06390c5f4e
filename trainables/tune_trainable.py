"""The Ray Tune trainable of a sweep: ``hpcm_trainable`` runs ``trainables.trial.run_trial``
with a ``TuneSession`` (Tune's checkpoints and reports).

Tune pickles the trainable by its module path with the experiment state, so this module's
name is part of every sweep folder that ``resume`` restores. It imports torch and the model
only when a trial runs: the driver that hands the trainable to Tune never trains.
"""

from __future__ import annotations

import logging
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

from trainables.spec import TrialSpec

log = logging.getLogger(__name__)


class TuneSession:
    """Ray Tune's function-API session: ``tune.get_checkpoint`` and ``tune.report``.

    A checkpoint is staged in a temporary folder that ``tune.report`` copies to the sweep's
    storage; the report then blocks until the driver takes the result. A driver killed
    meanwhile takes the worker with it, and the folder stays behind (a checkpoint's size:
    784 MiB for Base). Staging folders carry the trial's id, so the trial's next attempt
    removes its predecessor's leftovers on this node."""

    @staticmethod
    def _staging_prefix() -> str:
        from ray import tune

        return f"hpcm-ckpt-{tune.get_context().get_trial_id()}-"

    def restore(self) -> dict | None:
        from ray import tune

        from trainables.trial import load_state

        for stale in Path(tempfile.gettempdir()).glob(f"{self._staging_prefix()}*"):
            log.info("removing %s, a checkpoint staged by an earlier attempt of this trial",
                     stale)
            shutil.rmtree(stale, ignore_errors=True)  # a leftover must not fail the trial
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
        with tempfile.TemporaryDirectory(prefix=self._staging_prefix()) as directory:
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
