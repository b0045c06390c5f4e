"""The Ray Tune trainable of a sweep: ``hpcm_trainable`` runs ``trainables.trial.run_trial``
with a ``TuneSession`` (Tune's checkpoints and reports).

Tune pickles the trainable by its module path with the experiment state, so this module's
name is part of every sweep folder that ``resume`` restores. It imports torch and the model
only when a trial runs: the driver that hands the trainable to Tune never trains.
"""

from __future__ import annotations

import fcntl
import logging
import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

from trainables.spec import TrialSpec

log = logging.getLogger(__name__)


STAGING_PREFIX = "hpcm-ckpt-"
LOCK = ".owner.lock"


def stage_checkpoint_folder(prefix: str) -> tuple[tempfile.TemporaryDirectory, int]:
    """A temporary folder to stage a checkpoint in, and the descriptor of its owner lock:
    an exclusive ``flock`` that this process holds until it closes the descriptor or dies
    (the kernel releases it then), so that :func:`remove_orphaned_staging` tells a live
    folder from one a dead worker left. The lock file is locked before it gets its name, so
    a cleaner never finds it unlocked while its owner lives."""
    folder = tempfile.TemporaryDirectory(prefix=prefix)
    fd, path = tempfile.mkstemp(dir=folder.name)
    fcntl.flock(fd, fcntl.LOCK_EX)
    os.rename(path, Path(folder.name) / LOCK)
    return folder, fd


def remove_orphaned_staging(root: Path, own_prefix: str) -> list[Path]:
    """Remove the staged checkpoint folders under ``root`` whose owner died (a worker killed
    with its driver, a trial never run again after a resume): those whose owner lock can be
    taken, and those of this trial's earlier attempts (``own_prefix``; folders staged before
    the lock existed). Returns what it removed."""
    removed = []
    for folder in root.glob(f"{STAGING_PREFIX}*"):
        try:
            fd = os.open(folder / LOCK, os.O_RDONLY)
        except FileNotFoundError:  # no lock yet, none any more, or staged before locks
            if not folder.name.startswith(own_prefix):
                continue
        except PermissionError:  # another user's sweep: not ours to judge
            continue
        else:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:  # its owner is alive
                continue
            finally:
                os.close(fd)
        shutil.rmtree(folder, ignore_errors=True)  # a leftover must not fail the trial
        removed.append(folder)
    return removed


class TuneSession:
    """Ray Tune's function-API session: ``tune.get_checkpoint`` and ``tune.report``.

    A checkpoint is staged in a temporary folder that ``tune.report`` copies to the sweep's
    storage; the report then blocks until the driver takes the result. A driver killed
    meanwhile takes the worker with it, and the folder stays behind (a checkpoint's size:
    784 MiB for Base). So every trial starting on a node removes the staged folders whose
    owner died (:func:`remove_orphaned_staging`)."""

    @staticmethod
    def _staging_prefix() -> str:
        from ray import tune

        return f"{STAGING_PREFIX}{tune.get_context().get_trial_id()}-"

    def restore(self) -> dict | None:
        from ray import tune

        from trainables.trial import load_state

        for stale in remove_orphaned_staging(Path(tempfile.gettempdir()),
                                             self._staging_prefix()):
            log.info("removed %s, a checkpoint staged by a worker that died", stale)
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
        folder, lock = stage_checkpoint_folder(self._staging_prefix())
        try:
            save_state(state, Path(folder.name))
            tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(folder.name))
        finally:
            folder.cleanup()
            os.close(lock)


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
