"""Tests for trainables.data on the real bundled photos and real files on disk."""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from trainables import data
from trainables.data import (
    BUNDLED_SIZES,
    BUNDLED_SPLIT,
    DataError,
    ImageFolderDataset,
    bundled_photos,
    default_datasets,
    list_images,
    load_rgb,
    make_loader,
)


@pytest.fixture(scope="module")
def bundled_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One materialisation of the bundled photos shared by the module (it takes ~1 s)."""
    cache = tmp_path_factory.mktemp("cache")
    for split in BUNDLED_SPLIT:
        bundled_photos(split, cache_dir=cache)
    return cache


@pytest.fixture(autouse=True)
def _cache_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    # Never write into the real home directory.
    monkeypatch.setenv("HPCM_TUNE_CACHE", str(tmp_path / "env-cache"))


def _photo(bundled_dir: Path, name: str) -> Path:
    split = "val" if name in BUNDLED_SPLIT["val"] else "train"
    return bundled_dir / "bundled" / split / f"{name}.png"


def _chw(img: Image.Image) -> torch.Tensor:
    """Pillow image -> (3, H, W) uint8 tensor (np.array copies Pillow's read-only buffer)."""
    return torch.from_numpy(np.array(img.convert("RGB"))).permute(2, 0, 1)


def _copy_photo(src: Path, dst: Path, size: tuple[int, int] | None = None, fmt: str = "PNG") -> Path:
    img = Image.open(src).convert("RGB")
    if size is not None:
        img = img.resize(size)
    img.save(dst, format=fmt)
    return dst


# --- bundled photos -------------------------------------------------------------------------


def test_bundled_photos_materialise_into_env_cache(tmp_path: Path) -> None:
    val = bundled_photos("val")
    assert val == [tmp_path / "env-cache" / "bundled" / "val" / f"{n}.png" for n in BUNDLED_SPLIT["val"]]
    assert all(p.is_file() for p in val)
    # The atomic write leaves no temp file behind.
    assert sorted(p.name for p in val[0].parent.iterdir()) == sorted(p.name for p in val)


def test_bundled_photos_are_real_rgb_photos_of_expected_size(bundled_dir: Path) -> None:
    for split, names in BUNDLED_SPLIT.items():
        for path, name in zip(bundled_photos(split, bundled_dir), names):
            with Image.open(path) as img:
                assert img.format == "PNG" and img.mode == "RGB", path
                assert img.size == BUNDLED_SIZES[name], path
                arr = np.asarray(img).astype(np.float64)
            # Natural colour photos: the channels differ (not greyscale) and values span a wide range.
            assert np.abs(arr[..., 0] - arr[..., 1]).mean() > 2.0, path
            assert arr.std() > 30.0 and arr.max() - arr.min() > 200, path


def test_bundled_pixels_match_their_package_source(bundled_dir: Path) -> None:
    import skimage.data
    from sklearn.datasets import load_sample_image

    assert np.array_equal(np.asarray(Image.open(_photo(bundled_dir, "astronaut"))), skimage.data.astronaut())
    china = np.asarray(Image.open(_photo(bundled_dir, "china")))
    assert np.array_equal(china, load_sample_image("china.jpg"))
    right = skimage.data.stereo_motorcycle()[1]
    assert np.array_equal(np.asarray(Image.open(_photo(bundled_dir, "motorcycle_right"))), right)


def test_bundled_split_is_disjoint_and_stable(bundled_dir: Path) -> None:
    train, val = bundled_photos("train", bundled_dir), bundled_photos("val", bundled_dir)
    assert {p.stem for p in train}.isdisjoint({p.stem for p in val})
    assert {p.stem for p in train} | {p.stem for p in val} == set(BUNDLED_SIZES)
    assert [p.stem for p in val] == ["astronaut", "rocket"]
    mtimes = [p.stat().st_mtime_ns for p in train + val]
    # A second call reuses the cached files instead of rewriting them.
    assert bundled_photos("train", bundled_dir) == train
    assert [p.stat().st_mtime_ns for p in train + val] == mtimes


def test_bundled_photos_rejects_unknown_split() -> None:
    with pytest.raises(DataError, match="test"):
        bundled_photos("test")


def test_default_datasets(bundled_dir: Path) -> None:
    train_ds, val_ds = default_datasets(crop_size=256, crops_per_image=3, seed=1, cache_dir=bundled_dir)
    assert len(train_ds) == 3 * len(BUNDLED_SPLIT["train"])
    assert len(val_ds) == len(BUNDLED_SPLIT["val"])
    assert train_ds[5].shape == (3, 256, 256)
    assert val_ds[1].shape == (3, 427, 640)


# --- crops ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def train_ds(bundled_dir: Path) -> ImageFolderDataset:
    return ImageFolderDataset(
        bundled_photos("train", bundled_dir), mode="train", crop_size=128, crops_per_image=8, seed=7
    )


def test_crops_have_right_shape_range_and_match_source(train_ds: ImageFolderDataset) -> None:
    train_ds.set_epoch(0)
    assert len(train_ds) == 8 * len(BUNDLED_SPLIT["train"])
    for index in range(0, len(train_ds), 5):
        crop = train_ds[index]
        assert crop.shape == (3, 128, 128) and crop.dtype == torch.float32
        assert 0.0 <= crop.min() and crop.max() <= 1.0
        p = train_ds.crop_params(index)
        assert p.image_index == index // 8
        full = load_rgb(train_ds.paths[p.image_index])
        assert 0 <= p.top <= full.shape[1] - 128 and 0 <= p.left <= full.shape[2] - 128
        expected = full[:, p.top : p.top + 128, p.left : p.left + 128]
        if p.hflip:
            expected = expected.flip(2)
        if p.vflip:
            expected = expected.flip(1)
        assert torch.equal(crop, expected)


def test_same_seed_epoch_index_gives_same_crop(bundled_dir: Path, train_ds: ImageFolderDataset) -> None:
    other = ImageFolderDataset(
        bundled_photos("train", bundled_dir), mode="train", crop_size=128, crops_per_image=8, seed=7
    )
    train_ds.set_epoch(3)
    other.set_epoch(3)
    for index in (0, 9, 47):
        assert torch.equal(train_ds[index], other[index])
    # Global RNG state plays no part.
    torch.manual_seed(123)
    np.random.seed(123)
    first = train_ds[9]
    torch.manual_seed(456)
    np.random.seed(456)
    assert torch.equal(first, train_ds[9])


def test_other_epoch_or_seed_gives_other_crops(bundled_dir: Path, train_ds: ImageFolderDataset) -> None:
    train_ds.set_epoch(0)
    epoch0 = [train_ds.crop_params(i) for i in range(len(train_ds))]
    train_ds.set_epoch(1)
    epoch1 = [train_ds.crop_params(i) for i in range(len(train_ds))]
    assert sum(a != b for a, b in zip(epoch0, epoch1)) > 0.9 * len(epoch0)
    assert not torch.equal(train_ds[0], ImageFolderDataset(
        bundled_photos("train", bundled_dir), mode="train", crop_size=128, crops_per_image=8, seed=8
    )[0])
    # Crops of one image differ within an epoch, too.
    assert len({(p.top, p.left) for p in epoch0[:8]}) == 8


def test_both_flips_happen(train_ds: ImageFolderDataset) -> None:
    params = []
    for epoch in range(3):
        train_ds.set_epoch(epoch)
        params += [train_ds.crop_params(i) for i in range(len(train_ds))]
    for attr in ("hflip", "vflip"):
        share = sum(getattr(p, attr) for p in params) / len(params)
        assert 0.3 < share < 0.7, (attr, share)
    combos = {(p.hflip, p.vflip) for p in params}
    assert combos == {(False, False), (False, True), (True, False), (True, True)}


def test_set_epoch_rejects_negative(train_ds: ImageFolderDataset) -> None:
    with pytest.raises(DataError):
        train_ds.set_epoch(-1)


# --- validation mode ------------------------------------------------------------------------


def test_val_returns_full_image_unchanged(bundled_dir: Path) -> None:
    paths = bundled_photos("val", bundled_dir)
    val_ds = ImageFolderDataset(paths, mode="val", crop_size=None, seed=3)
    val_ds.set_epoch(5)
    assert len(val_ds) == len(paths)
    for i, path in enumerate(paths):
        item = val_ds[i]
        expected = _chw(Image.open(path))
        assert item.dtype == torch.float32 and item.shape == expected.shape
        assert torch.equal(torch.round(item * 255).to(torch.uint8), expected)
    assert torch.equal(val_ds[0], val_ds[0])
    with pytest.raises(IndexError):
        val_ds[len(paths)]


# --- bad inputs -----------------------------------------------------------------------------


def test_corrupt_files_are_skipped_with_one_warning(
    bundled_dir: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    folder = tmp_path / "mixed"
    (folder / "sub").mkdir(parents=True)
    _copy_photo(_photo(bundled_dir, "coffee"), folder / "a.png")
    _copy_photo(_photo(bundled_dir, "chelsea"), folder / "sub" / "b.JPG", fmt="JPEG")
    (folder / "corrupt.png").write_bytes(np.random.default_rng(0).bytes(5000))
    jpeg = _copy_photo(_photo(bundled_dir, "rocket"), tmp_path / "full.jpg", fmt="JPEG").read_bytes()
    (folder / "truncated.jpg").write_bytes(jpeg[: len(jpeg) // 2])
    (folder / "notes.txt").write_text("not an image")

    with caplog.at_level(logging.WARNING, logger=data.__name__):
        ds = ImageFolderDataset(folder, mode="train", crop_size=64, crops_per_image=2)
    assert ds.skipped == 2 and ds.too_small == 0
    assert [p.name for p in ds.paths] == ["a.png", "b.JPG"]
    assert len(ds) == 4
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "2 unreadable" in warnings[0].getMessage()
    assert "corrupt.png" in warnings[0].getMessage() and "truncated.jpg" in warnings[0].getMessage()


def test_only_corrupt_files_raise(tmp_path: Path) -> None:
    (tmp_path / "x.png").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(200))
    (tmp_path / "y.jpeg").write_bytes(np.random.default_rng(1).bytes(300))
    with pytest.raises(DataError, match="none of the 2 image files"):
        ImageFolderDataset(tmp_path, mode="val")
    with pytest.raises(DataError, match="cannot read image"):
        load_rgb(tmp_path / "x.png")


def test_missing_not_folder_and_empty_folder_raise(tmp_path: Path) -> None:
    missing = tmp_path / "nope"
    with pytest.raises(DataError, match="does not exist") as err:
        list_images(missing)
    assert str(missing) in str(err.value)
    afile = tmp_path / "file.png"
    afile.write_bytes(b"")
    with pytest.raises(DataError, match="not a folder"):
        ImageFolderDataset(afile)
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "readme.txt").write_text("no images")
    with pytest.raises(DataError, match="no .png") as err:
        ImageFolderDataset(empty)
    assert str(empty) in str(err.value)
    with pytest.raises(DataError, match="empty list"):
        ImageFolderDataset([])


def test_list_images_is_sorted_recursive_and_case_insensitive(tmp_path: Path) -> None:
    (tmp_path / "d").mkdir()
    for name in ("b.PNG", "a.jpeg", "d/c.Jpg", "e.gif", "f.txt"):
        (tmp_path / name).write_bytes(b"")
    found = [p.relative_to(tmp_path).as_posix() for p in list_images(tmp_path)]
    assert found == ["a.jpeg", "b.PNG", "d/c.Jpg"]


def test_images_smaller_than_crop_are_skipped(
    bundled_dir: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    src = _photo(bundled_dir, "coffee")
    _copy_photo(src, tmp_path / "big.png")
    _copy_photo(src, tmp_path / "narrow.png", size=(100, 400))  # tall but too narrow
    _copy_photo(src, tmp_path / "tiny.png", size=(50, 40))
    with caplog.at_level(logging.WARNING, logger=data.__name__):
        ds = ImageFolderDataset(tmp_path, mode="train", crop_size=256)
    assert ds.too_small == 2 and ds.skipped == 0
    assert [p.name for p in ds.paths] == ["big.png"]
    assert any("2 image(s) smaller than crop_size=256" in r.getMessage() for r in caplog.records)
    # Validation keeps every image whatever its size.
    assert len(ImageFolderDataset(tmp_path, mode="val")) == 3


def test_all_too_small_raises_with_needed_size(bundled_dir: Path, tmp_path: Path) -> None:
    _copy_photo(_photo(bundled_dir, "coffee"), tmp_path / "small.png", size=(300, 200))
    with pytest.raises(DataError, match="at least 256x256") as err:
        ImageFolderDataset(tmp_path, mode="train", crop_size=256)
    assert "200" in str(err.value)


def test_the_early_folder_check_refuses_as_the_dataset_does(bundled_dir: Path,
                                                            tmp_path: Path) -> None:
    """``run`` checks the folders before any trial starts; a trial would fail the same way."""
    unreadable, small, usable = tmp_path / "unreadable", tmp_path / "small", tmp_path / "ok"
    for folder in (unreadable, small, usable):
        folder.mkdir()
    (unreadable / "x.png").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(200))
    _copy_photo(_photo(bundled_dir, "coffee"), small / "a.png", size=(300, 200))
    _copy_photo(_photo(bundled_dir, "coffee"), small / "b.png", size=(120, 250))
    _copy_photo(_photo(bundled_dir, "coffee"), usable / "a.png", size=(300, 200))
    (usable / "x.png").write_bytes((unreadable / "x.png").read_bytes())
    for folder, crop_size in ((unreadable, None), (unreadable, 64), (small, 256)):
        with pytest.raises(DataError) as early:
            data.check_image_folder(folder, crop_size)
        with pytest.raises(DataError) as late:
            ImageFolderDataset(folder, mode="train" if crop_size else "val", crop_size=crop_size)
        assert str(early.value) == str(late.value)
    assert "largest short side found: 200" in str(early.value)
    data.check_image_folder(usable, 128)  # one readable image that holds a crop: enough
    data.check_image_folder(small)


def test_grayscale_rgba_palette_and_16bit_become_rgb(bundled_dir: Path, tmp_path: Path) -> None:
    rgb = Image.open(_photo(bundled_dir, "chelsea")).convert("RGB")
    gray = rgb.convert("L")
    gray.save(tmp_path / "gray.png")
    rgba = rgb.copy()
    rgba.putalpha(128)
    rgba.save(tmp_path / "rgba.png")
    palette = rgb.quantize(256)
    palette.save(tmp_path / "palette.png")
    rgb.convert("CMYK").save(tmp_path / "cmyk.jpg")
    gray16 = np.asarray(gray).astype(np.uint16) * 257  # exact 8 -> 16 bit scaling
    Image.fromarray(gray16).save(tmp_path / "gray16.png")

    ds = ImageFolderDataset(tmp_path, mode="val")
    assert ds.skipped == 0
    items = {p.stem: ds[i] for i, p in enumerate(ds.paths)}
    for name, item in items.items():
        assert item.shape == (3, 300, 451), name
    gray_t = torch.from_numpy(np.array(gray)).float() / 255
    for name in ("gray", "gray16"):
        assert torch.allclose(items[name], gray_t.expand(3, -1, -1), atol=1e-6), name
    rgb_t = _chw(rgb).float() / 255
    assert torch.equal(items["rgba"], rgb_t)  # alpha dropped, colour kept
    palette_t = _chw(palette).float() / 255
    assert torch.equal(items["palette"], palette_t)
    assert (items["cmyk"] - rgb_t).abs().mean() < 0.05
    assert (items["rgba"][0] - items["rgba"][1]).abs().mean() > 0.01  # still colour


# --- loader ---------------------------------------------------------------------------------


def _epoch_batches(bundled_dir: Path, epochs: list[int], num_workers: int = 0) -> list[list[torch.Tensor]]:
    ds = ImageFolderDataset(
        bundled_photos("train", bundled_dir), mode="train", crop_size=64, crops_per_image=2, seed=11
    )
    loader = make_loader(ds, batch_size=4, shuffle=True, seed=11, pin_memory=False, num_workers=num_workers)
    out = []
    for epoch in epochs:
        loader.set_epoch(epoch)
        out.append(list(loader))
    return out


def test_loader_is_deterministic_and_resumable(bundled_dir: Path) -> None:
    full = _epoch_batches(bundled_dir, [0, 1, 2])
    again = _epoch_batches(bundled_dir, [0, 1, 2])
    resumed = _epoch_batches(bundled_dir, [2])  # a run resumed at epoch 2
    workers = _epoch_batches(bundled_dir, [0, 1], num_workers=2)  # worker processes change nothing
    for a, b in zip(full, again):
        assert len(a) == 3 and all(torch.equal(x, y) for x, y in zip(a, b))
    assert all(torch.equal(x, y) for x, y in zip(full[2], resumed[0]))
    for a, b in zip(full, workers):
        assert all(torch.equal(x, y) for x, y in zip(a, b))
    assert not torch.equal(full[0][0], full[1][0])
    assert full[0][0].shape == (4, 3, 64, 64) and full[0][-1].shape == (4, 3, 64, 64)


def test_loader_order_and_global_rng(bundled_dir: Path) -> None:
    ds = ImageFolderDataset(bundled_photos("val", bundled_dir), mode="val")
    plain = make_loader(ds, batch_size=1, shuffle=False, seed=0, pin_memory=False)
    assert [b.shape[-2:] for b in plain] == [(512, 512), (427, 640)]
    sampler = make_loader(ds, batch_size=1, shuffle=True, seed=0, pin_memory=False).sampler
    orders = set()
    for epoch in range(8):
        sampler.set_epoch(epoch)
        orders.add(tuple(sampler))
    assert orders == {(0, 1), (1, 0)}
    # Iterating the loader does not consume the global torch RNG.
    torch.manual_seed(0)
    expected = torch.rand(1)
    torch.manual_seed(0)
    list(plain)
    assert torch.equal(torch.rand(1), expected)


# --- folders that cannot be read, other formats, animations, large images ------------------


def _list_images_as_unprivileged(folder: Path) -> str:
    """``list_images(folder)`` in a process that file permissions apply to (root passes them
    by its capabilities, so as root the process runs without them); returns the error
    message or 'ok'."""
    import subprocess
    import sys

    code = ("from trainables.data import DataError, list_images\n"
            "import sys\n"
            "try:\n    list_images(sys.argv[1])\nexcept DataError as e:\n    print(e)\n"
            "else:\n    print('ok')\n")
    root = Path(__file__).resolve().parents[2]
    command = [sys.executable, "-c", code, str(folder)]
    if os.geteuid() == 0:
        if shutil.which("setpriv") is None:
            pytest.skip("running as root without setpriv: permissions cannot be enforced")
        caps = "-dac_override,-dac_read_search"
        command = ["setpriv", "--bounding-set", caps, "--inh-caps", caps, *command]
    proc = subprocess.run(command, capture_output=True, text=True, cwd=root,
                          env=dict(os.environ, PYTHONPATH=str(root)), timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc.stdout.strip()


def test_a_folder_without_read_permission_says_it_cannot_be_read(bundled_dir: Path) -> None:
    import tempfile

    # Outside pytest's private tmp (mode 700), so that only the folder itself is closed.
    parent = Path(tempfile.mkdtemp(prefix="hpcm-perm-"))
    try:
        parent.chmod(0o755)
        folder = parent / "photos"
        folder.mkdir()
        _copy_photo(_photo(bundled_dir, "coffee"), folder / "a.png")
        assert _list_images_as_unprivileged(folder) == "ok"
        folder.chmod(0o000)
        message = _list_images_as_unprivileged(folder)
        assert message.startswith(f"cannot read image folder {folder}"), message
        assert "permission denied" in message and "put images there" not in message
    finally:
        (parent / "photos").chmod(0o755)
        shutil.rmtree(parent)


def test_files_of_other_formats_are_counted_and_named(
    bundled_dir: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    src = _photo(bundled_dir, "coffee")
    _copy_photo(src, tmp_path / "a.png")
    _copy_photo(src, tmp_path / "b.gif", fmt="GIF")
    _copy_photo(src, tmp_path / "c.webp", fmt="WEBP")
    (tmp_path / "d.txt").write_text("notes")
    with caplog.at_level(logging.INFO, logger=data.__name__):
        assert [p.name for p in list_images(tmp_path)] == ["a.png"]
    skipped = [r for r in caplog.records if "skipped 3 file(s)" in r.getMessage()]
    assert len(skipped) == 1 and skipped[0].levelno == logging.WARNING
    assert all(n in skipped[0].getMessage() for n in ("b.gif", "c.webp", "d.txt"))


def test_an_animated_png_gives_its_first_frame_with_a_warning(
    bundled_dir: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with Image.open(_photo(bundled_dir, "coffee")) as img:
        first = img.convert("RGB")
    second = first.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    first.save(tmp_path / "anim.png", save_all=True, append_images=[second], duration=100)
    with caplog.at_level(logging.WARNING, logger=data.__name__):
        ds = ImageFolderDataset(tmp_path, mode="val")
    assert torch.equal(torch.round(ds[0] * 255).to(torch.uint8), _chw(first))
    assert any("anim.png is animated (2 frames)" in r.getMessage() and "first frame"
               in r.getMessage() for r in caplog.records)


def test_max_side_downsizes_larger_validation_images_and_says_so(
    bundled_dir: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    _copy_photo(_photo(bundled_dir, "rocket"), tmp_path / "rocket.png")  # 640 x 427
    _copy_photo(_photo(bundled_dir, "coffee"), tmp_path / "small.png", size=(200, 150))
    with caplog.at_level(logging.INFO, logger=data.__name__):
        ds = ImageFolderDataset(tmp_path, mode="val", max_side=320)
    assert ds[0].shape == (3, 214, 320)  # rocket.png, aspect ratio kept
    assert ds[1].shape == (3, 150, 200)  # small.png untouched
    assert ds.downsized == {str(tmp_path / "rocket.png"): (640, 427)}
    assert any("--max-side 320: downsized 1 image(s)" in r.getMessage()
               and "rocket.png 640x427 -> 320x214" in r.getMessage() for r in caplog.records)
    assert load_rgb(tmp_path / "rocket.png", max_side=320).shape == (3, 214, 320)


def test_large_image_warning_estimates_memory_and_time() -> None:
    from trainables.data import large_image_warning

    warning = large_image_warning({"big.jpg": (6000, 4000), "small.png": (640, 480)}, "tiny")
    assert warning is not None
    assert "big.jpg is 6000x4000 (24.0 MP)" in warning
    assert "8.5 GiB of memory" in warning and "--max-side" in warning
    assert large_image_warning({"kodim01.png": (768, 512)}, "tiny") is None
    assert large_image_warning({"kodim01.png": (768, 512)}, "base") is None
    assert "the base model" in large_image_warning({"clic.png": (2560, 1920)}, "base")


def test_max_side_keeps_the_values_of_16_bit_images(bundled_dir: Path, tmp_path: Path) -> None:
    with Image.open(_photo(bundled_dir, "coffee")) as img:  # 600 x 400
        gray = np.asarray(img.convert("L"), dtype=np.uint16)
    Image.fromarray(gray * 257).save(tmp_path / "deep.png")  # 16-bit greyscale PNG
    with Image.open(tmp_path / "deep.png") as img:
        assert img.mode in ("I;16", "I")
    small = load_rgb(tmp_path / "deep.png", max_side=300)
    assert small.shape == (3, 200, 300)
    expected = np.asarray(Image.fromarray(gray.astype(np.uint8)).resize(
        (300, 200), Image.Resampling.LANCZOS), dtype=np.float64) / 255
    assert np.abs(small[0].numpy() - expected).mean() < 0.01
