#!/usr/bin/env python3
"""One demo trial's epochs on the CPU and on a GPU (fp32 and bf16 autocast), side by side.

    python benchmarks/finetune_speed.py                  # every variant this machine has
    python benchmarks/finetune_speed.py --epochs 4 --variants cpu,cuda-bf16
    python benchmarks/finetune_speed.py --quick          # 2 epochs on the CPU: a smoke run

Each variant runs ``trainables.trial.run_trial`` (the code of a sweep's trial: training,
validation with the per-scale attribution, stopper, checkpoint state) on the demo task from
the shipped start model, in a child process of its own: ``cpu`` hides the GPUs from it
(``CUDA_VISIBLE_DEVICES=""``) and uses every core; ``cuda-fp32`` and ``cuda-bf16`` differ
only in ``amp``. Printed per variant: seconds per epoch (the median of the epochs after the
first, which pays for cuDNN's autotuning and the first decode), training images/s, peak GPU
memory, the validation loss after the last epoch, and the time ratio to ``cpu``. The losses
of fp32 and bf16 should agree closely: bf16 autocast must not change what a sweep finds.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

VARIANTS = ("cpu", "cuda-fp32", "cuda-bf16")


class TimedSession:
    """A trial session that keeps each report's metrics and wall time (no checkpoints)."""

    def __init__(self) -> None:
        self.reports: list[tuple[float, dict[str, Any]]] = []

    def restore(self) -> None:
        return None

    def report(self, metrics: dict[str, Any], state: dict | None) -> None:
        self.reports.append((time.perf_counter(), dict(metrics)))


def run_variant(variant: str, epochs: int) -> dict[str, Any]:
    """One demo trial of ``epochs`` epochs in this process (already set up for ``variant``)."""
    import torch

    from trainables.demo import demo_spec
    from trainables.pretrain import pretrained_tiny
    from trainables.trial import run_trial

    if variant.startswith("cuda") and not torch.cuda.is_available():
        raise SystemExit(f"{variant}: torch sees no CUDA device here; run --variants cpu")
    spec = demo_spec(str(pretrained_tiny()), epochs=epochs, amp=variant == "cuda-bf16")
    session = TimedSession()
    start = time.perf_counter()
    run_trial(spec, session)
    times = [t for t, _ in session.reports]
    per_epoch = [b - a for a, b in zip([start] + times[:-1], times)]
    last = session.reports[-1][1]
    return {
        "variant": variant, "device": last["device"],
        "s_per_epoch": statistics.median(per_epoch[1:] or per_epoch),
        "first_epoch_s": per_epoch[0], "images_per_s": last["images_per_s"],
        "peak_gpu_mib": (torch.cuda.max_memory_allocated() / 2**20
                         if torch.cuda.is_available() else None),
        "loss": last["loss"], "threads": torch.get_num_threads(),
    }


def measure(variant: str, epochs: int) -> dict[str, Any]:
    """``variant`` in a child process: a clean device, its own memory peak."""
    env = dict(os.environ)
    if variant == "cpu":
        env["CUDA_VISIBLE_DEVICES"] = ""
    out = subprocess.run([sys.executable, __file__, "--child", variant, "--epochs", str(epochs)],
                         env=env, check=True, stdout=subprocess.PIPE, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=int, default=3, help="epochs per variant (>= 2)")
    parser.add_argument("--variants", default=None,
                        help=f"comma-separated, of {', '.join(VARIANTS)} (default: cpu, and "
                        "both CUDA ones when a GPU is visible)")
    parser.add_argument("--quick", action="store_true", help="2 epochs, the CPU only")
    parser.add_argument("--child", choices=VARIANTS, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.quick:
        args.epochs, args.variants = 2, "cpu"
    if args.child:
        print(json.dumps(run_variant(args.child, args.epochs)))
        return
    if args.epochs < 2:
        parser.error("--epochs must be 2 or more (the first epoch is timed apart)")
    if args.variants:
        variants = args.variants.split(",")
        unknown = sorted(set(variants) - set(VARIANTS))
        if unknown:
            parser.error(f"unknown variants {unknown}; choose from {', '.join(VARIANTS)}")
    else:
        import torch

        variants = list(VARIANTS) if torch.cuda.is_available() else ["cpu"]
        if len(variants) == 1:
            print("no CUDA device: timing the CPU only")
    rows = [measure(v, args.epochs) for v in variants]
    cpu = next((r for r in rows if r["variant"] == "cpu"), None)
    print(f"demo trial, {args.epochs} epochs per variant, {os.cpu_count()} CPUs")
    print(f"{'variant':<11}{'device':>8}{'s/epoch':>9}{'1st epoch s':>13}{'train img/s':>13}"
          f"{'peak GPU MiB':>14}{'loss':>9}{'vs cpu':>8}")
    for r in rows:
        ratio = f"{cpu['s_per_epoch'] / r['s_per_epoch']:.1f}x" if cpu else "-"
        memory = f"{r['peak_gpu_mib']:.0f}" if r["peak_gpu_mib"] is not None else "-"
        print(f"{r['variant']:<11}{r['device']:>8}{r['s_per_epoch']:>9.2f}"
              f"{r['first_epoch_s']:>13.2f}{r['images_per_s']:>13.1f}{memory:>14}"
              f"{r['loss']:>9.5f}{ratio:>8}")
    fp32 = next((r for r in rows if r["variant"] == "cuda-fp32"), None)
    bf16 = next((r for r in rows if r["variant"] == "cuda-bf16"), None)
    if fp32 and bf16:
        print(f"bf16 autocast vs fp32: {fp32['s_per_epoch'] / bf16['s_per_epoch']:.2f}x the "
              f"speed, loss {bf16['loss'] / fp32['loss'] - 1:+.2%}")


if __name__ == "__main__":
    main()
