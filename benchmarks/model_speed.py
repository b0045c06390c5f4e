#!/usr/bin/env python3
"""Train-step and eval throughput of the HPCM presets, optionally beside the official code.

    python benchmarks/model_speed.py                         # tiny, base, large on this machine
    python benchmarks/model_speed.py --official ~/LIC-HPCM   # + the official model, same weights

A train step is forward + backward + Adam on one batch; eval is a no-grad forward in eval
mode. Each figure is the median of ``--repeats`` timed runs after one warm-up. With
``--official`` the official Base/Large run in the same process on the same input with our
weights converted back, and the script prints ours/official time ratios (< 1 is faster).
The official code needs ``einops`` and its prebuilt Python 3.8 extensions; the extensions are
only used for entropy coding, so they are replaced by empty modules here, and its
``adaptive_params_list`` (created on CUDA) is built on the CPU when no GPU is present.
"""

from __future__ import annotations

import argparse
import importlib
import statistics
import sys
import time
import types
from contextlib import contextmanager
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import hpcm  # noqa: E402

SIZES = {"tiny": 128, "base": 256, "large": 256}


def median_time(fn, repeats: int) -> float:
    """Median wall time of ``fn()`` over ``repeats`` runs after one warm-up run."""
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def measure(model: torch.nn.Module, size: int, batch: int, repeats: int,
            device: torch.device) -> dict[str, float]:
    """Seconds per train step and per eval forward on a random batch of ``size`` crops."""
    model = model.to(device)
    x = torch.rand(batch, 3, size, size, device=device)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-5)

    def train_step() -> None:
        model.train()
        out = model(x)
        bits = sum(-torch.log2(v).sum() for v in out["likelihoods"].values())
        loss = 0.0067 * 255**2 * torch.mean((out["x_hat"] - x) ** 2) + bits / (batch * size**2)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if device.type == "cuda":
            torch.cuda.synchronize()

    @torch.no_grad()
    def eval_forward() -> None:
        model.eval()
        model(x)
        if device.type == "cuda":
            torch.cuda.synchronize()

    return {"train_s": median_time(train_step, repeats),
            "eval_s": median_time(eval_forward, repeats)}


@contextmanager
def _official_importable(checkout: Path):
    """Import the official package with its coding extensions stubbed out."""
    for name in ("src.entropy_models._CXX", "src.entropy_models.unbounded_ans"):
        stub = types.ModuleType(name)
        stub.pmf_to_quantized_cdf = stub.ubransEncoder = stub.ubransDecoder = None
        sys.modules[name] = stub
    sys.path.insert(0, str(checkout))
    real_ones = torch.ones

    def ones_on_available_device(*args, **kwargs):
        if kwargs.get("device") == "cuda" and not torch.cuda.is_available():
            kwargs["device"] = "cpu"
        return real_ones(*args, **kwargs)

    torch.ones = ones_on_available_device
    try:
        yield
    finally:
        torch.ones = real_ones
        sys.path.remove(str(checkout))


def official_model(checkout: Path, ours: hpcm.HPCM) -> torch.nn.Module:
    """The official model of ``ours``'s variant carrying exactly ``ours``'s weights."""
    module_name = {"base": "src.models.HPCM_Base", "large": "src.models.HPCM_Large"}[
        ours.config.name]
    with _official_importable(checkout):
        official = importlib.import_module(module_name).HPCM()
    mine = ours.state_dict()
    missing = [k for k, _ in official.named_parameters() if k not in mine]
    if missing:
        raise RuntimeError(f"official parameters missing from ours: {missing[:5]}")
    # Same parameter names; the official entropy buffers keep their own (constant) values.
    official.load_state_dict({**official.state_dict(),
                              **{k: mine[k] for k, _ in official.named_parameters()}})
    return official


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--presets", default="tiny,base,large")
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--official", type=Path, help="path of a LIC-HPCM checkout")
    args = parser.parse_args()
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    torch.manual_seed(0)
    gpu = f"{torch.cuda.get_device_name()}, " if device.type == "cuda" else ""
    print(f"device: {device} ({gpu}{torch.get_num_threads()} CPU threads), "
          f"torch {torch.__version__}, batch {args.batch}")
    print(f"{'model':<16}{'crop':>6}{'train s/step':>14}{'train img/s':>13}"
          f"{'eval s':>10}{'eval img/s':>12}")
    for name in args.presets.split(","):
        ours = hpcm.create_model(name)
        size = SIZES[name]
        rows = [("ours " + name, measure(ours, size, args.batch, args.repeats, device))]
        if args.official and name in ("base", "large"):
            official = official_model(args.official, ours)
            rows.append(("official " + name,
                         measure(official, size, args.batch, args.repeats, device)))
        for label, r in rows:
            print(f"{label:<16}{size:>6}{r['train_s']:>14.3f}{args.batch / r['train_s']:>13.2f}"
                  f"{r['eval_s']:>10.3f}{args.batch / r['eval_s']:>12.2f}")
        if len(rows) == 2:
            ours_r, off_r = rows[0][1], rows[1][1]
            print(f"{'ratio ours/off':<16}{'':>6}{ours_r['train_s'] / off_r['train_s']:>14.2f}"
                  f"{'':>13}{ours_r['eval_s'] / off_r['eval_s']:>10.2f}")


if __name__ == "__main__":
    main()
