"""Where a trial reports to: Ray Tune (a sweep) or a local folder (``finetune``)."""

from __future__ import annotations

import json
import logging
import math
import shutil
import sys
import tempfile
from pathlib import Path
from typing import IO, Any

from hpcm_tune.files import atomic_write
from trainables.trial import load_state, run_trial, save_state

log = logging.getLogger(__name__)


class TuneSession:
    """Ray Tune's function-API session: ``tune.get_checkpoint`` and ``tune.report``."""

    def restore(self) -> dict | None:
        from ray import tune

        checkpoint = tune.get_checkpoint()
        if checkpoint is None:
            return None
        with checkpoint.as_directory() as directory:
            return load_state(Path(directory))

    def report(self, metrics: dict[str, Any], state: dict | None) -> None:
        from ray import tune

        if state is None:
            tune.report(metrics)
            return
        with tempfile.TemporaryDirectory(prefix="hpcm-ckpt-") as directory:
            save_state(state, Path(directory))
            tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(directory))


def hpcm_trainable(config: dict) -> None:
    """Ray Tune function trainable: one HPCM fine-tune per trial."""
    import ray

    # Worker processes start without logging set up; the device choice must be visible.
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(levelname)s %(name)s: %(message)s")
    context = ray.get_runtime_context()
    gpus = context.get_assigned_resources().get("GPU", 0)
    # Device-hours count a half-GPU trial as half a device; a CPU-only trial as one.
    run_trial(config, TuneSession(), gpu_ids=ray.get_gpu_ids(),
              tags={"node_id": context.get_node_id(), "devices": gpus or 1})


class LocalSession:
    """A folder with ``latest/`` and ``best/`` states and ``metrics.jsonl``; prints each epoch."""

    def __init__(self, directory: Path, resume: bool) -> None:
        self.directory = Path(directory)
        self.resume = resume
        self.best_loss = math.inf

    def restore(self) -> dict | None:
        if not self.resume:
            return None
        state = load_state(self.directory / "latest")
        self.best_loss = state["best"]["loss"]
        return state

    def report(self, metrics: dict[str, Any], state: dict | None) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        if state is not None:  # the state first: a failed save must not log the epoch
            self._save(state, metrics["loss"])
        with open(self.directory / "metrics.jsonl", "a") as f:
            f.write(json.dumps(metrics) + "\n")
        print(f"epoch {metrics['epoch']:3d}  loss {metrics['loss']:.4f}  "
              f"s1 {metrics['s1']:.4f}  s2 {metrics['s2']:.4f}  s3 {metrics['s3']:.4f}  "
              f"bpp {metrics['bpp']:.4f}  psnr {metrics['psnr']:.2f} dB  "
              f"{metrics['images_per_s']:.1f} img/s", flush=True)

    def _save(self, state: dict, loss: float) -> None:
        latest = save_state(state, self.directory / "latest")
        if loss <= self.best_loss:
            self.best_loss = loss

            def copy_latest(f: IO[bytes]) -> None:  # a copy: no second serialisation
                with open(latest, "rb") as source:
                    shutil.copyfileobj(source, f)

            atomic_write(self.directory / "best.pt", copy_latest)
