"""The command line: fast help, inspect-model, finetune + resume, and bad input."""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import tune_main
from trainables import cluster

REPO = Path(__file__).resolve().parents[1]


def test_help_imports_neither_torch_nor_ray():
    code = ("import sys, tune_main\n"
            "try:\n    tune_main.main(['--help'])\nexcept SystemExit:\n    pass\n"
            "print([m for m in ('torch', 'ray', 'optuna', 'compressai') if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True,
                         check=True).stdout
    assert "finetune" in out and "inspect-model" in out
    assert out.strip().splitlines()[-1] == "[]"


def test_the_demo_sweep_is_set_up_without_importing_torch(tmp_path):
    # The driver only schedules: torch and compressai (~5 s on 2 cores) load in the trials'
    # workers, not before the sweep can start.
    code = ("import sys, tune_main\n"
            "from trainables.sweep import SweepOptions, _trainable, param_space\n"
            "args = tune_main.build_parser().parse_args(['run'])\n"
            "tune_main._resolve_task(args)\n"
            "spec = tune_main._trial_spec(args)\n"
            f"options = SweepOptions(name='x', storage_path={str(tmp_path)!r}, trial=spec,\n"
            "                       epochs=args.epochs, num_samples=8)\n"
            "assert spec.checkpoint and param_space(options)['lmbda'] == args.lmbda\n"
            "_trainable(options)\n"
            "print([m for m in ('torch', 'compressai', 'hpcm') if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True,
                         check=True).stdout
    assert out.strip().splitlines()[-1] == "[]"


def test_printed_commands_name_this_interpreter_unless_python_on_path_is_it(tmp_path,
                                                                           monkeypatch):
    """The summary's analyse/resume/confirm lines run as printed: after the README's
    `.venv/bin/python tune_main.py` a bare `python` would lack the project's packages."""
    venv_bin = tmp_path / "venv" / "bin"
    venv_bin.mkdir(parents=True)
    (venv_bin / "python").symlink_to(sys.executable)
    monkeypatch.setattr(sys, "executable", str(venv_bin / "python"))
    monkeypatch.chdir(tmp_path)
    script = shlex.quote(str(REPO / "tune_main.py"))  # outside the working directory: absolute
    monkeypatch.setenv("PATH", str(venv_bin))  # an activated venv
    assert tune_main.this_command() == f"python {script}"
    monkeypatch.setenv("PATH", str(tmp_path / "elsewhere"))  # no `python`, or another one
    assert tune_main.this_command() == f"venv/bin/python {script}"
    monkeypatch.chdir(REPO)
    assert tune_main.this_command() == f"{shlex.quote(str(venv_bin / 'python'))} tune_main.py"


def test_inspect_model_lists_groups_summing_to_the_model(capsys):
    assert tune_main.main(["inspect-model", "--model", "tiny", "--freeze-strategy",
                           "progressive"]) == 0
    out = capsys.readouterr().out
    total = int(out.split(":")[1].split("parameters")[0].replace(",", ""))
    rows = [line.split() for line in out.splitlines()
            if line.split() and line.split()[0] in ("g_a", "g_s", "h_a", "h_s", "context", "entropy")]
    assert len(rows) == 6
    assert sum(int(r[1].replace(",", "")) for r in rows) == total
    frozen = {r[0] for r in rows if r[3] == "yes"}
    assert frozen == {"h_a", "h_s", "context", "entropy"}


def _finetune_args(out: Path, photos: Path, checkpoint: Path, epochs: int) -> list[str]:
    return ["finetune", "--checkpoint", str(checkpoint), "--lmbda", "0.0483",
            "--train-dir", str(photos / "train"),
            "--val-dir", str(photos / "val"), "--epochs", str(epochs), "--batch-size", "4",
            "--crops-per-image", "2", "--out", str(out)]


def test_finetune_then_resume_continues_at_the_next_epoch(tmp_path, photo_dirs,
                                                          pretrained_tiny_path, capsys):
    out = tmp_path / "ft"
    assert tune_main.main(_finetune_args(out, photo_dirs, pretrained_tiny_path, 2)) == 0
    assert (out / "latest" / "trial_state.pt").is_file() and (out / "best.pt").is_file()
    # Same folder without --resume: refused, nothing overwritten.
    before = (out / "latest" / "trial_state.pt").read_bytes()
    assert tune_main.main(_finetune_args(out, photo_dirs, pretrained_tiny_path, 3)) == 2
    assert "--resume" in capsys.readouterr().err
    assert (out / "latest" / "trial_state.pt").read_bytes() == before

    assert tune_main.main(_finetune_args(out, photo_dirs, pretrained_tiny_path, 3)
                          + ["--resume"]) == 0
    epochs = [json.loads(line)["epoch"] for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert epochs == [0, 1, 2]
    state = torch.load(out / "latest" / "trial_state.pt", weights_only=True)
    assert state["trainer"]["epoch"] == 3


def test_ctrl_c_in_a_finetune_says_how_to_continue_it(tmp_path, photo_dirs,
                                                     pretrained_tiny_path):
    import signal

    out = tmp_path / "ft"
    proc = subprocess.Popen([sys.executable, str(REPO / "tune_main.py"),
                             *_finetune_args(out, photo_dirs, pretrained_tiny_path, 50)],
                            cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=dict(os.environ, PYTHONPATH=str(REPO)))
    assert proc.stdout.readline().startswith("epoch   0"), "no first epoch"
    proc.send_signal(signal.SIGINT)  # as Ctrl-C does, during the second epoch
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130 and "Traceback" not in err, err[-2000:]
    assert err.strip().splitlines()[-1] == (f"interrupted: {out} holds the epochs saved so "
                                            "far; the same command with --resume continues it")
    assert (out / "latest" / "trial_state.pt").is_file()


@pytest.mark.parametrize("args, message", [
    (["run", "--epochs", "-3"], "--epochs must be positive"),  # more numbers: tests/reliability
    (["run", "--model", "base"], "needs a trained checkpoint"),
    (["run", "--train-dir", "/nonexistent/photos"], "no such folder"),
    (["finetune", "--context-lr-ratio", "-1"], "context_lr_ratio must be a finite number > 0"),
    (["finetune", "--context-lr-ratio", "0"], "context_lr_ratio must be a finite number > 0"),
    (["finetune", "--freeze-strategy", "progressive", "--unfreeze-h-epoch", "5",
      "--unfreeze-context-epoch", "3"], "unfreeze_h_epoch < unfreeze_context_epoch"),
    (["finetune", "--freeze-strategy", "progressive", "--unfreeze-h-epoch", "2",
      "--unfreeze-context-epoch", "30", "--epochs", "10"], "below the epoch budget"),
])
def test_bad_input_is_one_clear_line_and_exit_2(args, message, capsys, tmp_path,
                                                pretrained_tiny_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    if args[0] == "finetune" or "--model" not in args:
        args = args + ["--checkpoint", str(pretrained_tiny_path)]
        args += [] if "--lmbda" in args else ["--lmbda", "0.0483"]
    assert tune_main.main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("error: ") and message in err[-1]
    assert not (tmp_path / "results").exists()


@pytest.mark.parametrize("args, message", [
    (["confirm", "nowhere"], "nowhere does not exist; give the sweep folder"),
    (["confirm", "."], "is not a hpcm-tune experiment"),
    (["confirm", ".", "--top", "0"], "--top must be 1 or more, got 0"),
    (["confirm", ".", "--seeds", "0"], "--seeds must be 1 or more, got 0"),
    (["confirm", "s3://bucket/sweep"], "confirm reads a local sweep folder"),
    (["confirm", ".", "--gpus-per-trial", "-1"], "--gpus-per-trial must be 0 or more"),
    (["confirm", ".", "--cpus-per-trial", "nan"], "--cpus-per-trial must be positive and finite"),
])
def test_confirm_refuses_what_it_cannot_confirm_in_one_line(args, message, capsys, tmp_path,
                                                             monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert tune_main.main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("error: ") and message in err[-1]
    assert list(tmp_path.iterdir()) == []


def test_unknown_choices_are_refused_by_argparse(capsys):
    for args in (["run", "--preset", "grid"], ["finetune", "--freeze-strategy", "all"]):
        with pytest.raises(SystemExit) as exit_info:
            tune_main.main(args)
        assert exit_info.value.code == 2
        assert "invalid choice" in capsys.readouterr().err


@pytest.mark.parametrize("errors, interrupted, expected", [
    (0, 0, "epochs used: 4 of 12 (compute saved: 67%)"),
    (1, 0, "epochs used: 4 of 12 (compute saved: 67%, the errored trials' unrun epochs "
           "included)"),
    (2, 0, "epochs used: 4 of 12 (every trial errored: its error.txt says why)"),
    (0, 2, "epochs used: 4 of 12 (so far)"),
])
def test_the_summary_calls_no_unrun_epoch_plainly_saved(errors, interrupted, expected, capsys):
    # Trials that errored or were interrupted leave epochs unrun: not what a scheduler saved.
    tune_main._print_summary({"trials": 2, "errors": errors, "stopped_early": 0, "culled": 0,
                              "budget_stopped": 0, "interrupted": interrupted,
                              "epochs_used": 4, "epochs_budget": 12, "compute_saved": 2 / 3,
                              "path": "results/x"}, 1.0)
    out = capsys.readouterr().out
    assert expected in out
    assert ("=== sweep interrupted after 1 s" in out) == bool(interrupted)
    assert ("2 interrupted)" in out) == bool(interrupted)


def test_corrupt_checkpoint_is_refused(tmp_path, capsys):
    bad = tmp_path / "broken.pt"
    bad.write_bytes(b"\x80\x02not a checkpoint")
    assert tune_main.main(["run", "--checkpoint", str(bad)]) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith("error: ") and str(bad) in err


def test_keep_scale_best_writes_loadable_per_scale_weights(tmp_path, photo_dirs,
                                                           pretrained_tiny_path):
    import hpcm
    from trainables.data import ImageFolderDataset
    from trainables.finetune import FineTuner
    from trainables.spec import FineTuneConfig

    out = tmp_path / "ft"
    # Two epochs, both judged (the short-budget stopper would leave them unjudged as warm-up).
    assert tune_main.main(_finetune_args(out, photo_dirs, pretrained_tiny_path, 2)
                          + ["--keep-scale-best", "--stopper-warmup-epochs", "0"]) == 0
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    # A scale's best epoch is the stopper's, not the arg-min: a gain within min_delta is no
    # improvement, and whether epoch 1 gains more than that depends on the CPU's floating-point
    # path. Replay the stopper the trial used (its settings from the saved state) on the
    # reported values.
    from stoppers import AdaptivePatience

    saved = torch.load(out / "latest" / "trial_state.pt", weights_only=True)["patience"]
    replay = AdaptivePatience(**saved["config"])
    for row in rows:
        replay.step(row["epoch"], {s: row[s] for s in ("s1", "s2", "s3")})
    for scale in ("s1", "s2", "s3"):
        model = hpcm.load_model(out / "latest" / f"best_{scale}.pt")
        best_epoch = rows[-1][f"patience/{scale}/best_epoch"]
        assert best_epoch == replay.best_epoch[scale] == rows[best_epoch]["epoch"]
        # Validating the kept weights reproduces that scale's loss at its best epoch.
        val = ImageFolderDataset(photo_dirs / "val", mode="val")
        metrics = FineTuner(model, FineTuneConfig(lmbda=0.0483), val, val,
                            torch.device("cpu")).validate()  # the lambda _finetune_args gives
        assert metrics[scale] == pytest.approx(rows[best_epoch][scale], rel=1e-6)


@pytest.mark.parametrize("content, extra, message", [
    ('{"context_lr_ratio": 0.1, "learning_rate": 1}', [], "keys among"),
    ('{"context_lr_ratio": -3}', [], "context_lr_ratio must be a finite number > 0"),
    ('not json', [], "cannot read --config"),
    ('{"context_lr_ratio": 0.1}', ["--lambdas", "0.01,-1"], "--lambdas must all be positive"),
])
def test_bad_fixed_configs_are_refused(content, extra, message, tmp_path, capsys,
                                       pretrained_tiny_path):
    config = tmp_path / "best.json"
    config.write_text(content)
    args = ["run", "--config", str(config), "--checkpoint", str(pretrained_tiny_path),
            "--storage-path", str(tmp_path / "results")] + extra
    assert tune_main.main(args) == 2
    assert message in capsys.readouterr().err.strip().splitlines()[-1]
    assert not (tmp_path / "results").exists()


def test_lambdas_without_config_is_refused(capsys):
    assert tune_main.main(["run", "--lambdas", "0.01,0.02"]) == 2
    assert "--lambdas needs --config" in capsys.readouterr().err


def test_the_projects_own_checkpoints_are_accepted_as_starting_points(
        tmp_path, photo_dirs, pretrained_tiny_path, caplog):
    import logging
    import shutil

    out = tmp_path / "ft"
    assert tune_main.main(_finetune_args(out, photo_dirs, pretrained_tiny_path, 1)
                          + ["--lmbda", "0.0483"]) == 0
    tune_checkpoint = tmp_path / "sweep" / "trial_x" / "checkpoint_000000"
    shutil.copytree(out / "latest", tune_checkpoint)
    state, best = out / "latest" / "trial_state.pt", out / "best.pt"
    for given, expected in [(state, state), (best, best), (out / "latest", state), (out, best),
                            (tune_checkpoint / "trial_state.pt", tune_checkpoint / "trial_state.pt"),
                            (tune_checkpoint, tune_checkpoint / "trial_state.pt")]:
        for command in ("run", "finetune"):
            args = tune_main.build_parser().parse_args([command, "--checkpoint", str(given)])
            assert tune_main._start_checkpoint(args) == (str(expected.resolve()), "project",
                                                         "tiny", 128), given

    # A fine-tune from a finetune folder, with a validation folder only (training on the
    # bundled photos) whose image is downsized by --max-side.
    second = tmp_path / "ft2"
    argv = ["finetune", "--checkpoint", str(out), "--val-dir", str(photo_dirs / "val"),
            "--max-side", "200", "--epochs", "1", "--batch-size", "4", "--crops-per-image", "1",
            "--lmbda", "0.0483", "--out", str(second)]
    with caplog.at_level(logging.INFO):
        assert tune_main.main(argv) == 0
    logged = [r.getMessage() for r in caplog.records]
    assert any("no --train-dir: training on the bundled train photos" in m for m in logged)
    assert any("--max-side 200: downsized 1 image(s)" in m and "451x300 -> 200x133" in m
               for m in logged)
    saved = torch.load(second / "latest" / "trial_state.pt", weights_only=True)["options"]
    assert saved["checkpoint"] == str(best.resolve())
    assert saved["val_dir"] == str((photo_dirs / "val").resolve()) and saved["max_side"] == 200


LISTENING = """
import json, sys
import psutil
from trainables import cluster
cluster.prepare(None)  # what `run` and `resume` without --address do
imported_before = set(sys.modules)
cluster.connect(None, dashboard=True, verbose=False)
import threading
import ray
from ray._private.worker import get_dashboard_url
ray.get(ray.remote(lambda: 1).remote())  # a worker process too
found = []
for proc in [psutil.Process(), *psutil.Process().children(recursive=True)]:
    try:
        found += [[proc.name(), c.laddr.ip, c.laddr.port]
                  for c in proc.net_connections(kind="inet") if c.status == psutil.CONN_LISTEN]
    except psutil.NoSuchProcess:
        pass
print(json.dumps({"listening": found, "dashboard": get_dashboard_url(),
                  "imported_by_connect": sorted(set(sys.modules) - imported_before),
                  "threads": [t.name for t in threading.enumerate()]}))
ray.shutdown()
"""


def _loopback(ip: str) -> bool:
    import ipaddress

    address = ipaddress.ip_address(ip)
    return (getattr(address, "ipv4_mapped", None) or address).is_loopback


@pytest.fixture(scope="module")
def local_ray(tmp_path_factory) -> dict:
    """What the driver sees once ``cluster.connect`` has started a local Ray (in a fresh
    interpreter, as the CLI does)."""
    proc = subprocess.run([sys.executable, "-c", LISTENING], cwd=tmp_path_factory.mktemp("ray"),
                          capture_output=True, text=True, timeout=180,
                          env=dict(os.environ, PYTHONPATH=str(REPO)))
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_no_service_binds_beyond_localhost(local_ray):
    """The local Ray that the CLI starts (with --dashboard) listens on loopback only: every
    listening socket of the driver and of every process it started, the dashboard's too.
    (cluster.yaml's head: tests/cluster/test_cluster_yaml.py.)"""
    seen = local_ray
    listening = seen["listening"]
    names = {name for name, _, _ in listening}
    assert {"gcs_server", "raylet"} <= names, listening  # the services were seen at all
    dashboard_port = int(seen["dashboard"].rsplit(":", 1)[1])
    assert dashboard_port in {port for _, _, port in listening}, (seen["dashboard"], listening)
    assert [entry for entry in listening if not _loopback(entry[1])] == []


def test_tune_start_imports_are_done_while_ray_starts(local_ray):
    """connect() returns with what Tune imports before its first trial already imported (by
    a thread that ran while Ray started), and that thread finished."""
    assert set(cluster.TUNE_START_IMPORTS) <= set(local_ray["imported_by_connect"])
    assert "torch" in local_ray["imported_by_connect"]  # tensorboardX's, the slow one
    assert "import-tune" not in local_ray["threads"]


def test_confirm_adds_plain_fine_tuning_unless_told_not_to():
    parse = tune_main.build_parser().parse_args
    assert parse(["confirm", "results/x"]).with_plain is True
    assert parse(["confirm", "results/x", "--no-plain"]).with_plain is False


def test_the_scheduler_defaults_to_leader_gap_and_a_fixed_config_runs_fifo(caplog):
    caplog.set_level("INFO", logger="hpcm-tune")
    assert tune_main.scheduler_for(None, fixed_config=False) == "leader-gap"
    assert tune_main.scheduler_for("asha", fixed_config=False) == "asha"
    assert not caplog.records
    assert tune_main.scheduler_for("asha", fixed_config=True) == "fifo"
    assert "--scheduler asha not used" in caplog.text
    caplog.clear()
    assert tune_main.scheduler_for(None, fixed_config=True) == "fifo"
    assert "--config runs no search, so no scheduler culls its trials" in caplog.text
    assert "not used" not in caplog.text
