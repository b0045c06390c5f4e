"""Lattice geometry: shares, step masks and equality with the official masked_select layout."""

from __future__ import annotations

import pytest
import torch

from hpcm import lattices, scale_labels
from tests.hpcm.helpers import step_position_masks


def _official_style_extract(x: torch.Tensor, phases, step: int) -> torch.Tensor:
    """Reference: the official masked_select per channel group, with masks built by loops."""
    b, ch, h, w = x.shape
    n = len(phases)
    size = ch // n
    out = []
    for g, (r, c) in enumerate(phases):
        mask = torch.zeros(h, w, dtype=torch.bool)
        for i in range(h):
            for j in range(w):
                mask[i, j] = (i % step, j % step) == (r, c)
        part = x[:, g * size : (g + 1) * size]
        out.append(part.masked_select(mask.expand_as(part)).view(b, size, h // step, w // step))
    return torch.cat(out, dim=1)


@pytest.mark.parametrize("channels,size", [(64, 8), (64, 16), (320, 16)])
def test_scale_label_shares(channels, size):
    labels = scale_labels(channels, size, size)
    assert labels.shape == (channels, size, size) and labels.dtype == torch.long
    total = labels.numel()
    assert (labels == 1).sum().item() * 16 == total
    assert (labels == 2).sum().item() * 16 == 3 * total
    assert (labels == 3).sum().item() * 4 == 3 * total


def test_extraction_matches_masked_select_order():
    x = torch.arange(2 * 64 * 16 * 16, dtype=torch.float32).view(2, 64, 16, 16)
    ref_s2 = _official_style_extract(x, lattices.S2_PHASES, 2)
    assert torch.equal(lattices.to_s2(x), ref_s2)
    ref_s1 = _official_style_extract(ref_s2, lattices.S1_PHASES, 2)
    assert torch.equal(lattices.to_s1(ref_s2), ref_s1)
    # Inverse placement puts every value back where it came from.
    assert torch.equal(lattices.from_s2(ref_s2), x * (lattices.from_s2(torch.ones_like(ref_s2)) > 0))


def test_step_masks_partition_y_in_scale_order():
    ch, h, w = 64, 16, 16
    steps = step_position_masks(ch, h, w)
    assert len(steps) == 11
    stacked = torch.stack(steps).int()
    assert torch.equal(stacked.sum(0), torch.ones(ch, h, w, dtype=torch.int))  # disjoint cover
    labels = scale_labels(ch, h, w)
    expected_label = [1] * 2 + [2] * 3 + [3] * 6
    for mask, label in zip(steps, expected_label):
        assert mask.any() and bool((labels[mask] == label).all())
    # Every step of a scale codes the same number of elements.
    counts = [int(m.sum()) for m in steps]
    assert counts[:2] == [ch * h * w // 32] * 2
    assert counts[2:5] == [ch * h * w // 16] * 3
    assert counts[5:] == [ch * h * w // 8] * 6


def test_s1_lattice_is_s2_lattice_subset_and_labels_follow_extraction():
    ch, h, w = 64, 16, 16
    ids = torch.arange(ch * h * w, dtype=torch.float32).view(1, ch, h, w) + 1
    s1_ids = lattices.to_s1(lattices.to_s2(ids)).long().flatten() - 1
    s2_ids = lattices.to_s2(ids).long().flatten() - 1
    labels = scale_labels(ch, h, w).flatten()
    assert bool((labels[s1_ids] == 1).all())
    assert bool((labels[s2_ids] <= 2).all())
    assert (labels <= 2).sum() == s2_ids.numel()


def test_s2_hyper_reproduces_official_placement_quirk():
    ch, h, w = 64, 16, 16
    params = torch.randn(2, ch, h, w)
    # Official: values on the s2 lattice minus the position get_mask_for_s1 marks (per group of
    # C/8 channels) fill, in row-major order, the s2-grid positions that are not s1.
    official_s1_pos = [(0, 0), (1, 1), (0, 1), (1, 0), (0, 2), (1, 3), (0, 3), (1, 2)]
    s2_mask = lattices.from_s2(torch.ones(1, ch, h // 2, w // 2))[0].bool()
    s1_mask = torch.zeros(ch, h, w, dtype=torch.bool)
    for g, (r, c) in enumerate(official_s1_pos):
        s1_mask[g * ch // 8 : (g + 1) * ch // 8, r::4, c::4] = True
    rec_s1 = lattices.from_s1(torch.ones(1, ch, h // 4, w // 4))[0].bool()
    expected = torch.zeros(2, ch, h // 2, w // 2)
    expected[:, ~rec_s1] = params[:, s2_mask & ~s1_mask]
    got = lattices.s2_hyper(params)
    assert torch.equal(got, expected)
    # For the first two groups the placement is the natural one; for the others it is not.
    natural = lattices.to_s2(params) * ~rec_s1
    quarter = ch // 4
    assert torch.equal(got[:, :quarter], natural[:, :quarter])
    assert not torch.equal(got[:, quarter:], natural[:, quarter:])


def test_s3_hyper_zeroes_s2_lattice():
    params = torch.randn(1, 64, 8, 8)
    out = lattices.s3_hyper(params)
    labels = scale_labels(64, 8, 8)[None]
    assert torch.equal(out[labels == 3], params[labels == 3])
    assert bool((out[labels < 3] == 0).all())


def test_sizes_that_break_the_lattice_are_rejected():
    with pytest.raises(ValueError):
        scale_labels(64, 12, 16)
    with pytest.raises(ValueError):
        scale_labels(60, 16, 16)
