"""Matplotlib figures (PNG) of a sweep and of an evaluation.

Every function writes one PNG and returns its path (None when there is nothing to draw,
e.g. no progressive trial). Figures use the Agg backend, so no display is needed.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING

from hpcm_tune.names import ALL_STOPPED, CULLED, SCALES

if TYPE_CHECKING:
    import pandas as pd

    from analysis.results import Experiment

DPI = 120
FAMILY_COLOURS = {"none": "tab:blue", "entropy": "tab:orange", "progressive": "tab:green",
                  "all": "tab:gray"}
REASON_COLOURS = {ALL_STOPPED: "tab:green", "max epochs": "tab:blue",
                  "budget": "tab:purple", "error": "tab:red", "running": "tab:cyan",
                  "pending": "tab:gray", "interrupted": "tab:olive",
                  CULLED: "tab:brown"}
SCALE_LABELS = {"s1": "s1 (1/16 of y)", "s2": "s2 (3/16 of y)", "s3": "s3 (3/4 of y)"}


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=DPI, bbox_inches="tight")
    _plt().close(fig)
    return path


def _colour(family: str) -> str:
    return FAMILY_COLOURS.get(family, "tab:brown")


def short_config(row) -> str:
    """'entropy, ratio 0.10' / 'progressive 4->8, ratio 0.07' for legends and bar labels."""
    parts = [str(row.get("freeze_strategy", row.get("family", "")))]
    if parts[0] == "progressive" and _finite(row.get("unfreeze_h_epoch")):
        parts[0] += f" {int(row['unfreeze_h_epoch'])}->{int(row['unfreeze_context_epoch'])}"
    if _finite(row.get("context_lr_ratio")):
        parts.append(f"ratio {row['context_lr_ratio']:.3g}")
    return ", ".join(parts)


def _finite(v) -> bool:
    try:
        return v is not None and math.isfinite(float(v))
    except (TypeError, ValueError):
        return False


def plot_convergence(exp: "Experiment", trial_id: str, path: str | Path) -> Path | None:
    """s1, s2, s3 of one trial per epoch, with each scale's best epoch and stop epoch."""
    plt = _plt()
    hist = exp.history(trial_id)
    if hist.empty:
        return None
    trial = exp.trials.set_index("trial_id").loc[trial_id]
    fig, axes = plt.subplots(len(SCALES), 1, figsize=(7.5, 7.5), sharex=True)
    for ax, s in zip(axes, SCALES):
        ax.plot(hist["epoch"], hist[s], "o-", ms=3, color="tab:blue", label=f"{s} (validation)")
        best_e = trial.get(f"{s}_best_epoch")
        if _finite(best_e):
            best_v = hist.loc[hist["epoch"] == best_e, s]
            ax.plot([best_e], [best_v.iloc[0] if len(best_v) else trial[f"{s}_best"]], "*",
                    ms=14, color="tab:orange", label=f"best epoch {int(best_e)}")
        stop_e = trial.get(f"{s}_stop_epoch")
        if _finite(stop_e):
            ax.axvline(stop_e, color="tab:red", ls="--", label=f"scale stopped at epoch {int(stop_e)}")
        else:
            ax.axvline(hist["epoch"].max(), color="tab:gray", ls=":",
                       label="not stopped (trial ended)")
        ax.set_ylabel(f"{SCALE_LABELS[s]}\nRD loss term (bits/px)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, loc="upper right")
        if f"dshare_{s}" in hist:  # the measured share of the distortion this scale carries
            share = ax.twinx()
            share.plot(hist["epoch"], 100 * hist[f"dshare_{s}"], ":", color="tab:green")
            share.set_ylabel("its share of the\ndistortion (%, dotted)", color="tab:green",
                             fontsize=8)
    axes[-1].set_xlabel("epoch (numbered from 0)")
    budget = trial.get("epochs")
    if _finite(budget):
        axes[-1].set_xlim(-0.5, float(budget) - 0.5)
    fig.suptitle(f"Per-scale convergence of trial {trial_id} ({short_config(trial)})\n"
                 f"ended: {trial['stop_reason']} after {int(trial['epochs_run'])} epochs; "
                 f"best loss {trial['best_loss']:.4f} at epoch {int(trial['best_epoch'])}",
                 fontsize=10)
    return _save(fig, path)


def plot_loss_curves(exp: "Experiment", path: str | Path) -> Path | None:
    """Validation loss per epoch of every trial, coloured by freeze strategy."""
    plt = _plt()
    if exp.epochs.empty:
        return None
    fig, ax = plt.subplots(figsize=(7.5, 4.5))
    seen = set()
    for _, trial in exp.trials.iterrows():
        hist = exp.history(trial["trial_id"])
        if hist.empty:
            continue
        fam = trial["family"]
        ax.plot(hist["epoch"], hist["loss"], "-", color=_colour(fam), alpha=0.8,
                label=fam if fam not in seen else None)
        ax.plot(hist["epoch"].iloc[-1], hist["loss"].iloc[-1], "x", color=_colour(fam))
        seen.add(fam)
    ax.set_xlabel("epoch (numbered from 0)")
    ax.set_ylabel("validation loss (λ·255²·MSE + bpp)")
    ax.set_title("Validation loss of every trial (x = where the trial ended)")
    ax.grid(alpha=0.3)
    ax.legend(title="freeze strategy")
    return _save(fig, path)


def plot_loss_vs_ratio(exp: "Experiment", path: str | Path) -> Path | None:
    """Best loss vs context-LR ratio (log scale), coloured by freeze strategy; trials culled
    by the scheduler are hollow: their loss is their best so far, not what they would reach."""
    plt = _plt()
    done = exp.finished()
    if done.empty or "context_lr_ratio" not in done:
        return None
    fig, ax = plt.subplots(figsize=(7.5, 4.5))
    culled = done["stop_reason"] == CULLED
    for fam, group in done.groupby("family"):
        ran, cut = group[~culled[group.index]], group[culled[group.index]]
        label = f"{fam} ({len(group)})"  # on the filled markers, or the hollow if none
        ax.scatter(ran["context_lr_ratio"], ran["best_loss"], s=50, color=_colour(fam),
                   label=label if len(ran) else None, edgecolor="black", linewidth=0.5)
        ax.scatter(cut["context_lr_ratio"], cut["best_loss"], s=50, facecolor="none",
                   edgecolor=_colour(fam), linewidth=1.5, label=None if len(ran) else label)
    if culled.any():
        ax.scatter([], [], s=50, facecolor="none", edgecolor="grey", linewidth=1.5,
                   label="hollow: culled early (best so far)")
    best = done.iloc[0]
    ax.scatter([best["context_lr_ratio"]], [best["best_loss"]], s=250, facecolor="none",
               edgecolor="red", linewidth=2, label=f"winner {best['trial_id']}")
    ax.set_xscale("log")
    from matplotlib.ticker import FormatStrFormatter, NullFormatter

    ax.xaxis.set_major_formatter(FormatStrFormatter("%g"))
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.set_xlabel("context-LR ratio (context LR / base LR, log scale)")
    ax.set_ylabel("best validation loss")
    ax.set_title("Best loss vs context-LR ratio")
    ax.grid(alpha=0.3, which="both")
    ax.legend(title="freeze strategy (trials)", fontsize=8)
    return _save(fig, path)


def plot_unfreeze(exp: "Experiment", path: str | Path) -> Path | None:
    """Best loss vs the unfreeze epochs of the progressive trials, coloured by context-LR
    ratio; trials culled by the scheduler are hollow (their loss is their best so far)."""
    plt = _plt()
    from matplotlib.cm import ScalarMappable

    done = exp.finished()
    if "unfreeze_h_epoch" not in done:
        return None
    prog = done[(done["family"] == "progressive") & done["unfreeze_h_epoch"].notna()]
    if prog.empty:
        return None
    ratio = prog["context_lr_ratio"]
    colours = ScalarMappable(_log_norm(ratio), plt.get_cmap("viridis"))
    ran, cut = prog[prog["stop_reason"] != CULLED], prog[prog["stop_reason"] == CULLED]
    fig, axes = plt.subplots(1, 2, figsize=(9, 4), sharey=True)
    for ax, col, what in ((axes[0], "unfreeze_h_epoch", "the hyper-prior"),
                          (axes[1], "unfreeze_context_epoch", "the context model")):
        ax.scatter(ran[col], ran["best_loss"], color=colours.to_rgba(ran["context_lr_ratio"]),
                   s=60, edgecolor="black", linewidth=0.5)
        ax.scatter(cut[col], cut["best_loss"], facecolor="none", s=60, linewidth=1.5,
                   edgecolor=colours.to_rgba(cut["context_lr_ratio"]))
        ax.set_xlabel(f"{col}\n(when {what} starts training)")
        ax.grid(alpha=0.3)
    if len(cut):
        axes[1].scatter([], [], s=60, facecolor="none", edgecolor="grey", linewidth=1.5,
                        label="hollow: culled early (best so far)")
        axes[1].legend(fontsize=8)
    axes[0].set_ylabel("best validation loss")
    lo, hi = float(ratio.min()), float(ratio.max())
    # Fixed ticks for the labels below: the round ratios in range, else the trials' own.
    ticks = ([t for t in (0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 4.0) if lo <= t <= hi]
             or sorted({lo, hi}))
    bar = fig.colorbar(colours, ax=axes, label="context-LR ratio", ticks=ticks)
    bar.ax.minorticks_off()
    bar.ax.set_yticklabels([f"{t:g}" for t in bar.get_ticks()])
    fig.suptitle(f"Progressive unfreezing: unfreeze epochs vs best loss ({len(prog)} trial"
                 f"{'s' * (len(prog) > 1)})")
    return _save(fig, path)


def _log_norm(values):
    from matplotlib.colors import LogNorm, Normalize

    lo, hi = float(values.min()), float(values.max())
    if lo > 0 and hi > lo:
        return LogNorm(lo, hi)
    return Normalize(lo, hi if hi > lo else lo + 1)


def plot_compute(exp: "Experiment", path: str | Path) -> Path | None:
    """Epochs used (coloured by why the trial ended) and saved, per trial."""
    plt = _plt()
    t = exp.trials.sort_values(["family", "trial_id"])
    if t.empty:
        return None
    fig, ax = plt.subplots(figsize=(8, 0.45 * len(t) + 1.8))
    labels = [f"{r['trial_id']}  {short_config(r)}" for _, r in t.iterrows()]
    y = range(len(t))
    colours = [REASON_COLOURS.get(r, "tab:gray") for r in t["stop_reason"]]
    ax.barh(y, t["epochs_run"], color=colours, edgecolor="black", linewidth=0.5)
    ax.barh(y, t["epochs_saved"].clip(lower=0), left=t["epochs_run"], color="white",
            edgecolor="gray", hatch="//", linewidth=0.5)
    ax.set_yticks(list(y), labels, fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel("epochs (filled: used; hatched: saved against the full budget)")
    total = exp.compute_saved().iloc[0]
    ax.set_title(f"Compute used vs saved per trial: {int(total['epochs_used'])} of "
                 f"{int(total['epochs_budget'])} epochs used, "
                 f"{100 * total['epochs_saved_fraction']:.0f}% saved "
                 f"({total['device_hours_saved']:.3f} device-hours)", fontsize=10)
    from matplotlib.patches import Patch

    reasons = list(dict.fromkeys(t["stop_reason"]))
    handles = [Patch(color=REASON_COLOURS.get(r, "tab:gray"), label=r) for r in reasons]
    handles.append(Patch(facecolor="white", edgecolor="gray", hatch="//", label="saved"))
    ax.legend(handles=handles, title="trial ended by", fontsize=8, loc="upper left",
              bbox_to_anchor=(1.01, 1))
    ax.set_xlim(0, float(t["epochs_budget"].max()) * 1.02)
    ax.grid(alpha=0.3, axis="x")
    return _save(fig, path)


def plot_importance(importance: "pd.DataFrame", path: str | Path) -> Path | None:
    """Parameter-importance bars, one panel per scope (all trials / progressive only)."""
    plt = _plt()
    if importance.empty:
        return None
    scopes = list(dict.fromkeys(importance["scope"]))
    fig, axes = plt.subplots(1, len(scopes), figsize=(5 * len(scopes), 3.2), squeeze=False)
    for ax, scope in zip(axes[0], scopes):
        g = importance[importance["scope"] == scope].sort_values("importance")
        ax.barh(g["param"], g["importance"], color="tab:blue")
        for i, v in enumerate(g["importance"]):
            ax.text(v, i, f" {v:.2f}", va="center", fontsize=8)
        ax.set_xlim(0, 1.1)
        ax.set_xlabel("importance for best loss (fraction, sums to 1)")
        ax.set_title(f"{scope} ({int(g['trials'].iloc[0])} trials)", fontsize=10)
        ax.grid(alpha=0.3, axis="x")
    fig.suptitle("Parameter importance (Optuna fANOVA)")
    fig.tight_layout()
    return _save(fig, path)


def plot_rd(points: "pd.DataFrame", path: str | Path, bd_table: "pd.DataFrame | None" = None,
            metric: str = "psnr") -> Path | None:
    """Rate-distortion curves (PSNR vs bpp) of the checkpoints, start checkpoints and anchors."""
    plt = _plt()
    if points.empty:
        return None
    fig, ax = plt.subplots(figsize=(7.5, 5))
    bd_note = {}
    if bd_table is not None:
        for _, r in bd_table.iterrows():
            if _finite(r["bd_rate_pct"]):
                bd_note[r["anchor"]] = f" (BD-rate {r['bd_rate_pct']:+.1f}%)"
    styles = {"hpcm": dict(color="red", marker="o", lw=2.2, ms=7, zorder=5),
              "start": dict(color="black", marker="s", lw=1.5, ms=7, ls="--", zorder=4)}
    names = {"hpcm": "HPCM fine-tuned", "start": "HPCM start checkpoint", "jpeg": "JPEG 4:4:4",
             "webp": "WebP", "avif": "AVIF 4:4:4", "hevc": "HEVC intra 4:4:4 (BPG core)"}
    hpcm_pts = points[points["curve"].isin(["hpcm", "start"])]
    for curve, group in points.groupby("curve", sort=False):
        group = group.sort_values("bpp")
        style = styles.get(curve, dict(marker=".", lw=1, ms=6, alpha=0.8))
        ax.plot(group["bpp"], group[metric], label=names.get(curve, curve) + bd_note.get(curve, ""),
                **style)
    if not hpcm_pts.empty:  # keep the learned points in view: anchors span a wider range
        lo, hi = hpcm_pts["bpp"].min(), hpcm_pts["bpp"].max()
        ax.set_xlim(max(0, lo - 0.5 * (hi - lo + lo)), hi + 1.5 * (hi - lo + lo))
        y = points[(points["bpp"] >= ax.get_xlim()[0]) & (points["bpp"] <= ax.get_xlim()[1])][metric]
        y = y[y.map(_finite)]
        if len(y):
            ax.set_ylim(y.min() - 0.5, y.max() + 0.5)
    ax.set_xlabel("rate (bits per pixel, real bitstreams)")
    ax.set_ylabel("PSNR (dB, RGB)" if metric == "psnr" else metric)
    ax.set_title("Rate-distortion (mean over the evaluation images)\n"
                 "BD-rate of the fine-tuned curve vs each anchor: negative = fewer bits",
                 fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    return _save(fig, path)
