"""Shared fixtures: real photos and a trained tiny HPCM."""

from __future__ import annotations


import numpy as np
import pytest
import torch
from skimage import data

import hpcm


def to_tensor(img: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(img)).permute(2, 0, 1)[None].float() / 255


@pytest.fixture(scope="session")
def astronaut() -> torch.Tensor:
    return to_tensor(data.astronaut())  # 512 x 512


@pytest.fixture(scope="session")
def chelsea() -> torch.Tensor:
    return to_tensor(data.chelsea())  # 300 x 451, not a multiple of anything useful


@pytest.fixture(scope="session")
def fitted_tiny(pretrained_tiny_path) -> hpcm.HPCM:
    """The tiny model pre-trained briefly on the bundled photos (tests/conftest.py).

    Random weights give latents near zero and nearly free bits, which would make the
    bitstream-versus-estimate comparison meaningless.
    """
    model = hpcm.load_model(pretrained_tiny_path).eval()
    model.update(force=True)  # the default 240-level table (see hpcm.model.default_scale_table)
    return model
