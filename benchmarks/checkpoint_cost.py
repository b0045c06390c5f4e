#!/usr/bin/env python3
"""Cost of one trial checkpoint (model + Adam + patience state) against the epoch it follows.

    python benchmarks/checkpoint_cost.py                      # Base, this machine's disk
    python benchmarks/checkpoint_cost.py --step-s 0.25        # + a GPU step time you measured
    python benchmarks/checkpoint_cost.py --quick              # tiny model, 2 repeats

A checkpoint is what a sweep trial writes: ``trainables.trial.save_state`` of
``FineTuner.state_dict()`` (weights, Adam moments, schedule, RNG) plus the patience state,
written to a temporary name and renamed; in a sweep Ray Tune then copies the folder into
the experiment's storage (timed here with pyarrow's copy_files, what Ray uses). Adam's
moments are allocated as after a first step, so the file has its real size.

The epoch time is measured train steps (``--batch`` x ``--crop`` crops, forward + backward +
Adam on this machine) times the number of steps per epoch. The table gives the checkpoint
overhead for several epoch lengths and ``--checkpoint-every`` values, and the smallest
checkpoint interval that keeps the overhead under 3 %.
"""

from __future__ import annotations

import argparse
import math
import shutil
import sys
import tempfile
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import hpcm  # noqa: E402
from hpcm_tune.names import STATE_FILE  # noqa: E402
from stoppers import AdaptivePatience  # noqa: E402
from trainables.data import default_datasets  # noqa: E402
from trainables.finetune import FineTuner  # noqa: E402
from trainables.spec import FineTuneConfig  # noqa: E402
from trainables.layer_lr import LayerLRConfig  # noqa: E402
from trainables.trial import save_state  # noqa: E402
from model_speed import median_time  # noqa: E402  (this folder is on sys.path for scripts)

TARGET = 0.03


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="base", choices=("tiny", "base", "large"))
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--crop", type=int, default=256)
    parser.add_argument("--step-s", type=float,
                        help="seconds per train step to use instead of measuring one here")
    parser.add_argument("--dir", help="where to write (default: a temporary folder)")
    parser.add_argument("--quick", action="store_true", help="tiny model, 2 repeats, crop 128")
    args = parser.parse_args()
    if args.quick:
        args.model, args.repeats, args.crop, args.batch = "tiny", 2, 128, 4

    torch.manual_seed(0)
    train, val = default_datasets(crop_size=args.crop, crops_per_image=1)
    config = FineTuneConfig(lmbda=0.0067, epochs=10, batch_size=args.batch, crop_size=args.crop,
                            layer_lr=LayerLRConfig(freeze_strategy="none"))
    tuner = FineTuner(hpcm.create_model(args.model), config, train, val, torch.device("cpu"))
    for group in tuner.optimizer.param_groups:  # Adam's state as after its first step
        for p in group["params"]:
            tuner.optimizer.state[p] = {"step": torch.tensor(1.0),
                                        "exp_avg": torch.zeros_like(p),
                                        "exp_avg_sq": torch.zeros_like(p)}
    patience = AdaptivePatience()  # the three scales
    state = {"trainer": tuner.state_dict(), "patience": patience.state_dict(),
             "best": {"loss": 1.0, "epoch": 0}}
    params = sum(p.numel() for p in tuner.model.parameters())

    import pyarrow.fs

    root = Path(tempfile.mkdtemp(prefix="hpcm-ckpt-bench-", dir=args.dir))
    try:
        save_s = median_time(lambda: save_state(state, root / "trial"), args.repeats)
        size = (root / "trial" / STATE_FILE).stat().st_size

        def save_and_persist() -> None:
            with tempfile.TemporaryDirectory(dir=root) as scratch:
                save_state(state, Path(scratch))
                shutil.rmtree(root / "persisted", ignore_errors=True)
                (root / "persisted").mkdir()
                pyarrow.fs.copy_files(scratch, str(root / "persisted"))

        persist_s = median_time(save_and_persist, args.repeats)
    finally:
        shutil.rmtree(root, ignore_errors=True)

    if args.step_s is None:
        x = torch.rand(args.batch, 3, args.crop, args.crop)
        model, opt = tuner.model.train(), tuner.optimizer

        def step() -> None:
            out = model(x)
            bits = sum(-torch.log2(v).sum() for v in out["likelihoods"].values())
            loss = 0.0067 * 255**2 * torch.mean((out["x_hat"] - x) ** 2) + bits / x[:, 0].numel()
            opt.zero_grad()
            loss.backward()
            opt.step()

        step()  # warm-up
        step_s = median_time(step, 1 if args.quick else 2)
        where = f"measured here ({torch.get_num_threads()} CPU threads)"
    else:
        step_s, where = args.step_s, "given with --step-s"

    print(f"HPCM-{args.model}: {params / 1e6:.1f} M parameters; checkpoint {size / 2**20:.0f} MiB "
          f"(model + Adam + state)")
    print(f"save_state (temp file + rename): {save_s:.2f} s;  save_state + Tune's copy into "
          f"storage: {persist_s:.2f} s")
    print(f"train step, batch {args.batch} x {args.crop}px: {step_s:.3f} s ({where})")
    print(f"{'steps/epoch':>12}{'epoch s':>10}" + "".join(
        f"{f'every {k}':>10}" for k in (1, 2, 5)) + f"{'every for <3%':>15}")
    for steps in (100, 500, 1000, 5000):
        epoch = steps * step_s
        cells = "".join(f"{persist_s / (k * epoch):>10.1%}" for k in (1, 2, 5))
        every = max(1, math.ceil(persist_s / (TARGET * epoch)))
        print(f"{steps:>12}{epoch:>10.0f}{cells}{every:>15}")
    print("overhead = (save + copy) / (checkpoint interval in epochs x epoch time)")


if __name__ == "__main__":
    main()
