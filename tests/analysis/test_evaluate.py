"""Real-bitstream evaluation of the pre-trained tiny model."""

from __future__ import annotations

import pytest
import hpcm

from analysis.evaluate import code_image, evaluate_model, load, resolve_checkpoint
from trainables.data import bundled_photos, load_rgb


@pytest.fixture(scope="module")
def tiny(pretrained_tiny_path):
    return load(resolve_checkpoint(pretrained_tiny_path))


def test_bits_are_the_bitstream_length_and_decoding_matches(tiny):
    image = load_rgb(bundled_photos("val")[0])[:, 100:292, 50:290]  # 192 x 240: padded
    coded = code_image(tiny, image)
    assert coded["bits"] == 8 * sum(len(s) for group in coded["strings"] for s in group)
    assert coded["bpp"] == coded["bits"] / (192 * 240)
    # The estimate is close to the real rate; the decoded image is a real reconstruction.
    assert abs(coded["bits_gap_pct"]) < 3
    assert 12 < coded["psnr"] < 40  # the 12-epoch test model is weak
    padded, _ = hpcm.pad_to_multiple(image[None], tiny.config.pad_multiple)
    assert padded.shape[-2:] != image.shape[-2:]  # padding is coded, not counted as pixels
    again = tiny.compress(padded)
    assert 8 * sum(len(s) for g in again["strings"] for s in g) == coded["bits"]


def test_evaluate_model_rows(tiny):
    image = load_rgb(bundled_photos("val")[0])[:, :128, :128]
    df = evaluate_model(tiny, {"crop": image}, curve="hpcm", label="tiny")
    assert list(df["image"]) == ["crop"] and "strings" not in df
    assert df.loc[0, "bits"] == code_image(tiny, image)["bits"]


def test_resolve_checkpoint_refuses_missing_paths(tmp_path):
    with pytest.raises(ValueError, match="no such checkpoint"):
        resolve_checkpoint(tmp_path / "nope.pt")
    with pytest.raises(ValueError, match="without"):
        resolve_checkpoint(tmp_path)


def test_ms_ssim_is_the_mean_over_the_images_where_it_is_defined(tiny):
    from analysis.evaluate import rd_points

    photo = load_rgb(bundled_photos("val")[0])
    images = {"small": photo[:, :128, :128], "big": photo[:, 100:292, 50:290]}  # 128 px: none
    per_image = evaluate_model(tiny, images, curve="hpcm", label="tiny")
    big = per_image.set_index("image").loc["big", "ms_ssim"]
    assert per_image.set_index("image")["ms_ssim"].isna().tolist() == [True, False]
    point = rd_points(per_image, ["curve", "label"]).iloc[0]
    assert point["images"] == 2 and point["ms_ssim_images"] == 1
    assert point["ms_ssim"] == pytest.approx(big)


def test_resolve_checkpoint_names_what_a_folder_holds(tmp_path, pretrained_tiny_path):
    import shutil

    out = tmp_path / "ft"
    (out / "latest").mkdir(parents=True)
    shutil.copy(pretrained_tiny_path, out / "latest" / "trial_state.pt")
    assert resolve_checkpoint(out).path == str((out / "latest" / "trial_state.pt").resolve())
    sweep = tmp_path / "sweep"
    for trial in ("trial_a", "trial_b"):
        (sweep / trial).mkdir(parents=True)
    (sweep / "hpcm_tune_experiment.json").write_text("{}")
    with pytest.raises(ValueError, match="is a sweep with 2 trials, not one checkpoint") as err:
        resolve_checkpoint(sweep)
    assert str(sweep / "trial_a") in str(err.value)


def _tree(root):
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file()}


def test_evaluate_refuses_to_overwrite_an_earlier_evaluation(tmp_path, pretrained_tiny_path,
                                                             capsys, caplog):
    import json
    import logging
    import shutil

    import tune_main

    checkpoint = shutil.copy(pretrained_tiny_path, tmp_path / "model.pt")
    data = tmp_path / "photos"
    data.mkdir()
    shutil.copy(bundled_photos("val")[1], data / "rocket.png")  # 640 x 427
    argv = ["evaluate", str(checkpoint), "--data", str(data), "--codecs", "none",
            "--max-side", "320"]
    with caplog.at_level(logging.INFO):
        assert tune_main.main(argv) == 0
    assert any("--max-side 320: downsized 1 image(s)" in r.getMessage() for r in caplog.records)
    out = tmp_path / "evaluation"  # the default: next to the checkpoint
    meta = json.loads((out / "evaluation.json").read_text())
    assert meta["images"] == {"rocket": [214, 320]} and meta["max_side"] == 320
    capsys.readouterr()
    before = _tree(out)
    written = (out / "evaluation.json").stat().st_mtime_ns

    assert tune_main.main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("error: ") and sum(line.startswith("error: ") for line in err) == 1
    assert f"{out} already holds an evaluation" in err[-1] and "--overwrite" in err[-1]
    assert _tree(out) == before

    (out / "anchors_per_image.csv").write_text("from an earlier run with codecs\n")
    assert tune_main.main(argv + ["--overwrite"]) == 0
    assert not (out / "anchors_per_image.csv").exists()  # nothing of the earlier run is left
    assert (out / "evaluation.json").stat().st_mtime_ns > written


def test_the_evaluation_table_gives_a_lambda_in_full():
    # The demo's lambda, 0.0003, read "0.000" at the tables' usual 3 decimals.
    import pandas as pd

    from analysis.evaluate import RD_DIGITS, markdown_table

    table = markdown_table(pd.DataFrame({"lmbda": [0.0003], "bpp": [0.123456]}), RD_DIGITS)
    assert table.splitlines()[-1] == "| 0.0003 | 0.1235 |"
