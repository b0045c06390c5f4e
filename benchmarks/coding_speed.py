#!/usr/bin/env python3
"""Real entropy coding of the tiny model: encode / decode ms per image, and the bits actually
written against the bits the model estimates (its training rate), side by side.

    python benchmarks/coding_speed.py                       # pre-trained tiny, bundled photos
    python benchmarks/coding_speed.py --checkpoint M.pt --images my/folder --repeats 5
    python benchmarks/coding_speed.py --quick               # one image, one repeat

Each image is padded to the model's multiple, coded once as warm-up, then ``--repeats``
times; figures are medians. Bits per pixel count the original pixels (padding is coded but
is not content). The decoded image is checked to equal the model's eval-mode output.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import hpcm  # noqa: E402
from trainables.data import ImageFolderDataset, bundled_photos  # noqa: E402


def _median_ms(fn, repeats: int):
    out = fn()  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - start)
    return 1000 * statistics.median(times), out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", help="hpcm-tune model file (default: pre-trained tiny)")
    parser.add_argument("--images", help="folder of images (default: bundled validation photos)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="first image only, 1 repeat")
    args = parser.parse_args()
    if args.checkpoint:
        model = hpcm.load_model(args.checkpoint)
    else:
        from trainables.pretrain import pretrained_tiny

        model = hpcm.load_model(pretrained_tiny())
    model.eval()
    model.update(force=True)
    images = ImageFolderDataset(args.images or bundled_photos("val"), mode="val")
    count = 1 if args.quick else len(images)
    repeats = 1 if args.quick else args.repeats
    print(f"HPCM-{model.config.name}, {torch.get_num_threads()} CPU threads, "
          f"torch {torch.__version__}, {repeats} timed repeat(s) per image")
    print(f"{'image':<16}{'size':>10}{'encode ms':>11}{'decode ms':>11}{'fwd ms':>9}"
          f"{'est bpp':>9}{'real bpp':>10}{'real/est':>10}")
    ratios = []
    for i in range(count):
        x = images[i].unsqueeze(0)
        h, w = x.shape[-2:]
        x_pad, padding = hpcm.pad_to_multiple(x, model.config.pad_multiple)
        with torch.no_grad():
            fwd_ms, out = _median_ms(lambda: model(x_pad), repeats)
            est_bits = sum(-torch.log2(v).sum() for v in out["likelihoods"].values()).item()
            enc_ms, enc = _median_ms(lambda: model.compress(x_pad), repeats)
            dec_ms, dec = _median_ms(lambda: model.decompress(enc["strings"], enc["shape"]),
                                     repeats)
        if not torch.equal(dec["x_hat"], out["x_hat"].clamp(0, 1)):
            raise SystemExit(f"{images.paths[i].name}: decoded image differs from the forward pass")
        real_bits = 8 * sum(len(s) for group in enc["strings"] for s in group)
        ratios.append(real_bits / est_bits)
        print(f"{images.paths[i].stem:<16}{f'{w}x{h}':>10}{enc_ms:>11.0f}{dec_ms:>11.0f}"
              f"{fwd_ms:>9.0f}{est_bits / (h * w):>9.4f}{real_bits / (h * w):>10.4f}"
              f"{real_bits / est_bits:>10.4f}")
    print(f"real/estimated bits over {count} image(s): mean {statistics.mean(ratios):.4f}")


if __name__ == "__main__":
    main()
