"""Official checkpoint conversion and this project's model files."""

from __future__ import annotations

import dataclasses
import logging
import os
from pathlib import Path

import pytest
import torch

import hpcm
from hpcm import CheckpointError, convert_official_state_dict, load_model, load_official_checkpoint, save_model

DATA = Path(__file__).resolve().parents[1] / "data"
CONSTANTS = {
    "entropy_estimation.beta": 1.5,
    "entropy_estimation.scale_lower_bound.bound": 0.12,
    "entropy_estimation.likelihood_lower_bound.bound": 1e-9,
}


def read_tsv(variant: str) -> list[tuple[str, tuple[int, ...], str]]:
    rows = []
    with open(DATA / f"official_hpcm_{variant}_state_dict.tsv") as f:
        next(f)
        for line in f:
            key, shape, kind = line.rstrip("\n").split("\t")
            dims = () if shape == "" else tuple(int(s) for s in shape.split("x"))
            rows.append((key, dims, kind))
    return rows


def official_state_dict(variant: str, with_adaptive: bool = False, seed: int = 0) -> dict[str, torch.Tensor]:
    """A state_dict with the exact layout of a released official file (random weights)."""
    gen = torch.Generator().manual_seed(seed)
    sd = {}
    for key, shape, kind in read_tsv(variant):
        if key.startswith("adaptive_params_list.") and not with_adaptive:
            continue  # released files predate their registration
        if key in CONSTANTS:
            sd[key] = torch.tensor([CONSTANTS[key]])
        elif kind == "buffer":
            sd[key] = torch.zeros(shape)
        else:
            sd[key] = torch.randn(shape, generator=gen) * 0.01
    return sd


@pytest.mark.parametrize("variant", ["base", "large"])
def test_converted_layout_equals_ours(variant):
    rows = read_tsv(variant)
    assert len(rows) == {"base": 290, "large": 356}[variant]
    official = official_state_dict(variant, with_adaptive=True)
    converted = convert_official_state_dict(official, variant)
    ours = hpcm.create_model(variant).state_dict()
    assert {k: tuple(v.shape) for k, v in converted.items()} == {k: tuple(v.shape) for k, v in ours.items()}
    # Every official parameter is carried over unchanged.
    params = [k for k, _, kind in rows if kind == "parameter"]
    assert sum(official[k].numel() for k in params) == sum(p.numel() for p in hpcm.create_model(variant).parameters())
    for k in params:
        assert torch.equal(converted[k], official[k])


def test_missing_adaptive_params_are_filled_with_ones_and_logged(caplog):
    official = official_state_dict("base")
    with caplog.at_level(logging.WARNING, logger="hpcm.checkpoint"):
        converted = convert_official_state_dict(official, "base")
    for i in range(10):
        assert torch.equal(converted[f"adaptive_params_list.{i}"], torch.ones(1, 960, 1, 1))
    assert any("adaptive_params_list" in r.getMessage() and "ones" in r.getMessage() for r in caplog.records)


def test_present_adaptive_params_are_kept(caplog):
    official = official_state_dict("base", with_adaptive=True)
    official["adaptive_params_list.3"] = torch.full((1, 960, 1, 1), 0.7)
    with caplog.at_level(logging.WARNING, logger="hpcm.checkpoint"):
        converted = convert_official_state_dict(official, "base")
    assert torch.equal(converted["adaptive_params_list.3"], official["adaptive_params_list.3"])
    assert not caplog.records


@pytest.mark.parametrize(
    "edit,listed",
    [
        (lambda sd: sd.update({"g_a.branch.99.weight": torch.zeros(1)}), "g_a.branch.99.weight"),
        (lambda sd: sd.pop("context_net.1.bias"), "context_net.1.bias"),
        (lambda sd: sd.update({"attn_s2.conv_q.weight": torch.zeros(640, 640, 3, 3)}), "attn_s2.conv_q.weight"),
        (lambda sd: sd.pop("entropy_estimation.beta"), "entropy_estimation.beta"),
    ],
    ids=["extra", "missing", "shape", "missing-constant"],
)
def test_mismatches_are_refused_with_the_key_listed(edit, listed):
    official = official_state_dict("base")
    edit(official)
    with pytest.raises(CheckpointError, match=listed.replace(".", r"\.")):
        convert_official_state_dict(official, "base")


def test_other_entropy_model_is_refused():
    official = official_state_dict("base")
    official["entropy_estimation.beta"] = torch.tensor([2.0])
    with pytest.raises(CheckpointError, match="beta"):
        convert_official_state_dict(official, "base")


def test_wrong_variant_is_detected():
    with pytest.raises(CheckpointError, match="variant='base'"):
        convert_official_state_dict(official_state_dict("base"), "large")
    with pytest.raises(CheckpointError, match="variant='large'"):
        convert_official_state_dict(official_state_dict("large"), "base")
    with pytest.raises(ValueError):
        convert_official_state_dict(official_state_dict("base"), "tiny")


def test_official_file_round_trip(tmp_path):
    official = official_state_dict("base")
    path = tmp_path / "hpcm_base.pth"
    torch.save({"state_dict": official, "epoch": 3}, path)
    model = load_official_checkpoint(path, variant="base")
    assert not model.training
    sd = model.state_dict()
    assert torch.equal(sd["g_s.branch.0.weight"], official["g_s.branch.0.weight"])
    assert torch.equal(sd["adaptive_params_list.0"], torch.ones(1, 960, 1, 1))
    # A plain dict works too.
    again = load_official_checkpoint(official, variant="base")
    assert torch.equal(again.means_hyper, model.means_hyper)


class _Evil:
    marker = ""

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_pickle_with_code_never_runs(tmp_path):
    marker = tmp_path / "pwned"
    evil = _Evil()
    evil.marker = str(marker)
    path = tmp_path / "evil.pth"
    torch.save({"state_dict": {"x": torch.zeros(1)}, "payload": evil}, path)
    assert not marker.exists()
    with pytest.raises(CheckpointError, match="code"):
        load_official_checkpoint(path)
    with pytest.raises(CheckpointError):
        load_model(path)
    assert not marker.exists()


def test_missing_empty_and_truncated_files(tmp_path):
    missing = tmp_path / "nope.pth"
    with pytest.raises(CheckpointError, match="nope.pth"):
        load_official_checkpoint(missing)
    empty = tmp_path / "empty.pth"
    empty.write_bytes(b"")
    with pytest.raises(CheckpointError, match="empty.pth"):
        load_official_checkpoint(empty)
    good = tmp_path / "good.pth"
    save_model(hpcm.create_model("tiny"), good)
    truncated = tmp_path / "truncated.pth"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(CheckpointError, match="truncated.pth"):
        load_model(truncated)


def test_save_and_load_model_round_trip(tmp_path):
    torch.manual_seed(1)
    model = hpcm.create_model("tiny").eval()
    with torch.no_grad():
        model.adaptive_params_list[5].fill_(0.3)
    model.update()
    path = tmp_path / "sub" / "model.pt"
    save_model(model, path)
    assert [p.name for p in path.parent.iterdir()] == ["model.pt"]  # no temp file left behind
    raw = torch.load(path, map_location="cpu", weights_only=True)
    assert raw["format"] == "hpcm-tune-model" and raw["version"] == 1 and raw["config"]["name"] == "tiny"
    loaded = load_model(path).eval()
    assert loaded.config == model.config
    ref, got = model.state_dict(), loaded.state_dict()
    assert ref.keys() == got.keys() and all(torch.equal(ref[k], got[k]) for k in ref)
    x = torch.rand(1, 3, 128, 128)
    with torch.no_grad():
        assert torch.equal(model(x)["x_hat"], loaded(x)["x_hat"])


def test_load_model_accepts_training_checkpoints_and_refuses_other_presets():
    model = hpcm.create_model("tiny")
    ckpt = {"config": dataclasses.asdict(model.config), "state_dict": model.state_dict(), "optimizer": {}, "epoch": 7}
    assert load_model(ckpt).config.name == "tiny"
    with pytest.raises(CheckpointError, match="missing keys|unexpected keys|wrong shapes") as err:
        load_model(ckpt, config="base")
    assert "tiny" in str(err.value)
    with pytest.raises(CheckpointError, match="load_official_checkpoint"):
        load_model({"state_dict": model.state_dict()})


# -- training checkpoints and files that are no checkpoint ------------------------------------
@pytest.fixture(scope="module")
def trial_state_file(tmp_path_factory, pretrained_tiny_path) -> Path:
    """A real trial state (trainables.trial.save_state of a FineTuner) of the pre-trained tiny."""
    from trainables.data import ImageFolderDataset, bundled_photos
    from trainables.finetune import FineTuner
    from trainables.spec import FineTuneConfig
    from trainables.trial import save_state

    photos = ImageFolderDataset(bundled_photos("val")[:1], mode="val")
    tuner = FineTuner(load_model(pretrained_tiny_path), FineTuneConfig(), photos, photos,
                      torch.device("cpu"))
    folder = tmp_path_factory.mktemp("trial") / "checkpoint_000000"
    return save_state({"trainer": tuner.state_dict(), "patience": {}, "best": {}}, folder)


def test_load_model_reads_trial_states_and_trainer_states(trial_state_file, pretrained_tiny_path):
    expected = load_model(pretrained_tiny_path).state_dict()
    state = torch.load(trial_state_file, weights_only=True)
    for source in (trial_state_file, state, state["trainer"]):
        got = load_model(source).state_dict()
        assert got.keys() == expected.keys()
        assert all(torch.equal(got[k], expected[k]) for k in expected)


def test_weights_and_training_state_of_the_projects_files(trial_state_file, tmp_path,
                                                          pretrained_tiny_path):
    """save_weights / read_weights are the one writer / reader of the model format; a trial
    state yields its weights and its fine-tuner state, a model file its weights only."""
    config, weights = hpcm.read_weights(trial_state_file)
    assert config == hpcm.PRESETS["tiny"]
    path = hpcm.save_weights(dataclasses.asdict(config), weights, tmp_path / "best_s1.pt")
    again_config, again = hpcm.read_weights(path)
    assert again_config == config and all(torch.equal(again[k], weights[k]) for k in weights)
    assert torch.load(path, weights_only=True)["format"] == "hpcm-tune-model"
    trainer = hpcm.training_state(torch.load(trial_state_file, weights_only=True))
    assert trainer is not None and trainer["finetune_config"]["lmbda"] > 0
    assert hpcm.training_state(torch.load(path, weights_only=True)) is None
    raw = torch.load(path, weights_only=True)
    with pytest.raises(CheckpointError, match="version 2; expected 'hpcm-tune-model' version 1"):
        hpcm.read_weights(dict(raw, version=2))


def test_a_failed_checkpoint_write_leaves_the_earlier_file(tmp_path):
    """A save that fails midway leaves the earlier file whole and no temporary file; a
    folder that cannot be made is a WriteError (a full disk: tests/reliability)."""
    from hpcm_tune.errors import WriteError

    path = hpcm.write_checkpoint_file({"w": torch.ones(3)}, tmp_path / "state.pt")
    before = path.read_bytes()
    import pickle

    with pytest.raises((AttributeError, pickle.PicklingError)):  # a bug, not a full disk
        hpcm.write_checkpoint_file({"w": torch.ones(3), "f": lambda: 0}, path)
    assert path.read_bytes() == before and [p.name for p in tmp_path.iterdir()] == ["state.pt"]
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("")
    with pytest.raises(WriteError, match=f"cannot write {blocker / 'state.pt'} "):
        hpcm.write_checkpoint_file({"w": torch.ones(3)}, blocker / "state.pt")


def test_project_checkpoints_given_as_official_say_so(trial_state_file, pretrained_tiny_path):
    with pytest.raises(CheckpointError, match="is a hpcm-tune training checkpoint") as err:
        load_official_checkpoint(trial_state_file, "base")
    assert "drop --official" in str(err.value) and "not tensors" not in str(err.value)
    with pytest.raises(CheckpointError, match="is a hpcm-tune model file"):
        load_official_checkpoint(pretrained_tiny_path, "base")


@pytest.mark.parametrize("fmt, kind", [("PNG", "a PNG image"), ("JPEG", "a JPEG image"),
                                       ("GIF", "a GIF image")])
def test_an_image_file_is_no_checkpoint(fmt, kind, tmp_path):
    from PIL import Image

    path = tmp_path / f"photo.{fmt.lower()}"
    Image.new("RGB", (32, 32), (200, 30, 30)).save(path, format=fmt)
    for loader in (load_model, load_official_checkpoint, hpcm.read_checkpoint_file):
        with pytest.raises(CheckpointError) as err:
            loader(path)
        message = str(err.value)
        assert f"is not a checkpoint: it is {kind}" in message and "accepted:" in message
        assert "weights_only" not in message and "Python objects" not in message


def test_a_code_carrying_file_names_what_it_would_run_without_unsafe_advice(tmp_path):
    marker = tmp_path / "pwned"
    evil = _Evil()
    evil.marker = str(marker)
    path = tmp_path / "evil.pt"
    torch.save({"state_dict": {}, "payload": evil}, path)
    with pytest.raises(CheckpointError) as err:
        hpcm.read_checkpoint_file(path)
    message = str(err.value)
    assert "refusing to unpickle" in message and "posix.system" in message
    assert "weights_only" not in message and "\n" not in message
    assert not marker.exists()
