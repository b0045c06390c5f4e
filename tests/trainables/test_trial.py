"""The data a trial trains and validates on: each folder option works on its own."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from trainables.data import bundled_photos
from trainables.finetune import FineTuneConfig
from trainables.trial import _datasets


def _config(**folders) -> tuple[dict, FineTuneConfig]:
    finetune = FineTuneConfig(crop_size=128, crops_per_image=1)
    return {"train_dir": None, "val_dir": None, **folders}, finetune


def _files(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


@pytest.mark.parametrize("given, missing", [("val", "train"), ("train", "val")])
def test_each_folder_option_works_alone(given, missing, photo_dirs, caplog):
    # The folder given is used; the other one is the bundled photos, and that is logged.
    with caplog.at_level(logging.INFO, logger="trainables.trial"):
        datasets = dict(zip(("train", "val"), _datasets(*_config(
            **{f"{given}_dir": str(photo_dirs / given)}))))
    assert sorted(p.name for p in datasets[given].paths) == _files(photo_dirs / given)
    assert list(datasets[missing].paths) == bundled_photos(missing)
    verb = "training" if missing == "train" else "validating"
    assert any(f"no --{missing}-dir: {verb} on the bundled {missing} photos" in r.getMessage()
               for r in caplog.records)


def test_both_folders_and_max_side(photo_dirs):
    config, finetune = _config(train_dir=str(photo_dirs / "train"),
                               val_dir=str(photo_dirs / "val"), max_side=200)
    train, val = _datasets(config, finetune)
    assert sorted(p.name for p in train.paths) == _files(photo_dirs / "train")
    assert sorted(p.name for p in val.paths) == _files(photo_dirs / "val")
    assert max(val[0].shape[-2:]) == 200  # chelsea, 451 x 300, downsized


@pytest.mark.parametrize("folders", [{}, {"train_dir": None, "val_dir": None}])
def test_no_folder_is_the_bundled_photos(folders):
    train, val = _datasets(*_config(**folders))
    assert list(train.paths) == bundled_photos("train")
    assert list(val.paths) == bundled_photos("val")


def test_every_knob_the_search_space_suggests_is_a_trial_setting():
    import optuna

    from search_spaces import FineTuneSpace
    from trainables.trial import trial_config

    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    suggested: set[str] = set()
    for _ in range(60):
        trial = study.ask()
        FineTuneSpace(max_epochs=12, wide=True)(trial)
        suggested |= set(trial.params)
        study.tell(trial, 0.0)
        finetune, _ = trial_config({**trial.params, "epochs": 12})
        for name, value in trial.params.items():  # each one reaches the fine-tune's config
            assert getattr(finetune.layer_lr, name) == value
    assert {"unfreeze_h_epoch", "base_lr", "h_multiplier"} <= suggested


def test_a_misspelt_knob_is_refused_by_name():
    from trainables.trial import trial_config

    with pytest.raises(ValueError, match="unknown trial config keys: context_lr_raito"):
        trial_config({"context_lr_raito": 0.5, "epochs": 12})
