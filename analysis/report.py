"""The analysis report of an experiment: CSV/Parquet tables, PNG plots, report.md, report.html.

``report.html`` is self-contained (the plots are embedded as base64 PNG data URIs), so it can
be mailed or attached to a ticket. Both documents are rendered from the same list of blocks.
"""

from __future__ import annotations

import base64
import html
import json
import math
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any

from analysis.evaluate import RD_DIGITS, format_cell, markdown_table
from analysis.results import NEIGHBOUR_FACTOR, NOISE_EPOCHS, UNFINISHED, lead_reading
from hpcm_tune.errors import InputError
from hpcm_tune.names import CULLED, SCALES
from search_spaces.presets import BASELINES, Baseline
from search_spaces.spaces import BASE_LR_FACTOR, RangeEnd

if TYPE_CHECKING:
    import pandas as pd

    from analysis.results import Experiment

FIGURES = {
    "convergence": "convergence_winner.png",
    "loss_curves": "loss_curves.png",
    "loss_vs_ratio": "loss_vs_context_lr_ratio.png",
    "unfreeze": "unfreeze_epochs_vs_loss.png",
    "compute": "compute_used_vs_saved.png",
    "importance": "parameter_importance.png",
    "rd": "rate_distortion.png",
}


def find_evaluation(exp_path: Path) -> Path | None:
    """``<experiment>/evaluation`` if an evaluation was written there."""
    folder = exp_path / "evaluation"
    return folder if (folder / "rd_points.csv").is_file() else None


def confidence(winner: dict) -> str:
    """A plain-words reading of the winner's lead: over the runner-up, and, when that is a
    neighbour of the winner's config, over the best clearly different config."""
    ru, other = winner.get("runner_up"), winner.get("best_other")
    if ru is None:
        return "Only one trial finished: nothing to compare it with."
    text = f"The runner-up ({ru['trial_id']}) is {_gap(ru, winner)}. "
    if ru["neighbour"]:
        text += ("It is a neighbour of the winner's config (same strategy, knobs within "
                 f"{NEIGHBOUR_FACTOR:g}x or one epoch): the search converged there. ")
        if other is None:
            return text + "Every finished trial is such a neighbour: nothing else to compare."
        text += (f"The best clearly different config ({other['trial_id']}) is "
                 f"{_gap(other, winner)}. ")
        if lead_reading(other) == "clear" and lead_reading(ru) != "clear":
            return text + ("The winner and its neighbours are clearly ahead of the other "
                           "configs of this sweep; which of them is best, the sweep's noise "
                           "cannot tell (`tune_main.py confirm` can).")
        ru = other
    return text + {
        "tie": ("That is within what a different seed or validation crop can change: treat "
                "the top configs as a tie and look at each freeze strategy's best and at the "
                "importance, or compare them at other seeds with `tune_main.py confirm`."),
        "clear": "The winner is clearly ahead of the other configs of this sweep.",
        "modest": ("The lead is modest: confirm it at other seeds before relying on it "
                   "(`tune_main.py confirm` trains the top configs again and says whether "
                   "it holds)."),
    }[lead_reading(ru)]


def standing(winner: dict) -> str:
    """The winner against every other finished trial, and against each baseline (what a user
    would have run without the sweep: ``search_spaces.BASELINES``)."""
    versus = winner.get("versus") or []
    if not versus:
        return ""
    readings = [lead_reading(v) for v in versus]

    def count(reading: str) -> str:  # "2 (id, id)": the close ones are named
        ids = [v["trial_id"] for v, r in zip(versus, readings) if r == reading]
        return f"{len(ids)}" + (f" ({', '.join(ids)})" if ids and reading != "clear" else "")

    text = (f"Of the {len(versus)} other trials, the winner is clearly ahead of "
            f"{count('clear')}, modestly of {count('modest')} and tied with {count('tie')}")
    culled = sum(v["culled"] for v in versus)
    text += (f"; {culled} of them culled by the scheduler, each compared with the winner "
             "after as many epochs." if culled else ".")
    return " ".join([text, *(_against(winner, b) for b in BASELINES)])


def _against(winner: dict, baseline: Baseline) -> str:
    label, config = baseline.label, config_words(baseline.config)
    if winner.get(f"is_{baseline.key}"):
        return f"The winner is {label} ({config})."
    versus = winner.get(baseline.key)
    if versus is None:
        return f"{label[0].upper()}{label[1:]} ({config}) did not run in this sweep."
    culled = (f", culled after {versus['epochs_run']} epochs: compared with the winner after "
              "as many" if versus["culled"] else "")
    return (f"Against {label} ({config}, trial {versus['trial_id']}{culled}): "
            f"{_gap(versus, winner, explain=False)}: " + {
                "clear": "the sweep found a clearly better config.",
                "modest": "the sweep's config is better, modestly.",
                "tie": "no better than it within the sweep's noise.",
            }[lead_reading(versus)])


def lead_summary(winner: dict) -> str:
    """The winner's standing in one line (the console's, after a sweep and ``analyze``).
    A runner-up that is a neighbour of the winner's config says where the search converged,
    not which config wins, so the best clearly different config is named after it; then the
    baselines. A trial that is several of these is named once, with all its labels."""
    runner_up = winner.get("runner_up")
    compared = [("the runner-up", runner_up)]
    if runner_up and runner_up["neighbour"]:
        compared.append(("the best clearly different config", winner.get("best_other")))
    compared += [(b.label, winner.get(b.key)) for b in BASELINES]
    labels: dict[str, list[str]] = {}  # trial id -> its labels, in order
    trials: dict[str, dict] = {}
    for label, versus in compared:
        if versus:
            labels.setdefault(versus["trial_id"], []).append(label)
            trials.setdefault(versus["trial_id"], versus)
    parts = []
    for trial_id, versus in trials.items():
        noises = (f"{versus['gap_in_noise']:.1f} gap noises"
                  if math.isfinite(versus["gap_in_noise"]) else "no noise estimate")
        notes = [f"{noises}: {lead_reading(versus)}"]
        if versus.get("neighbour"):
            notes.append("a neighbour of the winner's config")
        if versus["culled"]:
            notes.append(f"culled after {versus['epochs_run']} epochs, compared with the "
                         "winner after as many")
        parts.append(f"{versus['gap_pct']:+.2f}% over {', '.join(labels[trial_id])} "
                     f"{trial_id} ({', '.join(notes)})")
    parts += [f"the winner is {b.label}" for b in BASELINES if winner.get(f"is_{b.key}")]
    readings = [lead_reading(v) for v in winner.get("versus") or []]
    others = f"{len(readings)} other trial{'s' if len(readings) != 1 else ''}"
    if readings and not math.isfinite(winner["noise"]):
        parts.append(f"no noise estimate to judge the {others} by: none trained "
                     f"{NOISE_EPOCHS + 2} epochs or more beside the winner")
    elif readings:
        parts.append(f"clearly ahead of {readings.count('clear')} of {others}, tied with "
                     f"{readings.count('tie')}")
    return "lead: " + "; ".join(parts) if parts else "lead: no other trial finished"


def range_notes(winner: dict) -> list[str]:
    """A line per searched knob whose winning value lies at an end of its range
    (``FineTuneSpace.ends_reached``): the optimum may lie past it, and how to search there."""
    return [f"the winner's {end.knob} {end.value:.3g} lies at the "
            f"{'top' if end.top else 'bottom'} of the searched {end.low:.3g}-{end.high:.3g}: "
            f"the best may lie {'above' if end.top else 'below'} it; {_widen(end)}"
            for end in winner.get("range_ends", [])]


def _widen(end: RangeEnd) -> str:
    if end.knob == "context_lr_ratio" and end.top:  # the transforms may want more too
        return (f"search past it with --max-context-lr-ratio {4 * end.high:g}, or the base LR "
                "with --wide-space (not with --scheduler asha: a faster learning rate pays "
                "off late, after ASHA's first rung)")
    if end.knob == "base_lr":
        return (f"centre the range there with --base-lr {end.value:.2g} (it spans "
                f"{BASE_LR_FACTOR:g}x either way)")
    return "no option widens this range"


def config_words(config: dict) -> str:
    """A config in words: "context_lr_ratio 0.1, freeze_strategy entropy"."""
    return ", ".join(f"{k} {v:g}" if isinstance(v, float) else f"{k} {v}"
                     for k, v in config.items())


def _gap(versus: dict, winner: dict, explain: bool = True) -> str:
    if not math.isfinite(versus["gap_in_noise"]):
        noise = f"no noise estimate: no other trial trained {NOISE_EPOCHS + 2} epochs or more"
    elif explain:
        noise = (f"{versus['gap_in_noise']:.1f} times the sweep's gap noise, "
                 f"±{winner['noise']:.2g} (the epoch-to-epoch jitter of the loss gap between "
                 f"the winner and the {winner['noise_trials']} other trials that trained "
                 f"{NOISE_EPOCHS + 2} epochs or more)")
    else:
        noise = f"{versus['gap_in_noise']:.1f} times the gap noise"
    worse = "worse" if versus["gap"] >= 0 else "better"  # better: a trial culled while ahead
    after = (f", both after {versus['after_epochs']} epochs" if versus.get("after_epochs")
             else "")
    return f"{abs(versus['gap']):.4g} {worse} ({abs(versus['gap_pct']):.3f}%{after}; {noise})"


#: The searched knobs' digits in the report's tables: the base LR with its significant digits
#: (to 3 decimals, 5e-4 would read 0.001).
KNOB_DIGITS: dict[str, int | None] = {"context_lr_ratio": 4, "base_lr": None, "h_multiplier": 3,
                                      "unfreeze_h_epoch": 0, "unfreeze_context_epoch": 0}

Block = tuple  # ("h1" | "h2" | "p" | "pre", text), ("table", frame, digits) or ("img", path)
Figures = dict[str, Path | None]  # FIGURES key -> the plot written, None if not drawn


def report_blocks(exp: Experiment, winner: dict | None, importance: pd.DataFrame,
                  evaluation: Path | None, figs: Figures, confirmation: dict | None = None,
                  confirmations: dict[str, str] | None = None) -> list[Block]:
    """The report's content, section by section, for both renderers. ``confirmation``: the
    seed comparison of a confirmation experiment (:func:`analysis.confirmation.compare`);
    ``confirmations``: a sweep's confirmations' verdicts by folder (``verdicts_of``)."""
    return [*_overview(exp), *_winner_section(exp, winner, confirmation, confirmations),
            *_trials_section(exp, winner),
            *_convergence_section(exp, winner, figs), *_compute_section(exp, figs),
            *_search_space_section(figs), *_importance_section(exp, importance, figs),
            *_rate_distortion_section(exp, evaluation, figs)]


def _figures(figs: Figures, *keys: str) -> list[Block]:
    return [("img", figs[key]) for key in keys if figs.get(key)]


def _overview(exp: Experiment) -> list[Block]:
    o = exp.options
    trial = o.get("trial", {})
    lambdas = (", ".join(f"{v:g}" for v in exp.lambdas) if len(exp.lambdas) > 1
               else trial.get("lmbda", "n/a"))
    text = (f"Experiment `{exp.path}`: {len(exp.trials)} trials, epoch budget "
            f"{o.get('epochs', 'n/a')} per trial, preset `{o.get('preset', 'n/a')}`, model "
            f"`{trial.get('model', 'n/a')}`, lambda{'s' * (len(exp.lambdas) > 1)} {lambdas}.")
    if o.get("max_context_lr_ratio", 1.0) > 1:
        text += f" Context-LR ratios searched up to {o['max_context_lr_ratio']:g}."
    warm = o.get("warm_start")
    if warm:  # the search began from another sweep's trials, which this report does not list
        text += (f" Warm-started from `{warm['source']}`: "
                 + (f"its {len(warm['trials'])} trials (the same task) told to the sampler."
                    if not warm["differences"] else
                    f"another task ({'; '.join(warm['differences'])}), its best configs "
                    "run first."))
    confirm = o.get("confirm")
    if confirm:
        text += (f" A seed confirmation of `{confirm['source']}`: its top "
                 f"{len(confirm['candidates'])} configs at seed"
                 f"{'s' * (len(confirm['seeds']) > 1)} "
                 f"{', '.join(str(v) for v in confirm['seeds'])}.")
    return [("h1", f"Sweep report: {exp.path.name}"), ("p", text)]


def _winner_section(exp: Experiment, winner: dict | None, confirmation: dict | None = None,
                    confirmations: dict[str, str] | None = None) -> list[Block]:
    if len(exp.lambdas) > 1:
        return _per_lambda_section(exp)
    if confirmation is not None:
        return _confirmation_section(confirmation)
    b: list[Block] = [("h2", "Winning config")]
    if winner is None:
        return b + [("p", "No trial finished with a loss.")]
    row = exp.trials.set_index("trial_id").loc[winner["trial_id"]]
    families = ", ".join(
        f"{f['family']} {f['best_loss']:.4f} ({f['trials']} trial{'s' * (f['trials'] > 1)}"
        + (f", {f['culled']} culled" if f["culled"] else "") + ")"
        for f in winner["families"])
    return b + [
        ("pre", json.dumps(winner["config"], indent=2)),
        ("p", f"Trial {winner['trial_id']}: best validation loss "
              f"{winner['best_loss']:.4f} at epoch {winner['best_epoch']} (numbered from 0; "
              f"bpp {row['bpp']:.4f}, PSNR {row['psnr']:.2f} dB, estimated rate). "
              f"Saved as `best_config.json` for `tune_main.py run --config`."),
        ("p", f"How sure: {confidence(winner)} {standing(winner)} "
              f"{winner['trials_finished']} trials finished; the best trial of each freeze "
              f"strategy: {families}."),
        *[("p", f"{note[0].upper()}{note[1:]}.") for note in range_notes(winner)],
        *[("p", f"Seed confirmation `{folder}` (its report has the table): {verdicts}")
          for folder, verdicts in (confirmations or {}).items()]]


def _per_lambda_section(exp: Experiment) -> list[Block]:
    """A rate-distortion curve (``run --config --lambdas``) has no winner: a loss weighs
    distortion by its lambda, so losses at different lambdas do not compare."""
    return [("h2", "Rate-distortion points"),
            ("p", f"The trials trained at {len(exp.lambdas)} lambdas: their losses weigh "
                  "distortion differently and are not compared, so no winner is named. Each "
                  "lambda's best epoch (estimated rate); `tune_main.py evaluate` on the "
                  "trials' checkpoints codes real bitstreams and gives BD-rates against "
                  "codecs."),
            ("table", exp.per_lambda(), {"lmbda": None, "best_loss": 4, "bpp": 4, "psnr": 2})]


def _confirmation_section(result: dict) -> list[Block]:
    """A seed confirmation (``tune_main.py confirm``): each candidate's best loss per seed,
    and the verdicts (``result``: :func:`analysis.confirmation.compare`)."""
    import pandas as pd

    from analysis.confirmation import summary_lines

    table = pd.DataFrame([{"trial_id": c["trial_id"], "sweep_rank": c["rank"], **c["config"],
                           **{f"seed {s}": c["losses"].get(s, math.nan) for s in result["seeds"]},
                           "mean": c["mean"], "sd": c["sd"]} for c in result["candidates"]])
    digits = {col: 4 for col in table.columns if col.startswith("seed ") or col in ("mean", "sd")}
    return [("h2", "Seed confirmation"),
            ("p", f"{len(result['candidates'])} configs of `{result['source']}` (its trial "
                  "ids and ranks: its top configs, and plain fine-tuning if it was not one) "
                  "trained again at new seeds, each to its full budget; a sweep "
                  "trial's own result is one more seed unless it was culled. A seed shifts "
                  "every config alike, so the winner is compared seed by seed: its lead holds "
                  "when it is ahead at every shared seed, is reversed when behind at every one, "
                  "and is a tie otherwise. n/a: no final loss at that seed (the sweep's trial "
                  "was culled, or the trial did not finish)."),
            ("table", table, {**digits, **KNOB_DIGITS}),
            *[("p", line) for line in summary_lines(result)]]


def _trials_section(exp: Experiment, winner: dict | None) -> list[Block]:
    cols = ["trial_id", "family", *[c for c in exp.searched if c != "freeze_strategy"],
            *(["seed"] if exp.options.get("confirm") else []), "best_loss", "best_epoch",
            "behind_in_noise", "epochs_run", "stop_reason",
            "device_hours"]
    # How far behind the winner each trial is, in the sweep's gap noise.
    behind = {v["trial_id"]: v["gap_in_noise"] for v in (winner or {}).get("versus", [])}
    table = exp.trials.assign(behind_in_noise=exp.trials["trial_id"].map(behind))
    table = table.sort_values("best_loss")[[c for c in cols if c in table]]
    errors = exp.trials[exp.trials["stop_reason"] == "error"]
    return [("h2", "Trials"),
            ("table", table, {**KNOB_DIGITS, "best_loss": 4, "device_hours": 4,
                              "behind_in_noise": 1}),
            *[("p", f"Trial {r['trial_id']} errored: `{r['error']}`")
              for _, r in errors.iterrows()]]


def _convergence_section(exp: Experiment, winner: dict | None, figs: Figures) -> list[Block]:
    b: list[Block] = [("h2", "Per-scale convergence")]
    if winner is not None:
        import pandas as pd

        row = exp.trials.set_index("trial_id").loc[winner["trial_id"]]
        scales = pd.DataFrame([{"scale": s, "best": row[f"{s}_best"],
                                "best_epoch": row[f"{s}_best_epoch"],
                                "stop_epoch": row[f"{s}_stop_epoch"]} for s in SCALES])
        b.append(("p", f"Winner {winner['trial_id']} ended by: {row['stop_reason']} after "
                       f"{int(row['epochs_run'])} of {int(row['epochs_budget'])} epochs."))
        b.append(("table", scales, {"best": 4, "best_epoch": 0, "stop_epoch": 0}))
    return b + _figures(figs, "convergence", "loss_curves")


def _compute_section(exp: Experiment, figs: Figures) -> list[Block]:
    saved = exp.compute_saved()
    total = saved.iloc[0]
    unfinished = int(exp.trials["stop_reason"].isin(UNFINISHED).sum())
    return [("h2", "Compute saved"),
            ("p", f"{int(total['epochs_used'])} of {int(total['epochs_budget'])} epochs used "
                  f"({100 * total['epochs_saved_fraction']:.1f}% saved); "
                  f"{total['device_hours_used']:.4f} of {total['device_hours_budget']:.4f} "
                  f"device-hours ({100 * total['device_hours_saved_fraction']:.1f}% saved). "
                  f"{int(total['stopped_early'])} trials stopped early by the per-scale stopper. "
                  "The budget counts every trial at its full epoch budget; device-hours of the "
                  "full budget extrapolate each trial's own time per epoch." + (
                      f" {unfinished} trials have not ended (running, pending or interrupted): "
                      "their unrun epochs count as saved until they do." if unfinished else "")),
            ("table", saved, {"epochs_saved_fraction": 3, "device_hours_used": 4,
                              "device_hours_budget": 4, "device_hours_saved": 4,
                              "device_hours_saved_fraction": 3}),
            *_figures(figs, "compute")]


def _search_space_section(figs: Figures) -> list[Block]:
    b: list[Block] = [("h2", "Search space"), *_figures(figs, "loss_vs_ratio", "unfreeze")]
    if not figs.get("unfreeze"):
        b.append(("p", "No progressive trial finished: no unfreeze-epoch plot."))
    return b


def _importance_section(exp: Experiment, importance: pd.DataFrame,
                        figs: Figures) -> list[Block]:
    b: list[Block] = [("h2", "Parameter importance")]
    if importance.empty:
        return b + [("p", "Not enough finished trials (3 needed per scope) or nothing varied.")]
    done = exp.finished()
    culled = int((done["stop_reason"] == CULLED).sum())
    mixed = (f" {culled} of the {len(done)} trials were culled early and enter with their "
             "best loss so far, as the search saw them: the ranking also says what the "
             "scheduler culled." if culled else "")
    return b + [("p", "Optuna fANOVA on the trials' best loss. Unfreeze epochs exist only for "
                      "progressive trials, so they are ranked within those trials "
                      "(scope `progressive only`, needs 3+ such trials)." + mixed +
                      " Few trials make this a hint, not a measurement."),
                ("table", importance, {"importance": 3}),
                *_figures(figs, "importance")]


def _rate_distortion_section(exp: Experiment, evaluation: Path | None,
                             figs: Figures) -> list[Block]:
    """What ``tune_main.py evaluate`` wrote into ``evaluation``, or how to get it."""
    import pandas as pd

    b: list[Block] = [("h2", "Rate-distortion and BD-rate")]
    if evaluation is None:
        return b + [("p", "No evaluation found. Run `python tune_main.py evaluate "
                          f"{exp.path}/<trial folder> ...` (several checkpoints, e.g. one per "
                          "lambda, make a curve); it writes `<experiment>/evaluation/`, which "
                          "this report then includes.")]
    points = pd.read_csv(evaluation / "rd_points.csv")
    own = points[points["curve"].isin(["hpcm", "start"])]
    keep = [c for c in ("curve", "label", "lmbda", "bpp", "est_bpp", "bits_gap_pct", "psnr",
                        "ms_ssim", "encode_s", "decode_s") if c in own]
    b.append(("p", f"From `{evaluation}` (real bitstreams; see its summary.md)."))
    b.append(("table", own[keep], RD_DIGITS))
    if (evaluation / "bd.csv").is_file():
        bd_table = pd.read_csv(evaluation / "bd.csv").fillna({"note": ""})
        b.append(("p", "BD-rate (%) and BD-PSNR (dB) of the fine-tuned curve against each "
                       "anchor (pchip); negative BD-rate = fewer bits for the same PSNR."))
        b.append(("table", bd_table[["anchor", "test_points", "anchor_points", "bd_rate_pct",
                                     "bd_psnr_db", "note"]],
                  {"bd_rate_pct": 2, "bd_psnr_db": 3}))
    if (evaluation / "start_deltas.csv").is_file():
        deltas = pd.read_csv(evaluation / "start_deltas.csv")
        if not deltas.empty:
            b.append(("p", "Against the start checkpoint, point by point:"))
            b.append(("table", deltas, {"bpp_change_pct": 2, "psnr_change_db": 3}))
    return b + _figures(figs, "rd")


def _render_md(blocks: list[Block], out: Path) -> str:
    lines = []
    for kind, *rest in blocks:
        if kind == "h1":
            lines += [f"# {rest[0]}", ""]
        elif kind == "h2":
            lines += [f"## {rest[0]}", ""]
        elif kind == "p":
            lines += [rest[0], ""]
        elif kind == "pre":
            lines += ["```json", rest[0], "```", ""]
        elif kind == "table":
            lines += [markdown_table(rest[0], rest[1]), ""]
        elif kind == "img":
            path = Path(rest[0])
            lines += [f"![{path.stem.replace('_', ' ')}]({path.relative_to(out)})", ""]
    return "\n".join(lines)


def _inline_code(text: str) -> str:
    parts = html.escape(text).split("`")
    return "".join(f"<code>{p}</code>" if i % 2 else p for i, p in enumerate(parts))


def _html_table(df, digits: dict[str, int | None]) -> str:
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in df.columns)
    rows = []
    for _, r in df.iterrows():
        cells = "".join(f"<td>{html.escape(format_cell(r[c], digits.get(c, 3)))}</td>" for c in df.columns)
        rows.append(f"<tr>{cells}</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"


STYLE = """body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;
color:#222}table{border-collapse:collapse;font-size:13px;margin:.5em 0 1.2em}
td,th{border:1px solid #ccc;padding:3px 7px;text-align:right}th{background:#f2f2f2}
td:first-child,th:first-child{text-align:left}img{max-width:100%;border:1px solid #eee;
margin:.5em 0}pre{background:#f6f6f6;padding:.7em}code{background:#f3f3f3;padding:0 3px}"""


def _render_html(blocks: list[Block], title: str) -> str:
    body = []
    for kind, *rest in blocks:
        if kind in ("h1", "h2"):
            body.append(f"<{kind}>{html.escape(rest[0])}</{kind}>")
        elif kind == "p":
            body.append(f"<p>{_inline_code(rest[0])}</p>")
        elif kind == "pre":
            body.append(f"<pre>{html.escape(rest[0])}</pre>")
        elif kind == "table":
            body.append(_html_table(rest[0], rest[1]))
        elif kind == "img":
            data = base64.b64encode(Path(rest[0]).read_bytes()).decode()
            alt = html.escape(Path(rest[0]).stem.replace("_", " "))
            body.append(f'<img alt="{alt}" src="data:image/png;base64,{data}">')
    return (f"<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>{html.escape(title)}"
            f"</title><style>{STYLE}</style></head><body>\n" + "\n".join(body)
            + "\n</body></html>\n")


def write_report(experiment: str | Path, out: str | Path | None = None,
                 evaluation: str | Path | None = None) -> dict[str, Any]:
    """Loads the experiment and writes tables, plots, report.md and report.html into ``out``
    (default ``<experiment>/analysis``). Returns {"out", "files", "experiment", "winner",
    "confirmation" (a confirmation's seed comparison), "confirmations" (a sweep's verdicts
    by confirmation folder), "figures"}."""
    from analysis import plots
    from analysis.confirmation import compare, verdicts_of
    from analysis.importance import parameter_importance
    from analysis.results import load_experiment

    exp = load_experiment(experiment)
    out = Path(out) if out else exp.path / "analysis"
    out.mkdir(parents=True, exist_ok=True)
    if evaluation is not None:
        evaluation = Path(evaluation)
        if not (evaluation / "rd_points.csv").is_file():
            raise InputError(f"--evaluation {evaluation}: no rd_points.csv there (the folder "
                             "`tune_main.py evaluate` wrote)")
    else:
        evaluation = find_evaluation(exp.path)
    files = exp.export(out)
    importance = parameter_importance(exp)
    importance.to_csv(out / "parameter_importance.csv", index=False)
    files["parameter_importance.csv"] = out / "parameter_importance.csv"
    winner = exp.winner()
    confirmation = compare(exp) if exp.options.get("confirm") else None
    best_config = winner["config"] if winner is not None else (confirmation or {}).get(
        "best_config")
    if best_config is not None:
        (out / "best_config.json").write_text(json.dumps(best_config, indent=2) + "\n")
        files["best_config.json"] = out / "best_config.json"

    figs: Figures = {}
    if winner is not None:
        figs["convergence"] = plots.plot_convergence(exp, winner["trial_id"],
                                                     out / FIGURES["convergence"])
    figs["loss_curves"] = plots.plot_loss_curves(exp, out / FIGURES["loss_curves"])
    figs["loss_vs_ratio"] = plots.plot_loss_vs_ratio(exp, out / FIGURES["loss_vs_ratio"])
    figs["unfreeze"] = plots.plot_unfreeze(exp, out / FIGURES["unfreeze"])
    figs["compute"] = plots.plot_compute(exp, out / FIGURES["compute"])
    figs["importance"] = plots.plot_importance(importance, out / FIGURES["importance"])
    if evaluation is not None:
        import pandas as pd

        bd_path = evaluation / "bd.csv"
        figs["rd"] = plots.plot_rd(pd.read_csv(evaluation / "rd_points.csv"), out / FIGURES["rd"],
                                   pd.read_csv(bd_path) if bd_path.is_file() else None)
        for name in ("bd.csv", "rd_points.csv", "start_deltas.csv"):
            if (evaluation / name).is_file():
                shutil.copyfile(evaluation / name, out / f"evaluation_{name}")
                files[f"evaluation_{name}"] = out / f"evaluation_{name}"
    for key, path in figs.items():
        if path is not None:
            files[path.name] = path

    confirmations = verdicts_of(exp) if winner is not None else {}
    blocks = report_blocks(exp, winner, importance, evaluation, figs, confirmation,
                           confirmations)
    (out / "report.md").write_text(_render_md(blocks, out))
    (out / "report.html").write_text(_render_html(blocks, f"Sweep report: {exp.path.name}"))
    files["report.md"], files["report.html"] = out / "report.md", out / "report.html"
    return {"out": out, "files": files, "experiment": exp, "winner": winner,
            "confirmation": confirmation, "confirmations": confirmations,
            "figures": [p for p in figs.values() if p is not None]}
