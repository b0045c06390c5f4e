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
import logging
import os
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
    return ["finetune", "--checkpoint", str(checkpoint), *_data(photo_dirs), "--epochs", "1",
            "--batch-size", "4", "--crops-per-image", "1", "--out", str(out), *extra]


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


def test_project_checkpoint_given_as_official_lists_the_mismatched_keys(
        tmp_path, capsys, pretrained_tiny_path):
    line = cli_error(capsys, ["run", "--model", "base", "--official", "--checkpoint",
                              str(pretrained_tiny_path)])
    assert "official HPCM-base" in line
    assert "wrong shapes" in line or "missing keys" in line
    assert "g_a." in line or "context_net" in line  # the keys themselves are listed


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
    (["finetune", "--epochs", "0"], "--epochs must be positive"),
    (["run", "--num-samples", "-2"], "--num-samples must be positive"),
    (["run", "--batch-size", "0"], "--batch-size must be positive"),
    (["run", "--cpus-per-trial", "0"], "--cpus-per-trial must be positive"),
    (["run", "--gpus-per-trial", "-1"], "--gpus-per-trial must be positive"),
    (["run", "--checkpoint-every", "0"], "--checkpoint-every must be positive"),
    (["run", "--patience", "0"], "per-scale stopper: patience must be >= 1"),
    (["finetune", "--stopper-warmup-epochs", "-1"], "warmup_epochs must be >= 0"),
    (["finetune", "--freeze-strategy", "progressive"],
     "unfreeze_h_epoch < unfreeze_context_epoch"),
    (["finetune", "--freeze-strategy", "progressive", "--unfreeze-h-epoch", "3",
      "--unfreeze-context-epoch", "3"], "unfreeze_h_epoch < unfreeze_context_epoch"),
    (["finetune", "--freeze-strategy", "progressive", "--unfreeze-h-epoch", "2",
      "--unfreeze-context-epoch", "12", "--epochs", "12"], "below the epoch budget"),
    (["finetune", "--base-lr", "0"], "base_lr must be > 0"),
    (["finetune", "--context-lr-ratio", "-0.5"], "context_lr_ratio must be in (0, 1]"),
    (["inspect-model", "--context-lr-ratio", "0"], "context_lr_ratio must be in (0, 1]"),
    (["inspect-model", "--context-lr-ratio", "1.01"], "context_lr_ratio must be in (0, 1]"),
])
def test_bad_numbers_are_one_line(args, message, capsys, tmp_path, photo_dirs,
                                  pretrained_tiny_path):
    if args[0] in ("run", "finetune"):
        args = args + ["--checkpoint", str(pretrained_tiny_path), *_data(photo_dirs),
                       *(["--out", str(tmp_path / "ft")] if args[0] == "finetune" else [])]
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


def test_no_service_binds_beyond_localhost():
    """Every bind address in the project's code and cluster file is 127.0.0.1."""
    sources = [REPO / "tune_main.py", REPO / "cluster.yaml"]
    for package in ("hpcm", "trainables", "stoppers", "search_spaces", "analysis"):
        sources += sorted((REPO / package).rglob("*.py"))
    for path in sources:
        text = path.read_text()
        assert "0.0.0.0" not in text, path
        for key in ("dashboard_host=", "--dashboard-host=", "host="):
            for chunk in text.split(key)[1:]:
                value = chunk.split()[0].strip("\"',)")
                assert value in ("127.0.0.1", "localhost") or not value[0].isdigit(), (
                    path, key, value)
    import inspect

    assert 'dashboard_host="127.0.0.1"' in inspect.getsource(tune_main._init_ray)
