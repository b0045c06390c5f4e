"""Shared fixtures: a project-local cache (bundled photos, pre-trained tiny) for the session."""

from __future__ import annotations

import os
from pathlib import Path

import pytest


def pytest_configure(config: pytest.Config) -> None:
    # Keep every file the tests materialise inside pytest's cache folder, never in $HOME;
    # it survives between local runs and starts empty on a fresh clone (CI).
    cache = Path(config.cache.mkdir("hpcm-tune"))
    os.environ["HPCM_TUNE_CACHE"] = str(cache)
    # Ray clusters made by the tests listen on 127.0.0.1 only (read when ray is imported;
    # see trainables.cluster.prepare).
    os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")


@pytest.fixture(scope="session")
def photo_dirs(tmp_path_factory) -> Path:
    """``train/`` with two bundled photos and ``val/`` with one: the smallest real data set."""
    import shutil

    from trainables.data import bundled_photos

    root = tmp_path_factory.mktemp("photos")
    for split, paths in (("train", bundled_photos("train")[:2]),
                         ("val", bundled_photos("train")[:1])):
        (root / split).mkdir()
        for path in paths:
            shutil.copy(path, root / split / path.name)
    return root


@pytest.fixture(scope="session")
def pretrained_tiny_path() -> Path:
    """A tiny model pre-trained briefly on the bundled photos (cached across runs)."""
    from dataclasses import replace

    from trainables.pretrain import PRETRAIN_RECIPE, pretrained_tiny

    return pretrained_tiny(recipe=replace(PRETRAIN_RECIPE, epochs=12))
