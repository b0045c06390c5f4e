"""The pre-trained ``tiny`` model the demo and the benchmarks fine-tune: shipped, or trained
once on the bundled photos and cached.

Fine-tuning needs a trained starting point and no model hub can be reached, so the model
that ``PRETRAIN_RECIPE`` makes ships with the package (``trainables/pretrained``, 9.6 MB):
a fresh clone fine-tunes at once, and every machine starts from the same weights (a model
trained here would differ with the CPU's float path). A file name carries a hash of its
recipe; a recipe without a shipped file is trained from scratch once (about 2 minutes on
two CPU cores for this one) into the cache and reused.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import asdict
from pathlib import Path

from hpcm_tune.files import default_cache_dir
from trainables.layer_lr import LayerLRConfig
from trainables.spec import FineTuneConfig

log = logging.getLogger(__name__)

SHIPPED_DIR = Path(__file__).parent / "pretrained"

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

#: ``hpcm.PRESETS["tiny"].pad_multiple``: the demo's crop sizes are checked with it before a
#: sweep starts, where importing the model (torch, compressai) would cost seconds (tested).
TINY_PAD_MULTIPLE = 128


def model_file_name(recipe: FineTuneConfig) -> str:
    """``tiny-pretrained-<hash of the recipe>.pt``: another recipe, another file."""
    digest = hashlib.sha256(json.dumps(asdict(recipe), sort_keys=True).encode()).hexdigest()
    return f"tiny-pretrained-{digest[:12]}.pt"


def pretrained_tiny(cache_dir: Path | None = None,
                    recipe: FineTuneConfig = PRETRAIN_RECIPE) -> Path:
    """Path of a ``tiny`` model pre-trained with ``recipe``: the shipped file, else the
    cached one, else trained now (on the CPU, with both cores) and cached."""
    name = model_file_name(recipe)
    if (SHIPPED_DIR / name).is_file():
        log.info("using the shipped pre-trained tiny model %s", SHIPPED_DIR / name)
        return SHIPPED_DIR / name
    path = Path(cache_dir or default_cache_dir()) / name
    if path.is_file():
        log.info("using the cached pre-trained tiny model %s", path)
        return path
    log.info("pre-training tiny on the bundled photos (%d epochs, runs once) -> %s",
             recipe.epochs, path)
    _train(recipe, path)
    return path


def _train(recipe: FineTuneConfig, path: Path) -> None:
    # torch and the model are imported here: a sweep's driver only needs the file's path.
    import torch

    import hpcm
    from trainables import data
    from trainables.finetune import FineTuner

    train_set, val_set = data.default_datasets(recipe.crop_size, recipe.crops_per_image,
                                               recipe.seed)
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
