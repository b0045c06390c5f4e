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
