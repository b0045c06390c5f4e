"""Classical codec anchors through Pillow: JPEG, WebP, AVIF and HEVC intra (pillow-heif).

Every codec is swept over its quality setting on the same 8-bit RGB images the learned
codec is evaluated on. Rates are the real file sizes (8 x bytes / pixels, container headers
included); PSNR is over the 8-bit RGB pixels of the decoded file. Chroma is 4:4:4 where the
encoder allows it (JPEG, AVIF, HEVC); Pillow's lossy WebP is always 4:2:0.
HEVC intra is the codec inside BPG (BPG itself is not on PyPI); it needs ``pillow-heif``.
"""

from __future__ import annotations

import io
import math
import time
from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass(frozen=True)
class Codec:
    name: str
    format: str  # Pillow's format name
    qualities: tuple[int, ...]
    options: dict
    note: str


CODECS: dict[str, Codec] = {
    "jpeg": Codec("jpeg", "JPEG", (2, 5, 10, 20, 30, 45, 60, 75, 90),
                  {"subsampling": 0, "optimize": True}, "libjpeg-turbo, 4:4:4, optimized Huffman"),
    "webp": Codec("webp", "WEBP", (0, 5, 10, 20, 35, 50, 65, 80, 95),
                  {"method": 6}, "libwebp method 6, 4:2:0 (lossy WebP has no 4:4:4)"),
    "avif": Codec("avif", "AVIF", (2, 10, 20, 30, 40, 55, 70, 85),
                  {"subsampling": "4:4:4"}, "libaom, 4:4:4"),
    "hevc": Codec("hevc", "HEIF", (2, 10, 20, 30, 40, 50, 60, 75),
                  {"chroma": 444}, "x265 intra through pillow-heif, 4:4:4 (the codec inside BPG)"),
}


def available(name: str) -> str | None:
    """None if the codec can run here, else why not."""
    from PIL import features

    if name not in CODECS:
        return f"unknown codec {name!r}; choose from {', '.join(CODECS)}"
    if name == "avif" and not features.check("avif"):
        return "this Pillow has no AVIF support (Pillow >= 11.2 with libavif)"
    if name == "webp" and not features.check("webp"):
        return "this Pillow has no WebP support"
    if name == "hevc":
        try:
            import pillow_heif
        except ImportError:
            return "pillow-heif is not installed (pip install pillow-heif)"
        pillow_heif.register_heif_opener()
    return None


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    """PSNR in dB of two uint8 images."""
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return math.inf if mse == 0 else 10 * math.log10(255.0**2 / mse)


def ms_ssim(a: np.ndarray, b: np.ndarray) -> float:
    """MS-SSIM of two uint8 (H, W, 3) images; NaN below 161 pixels a side (five scales)."""
    if min(a.shape[:2]) <= 160:
        return math.nan
    import torch
    from pytorch_msssim import ms_ssim as _ms_ssim

    ta = torch.from_numpy(np.array(a)).permute(2, 0, 1)[None].float()
    tb = torch.from_numpy(np.array(b)).permute(2, 0, 1)[None].float()
    return float(_ms_ssim(ta, tb, data_range=255.0))


def code(image: np.ndarray, codec: str, quality: int) -> dict[str, Any]:
    """Encodes and decodes one uint8 (H, W, 3) image; returns bits, bpp, PSNR, MS-SSIM, times."""
    from PIL import Image

    spec = CODECS[codec]
    why = available(codec)
    if why:
        raise ValueError(why)
    src = Image.fromarray(image, "RGB")
    buf = io.BytesIO()
    start = time.perf_counter()
    src.save(buf, format=spec.format, quality=int(quality), **spec.options)
    encode_s = time.perf_counter() - start
    data = buf.getvalue()
    start = time.perf_counter()
    with Image.open(io.BytesIO(data)) as img:
        img.load()
        decoded = np.asarray(img.convert("RGB"))
    decode_s = time.perf_counter() - start
    h, w = image.shape[:2]
    return {"codec": codec, "quality": int(quality), "bits": 8 * len(data),
            "bpp": 8 * len(data) / (h * w), "psnr": psnr(image, decoded),
            "ms_ssim": ms_ssim(image, decoded), "encode_s": encode_s, "decode_s": decode_s}


def sweep(images: dict[str, np.ndarray], codecs: list[str] | None = None,
          qualities: dict[str, tuple[int, ...]] | None = None):
    """Per image and quality: one row of :func:`code` (a DataFrame with an ``image`` column)."""
    import pandas as pd

    rows = []
    for codec in codecs or list(CODECS):
        for q in (qualities or {}).get(codec, CODECS[codec].qualities):
            for name, image in images.items():
                rows.append(dict(image=name, **code(image, codec, q)))
    return pd.DataFrame(rows)
