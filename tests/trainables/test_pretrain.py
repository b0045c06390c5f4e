"""The pre-trained tiny model (trainables.pretrain): trained once per recipe, then reused.

Pre-training takes minutes on two cores, so it runs once per test session (the
``pretrained_tiny_path`` fixture, cached across runs). Here a tripwire stands in for the
training data: a call that would train fails at once instead of training for minutes.
"""

from __future__ import annotations

import logging
import shutil
from dataclasses import replace

import pytest
import torch

import hpcm
import trainables.pretrain as pretrain
from trainables import data
from trainables.data import ImageFolderDataset, bundled_photos
from trainables.finetune import FineTuner
from trainables.spec import FineTuneConfig
from trainables.layer_lr import LayerLRConfig

# The recipe conftest's pretrained_tiny_path fixture was made with.
RECIPE = replace(pretrain.PRETRAIN_RECIPE, epochs=12)


class WouldTrain(Exception):
    pass


@pytest.fixture
def cache(tmp_path, pretrained_tiny_path, monkeypatch):
    """A cache folder holding the session's pre-trained model; training is a tripwire."""
    shutil.copy(pretrained_tiny_path, tmp_path / pretrained_tiny_path.name)

    def would_train(*args, **kwargs):
        raise WouldTrain

    monkeypatch.setattr(data, "default_datasets", would_train)
    return tmp_path


def test_a_cached_model_is_reused_without_training(cache, pretrained_tiny_path):
    before = (cache / pretrained_tiny_path.name).read_bytes()
    path = pretrain.pretrained_tiny(cache_dir=cache, recipe=RECIPE)
    assert path == cache / pretrained_tiny_path.name
    assert path.read_bytes() == before
    # An equal recipe built anew finds the same file.
    assert pretrain.pretrained_tiny(cache_dir=cache, recipe=replace(
        RECIPE, layer_lr=LayerLRConfig(**vars(RECIPE.layer_lr)))) == path


@pytest.mark.parametrize("change", [dict(seed=1235), dict(epochs=13), dict(lmbda=0.0250),
                                    dict(layer_lr=replace(RECIPE.layer_lr, base_lr=1e-3))])
def test_another_recipe_is_never_served_the_cached_file(change, cache, caplog):
    with caplog.at_level(logging.INFO, logger=pretrain.__name__), pytest.raises(WouldTrain):
        pretrain.pretrained_tiny(cache_dir=cache, recipe=replace(RECIPE, **change))
    # It went to train into a file of its own, in the same folder.
    (target,) = [r.getMessage().split(" -> ")[1] for r in caplog.records
                 if r.getMessage().startswith("pre-training tiny")]
    assert target.startswith(str(cache)) and target not in {str(p) for p in cache.iterdir()}


def test_the_default_recipe_is_served_the_shipped_model_without_training(cache):
    # A fresh clone fine-tunes at once; a recipe changed without shipping its model would
    # send every new user through minutes of pre-training (and fail here).
    path = pretrain.pretrained_tiny(cache_dir=cache)
    assert path.parent == pretrain.SHIPPED_DIR
    assert path.name == pretrain.model_file_name(pretrain.PRETRAIN_RECIPE)
    config = hpcm.load_model(path).config
    assert config.name == "tiny"
    # The demo checks crop sizes with this constant, not the model it would have to import.
    assert config.pad_multiple == pretrain.TINY_PAD_MULTIPLE


@pytest.mark.parametrize("which", ["session", "shipped"])
def test_the_pretrained_model_codes_a_photo_better_than_its_untrained_start(
        which, pretrained_tiny_path):
    val = ImageFolderDataset(bundled_photos("val")[:1], mode="val", max_side=256)
    config = FineTuneConfig(lmbda=RECIPE.lmbda, epochs=1, batch_size=1, crop_size=128)
    trained = hpcm.load_model(pretrained_tiny_path if which == "session"
                              else pretrain.pretrained_tiny())
    torch.manual_seed(RECIPE.seed)
    untrained = hpcm.create_model("tiny")
    assert trained.config == untrained.config  # the tiny preset
    cpu = torch.device("cpu")
    loss = {name: FineTuner(model, config, val, val, cpu).validate()["loss"]
            for name, model in (("trained", trained), ("untrained", untrained))}
    assert loss["trained"] < loss["untrained"]
