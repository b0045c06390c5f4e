"""A short pre-training of the ``tiny`` preset on the bundled photos, cached on disk.

Fine-tuning needs a trained starting point. No model hub can be reached, so the demo and
the tests train ``tiny`` from scratch once (about 90 s on two CPU cores) and reuse the
file; its name carries a hash of the recipe, so a changed recipe never reuses a stale file.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import asdict
from pathlib import Path

import torch

import hpcm
from trainables.data import default_cache_dir, default_datasets
from trainables.finetune import FineTuneConfig, FineTuner
from trainables.layer_lr import LayerLRConfig

log = logging.getLogger(__name__)

PRETRAIN_RECIPE = FineTuneConfig(
    lmbda=0.0483,  # the highest official lambda: quality first, from scratch
    epochs=40,
    batch_size=8,
    crop_size=128,
    crops_per_image=8,
    layer_lr=LayerLRConfig(base_lr=3e-3, h_multiplier=1.0, context_lr_ratio=1.0,
                           freeze_strategy="none", warmup_epochs=2, decay_to=0.05),
    seed=1234,
)


def pretrained_tiny(cache_dir: Path | None = None,
                    recipe: FineTuneConfig = PRETRAIN_RECIPE) -> Path:
    """Path of a ``tiny`` model pre-trained with ``recipe``; trains it on first use."""
    digest = hashlib.sha256(json.dumps(asdict(recipe), sort_keys=True).encode()).hexdigest()
    path = Path(cache_dir or default_cache_dir()) / f"tiny-pretrained-{digest[:12]}.pt"
    if path.is_file():
        log.info("using the cached pre-trained tiny model %s", path)
        return path
    log.info("pre-training tiny on the bundled photos (%d epochs, runs once) -> %s",
             recipe.epochs, path)
    train_set, val_set = default_datasets(recipe.crop_size, recipe.crops_per_image, recipe.seed)
    torch.manual_seed(recipe.seed)  # the initial weights too: the same recipe, the same model
    tuner = FineTuner(hpcm.create_model("tiny"), recipe, train_set, val_set,
                      torch.device("cpu"))
    for _ in range(recipe.epochs):
        tuner.train_epoch()
    metrics = tuner.validate()
    log.info("pre-trained tiny: bpp %.3f, PSNR %.2f dB on the bundled validation photos",
             metrics["bpp"], metrics["psnr"])
    path.parent.mkdir(parents=True, exist_ok=True)
    hpcm.save_model(tuner.model, path)
    return path
