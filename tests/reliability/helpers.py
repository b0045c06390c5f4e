"""Shared helpers of the reliability tests: small photo folders and CLI error checks."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image

import tune_main
from trainables.data import bundled_photos

REPO = Path(__file__).resolve().parents[2]
DATA = REPO / "tests" / "data"


def write_png(path: Path, size: tuple[int, int]) -> Path:
    """A real photo resized to ``size`` (width, height)."""
    with Image.open(bundled_photos("train")[0]) as img:
        img.convert("RGB").resize(size).save(path)
    return path


def write_garbage(path: Path, nbytes: int = 4000) -> Path:
    path.write_bytes(np.random.default_rng(0).bytes(nbytes))
    return path


def official_layout_file(path: Path, variant: str) -> Path:
    """A file with the exact key layout and shapes of a released official ``variant`` file.

    Every tensor is a zero-stride view of one element, so the file is a few hundred KB
    instead of hundreds of MB; the loaders only look at keys and shapes before refusing.
    """
    constants = {"entropy_estimation.beta": 1.5,
                 "entropy_estimation.scale_lower_bound.bound": 0.12,
                 "entropy_estimation.likelihood_lower_bound.bound": 1e-9}
    one = torch.zeros(1)
    sd = {}
    with open(DATA / f"official_hpcm_{variant}_state_dict.tsv") as f:
        next(f)
        for line in f:
            key, shape, _ = line.rstrip("\n").split("\t")
            if key.startswith("adaptive_params_list."):
                continue  # released files predate their registration
            dims = () if shape == "" else tuple(int(s) for s in shape.split("x"))
            sd[key] = torch.tensor([constants[key]]) if key in constants else one.expand(dims)
    torch.save({"state_dict": sd}, path)
    return path


def cli_error(capsys, argv: list[str], code: int = 2) -> str:
    """Run the CLI in-process; assert exit ``code`` and exactly one ``error:`` line, last."""
    rc = tune_main.main(argv)
    err = capsys.readouterr().err
    lines = [line for line in err.strip().splitlines() if line.strip()]
    assert rc == code, err[-3000:]
    assert "Traceback" not in err, err[-3000:]
    assert lines and lines[-1].startswith("error: "), err[-3000:]
    assert sum(line.startswith("error: ") for line in lines) == 1, err[-3000:]
    return lines[-1]


def tree(root: Path) -> dict[str, bytes]:
    """Every file under ``root`` with its content (to prove nothing was overwritten)."""
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file()} if root.exists() else {}
