"""Shared fixtures: real photos and a briefly fitted tiny HPCM."""

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
def fitted_tiny(astronaut: torch.Tensor) -> hpcm.HPCM:
    """A tiny model fitted for a few seconds on photo crops, so that rates are realistic.

    Random weights give latents near zero and nearly free bits, which would make the
    bitstream-versus-estimate comparison meaningless.
    """
    torch.manual_seed(0)
    model = hpcm.create_model("tiny")
    model.train()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    lmbda = 0.25
    crop = 128
    for _ in range(80):
        idx = torch.randint(0, astronaut.shape[-1] - crop, (4, 2))
        batch = torch.cat([astronaut[..., r : r + crop, c : c + crop] for r, c in idx.tolist()])
        out = model(batch)
        bits = sum(-torch.log2(v).sum() for v in out["likelihoods"].values())
        loss = lmbda * 255**2 * torch.mean((out["x_hat"] - batch) ** 2) + bits / batch[:, 0].numel()
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
    model.eval()
    model.update(force=True)  # the default 240-level table (see hpcm.model.default_scale_table)
    return model
