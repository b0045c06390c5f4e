"""The ``evaluate`` and ``analyze`` commands, for ``tune_main.py`` to wire in.

Each command has ``add_<name>_parser(subparsers)`` and ``cmd_<name>(args) -> int``. Heavy
imports (torch, pandas, matplotlib) happen inside ``cmd_*`` only, so ``--help`` stays
instant. Bad input raises ``hpcm_tune.errors.HpcmTuneError`` with a one-line message.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from hpcm_tune.errors import UsageError
from hpcm_tune.files import is_uri

CODEC_NAMES = ("jpeg", "webp", "avif", "hevc")


def add_evaluate_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "evaluate", help="real-bitstream evaluation of checkpoints vs JPEG/WebP/AVIF/HEVC",
        description="Really compresses and decompresses every image with each CHECKPOINT "
        "(bits from the actual bitstream), measures PSNR / MS-SSIM / times and the gap to the "
        "estimated rate, sweeps the codec anchors over quality, and computes BD-rate and "
        "BD-PSNR of the checkpoints' curve (several checkpoints, e.g. one per lambda, form one "
        "curve) against each anchor and against the checkpoints the trials started from.")
    p.add_argument("checkpoints", nargs="+", metavar="CHECKPOINT",
                   help="model or training-state file, checkpoint_* folder, Tune trial folder "
                   "(its best checkpoint) or finetune --out folder")
    p.add_argument("--data", help="folder of PNG/JPEG images (default: the bundled validation "
                   "photos)")
    p.add_argument("--out", help="output folder (default: <experiment>/evaluation for a "
                   "checkpoint inside an experiment, else an evaluation/ folder next to it)")
    p.add_argument("--codecs", default=",".join(CODEC_NAMES),
                   help="comma-separated anchors, from jpeg,webp,avif,hevc; 'none' for none "
                   "(default: all; hevc needs pillow-heif)")
    p.add_argument("--baseline", nargs="+", metavar="CHECKPOINT",
                   help="the start curve (default: the checkpoints the trials started from)")
    p.add_argument("--official", choices=("base", "large"),
                   help="the checkpoints are official LIC-HPCM files of this variant")
    p.add_argument("--max-images", type=int, help="use only the first N images")
    p.add_argument("--max-side", type=int, metavar="N",
                   help="downsize images whose longer side exceeds N pixels (keeps the aspect "
                   "ratio; bounds memory and time; default: full size)")
    p.add_argument("--overwrite", action="store_true",
                   help="replace an earlier evaluation in the output folder")
    return p


def cmd_evaluate(args: argparse.Namespace) -> int:
    from analysis.evaluate import run_evaluation

    codecs = [] if args.codecs.strip().lower() == "none" else [
        c.strip().lower() for c in args.codecs.split(",") if c.strip()]
    bad = [c for c in codecs if c not in CODEC_NAMES]
    if bad:
        raise UsageError(f"--codecs: unknown {', '.join(bad)}; choose from "
                         f"{','.join(CODEC_NAMES)} or none")
    if args.max_images is not None and args.max_images < 1:
        raise UsageError(f"--max-images must be positive, got {args.max_images}")
    if args.max_side is not None and args.max_side < 16:
        raise UsageError(f"--max-side must be at least 16 pixels, got {args.max_side}")
    if args.data and not Path(args.data).is_dir():
        raise UsageError(f"--data {args.data}: no such folder")
    result = run_evaluation(args.checkpoints, data=args.data, out=args.out, codecs=codecs,
                            baselines=args.baseline, official=args.official,
                            max_images=args.max_images, overwrite=args.overwrite,
                            max_side=args.max_side)
    print(result["out"].joinpath("summary.md").read_text())
    print(f"results: {result['out']}")
    return 0


def add_analyze_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "analyze", help="tables, plots and a report of a sweep (no Ray needed)",
        description="Reads an experiment folder and writes trials/epochs tables (CSV and "
        "Parquet), plots, best_config.json, report.md and a self-contained report.html. "
        "Includes BD-rate when <experiment>/evaluation exists (see `evaluate`).")
    p.add_argument("path", metavar="EXPERIMENT_PATH", help="the folder `run` printed")
    p.add_argument("--out", help="output folder (default: EXPERIMENT_PATH/analysis)")
    p.add_argument("--evaluation", help="an evaluation folder written by `evaluate` "
                   "(default: EXPERIMENT_PATH/evaluation if present)")
    return p


def cmd_analyze(args: argparse.Namespace) -> int:
    from analysis.confirmation import summary_lines
    from analysis.report import lead_summary, range_notes, write_report
    from analysis.results import UNFINISHED

    if is_uri(args.path):
        raise UsageError(f"{args.path}: analyze reads a local folder; copy the experiment "
                         "from remote storage first")
    result = write_report(args.path, out=args.out, evaluation=args.evaluation)
    exp, winner = result["experiment"], result["winner"]
    total = exp.compute_saved().iloc[0]
    unfinished = int(exp.trials["stop_reason"].isin(UNFINISHED).sum())
    saved = (f"so far; {unfinished} running, pending or interrupted" if unfinished
             else f"{100 * total['epochs_saved_fraction']:.0f}% saved")
    print(f"{len(exp.trials)} trials; epochs used {int(total['epochs_used'])} of "
          f"{int(total['epochs_budget'])} ({saved})")
    if winner is not None:
        print(f"winner {winner['trial_id']}: best loss {winner['best_loss']:.4f} at epoch "
              f"{winner['best_epoch']} (numbered from 0), config {winner['config']}")
        print(lead_summary(winner))
        for note in range_notes(winner):
            print(f"range: {note}")
        for folder, verdicts in result["confirmations"].items():  # `confirm` runs beside it
            print(f"seed confirmation {folder}: {verdicts}")
    elif result["confirmation"] is not None:  # judged over the seeds
        print("\n".join(summary_lines(result["confirmation"])))
    elif len(exp.lambdas) > 1:  # a rate-distortion curve: nothing to crown
        for _, row in exp.per_lambda().iterrows():
            print(f"lambda {row['lmbda']:g} ({row['trial_id']}): best loss "
                  f"{row['best_loss']:.4f} at epoch {row['best_epoch']}, bpp {row['bpp']:.4f}, "
                  f"PSNR {row['psnr']:.2f} dB")
    print(f"report: {result['out'] / 'report.html'} (and report.md, CSV, Parquet, PNG)")
    return 0
