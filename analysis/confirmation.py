"""Seed confirmation: is a sweep's winner still ahead at other training seeds?

``tune_main.py confirm SWEEP`` trains the sweep's top configs (:func:`pick_candidates`)
again at new seeds (``trainables.confirm``); :func:`compare` reads that experiment. A seed
shifts every config alike, so the configs are compared seed by seed (paired gaps), and the
sweep's own result of a config is one more seed when its trial was not culled. The verdict
on the winner against each other config is a sign test over the shared seeds: its lead
*holds* when it is ahead at every one (2 or more), is *reversed* when it is behind at every
one, and is a *tie* otherwise. The config to use is the one with the lowest mean best loss
over the seeds every candidate has.

    >>> from analysis import load_experiment
    >>> from analysis.confirmation import compare, summary_lines
    >>> print("\\n".join(summary_lines(compare(load_experiment("results/sweep-1-confirm")))))
"""

from __future__ import annotations

import json
import math
import statistics
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hpcm_tune.errors import InputError
from hpcm_tune.names import ALL_STOPPED
from search_spaces.presets import BASELINES

#: The baseline ``confirm`` adds to the top configs (``pick_candidates``).
PLAIN_BASELINE = next(b for b in BASELINES if b.key == "plain")

if TYPE_CHECKING:
    from analysis.results import Experiment

#: Trials whose best loss is final: they ran until their epoch budget or their per-scale
#: stopper (a culled trial's best is a best-so-far, not comparable).
COMPLETE = ("max epochs", ALL_STOPPED)


def pick_candidates(source: "Experiment", top: int,
                    with_plain: bool = True) -> list[dict[str, Any]]:
    """The ``top`` best trials of a sweep, best first, as ``trainables.confirm`` candidates;
    with ``with_plain``, then plain fine-tuning's trial if it ran and is not among them: the
    control a winner has to beat at other seeds too, which the sweep's next-best trials,
    neighbours of the winner, often are not.

    Raises:
        InputError: the sweep cannot be confirmed (a confirmation itself, a curve over
            lambdas, no finished trial), or ``top`` is below 1.
    """
    if top < 1:
        raise InputError(f"--top must be 1 or more, got {top}")
    if source.options.get("confirm"):
        raise InputError(f"{source.path} is a confirmation already; confirm the sweep it came "
                         f"from, {source.options['confirm']['source']}")
    if len(source.lambdas) > 1:
        raise InputError(f"{source.path} trained at several lambdas (a rate-distortion curve), "
                         "whose losses do not compare across lambdas; confirm a sweep")
    done = source.finished()
    if done.empty:
        raise InputError(f"{source.path} has no finished trial to confirm")
    ranked = list(enumerate((row for _, row in done.iterrows()), start=1))
    picked = ranked[:top]
    plain = next((item for item in ranked if PLAIN_BASELINE.ran_in(item[1])), None)
    if with_plain and plain is not None and plain[0] > top:
        picked.append(plain)
    return [{"trial_id": row["trial_id"],
             "config": source.config_of(row),
             "seed": int(row["seed"]), "best_loss": float(row["best_loss"]),
             "stop_reason": row["stop_reason"], "rank": rank,
             **({"label": PLAIN_BASELINE.label} if PLAIN_BASELINE.ran_in(row) else {})}
            for rank, row in picked]


def confirmations_of(sweep: "Experiment") -> list[Path]:
    """The confirmation experiments of ``sweep`` beside its folder (where ``confirm`` writes
    them), oldest name first."""
    from hpcm_tune.tune_files import sweep_options

    found = []
    for folder in sorted(p for p in sweep.path.resolve().parent.iterdir() if p.is_dir()):
        confirm = sweep_options(folder).get("confirm") or {}
        if confirm and Path(confirm["source"]).name == sweep.path.resolve().name:
            found.append(folder)
    return found


def verdicts_of(sweep: "Experiment") -> dict[str, str]:
    """What each confirmation of ``sweep`` beside it found, by folder name: its verdicts
    and the config to use, in one line."""
    from analysis.results import load_experiment

    return {folder.name: "; ".join(
        line for line in summary_lines(compare(load_experiment(folder)))
        if line.startswith(("winner vs", "use:"))) for folder in confirmations_of(sweep)}


def compare(exp: "Experiment") -> dict[str, Any]:
    """The candidates of a confirmation experiment seed by seed, and the verdicts.

    Returns ``{"source", "seeds", "common_seeds", "candidates": [{"trial_id", "config",
    "losses": {seed: best loss}, "trials": {seed: trial id}, "mean", "sd"}], "versus":
    [{"trial_id", "shared_seeds", "ahead", "gaps_pct", "mean_gap_pct", "verdict"}],
    "best": trial id of the lowest mean over the common seeds (None if there is none),
    "best_config": its config}``.
    Means and sds cover every seed a candidate has; ``versus`` compares each other candidate
    with the sweep's winner (the first) on the seeds both have, gaps in % of the winner's loss.

    Raises:
        InputError: ``exp`` is not a confirmation (made by ``tune_main.py confirm``).
    """
    confirmation = exp.options.get("confirm")
    if not confirmation:
        raise InputError(f"{exp.path} is not a confirmation; make one with "
                         "`tune_main.py confirm SWEEP`")
    done = exp.finished()
    candidates = []
    for candidate in confirmation["candidates"]:
        losses, trials = {}, {}
        if candidate["stop_reason"] in COMPLETE:
            losses[candidate["seed"]] = candidate["best_loss"]
            trials[candidate["seed"]] = f"{candidate['trial_id']} (sweep)"
        for _, row in done.iterrows():
            if exp.config_of(row) == candidate["config"] and row["stop_reason"] in COMPLETE:
                losses[int(row["seed"])] = float(row["best_loss"])
                trials[int(row["seed"])] = row["trial_id"]
        values = list(losses.values())
        candidates.append({
            "trial_id": candidate["trial_id"], "config": candidate["config"],
            "label": candidate.get("label"), "rank": candidate.get("rank"),
            "losses": dict(sorted(losses.items())), "trials": dict(sorted(trials.items())),
            "mean": statistics.fmean(values) if values else math.nan,
            "sd": statistics.stdev(values) if len(values) > 1 else math.nan,
        })
    seeds = sorted({s for c in candidates for s in c["losses"]})
    common = [s for s in seeds if all(s in c["losses"] for c in candidates)]
    winner = candidates[0]
    versus = [_versus(winner, other) for other in candidates[1:]]
    best = (min(candidates, key=lambda c: statistics.fmean(c["losses"][s] for s in common))
            if common else None)
    return {"source": confirmation["source"], "seeds": seeds, "common_seeds": common,
            "candidates": candidates, "versus": versus,
            "best": best["trial_id"] if best else None,
            "best_config": best["config"] if best else None}


def _versus(winner: dict[str, Any], other: dict[str, Any]) -> dict[str, Any]:
    shared = [s for s in winner["losses"] if s in other["losses"]]
    gaps = [100 * (other["losses"][s] / winner["losses"][s] - 1) for s in shared]
    ahead = sum(g > 0 for g in gaps)
    if len(shared) >= 2 and ahead == len(shared):
        verdict = "holds"
    elif len(shared) >= 2 and not any(g >= 0 for g in gaps):
        verdict = "reversed"
    else:
        verdict = "tie"
    return {"trial_id": other["trial_id"], "shared_seeds": shared, "ahead": ahead,
            "gaps_pct": gaps, "mean_gap_pct": statistics.fmean(gaps) if gaps else math.nan,
            "verdict": verdict}


def summary_lines(result: dict[str, Any]) -> list[str]:
    """The comparison in a few console lines: each candidate's losses, each verdict and
    the config to use."""
    from analysis.report import config_words

    lines = []
    for i, c in enumerate(result["candidates"]):
        role = f"sweep #{c['rank'] or i + 1}" + (" (the winner)" if i == 0 else "") + (
            f" ({c['label']})" if c["label"] else "")
        per_seed = ", ".join(f"{loss:.4f} (seed {s})" for s, loss in c["losses"].items())
        spread = f" ± {c['sd']:.4f}" if math.isfinite(c["sd"]) else ""
        lines.append(f"{role} {c['trial_id']} ({config_words(c['config'])}): mean "
                     f"{c['mean']:.4f}{spread} over {_seeds(len(c['losses']))}: {per_seed}")
    for v, other in zip(result["versus"], result["candidates"][1:]):
        n = len(v["shared_seeds"])
        name = f"{other['label']} {v['trial_id']}" if other["label"] else v["trial_id"]
        if n == 0:
            lines.append(f"winner vs {name}: no seed that both finished")
            continue
        words = {"holds": "its lead holds",
                 "reversed": f"reversed: {v['trial_id']} is ahead at every seed",
                 "tie": "a tie" if n >= 2 else "one seed: run more with --seeds"}[v["verdict"]]
        lines.append(f"winner vs {name}: ahead at {v['ahead']} of {_seeds(n)}, "
                     f"{v['mean_gap_pct']:+.2f}% on average ("
                     f"{', '.join(f'{g:+.2f}%' for g in v['gaps_pct'])}): {words}")
    if result["best"] is None:
        lines.append("no seed that every config finished: nothing to recommend")
    else:
        common = result["common_seeds"]
        seeds = f"seed{'s' * (len(common) > 1)} {', '.join(str(s) for s in common)}"
        lines.append(f"use: {result['best']}'s config {json.dumps(result['best_config'])} "
                     f"(the lowest mean best loss over {seeds})")
    return lines


def _seeds(n: int) -> str:
    return f"{n} seed{'s' * (n != 1)}"
