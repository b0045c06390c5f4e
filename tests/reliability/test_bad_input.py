"""Bad input through the CLI (in-process ``tune_main.main``) and the APIs, without Ray.

Each case: exit status 2, exactly one ``error: ...`` line naming the problem, no traceback,
and nothing created or overwritten. Cases already covered elsewhere are not repeated:
tests/test_tune_main.py (run --lmbda 0 / --num-samples 0 / --epochs -3, --model base without a
checkpoint, a missing --train-dir, finetune context ratio and unfreeze epochs, unknown
choices, a corrupt checkpoint for ``run``, finetune without --resume over an existing run),
tests/hpcm/test_checkpoint.py (the loaders' missing / empty / truncated files, wrong
variant, mismatched keys, code-carrying pickles) and tests/trainables/test_data.py (the
dataset's missing / empty / unreadable folders, too-small images).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import hpcm
import tune_main
from tests.reliability.helpers import (REPO, cli_error, official_layout_file,
                                       tree, write_garbage, write_png)



@pytest.fixture(autouse=True)
def _in_tmp(tmp_path, monkeypatch):
    """Run every CLI call from an empty folder, so a stray ./results would be seen."""
    monkeypatch.chdir(tmp_path)


def _data(photo_dirs: Path) -> list[str]:
    return ["--train-dir", str(photo_dirs / "train"), "--val-dir", str(photo_dirs / "val")]


def _finetune(out: Path, photo_dirs: Path, checkpoint, *extra: str) -> list[str]:
    return ["finetune", "--checkpoint", str(checkpoint), "--lmbda", "0.0483",
            *_data(photo_dirs), "--epochs", "1", "--batch-size", "4", "--crops-per-image", "1",
            "--out", str(out), *extra]


# -- checkpoints ------------------------------------------------------------------------
@pytest.fixture(scope="module")
def bad_checkpoints(tmp_path_factory, pretrained_tiny_path) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("checkpoints")
    empty = root / "empty.pt"
    empty.write_bytes(b"")
    truncated = root / "truncated.pt"
    data = pretrained_tiny_path.read_bytes()
    truncated.write_bytes(data[: len(data) // 2])
    return {"missing": root / "missing.pt", "empty": empty, "truncated": truncated}


@pytest.mark.parametrize("command", ["run", "finetune"])
@pytest.mark.parametrize("kind", ["missing", "empty", "truncated"])
def test_missing_empty_truncated_checkpoint(kind, command, bad_checkpoints, photo_dirs, tmp_path,
                                            capsys):
    path = bad_checkpoints[kind]
    argv = (_finetune(tmp_path / "ft", photo_dirs, path) if command == "finetune"
            else ["run", "--checkpoint", str(path), *_data(photo_dirs)])
    line = cli_error(capsys, argv)
    assert str(path) in line and kind.replace("missing", "not found") in line
    assert not (tmp_path / "ft").exists() and not (tmp_path / "results").exists()


def test_official_checkpoint_of_the_wrong_variant_names_the_right_one(tmp_path, capsys):
    large = official_layout_file(tmp_path / "HPCM_Large.pth.tar", "large")
    line = cli_error(capsys, ["run", "--model", "base", "--official", "--checkpoint",
                              str(large)])
    assert "HPCM-Large" in line and "large" in line.split("HPCM-Large", 1)[1]
    assert not (tmp_path / "results").exists()


def test_project_model_file_given_as_official_says_to_drop_official(
        tmp_path, capsys, pretrained_tiny_path):
    line = cli_error(capsys, ["run", "--model", "base", "--official", "--checkpoint",
                              str(pretrained_tiny_path), "--lmbda", "0.0067"])
    assert "is a hpcm-tune model file" in line and "drop --official" in line


def test_a_model_without_format_of_another_layout_lists_the_mismatched_keys(tmp_path, capsys):
    """Keys that fit neither layout are still listed for an official file."""
    other = hpcm.create_model("tiny").state_dict()
    path = tmp_path / "odd.pth"
    torch.save({"state_dict": other}, path)
    line = cli_error(capsys, ["run", "--model", "base", "--official", "--checkpoint", str(path),
                              "--lmbda", "0.0067"])
    assert "official HPCM-base" in line
    assert "wrong shapes" in line or "missing keys" in line
    assert "g_a." in line or "context_net" in line  # the keys themselves are listed


def test_a_file_that_is_no_checkpoint_says_what_it_is_and_no_unsafe_advice(
        tmp_path, capsys, photo_dirs):
    photo = next((photo_dirs / "val").iterdir())
    for argv in (["run", "--checkpoint", str(photo)],
                 ["run", "--model", "base", "--official", "--checkpoint", str(photo)]):
        line = cli_error(capsys, argv + ["--lmbda", "0.0067"])
        assert str(photo) in line and "is not a checkpoint: it is a PNG image" in line
        assert "accepted:" in line and "official LIC-HPCM" in line
        assert "weights_only" not in line and "Python objects" not in line


def test_checkpoint_whose_weights_are_of_another_architecture_lists_the_keys(tmp_path, capsys):
    # A file that claims the tiny preset but holds the weights of a wider model.
    other = hpcm.create_model("tiny", M=128)
    path = tmp_path / "edited.pt"
    torch.save({"format": "hpcm-tune-model", "version": 1,
                "config": dataclasses.asdict(hpcm.PRESETS["tiny"]),
                "state_dict": other.state_dict()}, path)
    line = cli_error(capsys, ["run", "--checkpoint", str(path)])
    assert "wrong shapes" in line and "vs expected" in line


def test_the_api_lists_mismatched_keys_of_another_preset(pretrained_tiny_path):
    state = torch.load(pretrained_tiny_path, weights_only=True)
    with pytest.raises(hpcm.CheckpointError) as err:
        hpcm.load_model(state, config=dataclasses.replace(hpcm.PRESETS["tiny"], M=128))
    assert "wrong shapes" in str(err.value) and "preset 'tiny'" in str(err.value)


# -- data folders -----------------------------------------------------------------------
@pytest.fixture(scope="module")
def bad_folders(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("bad-data")
    (root / "empty").mkdir()
    (root / "empty" / "notes.txt").write_text("no images here")
    (root / "unreadable").mkdir()
    write_garbage(root / "unreadable" / "a.png")
    (root / "unreadable" / "b.jpg").write_bytes(b"\xff\xd8\xff\xe0" + bytes(100))
    (root / "small").mkdir()
    write_png(root / "small" / "a.png", (100, 90))
    write_png(root / "small" / "b.png", (120, 64))
    return root


@pytest.mark.parametrize("kind, message", [
    ("empty", "no .png/.jpg/.jpeg file"),
    ("unreadable", "none of the 2 image files"),
    ("small", "smaller than crop_size=128"),
    ("missing", "no such folder"),
])
def test_finetune_refuses_a_train_folder_without_usable_images(kind, message, bad_folders,
                                                               photo_dirs, tmp_path, capsys,
                                                               pretrained_tiny_path):
    argv = _finetune(tmp_path / "ft", photo_dirs, pretrained_tiny_path)
    argv[argv.index("--train-dir") + 1] = str(bad_folders / kind)
    line = cli_error(capsys, argv)
    assert message in line and str(bad_folders / kind) in line
    assert not (tmp_path / "ft").exists()


def test_finetune_refuses_a_val_folder_that_is_a_file(photo_dirs, tmp_path, capsys,
                                                      pretrained_tiny_path):
    argv = _finetune(tmp_path / "ft", photo_dirs, pretrained_tiny_path)
    argv[argv.index("--val-dir") + 1] = str(next((photo_dirs / "val").iterdir()))
    assert "--val-dir" in cli_error(capsys, argv)


def test_unreadable_and_small_images_among_good_ones_are_skipped_and_counted(
        photo_dirs, tmp_path, capsys, caplog, pretrained_tiny_path):
    mixed = tmp_path / "mixed"
    mixed.mkdir()
    for p in (photo_dirs / "train").iterdir():
        (mixed / p.name).write_bytes(p.read_bytes())
    write_garbage(mixed / "corrupt.png")
    write_png(mixed / "thumb.png", (64, 48))
    argv = _finetune(tmp_path / "ft", photo_dirs, pretrained_tiny_path)
    argv[argv.index("--train-dir") + 1] = str(mixed)
    with caplog.at_level(logging.WARNING):
        assert tune_main.main(argv) == 0
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("skipped 1 unreadable" in w and "corrupt.png" in w for w in warnings)
    assert any("skipped 1 image(s) smaller than crop_size=128" in w and "thumb.png" in w
               for w in warnings)
    assert (tmp_path / "ft" / "latest" / "trial_state.pt").is_file()


# -- numbers and choices ----------------------------------------------------------------
@pytest.mark.parametrize("args, message", [
    (["finetune", "--lmbda", "-0.01"], "--lmbda must be positive"),
    (["finetune", "--lmbda", "0"], "--lmbda must be positive"),
    (["run", "--lmbda", "nan"], "--lmbda must be positive"),
    (["run", "--lmbda", "inf"], "--lmbda must be positive and finite, got inf"),
    (["finetune", "--lmbda", "inf"], "--lmbda must be positive and finite, got inf"),
    (["run", "--cpus-per-trial", "inf"], "--cpus-per-trial must be positive and finite"),
    (["finetune", "--base-lr", "inf"], "--base-lr must be a finite number, got inf"),
    (["finetune", "--min-delta", "nan"], "--min-delta must be a finite number, got nan"),
    (["run", "--budget-device-hours", "inf"], "--budget-device-hours must be a finite number"),
    (["run", "--budget-device-hours", "0"], "--budget-device-hours must be positive"),
    (["run", "--budget-epochs", "0"], "--budget-epochs must be positive"),
    (["finetune", "--max-side", "0"], "--max-side must be at least 16 pixels"),
    (["finetune", "--epochs", "0"], "--epochs must be positive"),
    (["run", "--num-samples", "-2"], "--num-samples must be positive"),
    (["run", "--batch-size", "0"], "--batch-size must be positive"),
    (["run", "--cpus-per-trial", "0"], "--cpus-per-trial must be positive"),
    (["run", "--gpus-per-trial", "-1"], "--gpus-per-trial must be positive"),
    (["run", "--checkpoint-every", "0"], "--checkpoint-every must be positive"),
    (["run", "--max-context-lr-ratio", "0.5"],
     "--max-context-lr-ratio: the largest context-LR ratio searched must be a number >= 1"),
    (["run", "--max-context-lr-ratio", "nan"], "--max-context-lr-ratio: the largest"),
    (["run", "--patience", "0"], "per-scale stopper: patience must be >= 1"),
    (["finetune", "--stopper-warmup-epochs", "-1"], "warmup_epochs must be >= 0"),
    (["finetune", "--freeze-strategy", "progressive"],
     "unfreeze_h_epoch < unfreeze_context_epoch"),
    (["finetune", "--freeze-strategy", "progressive", "--unfreeze-h-epoch", "3",
      "--unfreeze-context-epoch", "3"], "unfreeze_h_epoch < unfreeze_context_epoch"),
    (["finetune", "--freeze-strategy", "progressive", "--unfreeze-h-epoch", "2",
      "--unfreeze-context-epoch", "12", "--epochs", "12"], "below the epoch budget"),
    (["finetune", "--base-lr", "0"], "base_lr must be > 0"),
    (["finetune", "--context-lr-ratio", "-0.5"], "context_lr_ratio must be a finite number > 0"),
    (["inspect-model", "--context-lr-ratio", "0"], "context_lr_ratio must be a finite number > 0"),
    (["inspect-model", "--context-lr-ratio", "inf"], "context_lr_ratio must be a finite number"),
    (["inspect-model", "--official", "--checkpoint", "model.pt"], "unknown official variant"),
])
def test_bad_numbers_are_one_line(args, message, capsys, tmp_path, photo_dirs,
                                  pretrained_tiny_path):
    if args[0] in ("run", "finetune"):
        args = args + ["--checkpoint", str(pretrained_tiny_path), *_data(photo_dirs),
                       *(["--out", str(tmp_path / "ft")] if args[0] == "finetune" else []),
                       *([] if "--lmbda" in args else ["--lmbda", "0.0483"])]
    assert message in cli_error(capsys, args)
    assert not (tmp_path / "ft").exists() and not (tmp_path / "results").exists()


def test_unknown_preset_and_strategy_are_refused_by_the_apis():
    from search_spaces import preset_points
    from trainables.layer_lr import LayerLRConfig

    with pytest.raises(ValueError, match="unknown search preset 'grid'"):
        preset_points("grid", 12)
    with pytest.raises(ValueError, match="unknown freeze strategy 'all'"):
        LayerLRConfig(freeze_strategy="all")
    with pytest.raises(ValueError, match="unknown preset 'huge'"):
        hpcm.create_model("huge")


@pytest.mark.parametrize("argv", [["run", "--model", "huge"], ["resume"],
                                  ["finetune", "--epochs", "three"]])
def test_argparse_refusals_exit_2(argv, capsys):
    with pytest.raises(SystemExit) as exit_info:
        tune_main.main(argv)
    assert exit_info.value.code == 2
    assert "error:" in capsys.readouterr().err


# -- experiments that already exist -----------------------------------------------------
def _existing_experiment(tmp_path: Path) -> Path:
    experiment = tmp_path / "results" / "mine"
    (experiment / "trial_0").mkdir(parents=True)
    (experiment / "hpcm_tune_experiment.json").write_text('{"name": "mine"}')
    (experiment / "trial_0" / "result.json").write_text('{"loss": 1.0}\n')
    return experiment


def test_existing_experiment_name_is_refused_and_untouched(tmp_path, capsys, photo_dirs,
                                                           pretrained_tiny_path):
    experiment = _existing_experiment(tmp_path)
    before = tree(experiment)
    line = cli_error(capsys, ["run", "--name", "mine", "--storage-path",
                              str(tmp_path / "results"), "--checkpoint",
                              str(pretrained_tiny_path), *_data(photo_dirs)])
    assert str(experiment) in line and "resume" in line and "--overwrite" in line
    assert tree(experiment) == before


def test_overwrite_keeps_the_old_experiment_when_the_new_input_is_bad(tmp_path, capsys):
    experiment = _existing_experiment(tmp_path)
    before = tree(experiment)
    line = cli_error(capsys, ["run", "--name", "mine", "--overwrite", "--storage-path",
                              str(tmp_path / "results"), "--checkpoint",
                              str(tmp_path / "missing.pt")])
    assert "missing.pt" in line
    assert tree(experiment) == before


def test_finetune_out_that_cannot_be_created_is_one_line(tmp_path, capsys, photo_dirs,
                                                         pretrained_tiny_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    line = cli_error(capsys, _finetune(blocker / "ft", photo_dirs, pretrained_tiny_path))
    assert str(blocker) in line


# -- security ---------------------------------------------------------------------------
class _Evil:
    """Unpickling this runs ``touch <marker>``."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_code_carrying_start_checkpoint_is_refused_through_the_cli(tmp_path, capsys):
    marker = tmp_path / "pwned"
    evil = tmp_path / "evil.pt"
    torch.save({"config": {}, "state_dict": {}, "payload": _Evil(marker)}, evil)
    for argv in (["run", "--checkpoint", str(evil)],
                 ["run", "--model", "base", "--official", "--checkpoint", str(evil)],
                 ["inspect-model", "--checkpoint", str(evil)]):
        line = cli_error(capsys, argv)
        assert "refusing to unpickle" in line and str(evil) in line
        assert "posix.system" in line  # what it would have run
        assert "weights_only" not in line  # never the advice to load it unsafely
    assert not marker.exists()


@pytest.mark.parametrize("kind", ["code-carrying", "truncated"])
def test_finetune_resume_refuses_a_bad_trial_state(kind, tmp_path, capsys, photo_dirs,
                                                   pretrained_tiny_path):
    out = tmp_path / "ft"
    (out / "latest").mkdir(parents=True)
    state = out / "latest" / "trial_state.pt"
    marker = tmp_path / "pwned"
    if kind == "code-carrying":
        torch.save({"trainer": {}, "patience": {}, "best": _Evil(marker)}, state)
    else:
        data = pretrained_tiny_path.read_bytes()
        state.write_bytes(data[: len(data) // 3])
    before = tree(out)
    line = cli_error(capsys, _finetune(out, photo_dirs, pretrained_tiny_path, "--resume"))
    assert str(state) in line
    assert not marker.exists()
    assert tree(out) == before


# -- refused before Ray starts ----------------------------------------------------------
def _cli_without_ray(argv: list[str], cwd: Path) -> tuple[int, str, bool]:
    """Run the CLI in a fresh process; returns (exit status, last stderr line, whether Ray
    was imported). A refusal that comes before Ray starts never imports it."""
    code = ("import sys, tune_main\n"
            f"rc = tune_main.main({argv!r})\n"
            "print('ray imported' if 'ray' in sys.modules else 'no ray')\n"
            "sys.exit(rc)")
    proc = subprocess.run([sys.executable, "-c", code], cwd=cwd, capture_output=True,
                          text=True, timeout=300,
                          env=dict(os.environ, PYTHONPATH=str(REPO)))
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    return proc.returncode, lines[-1] if lines else "", "no ray" in proc.stdout


def _too_many_gpus() -> str:
    return str(torch.cuda.device_count() + 1)


@pytest.mark.parametrize("extra, message", [
    (["--epochs", "1"], "--epochs 1: the search space needs at least 3 epochs"),
    (["--gpus-per-trial", "GPUS"], "but this machine has"),
    (["--cpus-per-trial", str((os.cpu_count() or 1) + 1)], "--cpus-per-trial"),
    # tiny codes sides that are multiples of 128: every trial would fail at its first batch.
    (["--crop-size", "192"], "--crop-size 192: the tiny model codes images whose sides are "
                             "multiples of 128; pass --crop-size 128"),
])
def test_run_refuses_what_the_local_machine_cannot_do_before_ray_starts(
        extra, message, tmp_path, photo_dirs, pretrained_tiny_path):
    extra = [_too_many_gpus() if e == "GPUS" else e for e in extra]
    rc, line, no_ray = _cli_without_ray(
        ["run", "--checkpoint", str(pretrained_tiny_path), "--lmbda", "0.0483",
         *_data(photo_dirs), *extra], tmp_path)
    assert rc == 2 and line.startswith("error: ") and message in line, line
    if "--gpus-per-trial" in extra:
        assert f"--gpus-per-trial {extra[-1]}" in line and "--address" in line
    assert no_ray, "Ray was started before the refusal"
    assert not (tmp_path / "results").exists()


def test_resume_of_a_missing_path_says_so_before_ray_starts(tmp_path):
    missing = tmp_path / "results" / "sweep-that-never-was"
    rc, line, no_ray = _cli_without_ray(["resume", str(missing)], tmp_path)
    assert rc == 2 and line.startswith("error: ")
    assert str(missing) in line and "does not exist" in line
    assert no_ray


@pytest.mark.parametrize("extra", [["--epochs", "1"], ["--gpus-per-trial", "GPUS"]])
def test_overwrite_keeps_the_old_experiment_when_a_sweep_check_refuses(
        extra, tmp_path, photo_dirs, pretrained_tiny_path):
    experiment = _existing_experiment(tmp_path)
    before = tree(experiment)
    extra = [_too_many_gpus() if e == "GPUS" else e for e in extra]
    rc, line, no_ray = _cli_without_ray(
        ["run", "--name", "mine", "--overwrite", "--storage-path", str(tmp_path / "results"),
         "--checkpoint", str(pretrained_tiny_path), "--lmbda", "0.0483", *_data(photo_dirs),
         *extra], tmp_path)
    assert rc == 2 and extra[0] in line, line
    assert no_ray
    assert tree(experiment) == before
    assert sorted(p.name for p in (tmp_path / "results").iterdir()) == ["mine"]


def test_overwrite_refuses_a_start_checkpoint_inside_the_experiment_it_replaces(
        tmp_path, capsys, photo_dirs, pretrained_tiny_path):
    experiment = _existing_experiment(tmp_path)
    inside = experiment / "trial_0" / "checkpoint_000000"
    inside.mkdir()
    shutil.copy(pretrained_tiny_path, inside / "model.pt")
    before = tree(experiment)
    line = cli_error(capsys, ["run", "--name", "mine", "--overwrite", "--storage-path",
                              str(tmp_path / "results"), "--checkpoint",
                              str(inside / "model.pt"), "--lmbda", "0.0483",
                              *_data(photo_dirs)])
    assert "lies inside the experiment" in line
    assert tree(experiment) == before


# -- finetune --resume with other settings -----------------------------------------------
@pytest.fixture(scope="module")
def finished_finetune(tmp_path_factory, photo_dirs, pretrained_tiny_path) -> Path:
    """A one-epoch fine-tune (its folder: latest/, best.pt, metrics.jsonl)."""
    out = tmp_path_factory.mktemp("finished") / "ft"
    assert tune_main.main(_finetune_at(out, photo_dirs, pretrained_tiny_path)) == 0
    return out


def _finetune_at(out: Path, photo_dirs: Path, checkpoint, *extra: str) -> list[str]:
    """A one-epoch fine-tune at the lambda of the pre-trained tiny (``_finetune``'s)."""
    return _finetune(out, photo_dirs, checkpoint, *extra)


def _copy(out: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "ft"
    shutil.copytree(out, copy)
    return copy


@pytest.mark.parametrize("change, flag", [
    (["--lmbda", "0.01"], "--lmbda 0.01 (it ran with 0.0483)"),
    (["--crop-size", "256"], "--crop-size 256 (it ran with 128)"),
    (["--context-lr-ratio", "0.5"], "--context-lr-ratio 0.5 (it ran with 0.1)"),
    (["--freeze-strategy", "none"], "--freeze-strategy none (it ran with entropy)"),
    (["--val-dir", "TRAIN"], "--val-dir"),
    (["--checkpoint", "COPY"], "--checkpoint"),
    (["--max-side", "256"], "--max-side 256 (it ran with None)"),
])
def test_finetune_resume_refuses_settings_that_change_what_the_losses_mean(
        change, flag, finished_finetune, tmp_path, capsys, photo_dirs, pretrained_tiny_path):
    out = _copy(finished_finetune, tmp_path)
    before = tree(out)
    argv = _finetune_at(out, photo_dirs, pretrained_tiny_path, "--resume", "--epochs", "2")
    if change[1] == "TRAIN":
        change = [change[0], str(photo_dirs / "train")]
    if change[1] == "COPY":
        change = [change[0], str(shutil.copy(pretrained_tiny_path, tmp_path / "other.pt"))]
    if change[0] in argv:
        argv[argv.index(change[0]) + 1] = change[1]
    else:
        argv += change
    line = cli_error(capsys, argv)
    assert "cannot resume with other settings" in line and flag in line
    assert "only --epochs may change" in line
    assert tree(out) == before  # metrics.jsonl and the states untouched


def test_finetune_resume_with_a_longer_budget_continues_and_says_so(
        finished_finetune, tmp_path, photo_dirs, pretrained_tiny_path, caplog):
    out = _copy(finished_finetune, tmp_path)
    argv = _finetune_at(out, photo_dirs, pretrained_tiny_path, "--resume")
    argv[argv.index("--epochs") + 1] = "2"
    with caplog.at_level(logging.WARNING):
        assert tune_main.main(argv) == 0
    assert any("epoch budget changed from 1 to 2" in r.getMessage() for r in caplog.records)
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [0, 1]


def test_finetune_resume_of_a_finished_budget_is_one_line(finished_finetune, tmp_path, capsys,
                                                          photo_dirs, pretrained_tiny_path):
    out = _copy(finished_finetune, tmp_path)
    before = tree(out)
    line = cli_error(capsys, _finetune_at(out, photo_dirs, pretrained_tiny_path, "--resume"))
    assert "already ran its 1 epochs" in line and "--epochs" in line
    assert tree(out) == before


def test_training_checkpoint_given_as_official_says_to_drop_official(finished_finetune,
                                                                     capsys):
    for path in (finished_finetune / "best.pt", finished_finetune / "latest"):
        line = cli_error(capsys, ["run", "--model", "base", "--official", "--checkpoint",
                                  str(path), "--lmbda", "0.0067"])
        assert "is a hpcm-tune training checkpoint" in line and "drop --official" in line
        assert "not tensors" not in line
