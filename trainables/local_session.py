"""Where ``tune_main.py finetune`` reports to: a local folder instead of Ray Tune."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path
from typing import IO, Any

from hpcm_tune.files import atomic_write
from trainables.trial import load_state, save_state


class LocalSession:
    """A folder with ``latest/`` (the last saved trial state), ``best.pt`` (the best epoch's)
    and ``metrics.jsonl``; prints each epoch."""

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
