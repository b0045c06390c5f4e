"""The data a trial trains and validates on: each folder option works on its own."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from trainables.data import bundled_photos
from trainables.finetune import FineTuneConfig
from trainables.spec import TrialSpec
from trainables.trial import _datasets


def _spec(**folders) -> TrialSpec:
    return TrialSpec(finetune=FineTuneConfig(crop_size=128, crops_per_image=1), **folders)


def _files(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


@pytest.mark.parametrize("given, missing", [("val", "train"), ("train", "val")])
def test_each_folder_option_works_alone(given, missing, photo_dirs, caplog):
    # The folder given is used; the other one is the bundled photos, and that is logged.
    with caplog.at_level(logging.INFO, logger="trainables.trial"):
        datasets = dict(zip(("train", "val"), _datasets(_spec(
            **{f"{given}_dir": str(photo_dirs / given)}))))
    assert sorted(p.name for p in datasets[given].paths) == _files(photo_dirs / given)
    assert list(datasets[missing].paths) == bundled_photos(missing)
    verb = "training" if missing == "train" else "validating"
    assert any(f"no --{missing}-dir: {verb} on the bundled {missing} photos" in r.getMessage()
               for r in caplog.records)


def test_both_folders_and_max_side(photo_dirs):
    train, val = _datasets(_spec(train_dir=str(photo_dirs / "train"),
                                 val_dir=str(photo_dirs / "val"), max_side=200))
    assert sorted(p.name for p in train.paths) == _files(photo_dirs / "train")
    assert sorted(p.name for p in val.paths) == _files(photo_dirs / "val")
    assert max(val[0].shape[-2:]) == 200  # chelsea, 451 x 300, downsized


@pytest.mark.parametrize("folders", [{}, {"train_dir": None, "val_dir": None}])
def test_no_folder_is_the_bundled_photos(folders):
    train, val = _datasets(_spec(**folders))
    assert list(train.paths) == bundled_photos("train")
    assert list(val.paths) == bundled_photos("val")
