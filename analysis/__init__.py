"""Analysis of hpcm-tune sweeps: results as pandas, plots, real-bitstream evaluation, BD-rate.

    from analysis import load_experiment
    exp = load_experiment("results/sweep-20261125-171458")
    exp.trials, exp.epochs, exp.compute_saved(), exp.winner(), exp.export("out/")

Submodules: ``results`` (loading), ``importance`` (Optuna parameter importance), ``plots``
(matplotlib PNGs), ``evaluate`` (real compress/decompress of checkpoints), ``codecs``
(JPEG / WebP / AVIF / HEVC anchors), ``bd`` (BD-rate, BD-PSNR), ``report`` (report.md/.html),
``cli`` (the ``evaluate`` and ``analyze`` commands). Nothing heavy is imported here.
"""

from __future__ import annotations

from typing import Any

__all__ = ["Experiment", "load_experiment", "stop_reason"]


def __getattr__(name: str) -> Any:
    # Lazy, so `import analysis` (and tune_main --help) does not import pandas.
    if name in __all__:
        from analysis import results

        return getattr(results, name)
    raise AttributeError(f"module 'analysis' has no attribute {name!r}")
