"""The embedded demo task: derive a lower-rate model from a pre-trained one.

Released learned codecs come as one model per rate point, and the usual way to get another
rate is to fine-tune an existing model at the new lambda rather than train from scratch.
The demo does exactly that with the ``tiny`` preset: it starts from the model pre-trained
once on the bundled photos at lambda 0.0483 (``trainables.pretrain``) and fine-tunes it at
0.0009, half of HPCM's lowest official lambda: a rate below the released models. The rate
must fall by about half, so the context model (most of the parameters) has to re-learn its
predictions for the new latents: how fast it may move (the context-LR ratio) and when it is
unfrozen decide the result.

Enough data per epoch that the curve is the knobs, not over-fitting: 6 random crops of each
training photo per epoch (new crops every epoch), validated on the bundled validation photos
downsized to 256 px on the long side so that validation stays cheap on a CPU.
"""

from __future__ import annotations

from typing import Any

# The settings of the demo task; every one can be overridden on the command line.
DEMO_TASK: dict[str, Any] = {
    "lmbda": 0.0009,
    "base_lr": 5e-4,
    "crops_per_image": 6,
    "max_side": 256,
}
PRETRAINED_LMBDA = 0.0483  # trainables.pretrain.PRETRAIN_RECIPE.lmbda, kept import-free


def demo_trial(checkpoint: str, **overrides: Any) -> dict[str, Any]:
    """The constant part of a demo trial's config (as ``tune_main.py run`` builds it)."""
    trial = {"model": "tiny", "checkpoint": checkpoint, "checkpoint_kind": "project",
             "train_dir": None, "val_dir": None, "batch_size": 8, "crop_size": 128,
             "checkpoint_every": 1, "keep_scale_best": False, **DEMO_TASK}
    trial.update({k: v for k, v in overrides.items() if v is not None})
    return trial
