"""The winner's reading: a runner-up next to the winner's config is not a tie of configs, and
the lead is measured in the sweep's own noise (the jitter of the trials' epoch-paired gaps)."""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd

from analysis.evaluate import markdown_table
from analysis.report import (_gap, _importance_section, _trials_section, _winner_section,
                             confidence, lead_summary, range_notes, standing)
from analysis.results import Experiment, lead_reading
from search_spaces.spaces import RangeEnd


EPOCHS = 12


def _experiment(rows: list[tuple[str, float, str, float]], culled: tuple[str, ...] = (),
                jitter: float = 0.0, options: dict | None = None) -> Experiment:
    """Trials whose curves fall to their best loss at the last epoch; each trial's curve is
    noise (the same crops for all) plus its own +-``jitter``, alternating from epoch to
    epoch, so that each gap to the winner alternates by +-2 ``jitter``."""
    shared = [0.05 / (e + 1) + 0.003 * (-1) ** (e // 2) for e in range(EPOCHS)]
    epochs = []
    for i, (t, loss, _, _) in enumerate(rows):
        sign = 1 if i == 0 else -1  # every other trial jitters against the winner
        own = [sign * jitter * (-1) ** e for e in range(EPOCHS)]
        run = 3 if t in culled else EPOCHS
        curve = [loss + shared[e] - shared[-1] + own[e] for e in range(run)]
        epochs += [{"trial_id": t, "epoch": e, "loss": v} for e, v in enumerate(curve)]
    trials = pd.DataFrame(
        [{"trial_id": t, "best_loss": loss, "best_epoch": EPOCHS - 1,
          "stop_reason": "culled by the scheduler" if t in culled else "epoch budget",
          "epochs_run": 3 if t in culled else EPOCHS,
          "family": strategy, "freeze_strategy": strategy, "context_lr_ratio": ratio,
          "bpp": 0.1, "psnr": 30.0}
         for t, loss, strategy, ratio in rows])
    return Experiment(path=Path("."), options=options or {}, trials=trials,
                      epochs=pd.DataFrame(epochs),
                      searched=["context_lr_ratio", "freeze_strategy"])


def test_a_neighbouring_runner_up_is_read_against_the_best_different_config():
    exp = _experiment([("w", 0.5500, "entropy", 0.93), ("n", 0.5507, "entropy", 0.90),
                       ("a", 0.5560, "entropy", 0.13), ("b", 0.5590, "none", 0.50),
                       ("c", 0.5620, "progressive", 0.05)], jitter=0.0005)
    winner = exp.winner()
    assert winner["runner_up"]["trial_id"] == "n" and winner["runner_up"]["neighbour"]
    assert winner["best_other"]["trial_id"] == "a"
    text = confidence(winner)
    assert "neighbour of the winner's config" in text and "(a) is" in text
    assert "clearly ahead" in text and "tie" not in text
    # The one-line lead (the console's) names the different config it is measured against.
    line = lead_summary(winner)
    assert "over the runner-up n (" in line and "a neighbour of the winner's config)" in line
    assert "over the best clearly different config a (" in line
    assert line.index("runner-up n") < line.index("different config a")


def test_the_one_line_lead_skips_the_different_config_when_the_runner_up_is_one():
    exp = _experiment([("w", 0.5500, "entropy", 0.93), ("r", 0.5501, "entropy", 0.30),
                       ("a", 0.5560, "none", 0.13)], jitter=0.0005)
    line = lead_summary(exp.winner())
    assert "over the runner-up r (" in line and "gap noises: tie)" in line
    assert "neighbour" not in line and "clearly different" not in line


def test_a_close_different_config_is_still_a_tie():
    # The runner-up differs (ratio 0.3 vs 0.93): its 0.02 % gap is a tie of two configs.
    exp = _experiment([("w", 0.5500, "entropy", 0.93), ("r", 0.5501, "entropy", 0.30),
                       ("a", 0.5560, "none", 0.13), ("b", 0.5590, "none", 0.50)], jitter=0.0005)
    winner = exp.winner()
    assert not winner["runner_up"]["neighbour"]
    assert winner["best_other"]["trial_id"] == "r"
    assert "treat the top configs as a tie" in confidence(winner)


#: What a sweep's marker holds that its search space is rebuilt from (``Experiment.space``).
SWEEP = {"epochs": EPOCHS, "wide_space": False, "max_context_lr_ratio": 1.0,
         "fixed_config": None, "trial": {"base_lr": 5e-4}}


def test_a_winner_at_the_end_of_a_searched_range_says_how_to_search_past_it():
    rows = [("w", 0.5500, "none", 0.95), ("a", 0.5560, "entropy", 0.13),
            ("b", 0.5590, "none", 0.05)]
    winner = _experiment(rows, options=SWEEP).winner()
    [note] = range_notes(winner)
    assert note.startswith("the winner's context_lr_ratio 0.95 lies at the top of the searched "
                           "0.01-1: the best may lie above it")
    assert "--max-context-lr-ratio 4, or the base LR with --wide-space (not with --scheduler " \
        "asha" in note
    paragraphs = [b[1] for b in _winner_section(_experiment(rows, options=SWEEP), winner)
                  if b[0] == "p"]
    assert f"{note[0].upper()}{note[1:]}." in paragraphs
    # Nothing to say: a winner inside the range, a range widened past it, a fixed config.
    inside = [("w", 0.5500, "none", 0.3), *rows[1:]]
    assert range_notes(_experiment(inside, options=SWEEP).winner()) == []
    wider = {**SWEEP, "max_context_lr_ratio": 4.0}
    assert range_notes(_experiment(rows, options=wider).winner()) == []
    fixed = {**SWEEP, "fixed_config": {"context_lr_ratio": 0.95, "freeze_strategy": "none"}}
    assert range_notes(_experiment(rows, options=fixed).winner()) == []


def test_a_base_lr_at_an_end_names_the_base_lr_to_centre_the_range_on():
    low, high = 5e-4 / 4, 5e-4 * 4
    [top, bottom] = range_notes({"range_ends": [RangeEnd("base_lr", 1.9e-3, low, high),
                                                RangeEnd("base_lr", 1.3e-4, low, high)]})
    assert "top of the searched 0.000125-0.002" in top and "--base-lr 0.0019 " in top
    assert "bottom" in bottom and "--base-lr 0.00013 " in bottom
    [fixed] = range_notes({"range_ends": [RangeEnd("h_multiplier", 0.95, 0.1, 1.0)]})
    assert fixed.endswith("no option widens this range")


def test_neighbours_need_the_same_strategy_and_close_knobs():
    exp = _experiment([("w", 0.55, "entropy", 0.9), ("x", 0.56, "none", 0.9),
                       ("y", 0.56, "entropy", 0.5), ("z", 0.56, "entropy", 0.7)])
    rows = {r["trial_id"]: r for _, r in exp.trials.iterrows()}
    assert not exp.neighbours(rows["w"], rows["x"])  # another strategy
    assert not exp.neighbours(rows["w"], rows["y"])  # 1.8x apart
    assert exp.neighbours(rows["w"], rows["z"])  # 1.29x apart


ROWS = [("w", 0.5500, "entropy", 0.93), ("d", 0.5530, "none", 0.36),
        ("e", 0.5560, "entropy", 0.30), ("f", 0.5600, "none", 0.10)]


def test_the_gap_noise_is_the_jitter_of_the_paired_gaps_not_the_shared_noise():
    # The gaps alternate by +-2j: their second differences by +-8j, i.e. 8j / sqrt(6) as the
    # noise of one epoch's gap (the sample sd of 8 such values: a factor sqrt(8/7)).
    exp = _experiment(ROWS, jitter=0.0004)
    noise, trials = exp.gap_noise("w", ["d", "e", "f"])
    assert trials == 3
    assert math.isclose(noise, 8 * 0.0004 / math.sqrt(6) * math.sqrt(8 / 7), rel_tol=0.01)
    # The noise all curves share (the same crops) cancels in the gaps.
    assert _experiment(ROWS, jitter=0.0).gap_noise("w", ["d", "e", "f"])[0] < 1e-9


def test_the_same_lead_is_clear_in_a_quiet_sweep_and_a_tie_in_a_noisy_one():
    # d is 0.55 % behind w in both; only the sweeps' noise differs.
    quiet, noisy = (_experiment(ROWS, jitter=j).winner() for j in (0.0002, 0.004))
    assert quiet["best_other"]["gap_in_noise"] >= 2 and "clearly ahead" in confidence(quiet)
    assert noisy["best_other"]["gap_in_noise"] < 1
    assert "treat the top configs as a tie" in confidence(noisy)
    between = _experiment(ROWS, jitter=0.0005).winner()
    assert 1 <= between["best_other"]["gap_in_noise"] < 2
    assert "modest" in confidence(between)


def test_trials_culled_early_give_no_noise_estimate():
    # Culled at epoch 3, they share too few epochs with the winner to measure anything.
    winner = _experiment(ROWS, culled=("d", "e", "f"), jitter=0.0002).winner()
    assert math.isnan(winner["noise"]) and winner["noise_trials"] == 0
    text = confidence(winner)
    assert "no noise estimate" in text and "modest" in text
    # The one-line summary does not count trials as "clearly ahead of 0" for want of a yardstick.
    line = lead_summary(winner)
    assert "no noise estimate to judge the 3 other trials by" in line
    assert "clearly ahead of" not in line


# f runs the original report's recommended config (ratio 0.1, entropy frozen).
PLACED = [("w", 0.5500, "none", 0.93), ("d", 0.5504, "none", 0.36),
          ("e", 0.5530, "entropy", 0.30), ("f", 0.5600, "entropy", 0.10)]


def test_the_winner_is_placed_against_every_trial_and_the_recommended_config():
    exp = _experiment(PLACED, culled=("e",), jitter=0.0002)
    winner = exp.winner()
    # d is 0.07 % behind (a tie whatever the noise); e and f are 4 and 14 noises behind.
    readings = {v["trial_id"]: lead_reading(v) for v in winner["versus"]}
    assert readings == {"d": "tie", "e": "clear", "f": "clear"}
    assert winner["recommended"]["trial_id"] == "f" and not winner["is_recommended"]
    text = standing(winner)
    assert "clearly ahead of 2, modestly of 0 and tied with 1 (d)" in text
    assert "1 of them culled by the scheduler" in text
    assert "trial f" in text and "the sweep found a clearly better config" in text
    # The trials table gives each trial's distance to the winner in the same noise.
    tables = [b[1] for b in _trials_section(exp, winner) if b[0] == "table"]
    behind = tables[0].set_index("trial_id")["behind_in_noise"]
    assert math.isnan(behind["w"]) and behind["f"] > behind["e"] > 2 > behind["d"]


def test_the_close_trials_are_named_under_their_own_reading():
    # m is ~1.5 noises behind (0.00069 at this jitter), d 0.07 % (a tie), f 14 noises.
    exp = _experiment([*PLACED[:2], ("m", 0.5510, "none", 0.50), PLACED[3]], jitter=0.0002)
    readings = {v["trial_id"]: lead_reading(v) for v in exp.winner()["versus"]}
    assert readings == {"d": "tie", "m": "modest", "f": "clear"}
    assert "clearly ahead of 1, modestly of 1 (m) and tied with 1 (d)" in standing(exp.winner())


def test_each_freeze_strategy_is_summed_up_by_its_best_trial():
    # A culled trial's loss at its rung (0.60) must not sink its strategy below one whose
    # trials all ran: "none" has the best trial, whatever its median.
    exp = _experiment([("w", 0.5500, "none", 0.93), ("x", 0.5600, "entropy", 0.10),
                       ("y", 0.5650, "entropy", 0.50), ("c", 0.6000, "none", 0.02),
                       ("d", 0.6100, "none", 0.01)], culled=("c", "d"))
    families = exp.winner()["families"]
    assert [(f["family"], f["trial_id"], f["trials"], f["culled"]) for f in families] == [
        ("none", "w", 3, 2), ("entropy", "x", 2, 0)]
    text = " ".join(b[1] for b in _winner_section(exp, exp.winner()) if b[0] == "p")
    assert ("the best trial of each freeze strategy: none 0.5500 (3 trials, 2 culled), "
            "entropy 0.5600 (2 trials).") in text


def test_the_importance_says_how_many_trials_entered_at_a_rung():
    importance = pd.DataFrame([{"scope": "all trials", "param": "context_lr_ratio",
                                "importance": 1.0, "trials": 4}])
    mixed = _experiment(PLACED, culled=("e", "f"))
    text = _importance_section(mixed, importance, {})[1][1]
    assert "2 of the 4 trials were culled early and enter with their best loss so far" in text
    text = _importance_section(_experiment(PLACED), importance, {})[1][1]
    assert "culled" not in text and text.endswith("a hint, not a measurement.")


def test_a_recommended_config_within_the_noise_is_not_beaten():
    winner = _experiment(PLACED, jitter=0.004).winner()
    assert lead_reading(winner["recommended"]) == "tie"
    assert "no better than it within the sweep's noise" in standing(winner)


def test_the_recommended_config_as_winner_or_absent_is_said_so():
    won = _experiment([("f", 0.55, "entropy", 0.1), *PLACED[:3]], jitter=0.0002).winner()
    assert won["is_recommended"] and won["recommended"] is None
    assert "The winner is the original report's recommended config" in standing(won)
    absent = _experiment(PLACED[:3], jitter=0.0002).winner()
    assert absent["recommended"] is None
    assert "did not run in this sweep" in standing(absent)


def test_plain_fine_tuning_is_the_second_baseline_and_a_trial_is_named_once():
    # p runs plain fine-tuning (ratio 1, nothing frozen): the runner-up, a neighbour of w's
    # config, and a baseline; f runs the recommended config and was culled after 3 epochs.
    rows = [("w", 0.5500, "none", 0.93), ("p", 0.5504, "none", 1.0),
            ("e", 0.5530, "entropy", 0.30), ("f", 0.5600, "entropy", 0.10)]
    winner = _experiment(rows, culled=("f",), jitter=0.0002).winner()
    assert winner["plain"]["trial_id"] == "p" and not winner["is_plain"]
    line = lead_summary(winner)
    assert line.count(" p (") == 1
    assert "over the runner-up, plain fine-tuning p (" in line
    assert "over the original report's recommended config f (" in line
    assert "culled after 3 epochs, compared with the winner after as many)" in line
    text = standing(winner)
    assert ("Against plain fine-tuning (context_lr_ratio 1, freeze_strategy none, trial p): "
            in text and "no better than it within the sweep's noise" in text)
    assert "trial f, culled after 3 epochs: compared with the winner after as many)" in text
    # Plain fine-tuning as the winner.
    won = _experiment([("p", 0.5500, "none", 1.0), ("w", 0.5504, "none", 0.93), *rows[2:]],
                      jitter=0.0002).winner()
    assert won["is_plain"] and won["plain"] is None
    assert "The winner is plain fine-tuning" in standing(won)
    assert "the winner is plain fine-tuning" in lead_summary(won)


def _curves(curves: dict[str, list[float]], culled: tuple[str, ...]) -> Experiment:
    """Trials with these validation losses per epoch (their best loss: the curve's lowest)."""
    epochs = [{"trial_id": t, "epoch": e, "loss": v}
              for t, curve in curves.items() for e, v in enumerate(curve)]
    trials = pd.DataFrame(
        [{"trial_id": t, "best_loss": min(c), "best_epoch": c.index(min(c)),
          "stop_reason": "culled by the scheduler" if t in culled else "epoch budget",
          "epochs_run": len(c), "family": "none", "freeze_strategy": "none",
          "context_lr_ratio": ratio, "bpp": 0.1, "psnr": 30.0}
         for (t, c), ratio in zip(curves.items(), (0.9, 0.3, 0.02, 0.05, 0.1))])
    return Experiment(path=Path("."), options={}, trials=trials,
                      epochs=pd.DataFrame(epochs),
                      searched=["context_lr_ratio", "freeze_strategy"])


def test_a_culled_trial_is_compared_with_the_winner_after_as_many_epochs():
    # The winner falls from 0.40 to 0.26 in 12 epochs; r runs beside it 0.002-0.004 behind
    # (the noise's yardstick). c was culled after 3 epochs 0.002 behind the winner's best
    # then (0.312 vs 0.310), a after 3 epochs 0.005 ahead of it: set against the winner's
    # final best (0.26), both would be 0.05 behind, dozens of noises.
    winner_curve = [0.40, 0.33, 0.310, 0.30, 0.29, 0.28, 0.275, 0.27, 0.267, 0.264, 0.262, 0.260]
    runner_up = [v + (0.003 if e % 2 else 0.004) for e, v in enumerate(winner_curve)]
    exp = _curves({"w": winner_curve, "r": runner_up, "c": [0.41, 0.335, 0.312],
                   "a": [0.39, 0.32, 0.305]}, culled=("c", "a"))
    winner = exp.winner()
    versus = {v["trial_id"]: v for v in winner["versus"]}
    assert versus["r"]["after_epochs"] is None and versus["r"]["gap"] > 0.0029
    assert versus["c"]["after_epochs"] == 3 and versus["c"]["best_loss"] == 0.312
    assert math.isclose(versus["c"]["gap"], 0.312 - 0.310)
    assert math.isclose(versus["a"]["gap"], 0.305 - 0.310)
    # The noise: r's gap to the winner alternates 0.004 / 0.003, its second differences
    # +-0.002 (sd 0.00214 over 10 epochs), over sqrt(6): 0.00087. c is 2.3 noises behind.
    assert 2.2 < versus["c"]["gap_in_noise"] < 2.4 and lead_reading(versus["c"]) == "clear"
    assert lead_reading(versus["a"]) == "tie"  # culled while ahead: no sign the winner is better
    line = lead_summary(winner)
    assert "clearly ahead of 2 of 3 other trials, tied with 1" in line
    text = standing(winner)
    assert "2 of them culled by the scheduler, each compared with the winner after as many" in text
    tables = [b[1] for b in _trials_section(exp, winner) if b[0] == "table"]
    behind = tables[0].set_index("trial_id")["behind_in_noise"]
    assert behind["a"] < 0 < behind["c"] < 2.4 < behind["r"]
    assert _gap(versus["a"], winner).startswith("0.005 better (1.613%, both after 3 epochs; ")


def test_the_trials_table_gives_a_base_lr_its_significant_digits():
    exp = _experiment([("w", 0.5500, "none", 0.93), ("a", 0.5560, "entropy", 0.13)])
    exp.trials["base_lr"] = [5e-4, 8.509e-4]  # a wide sweep's: to 3 decimals both read 0.001
    exp.searched.append("base_lr")
    [(_, table, digits)] = [b for b in _trials_section(exp, exp.winner()) if b[0] == "table"]
    assert "| 0.0005 |" in markdown_table(table, digits)
    assert "| 0.0008509 |" in markdown_table(table, digits)
