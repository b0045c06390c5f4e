"""analysis.plots: what a figure shows about trials that did not run to the end."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from analysis import plots
from analysis.results import Experiment
from hpcm_tune.names import CULLED


def _experiment(rows: list[tuple]) -> Experiment:
    """Trials (id, strategy, ratio, best loss, stop reason[, unfreeze h, context epochs])."""
    trials = pd.DataFrame([
        {"trial_id": t, "family": f, "freeze_strategy": f, "context_lr_ratio": r,
         "best_loss": loss, "stop_reason": why,
         "unfreeze_h_epoch": rest[0] if rest else None,
         "unfreeze_context_epoch": rest[1] if rest else None}
        for t, f, r, loss, why, *rest in rows])
    return Experiment(path=Path("."), options={}, trials=trials, epochs=pd.DataFrame(),
                      searched=["context_lr_ratio", "freeze_strategy", "unfreeze_h_epoch",
                                "unfreeze_context_epoch"])


def _drawn(monkeypatch, plot, exp: Experiment, tmp_path: Path) -> list:
    """The axes of the figure ``plot`` draws (kept open instead of saved)."""
    figures = []
    monkeypatch.setattr(plots, "_save", lambda fig, path: figures.append(fig) or Path(path))
    assert plot(exp, tmp_path / "plot.png") is not None
    return figures[0].axes


def _losses(ax) -> tuple[set, set]:
    """The losses drawn filled and hollow on ``ax`` (the winner's ring left out)."""
    filled, hollow = set(), set()
    for points in ax.collections:
        if points.get_label().startswith("winner"):
            continue
        losses = {round(float(y), 2) for _, y in points.get_offsets()}
        faces = points.get_facecolor()  # none at all for facecolor="none"
        (filled if len(faces) and faces[0][3] > 0 else hollow).update(losses)
    return filled, hollow


def test_culled_trials_are_hollow_in_the_loss_vs_ratio_plot(tmp_path, monkeypatch):
    # A culled trial's loss is its best so far when culled, not what it would have reached:
    # it must not look like a finished result.
    exp = _experiment([("w", "none", 0.9, 0.26, "max epochs"), ("c", "none", 0.1, 0.32, CULLED),
                       ("e", "entropy", 0.5, 0.27, "max epochs"),
                       ("p", "progressive", 0.05, 0.33, CULLED, 1, 2)])
    (ax,) = _drawn(monkeypatch, plots.plot_loss_vs_ratio, exp, tmp_path)
    assert _losses(ax) == ({0.26, 0.27}, {0.32, 0.33})
    labels = [text.get_text() for text in ax.get_legend().get_texts()]
    # one entry per strategy (the progressive one hollow: all its trials were culled)
    assert labels == ["entropy (1)", "none (2)", "progressive (1)",
                      "hollow: culled early (best so far)", "winner w"]


def test_culled_progressive_trials_are_hollow_in_the_unfreeze_plot(tmp_path, monkeypatch):
    exp = _experiment([("a", "progressive", 0.5, 0.27, "max epochs", 1, 2),
                       ("b", "progressive", 0.05, 0.33, CULLED, 4, 8),
                       ("n", "none", 0.9, 0.26, "max epochs")])
    h_axis, context_axis, _colorbar = _drawn(monkeypatch, plots.plot_unfreeze, exp, tmp_path)
    assert _losses(h_axis) == _losses(context_axis) == ({0.27}, {0.33})
    assert [t.get_text() for t in context_axis.get_legend().get_texts()] == [
        "hollow: culled early (best so far)"]


def test_the_unfreeze_colour_bar_labels_its_ticks_without_round_ratios_in_range(
        tmp_path, monkeypatch):
    # One progressive trial at ratio 0.01175: no round ratio lies in [lo, hi], so the bar is
    # labelled with the trial's own ratio (before: matplotlib's ticks, relabelled blindly).
    exp = _experiment([("p", "progressive", 0.01175, 0.27, "max epochs", 1, 2)])
    *_, colorbar = _drawn(monkeypatch, plots.plot_unfreeze, exp, tmp_path)
    assert [t.get_text() for t in colorbar.get_yticklabels()] == ["0.01175"]
