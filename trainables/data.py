"""Images for fine-tuning and validating HPCM models, with reproducible random crops.

Training uses random ``crop_size`` crops with random horizontal and vertical flips; validation
uses whole images (the model side pads them to its multiple). Every image is returned as a
float32 tensor in [0, 1] with shape (3, H, W).

Images are decoded once when a dataset is built and kept in memory as uint8 tensors: the
bundled sets are a few megabytes, and decoding PNG/JPEG on every step would dominate a CPU run.
For a large folder of your own this costs 3 bytes per pixel of RAM.

The randomness of a crop depends only on ``(seed, epoch, index)``, never on the global
``random``/``numpy``/``torch`` state or on which worker process loads it, so a run is
deterministic on CPU and a run resumed at epoch ``e`` sees exactly the crops it would have seen.

Default data: real photos shipped inside pip packages (scikit-image and scikit-learn), written
once as PNG files into a cache folder; nothing is downloaded. No pip package ships Kodak, CLIC,
Tecnick or DIV2K (and the larger ``mvtb-data`` photo package is not a dependency): point
:class:`ImageFolderDataset` at your own folders for serious training or evaluation.
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Literal, NamedTuple

import numpy as np
import torch
from PIL import Image, ImageOps
from torch.utils.data import DataLoader, Dataset, Sampler

from hpcm_tune.errors import HpcmTuneError
from hpcm_tune.files import atomic_write, default_cache_dir

logger = logging.getLogger(__name__)

IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg"})

# Fixed split of the bundled photos. Validation gets two different kinds of scene: a studio
# portrait with saturated colours (astronaut) and an outdoor scene with sky and fine structure
# (rocket). The motorcycle stereo pair stays together in train, so no near-duplicate of a
# training photo is ever used for validation.
BUNDLED_SPLIT: dict[str, tuple[str, ...]] = {
    "train": (
        "chelsea",
        "coffee",
        "motorcycle_left",
        "motorcycle_right",
        "china",
        "flower",
    ),
    "val": ("astronaut", "rocket"),
}

# (width, height) of each bundled photo, as shipped by the packages.
BUNDLED_SIZES: dict[str, tuple[int, int]] = {
    "astronaut": (512, 512),
    "chelsea": (451, 300),
    "coffee": (600, 400),
    "rocket": (640, 427),
    "motorcycle_left": (741, 500),
    "motorcycle_right": (741, 500),
    "china": (640, 427),
    "flower": (640, 427),
}

# Pillow failures for unreadable files: OSError covers UnidentifiedImageError and truncated
# data; the others come from broken chunks / early EOF in some plugins and from oversized images.
_DECODE_ERRORS = (OSError, ValueError, SyntaxError, EOFError, Image.DecompressionBombError)


class DataError(HpcmTuneError, ValueError):
    """A data problem the user must fix (missing folder, no usable image, ...)."""


class CropParams(NamedTuple):
    """Where a training item is cut from its image and how it is flipped."""

    image_index: int
    top: int
    left: int
    hflip: bool
    vflip: bool


def _first_names(paths: Sequence[str | Path], limit: int = 5) -> str:
    names = ", ".join(str(p) for p in paths[:limit])
    return names + (f", ... ({len(paths)} in all)" if len(paths) > limit else "")


def list_images(folder: str | Path) -> list[Path]:
    """All PNG/JPEG files under ``folder`` (recursive, suffix case-insensitive), sorted.

    Files with other suffixes (``.gif``, ``.webp``, ...) are skipped with one warning that
    counts them; sub-folders that cannot be read are skipped with a warning.

    Raises:
        DataError: if ``folder`` does not exist, is not a folder, cannot be read, or holds no
            image file.
    """
    root = Path(folder).expanduser()
    if not root.exists():
        raise DataError(f"image folder {root} does not exist; pass an existing folder of PNG/JPEG files")
    if not root.is_dir():
        raise DataError(f"{root} is not a folder; pass a folder of PNG/JPEG files")
    if not os.access(root, os.R_OK | os.X_OK):
        raise DataError(f"cannot read image folder {root} (permission denied); make it "
                        "readable (chmod) or pass another folder")
    unreadable: list[str] = []
    paths: list[Path] = []
    others: list[Path] = []

    def refused(err: OSError) -> None:
        unreadable.append(f"{err.filename} ({err.strerror or err})")

    for dirpath, dirnames, filenames in os.walk(root, onerror=refused):
        dirnames.sort()
        for name in filenames:
            path = Path(dirpath) / name
            if not path.is_file():
                continue
            (paths if path.suffix.lower() in IMAGE_SUFFIXES else others).append(path)
    paths.sort()
    if unreadable:
        if not paths and any(u.startswith(f"{root} (") for u in unreadable):
            raise DataError(f"cannot read image folder {unreadable[0]}; make it readable "
                            "(chmod) or pass another folder")
        logger.warning("skipped %d sub-folder(s) of %s that cannot be read: %s",
                       len(unreadable), root, _first_names(unreadable))
    if others:
        # Images of other formats (.gif, .webp, .tif, ...) were probably meant to be used.
        images = Image.registered_extensions()
        level = logging.WARNING if any(p.suffix.lower() in images for p in others) else logging.INFO
        logger.log(level, "skipped %d file(s) in %s that are not .png/.jpg/.jpeg: %s",
                   len(others), root, _first_names(sorted(p.relative_to(root) for p in others)))
    if not paths:
        raise DataError(f"no .png/.jpg/.jpeg file in {root}; put images there or pass another folder")
    return paths


def check_image_folder(folder: str | Path, crop_size: int | None = None) -> None:
    """Fail fast (before any trial starts) unless ``folder`` holds a readable image at least
    ``crop_size`` on each side. Decodes images only until one fits.

    Raises:
        DataError: with the same messages as :class:`ImageFolderDataset`.
    """
    paths = list_images(folder)
    unreadable: list[str] = []
    short_sides: list[int] = []
    for path in paths:
        try:
            with Image.open(path) as img:
                img.load()
                short_side = min(img.size)
        except _DECODE_ERRORS as exc:
            unreadable.append(_unreadable(path, exc))
            continue
        if crop_size is None or short_side >= crop_size:
            return
        short_sides.append(short_side)
    _require_readable(str(folder), len(paths), unreadable)
    assert crop_size is not None  # else the first readable image returned
    _require_crop_fits(str(folder), short_sides, crop_size)


def _unreadable(path: str | Path, exc: BaseException) -> str:
    return f"{path} ({type(exc).__name__}: {exc})"


def _require_readable(where: str, total: int, unreadable: list[str]) -> None:
    """DataError unless some of the ``total`` image files in ``where`` could be decoded."""
    if len(unreadable) == total:
        raise DataError(
            f"none of the {total} image files in {where} could be read "
            f"(first: {unreadable[0]}); check that they are valid PNG/JPEG files")


def _require_crop_fits(where: str, short_sides: list[int], crop_size: int) -> None:
    """DataError unless one of the readable images (their ``short_sides``) holds a crop."""
    if not any(side >= crop_size for side in short_sides):
        raise DataError(
            f"all {len(short_sides)} readable images in {where} are smaller than "
            f"crop_size={crop_size}; training needs images of at least {crop_size}x{crop_size} "
            f"pixels (largest short side found: {max(short_sides)}); use a smaller crop_size "
            "or larger images")


def _decode_uint8(path: str | Path, max_side: int | None = None) -> torch.Tensor:
    """Decode an image file to a (3, H, W) uint8 RGB tensor; raises Pillow's errors as is.

    An animated image (APNG) gives its first frame, with a warning. With ``max_side``, an
    image whose longer side exceeds it is downsized (aspect ratio kept; the caller logs it).
    """
    with Image.open(path) as img:
        img.load()  # Image.open is lazy: force the decode so corrupt data fails here.
        frames = getattr(img, "n_frames", 1)
        if frames > 1:
            logger.warning("%s is animated (%d frames): only its first frame is used", path,
                           frames)
        # Camera JPEGs store rotation in EXIF; apply it so pixels match what viewers show.
        img = ImageOps.exif_transpose(img)
        if img.mode in ("I;16", "I;16L", "I;16B", "I;16N", "I"):
            # 16-bit greyscale (PNG opens as I;16 or I): scale to 8 bits, the models train on 8-bit data.
            gray = np.asarray(img, dtype=np.float64) * (255.0 / 65535.0)
            arr = np.repeat(np.clip(np.rint(gray), 0, 255).astype(np.uint8)[..., None], 3, axis=2)
        elif img.mode == "F":
            gray = np.clip(np.rint(np.asarray(img, dtype=np.float64) * 255.0), 0, 255)
            arr = np.repeat(gray.astype(np.uint8)[..., None], 3, axis=2)
        else:
            if img.mode == "P":
                # Going through RGBA avoids Pillow's warning for palettes with transparency.
                img = img.convert("RGBA")
            arr = np.asarray(img.convert("RGB"), dtype=np.uint8)  # drops alpha, converts L/CMYK/...
    if max_side is not None and max(arr.shape[:2]) > max_side:
        # Resized as 8-bit RGB, whatever the file's mode (16-bit, palette, CMYK, ...).
        rgb = Image.fromarray(np.ascontiguousarray(arr), "RGB")
        arr = np.asarray(rgb.resize(downsized_size(rgb.width, rgb.height, max_side),
                                    Image.Resampling.LANCZOS))
    # np.array copies: Pillow's buffers are read-only and torch wants writable memory.
    return torch.from_numpy(np.array(arr)).permute(2, 0, 1).contiguous()


def downsized_size(width: int, height: int, max_side: int) -> tuple[int, int]:
    """(width, height) scaled so that the longer side is ``max_side`` (unchanged if smaller)."""
    scale = max_side / max(width, height)
    if scale >= 1:
        return width, height
    return max(1, round(width * scale)), max(1, round(height * scale))


def image_sizes(paths: Sequence[str | Path]) -> dict[Path, tuple[int, int]]:
    """(width, height) of each readable image from its header alone (nothing decoded)."""
    sizes: dict[Path, tuple[int, int]] = {}
    for path in paths:
        try:
            with Image.open(path) as img:
                sizes[Path(path)] = img.size
        except _DECODE_ERRORS:
            continue  # reported when the image is decoded
    return sizes


def log_downsized(originals: dict[str, tuple[int, int]], max_side: int) -> None:
    """One log line for the images that ``max_side`` downsized: how many, the first few."""
    if originals:
        shown = [f"{name} {w}x{h} -> {'x'.join(map(str, downsized_size(w, h, max_side)))}"
                 for name, (w, h) in list(originals.items())[:5]]
        logger.info("--max-side %d: downsized %d image(s) larger than that: %s%s", max_side,
                    len(originals), ", ".join(shown), ", ..." if len(originals) > 5 else "")


# Memory (bytes per pixel) and time (seconds per pixel, 2 CPU cores) of one eval-mode pass
# of each preset on an image, measured on CPU with torch 2.14 (tiny from 1-4 MP images; base
# and large from 0.6 MP, and the README's model_speed figures).
EVAL_COST = {"tiny": (380, 1.8e-6), "base": (1300, 12e-6), "large": (1300, 16e-6)}
LARGE_IMAGE_BYTES = 4 * 2**30  # warn above this estimate


def large_image_warning(sizes: dict, preset: str, what: str = "validation image") -> str | None:
    """A warning with an estimate of memory and time when the largest of ``sizes`` (name ->
    (width, height)) needs more than :data:`LARGE_IMAGE_BYTES` in one pass of ``preset``."""
    if not sizes or preset not in EVAL_COST:
        return None
    name, (width, height) = max(sizes.items(), key=lambda kv: kv[1][0] * kv[1][1])
    per_pixel, seconds = EVAL_COST[preset]
    pixels = width * height
    if pixels * per_pixel <= LARGE_IMAGE_BYTES:
        return None
    bounded = int((LARGE_IMAGE_BYTES / per_pixel) ** 0.5) // 256 * 256
    return (f"{what} {name} is {width}x{height} ({pixels / 1e6:.1f} MP): one pass of the "
            f"{preset} model on it needs about {pixels * per_pixel / 2**30:.1f} GiB of memory "
            f"and ~{pixels * seconds:.0f} s on 2 CPU cores; pass --max-side {bounded} to "
            "downsize larger images")


def load_rgb(path: str | Path, max_side: int | None = None) -> torch.Tensor:
    """Load an image as a (3, H, W) float32 RGB tensor in [0, 1].

    Greyscale (L, LA, 16-bit), RGBA, palette and CMYK images are converted to RGB; alpha is
    dropped and 16-bit data is rounded to 8 bits. EXIF orientation is applied. With
    ``max_side``, a larger image is downsized so that its longer side is ``max_side``.

    Raises:
        DataError: if the file cannot be read or decoded.
    """
    try:
        pixels = _decode_uint8(path, max_side)
    except _DECODE_ERRORS as exc:
        raise DataError(f"cannot read image {path}: {exc}; replace or remove the file") from exc
    return pixels.float().div_(255.0)


def _item_seed(seed: int, epoch: int, index: int) -> int:
    """A 63-bit seed from (seed, epoch, index), stable across processes and Python versions."""
    digest = hashlib.blake2b(f"{seed}:{epoch}:{index}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") & (2**63 - 1)


class ImageFolderDataset(Dataset[torch.Tensor]):
    """Images from a folder (or a list of files) as float32 (3, H, W) tensors in [0, 1].

    ``mode="train"``: ``len = n_images * crops_per_image``; item ``i`` is a random
    ``crop_size`` x ``crop_size`` crop of image ``i // crops_per_image``, flipped horizontally
    and vertically each with probability 1/2. The crop depends only on ``(seed, epoch, i)``;
    call :meth:`set_epoch` at the start of every epoch.

    ``mode="val"``: one item per image, the whole image without augmentation.

    Unreadable files are skipped with one warning (count in ``skipped``); in train mode images
    smaller than the crop are skipped likewise (count in ``too_small``). All images are decoded
    once at construction and kept in memory as uint8 (see the module docstring). With
    ``max_side``, images whose longer side exceeds it are downsized at decode (logged; their
    original sizes in ``downsized``).

    Raises:
        DataError: no readable image, or (train) no image at least ``crop_size`` on each side.
    """

    def __init__(
        self,
        source: str | Path | Sequence[str | Path],
        mode: Literal["train", "val"] = "train",
        crop_size: int | None = 256,
        crops_per_image: int = 1,
        seed: int = 0,
        max_side: int | None = None,
    ) -> None:
        _check_settings(mode, crop_size, crops_per_image)
        self.mode = mode
        self.crop_size = crop_size
        self.crops_per_image = crops_per_image if mode == "train" else 1
        self.seed = seed
        self.epoch = 0

        candidates, where = _candidates(source)
        sizes = image_sizes(candidates) if max_side is not None else {}
        images, paths, unreadable = _decode_all(candidates, max_side)
        self.downsized = {str(p): sizes[Path(p)] for p in paths
                          if Path(p) in sizes and max(sizes[Path(p)]) > (max_side or 0)}
        if max_side is not None:
            log_downsized(self.downsized, max_side)
        self.skipped = len(unreadable)
        _require_readable(where, len(candidates), unreadable)
        if unreadable:
            logger.warning("skipped %d unreadable image file(s): %s", len(unreadable), "; ".join(unreadable))

        self.too_small = 0
        if mode == "train":
            assert crop_size is not None  # checked above; narrows the type
            _require_crop_fits(where, [min(img.shape[1:]) for img in images], crop_size)
            images, paths, self.too_small = _drop_smaller_than(crop_size, images, paths)
        self.images = images
        self.paths = paths

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch whose crops :meth:`__getitem__` returns (train mode)."""
        if epoch < 0:
            raise DataError(f"epoch must be >= 0, got {epoch}")
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.images) * self.crops_per_image

    def crop_params(self, index: int) -> CropParams:
        """The crop and flips of train item ``index`` in the current epoch."""
        if self.mode != "train":
            raise DataError("crop_params is only defined in train mode")
        if not 0 <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} items")
        assert self.crop_size is not None  # train mode guarantees it
        image_index = index // self.crops_per_image
        _, height, width = self.images[image_index].shape
        gen = torch.Generator().manual_seed(_item_seed(self.seed, self.epoch, index))
        top = int(torch.randint(height - self.crop_size + 1, (1,), generator=gen))
        left = int(torch.randint(width - self.crop_size + 1, (1,), generator=gen))
        hflip, vflip = (bool(b) for b in torch.randint(2, (2,), generator=gen))
        return CropParams(image_index, top, left, hflip, vflip)

    def __getitem__(self, index: int) -> torch.Tensor:
        if self.mode == "val":
            if not 0 <= index < len(self):
                raise IndexError(f"index {index} out of range for {len(self)} items")
            return self.images[index].float().div_(255.0)
        params = self.crop_params(index)
        size = self.crop_size
        assert size is not None  # train mode guarantees it
        top, left = params.top, params.left
        crop = self.images[params.image_index][:, top : top + size, left : left + size]
        dims = [d for d, flip in ((2, params.hflip), (1, params.vflip)) if flip]
        if dims:
            crop = torch.flip(crop, dims)  # torch.flip copies, so the cached image is untouched
        return crop.float().div_(255.0)


def _drop_smaller_than(crop_size: int, images: list[torch.Tensor], paths: list[Path]
                       ) -> tuple[list[torch.Tensor], list[Path], int]:
    """The images (and paths) that hold a ``crop_size`` crop, and how many were dropped
    (logged: a training crop cannot come from them)."""
    keep = [min(img.shape[1:]) >= crop_size for img in images]
    small = [f"{p} ({img.shape[2]}x{img.shape[1]})"
             for p, img, k in zip(paths, images, keep) if not k]
    if small:
        logger.warning("skipped %d image(s) smaller than crop_size=%d x %d: %s",
                       len(small), crop_size, crop_size, "; ".join(small))
    return ([img for img, k in zip(images, keep) if k], [p for p, k in zip(paths, keep) if k],
            len(small))


def _check_settings(mode: str, crop_size: int | None, crops_per_image: int) -> None:
    if mode not in ("train", "val"):
        raise DataError(f"mode must be 'train' or 'val', got {mode!r}")
    if mode == "train":
        if crop_size is None or crop_size < 1:
            raise DataError(f"train mode needs a positive crop_size, got {crop_size!r}")
        if crops_per_image < 1:
            raise DataError(f"crops_per_image must be >= 1, got {crops_per_image}")


def _candidates(source: str | Path | Sequence[str | Path]) -> tuple[list[Path], str]:
    """The image files of a folder or a list, and how messages name them."""
    if isinstance(source, (str, Path)):
        return list_images(source), str(source)
    candidates = [Path(p) for p in source]
    if not candidates:
        raise DataError("empty list of image paths; pass at least one PNG/JPEG file")
    return candidates, f"the {len(candidates)} given paths"


def _decode_all(candidates: list[Path], max_side: int | None
                ) -> tuple[list[torch.Tensor], list[Path], list[str]]:
    """The decoded images and their paths, and the files that could not be decoded (why)."""
    images: list[torch.Tensor] = []
    paths: list[Path] = []
    unreadable: list[str] = []
    for path in candidates:
        try:
            images.append(_decode_uint8(path, max_side))
            paths.append(path)
        except _DECODE_ERRORS as exc:
            unreadable.append(_unreadable(path, exc))
    return images, paths, unreadable


def _skimage_photo(name: str) -> Callable[[], np.ndarray]:
    def load() -> np.ndarray:
        import skimage.data

        if name.startswith("motorcycle_"):
            left, right, _disparity = skimage.data.stereo_motorcycle()
            return left if name == "motorcycle_left" else right
        return getattr(skimage.data, name)()

    return load


def _sklearn_photo(filename: str) -> Callable[[], np.ndarray]:
    def load() -> np.ndarray:
        from sklearn.datasets import load_sample_image

        return load_sample_image(filename)

    return load


# Natural colour photos that load offline. Left out on purpose: skimage's `cat` (same photo as
# chelsea), hubble_deep_field (astronomy), retina / immunohistochemistry (medical), colorwheel /
# logo (synthetic) and the greyscale images.
_BUNDLED_LOADERS: dict[str, Callable[[], np.ndarray]] = {
    **{name: _skimage_photo(name) for name in
       ("astronaut", "chelsea", "coffee", "rocket", "motorcycle_left", "motorcycle_right")},
    "china": _sklearn_photo("china.jpg"),
    "flower": _sklearn_photo("flower.jpg"),
}


def _write_png_atomic(pixels: np.ndarray, target: Path) -> None:
    """Write ``pixels`` (H, W, 3 uint8) to ``target`` as a PNG, atomically: parallel trials
    may materialise the same file at once, and a reader never sees a half-written PNG."""
    atomic_write(target, lambda f: Image.fromarray(pixels).save(f, format="PNG"))


def bundled_photos(split: str, cache_dir: str | Path | None = None) -> list[Path]:
    """Paths of the bundled photos of ``split`` ("train" or "val"), materialised as PNG.

    The photos come from scikit-image and scikit-learn (no download) and are written once to
    ``<cache_dir>/bundled/<split>/<name>.png`` (``cache_dir`` defaults to
    :func:`hpcm_tune.files.default_cache_dir`). The split is fixed, see :data:`BUNDLED_SPLIT`.
    """
    if split not in BUNDLED_SPLIT:
        raise DataError(f"unknown bundled split {split!r}; use one of {sorted(BUNDLED_SPLIT)}")
    root = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    folder = root / "bundled" / split
    paths = []
    for name in BUNDLED_SPLIT[split]:
        target = folder / f"{name}.png"
        if not target.is_file():
            _write_png_atomic(_BUNDLED_LOADERS[name](), target)
        paths.append(target)
    return paths


def default_datasets(
    crop_size: int = 256,
    crops_per_image: int = 1,
    seed: int = 0,
    cache_dir: str | Path | None = None,
) -> tuple[ImageFolderDataset, ImageFolderDataset]:
    """The bundled photos as ``(train_ds, val_ds)``: random crops for train, whole images for val."""
    train_ds = ImageFolderDataset(
        bundled_photos("train", cache_dir), mode="train",
        crop_size=crop_size, crops_per_image=crops_per_image, seed=seed,
    )
    val_ds = ImageFolderDataset(bundled_photos("val", cache_dir), mode="val", seed=seed)
    return train_ds, val_ds


class EpochSampler(Sampler[int]):
    """Indices ``0..n-1``, shuffled with a permutation that depends only on ``(seed, epoch)``."""

    def __init__(self, length: int, shuffle: bool, seed: int) -> None:
        self.length = length
        self.shuffle = shuffle
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch whose order :meth:`__iter__` yields."""
        self.epoch = epoch

    def __len__(self) -> int:
        return self.length

    def __iter__(self) -> Iterator[int]:
        if not self.shuffle:
            return iter(range(self.length))
        gen = torch.Generator().manual_seed(_item_seed(self.seed, self.epoch, -1))
        return iter(torch.randperm(self.length, generator=gen).tolist())


class EpochDataLoader(DataLoader):
    """A DataLoader whose order and crops are a function of ``(seed, epoch)`` only.

    Call :meth:`set_epoch` before iterating each epoch (epoch 0 is the default).
    """

    def set_epoch(self, epoch: int) -> None:
        """Set the epoch on the sampler, the dataset and the loader's own generator."""
        self.sampler.set_epoch(epoch)
        if hasattr(self.dataset, "set_epoch"):
            self.dataset.set_epoch(epoch)
        self.generator.manual_seed(_item_seed(self.sampler.seed, epoch, -2))


def make_loader(
    dataset: Dataset[torch.Tensor],
    batch_size: int,
    shuffle: bool,
    seed: int,
    pin_memory: bool,
    num_workers: int = 0,
) -> EpochDataLoader:
    """A deterministic loader over ``dataset``; call ``loader.set_epoch(e)`` before each epoch.

    The shuffle order is reseeded from ``seed + epoch``, so a run resumed at epoch ``e`` gets the
    same batches as an uninterrupted one. ``pin_memory`` should be True only when training on CUDA.
    Workers are not persistent, so they pick up the dataset's epoch at each new iteration.
    """
    sampler = EpochSampler(len(dataset), shuffle=shuffle, seed=seed)
    # DataLoader draws a worker base seed from `generator` at every iteration, even with
    # num_workers=0; without our own generator it would consume the global torch RNG and
    # shift model-side randomness.
    generator = torch.Generator().manual_seed(_item_seed(seed, 0, -2))
    return EpochDataLoader(
        dataset,
        batch_size=batch_size,
        sampler=sampler,
        num_workers=num_workers,
        pin_memory=pin_memory,
        generator=generator,
    )
