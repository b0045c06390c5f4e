"""analysis.plots: what a figure shows about trials that did not run to the end."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from analysis import plots
from analysis.results import Experiment


def test_culled_trials_are_hollow_in_the_loss_vs_ratio_plot(tmp_path, monkeypatch):
    # (trial, strategy, ratio, best loss, stop reason): their best so far at a rung is not
    # what the culled ones would have reached, so they must not look like finished results.
    rows = [("w", "none", 0.9, 0.26, "max epochs"),
            ("c", "none", 0.1, 0.32, "culled by the scheduler"),
            ("e", "entropy", 0.5, 0.27, "max epochs"),
            ("p", "progressive", 0.05, 0.33, "culled by the scheduler")]
    trials = pd.DataFrame([{"trial_id": t, "family": f, "freeze_strategy": f,
                            "context_lr_ratio": r, "best_loss": loss, "stop_reason": why}
                           for t, f, r, loss, why in rows])
    exp = Experiment(path=Path("."), options={}, trials=trials, epochs=pd.DataFrame(),
                     searched=["context_lr_ratio", "freeze_strategy"])
    saved = []
    monkeypatch.setattr(plots, "_save", lambda fig, path: saved.append(fig) or Path(path))

    assert plots.plot_loss_vs_ratio(exp, tmp_path / "ratio.png") is not None
    (ax,) = saved[0].axes
    hollow, filled = set(), set()
    for points in ax.collections:
        if points.get_label().startswith("winner"):  # the ring around the winner
            continue
        losses = {round(float(y), 2) for _, y in points.get_offsets()}
        faces = points.get_facecolor()  # none at all for facecolor="none"
        (filled if len(faces) and faces[0][3] > 0 else hollow).update(losses)
    assert filled == {0.26, 0.27} and hollow == {0.32, 0.33}
    labels = [text.get_text() for text in ax.get_legend().get_texts()]
    # one entry per strategy (the progressive one hollow: all its trials were culled)
    assert labels == ["entropy (1)", "none (2)", "progressive (1)",
                      "hollow: culled at a rung (best so far)", "winner w"]
