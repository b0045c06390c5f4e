"""Real-bitstream evaluation of HPCM checkpoints, codec anchors and BD-rate.

For every image each checkpoint really compresses and decompresses it (``model.compress`` /
``model.decompress`` after ``model.update``): the rate is the length of the byte strings
(``8 * sum(len(s)) / pixels of the original image``; padding to the model's multiple is
coded but not counted as pixels), PSNR and MS-SSIM are measured on the decoded image rounded
to 8 bits (what a decoder would save, as for the classical codecs), and the estimated rate of
the model's likelihoods is recorded next to the real one.

A set of checkpoints (e.g. one per lambda) is one rate-distortion curve ("hpcm"); the
checkpoints the trials started from form the "start" curve; JPEG / WebP / AVIF / HEVC sweeps
are the anchors. BD-rate and BD-PSNR compare "hpcm" with each of them.

Output folder: ``per_image.csv`` (every checkpoint x image), ``anchors_per_image.csv``,
``rd_points.csv`` (one row per curve point, means over the images), ``bd.csv``,
``evaluation.json`` (what was evaluated), ``summary.md`` and ``rd.png``.
"""

from __future__ import annotations

import json
import logging
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hpcm_tune.errors import InputError
from hpcm_tune.names import MARKER, STATE_FILE
from hpcm_tune.tune_files import (PARAMS_FILE, checkpoint_at, checkpoint_dirs, per_epoch,
                                  read_params, read_results)

if TYPE_CHECKING:
    import pandas as pd
    import torch

    import hpcm as hpcm_t

log = logging.getLogger(__name__)

CURVE, START = "hpcm", "start"
OUTPUT_FILES = ("evaluation.json", "per_image.csv", "anchors_per_image.csv", "rd_points.csv",
                "bd.csv", "start_deltas.csv", "summary.md", "rd.png")


@dataclass
class CheckpointInfo:
    """Where a model comes from and what it was trained for."""

    path: str  # the file the weights come from
    given: str  # what the user passed
    label: str
    lmbda: float | None = None
    kind: str = "project"  # "project" or "official"
    variant: str | None = None  # model preset (needed for official files)
    start_checkpoint: str | None = None  # what the trial started from (params.json)
    start_kind: str = "project"
    start_variant: str | None = None
    trial_id: str | None = None
    experiment: str | None = None  # the experiment folder holding it


def find_experiment(path: Path) -> Path | None:
    """The hpcm-tune experiment folder above ``path`` (inclusive), if any."""
    for p in [path, *path.parents]:
        if (p / MARKER).is_file():
            return p
    return None


def _trial_folder_checkpoint(trial_dir: Path) -> Path:
    """The best checkpoint of a Tune trial folder (the latest if the best was not kept)."""
    from analysis.results import best_loss_epoch

    history = per_epoch(read_results(trial_dir))
    loss, epoch = best_loss_epoch(history)
    best = checkpoint_at(trial_dir, history, epoch) if math.isfinite(loss) else None
    if best is not None and (best / STATE_FILE).is_file():
        return best / STATE_FILE
    found = [c / STATE_FILE for c in checkpoint_dirs(trial_dir) if (c / STATE_FILE).is_file()]
    if not found:
        raise InputError(f"{trial_dir}: a trial folder without any checkpoint_*/{STATE_FILE}")
    return found[-1]


def resolve_checkpoint(given: str | Path, official: str | None = None) -> CheckpointInfo:
    """Finds the weights behind ``given``.

    ``given`` may be a model file (``hpcm.save_model``), a training state (``trial_state.pt``
    or ``finetune``'s ``best.pt``), an official LIC-HPCM file (with ``official`` = "base" or
    "large"), a Tune checkpoint folder (``checkpoint_*/``), a Tune trial folder (its best
    checkpoint) or a ``finetune --out`` folder (``best.pt``).
    """
    path = Path(given).expanduser()
    if not path.exists():
        raise InputError(f"{given}: no such checkpoint file or folder")
    trial_dir = None
    if path.is_dir():
        if (path / STATE_FILE).is_file():
            trial_dir, path = path.parent, path / STATE_FILE
        elif (path / PARAMS_FILE).is_file():
            trial_dir, path = path, _trial_folder_checkpoint(path)
        elif (path / "best.pt").is_file():  # a finetune --out folder: its best epoch
            path = path / "best.pt"
        elif (path / "latest" / STATE_FILE).is_file():  # ... that has no best.pt
            path = path / "latest" / STATE_FILE
        elif (path / MARKER).is_file():
            trials = sorted(p.name for p in path.glob("trial_*") if p.is_dir())
            raise InputError(f"{given} is a sweep with {len(trials)} trials, not one "
                             "checkpoint; give one trial's folder (its best checkpoint) or a "
                             f"checkpoint_* folder, e.g. {path / (trials or ['trial_ID'])[0]}")
        else:
            raise InputError(f"{given}: a folder without {STATE_FILE}, params.json or best.pt; "
                             "give a checkpoint file, a checkpoint_* folder, a trial folder or "
                             "a finetune --out folder")
        log.info("%s: using %s", given, path)
    elif path.name == STATE_FILE:
        trial_dir = path.parent.parent
    info = CheckpointInfo(path=str(path.resolve()), given=str(given), label=path.stem)
    if official:
        info.kind, info.variant = "official", official
    params = {}
    if trial_dir is not None and (trial_dir / PARAMS_FILE).is_file():
        params = read_params(trial_dir)
        exp = find_experiment(trial_dir)
        info.experiment = str(exp) if exp else None
        rows = read_results(trial_dir)
        info.trial_id = (rows[0].get("trial_id") if rows else None) or trial_dir.name
        info.label = f"{info.trial_id}/{path.parent.name}"
    if params:
        info.lmbda = params.get("lmbda")
        info.start_checkpoint = params.get("checkpoint")
        info.start_kind = params.get("checkpoint_kind", "project")
        info.start_variant = params.get("model")
    return info


def load(info: CheckpointInfo) -> "hpcm_t.HPCM":
    """The model of ``info`` in eval mode with its entropy-coder tables built."""
    import torch

    import hpcm

    if info.kind == "official":
        model = hpcm.load_official_checkpoint(info.path, variant=info.variant or "base")
    else:
        obj = hpcm.read_checkpoint_file(info.path)
        trainer = hpcm.training_state(obj)  # None for a model file
        if info.lmbda is None and trainer is not None:
            info.lmbda = (trainer.get("finetune_config") or {}).get("lmbda")
        model = hpcm.load_model(obj)  # reads model files and training checkpoints alike
    model = model.to(torch.device("cpu")).eval()
    model.update(force=True)
    return model


def load_images(data: str | Path | None = None, max_images: int | None = None,
                max_side: int | None = None) -> dict[str, Any]:
    """name -> (3, H, W) float tensor in [0, 1]; default: the bundled validation photos.
    With ``max_side``, larger images are downsized to that longer side (logged)."""
    from trainables.data import bundled_photos, image_sizes, list_images, load_rgb, log_downsized

    paths = list_images(data) if data else bundled_photos("val")
    if max_images:
        paths = paths[:max_images]
    names = [p.stem for p in paths]
    if len(set(names)) != len(names):  # same stem in two sub-folders
        names = [str(p.relative_to(data)) if data else p.name for p in paths]
    if max_side is not None:
        sizes = image_sizes(paths)
        log_downsized({n: sizes[p] for n, p in zip(names, paths)
                       if p in sizes and max(sizes[p]) > max_side}, max_side)
    return {n: load_rgb(p, max_side) for n, p in zip(names, paths)}


def to_uint8(x: "torch.Tensor"):
    """(3, H, W) or (1, 3, H, W) float in [0, 1] -> (H, W, 3) uint8 numpy array."""
    import numpy as np

    x = x.detach().reshape(x.shape[-3:]).clamp(0, 1).mul(255).round()
    return np.ascontiguousarray(x.to(dtype=__import__("torch").uint8).permute(1, 2, 0).numpy())


def code_image(model: "hpcm_t.HPCM", image: "torch.Tensor") -> dict[str, Any]:
    """One real compress / decompress of ``image`` (3, H, W); returns the measurements and
    the bitstream (``strings``)."""
    import torch

    import hpcm
    from analysis.codecs import ms_ssim, psnr

    x = image.unsqueeze(0)
    h, w = x.shape[-2:]
    x_pad, padding = hpcm.pad_to_multiple(x, model.config.pad_multiple)
    with torch.no_grad():
        out = model(x_pad)
    est_bits = float(sum(-torch.log2(v.float()).sum() for v in out["likelihoods"].values()))
    start = time.perf_counter()
    enc = model.compress(x_pad)
    encode_s = time.perf_counter() - start
    bits = 8 * sum(len(s) for group in enc["strings"] for s in group)
    start = time.perf_counter()
    dec = model.decompress(enc["strings"], enc["shape"])
    decode_s = time.perf_counter() - start
    rec = hpcm.crop_padding(dec["x_hat"], padding)
    original, decoded = to_uint8(x), to_uint8(rec)
    return {"width": w, "height": h, "bits": bits, "bpp": bits / (h * w),
            "est_bits": est_bits, "est_bpp": est_bits / (h * w),
            "bits_gap_pct": 100 * (bits - est_bits) / est_bits if est_bits else math.nan,
            "psnr": psnr(original, decoded), "ms_ssim": ms_ssim(original, decoded),
            "encode_s": encode_s, "decode_s": decode_s, "strings": enc["strings"]}


def evaluate_model(model: "hpcm_t.HPCM", images: dict[str, Any], **labels) -> "pd.DataFrame":
    """One row per image of :func:`code_image` (without the bitstream) plus ``labels``."""
    import pandas as pd

    rows = []
    for name, image in images.items():
        row = code_image(model, image)
        row.pop("strings")
        rows.append({**labels, "image": name, **row})
    return pd.DataFrame(rows)


def rd_points(per_image: "pd.DataFrame", keys: list[str]) -> "pd.DataFrame":
    """Means over the images of each curve point (bpp, PSNR, MS-SSIM, times, estimate gap).

    MS-SSIM is undefined for images of 160 pixels or less a side: its mean is over the
    images where it is defined, and ``ms_ssim_images`` counts them."""
    metrics = [c for c in ("bpp", "est_bpp", "bits_gap_pct", "psnr", "ms_ssim", "encode_s",
                           "decode_s") if c in per_image]
    groups = per_image.groupby(keys, dropna=False, sort=False)
    out = groups[metrics].mean().reset_index()  # pandas' mean skips NaN
    out["images"] = groups.size().values
    if "ms_ssim" in per_image:
        out["ms_ssim_images"] = groups["ms_ssim"].count().values
    return out


def _start_infos(infos: list[CheckpointInfo], baselines: list[str] | None,
                 official: str | None) -> list[CheckpointInfo]:
    if baselines:
        return [resolve_checkpoint(b, official) for b in baselines]
    seen: dict[str, CheckpointInfo] = {}
    for info in infos:
        if info.start_checkpoint and info.start_checkpoint not in seen:
            if not Path(info.start_checkpoint).is_file():
                log.warning("start checkpoint %s not found: no start curve", info.start_checkpoint)
                continue
            seen[info.start_checkpoint] = CheckpointInfo(
                path=info.start_checkpoint, given=info.start_checkpoint,
                label=Path(info.start_checkpoint).stem, kind=info.start_kind,
                variant=info.start_variant)
    return list(seen.values())


def default_out(first: str | Path) -> Path:
    """``<experiment>/evaluation`` for a checkpoint inside an experiment, else next to it."""
    path = Path(first).expanduser().resolve()
    exp = find_experiment(path if path.is_dir() else path.parent)
    if exp is not None:
        return exp / "evaluation"
    return (path if path.is_dir() else path.parent) / "evaluation"


def run_evaluation(checkpoints: list[str], data: str | None = None, out: str | None = None,
                   codecs: list[str] | None = None, baselines: list[str] | None = None,
                   official: str | None = None, max_images: int | None = None,
                   plot: bool = True, overwrite: bool = False,
                   max_side: int | None = None) -> dict[str, Any]:
    """Evaluates ``checkpoints`` as one curve, the start checkpoints, and the codec anchors;
    writes the output folder (see the module docstring) and returns its tables.

    An output folder that already holds an evaluation is refused unless ``overwrite``
    (``analyze`` reads it for its BD-rates). ``max_side`` downsizes larger images."""
    import pandas as pd

    from analysis import codecs as codec_mod

    if not checkpoints:
        raise InputError("give at least one CHECKPOINT")
    out_dir = Path(out) if out else default_out(checkpoints[0])
    earlier = _earlier_evaluation(out_dir, overwrite)
    codecs, skipped = _available_codecs(codecs)
    infos = [resolve_checkpoint(c, official) for c in checkpoints]
    starts = _start_infos(infos, baselines, official)
    images = load_images(data, max_images, max_side)

    per_image = _evaluate_checkpoints({CURVE: infos, START: starts}, images)
    points = rd_points(per_image, ["curve", "label", "checkpoint", "lmbda"])
    anchors_img = pd.DataFrame()
    if codecs:
        anchors_img, anchor_points = _codec_anchors(images, codecs)
        points = pd.concat([points, anchor_points], ignore_index=True)
    meta = {"checkpoints": [asdict(i) for i in infos], "starts": [asdict(s) for s in starts],
            "images": {n: list(img.shape[-2:]) for n, img in images.items()},
            "data": str(Path(data).resolve()) if data else "bundled validation photos",
            "max_side": max_side,
            "codecs": {c: codec_mod.CODECS[c].note for c in codecs}, "skipped_codecs": skipped,
            "created": time.strftime("%Y-%m-%d %H:%M:%S")}
    result = {"out": out_dir, "per_image": per_image, "points": points,
              "bd": bd_against_anchors(points, [START, *codecs]),
              "deltas": _start_deltas(points), "meta": meta}
    _write_evaluation(result, anchors_img, earlier, plot)
    return result


def _earlier_evaluation(out_dir: Path, overwrite: bool) -> list[str]:
    """The files of an earlier evaluation in ``out_dir`` (to replace only if ``overwrite``)."""
    earlier = [name for name in OUTPUT_FILES if (out_dir / name).exists()]
    if earlier and not overwrite:
        raise InputError(f"{out_dir} already holds an evaluation ({', '.join(earlier[:3])}"
                         f"{', ...' if len(earlier) > 3 else ''}); pass --overwrite to replace "
                         "it, or --out another folder")
    return earlier


def _available_codecs(codecs: list[str] | None) -> tuple[list[str], dict[str, str]]:
    """The requested anchor codecs (default: all) that can run here, and why the others
    cannot: a default codec is skipped with a warning, an unknown one refused."""
    from analysis import codecs as codec_mod

    usable, skipped = [], {}
    for name in (codecs if codecs is not None else codec_mod.CODECS):
        why = codec_mod.available(name)
        if why and name not in codec_mod.CODECS:
            raise InputError(why)
        if why:
            log.warning("skipping %s: %s", name, why)
            skipped[name] = why
        else:
            usable.append(name)
    return usable, skipped


def _evaluate_checkpoints(curves: dict[str, list[CheckpointInfo]],
                          images: dict[str, Any]) -> "pd.DataFrame":
    """Every checkpoint of every curve on every image (:func:`evaluate_model`), warning once
    per model preset when an image is large for it."""
    import pandas as pd

    from trainables.data import large_image_warning

    sizes = {n: (img.shape[-1], img.shape[-2]) for n, img in images.items()}
    frames = []
    warned = set()
    for curve, group in curves.items():
        for info in group:
            log.info("evaluating %s (%s) on %d images", info.label, curve, len(images))
            model = load(info)
            warning = large_image_warning(sizes, model.config.name, "image")
            if warning and model.config.name not in warned:
                warned.add(model.config.name)
                log.warning("%s (coding it takes longer still)", warning)
            frames.append(evaluate_model(model, images, curve=curve, label=info.label,
                                         checkpoint=info.path, lmbda=info.lmbda))
    return pd.concat(frames, ignore_index=True)


def _codec_anchors(images: dict[str, Any],
                   codecs: list[str]) -> tuple["pd.DataFrame", "pd.DataFrame"]:
    """The codecs' quality sweeps: per image, and as curve points labelled ``<codec> q<N>``."""
    from analysis import codecs as codec_mod

    log.info("codec anchors %s on %d images", ", ".join(codecs), len(images))
    per_image = codec_mod.sweep({n: to_uint8(img) for n, img in images.items()}, codecs)
    points = rd_points(per_image, ["codec", "quality"]).rename(columns={"codec": "curve"})
    points["label"] = points["curve"] + " q" + points["quality"].astype(str)
    return per_image, points


def bd_against_anchors(points: "pd.DataFrame", anchors: list[str]) -> "pd.DataFrame":
    """BD-rate and BD-PSNR of the checkpoints' curve against each anchor curve in ``points``
    (anchors without points are left out)."""
    import pandas as pd

    from analysis import bd

    test = points[points["curve"] == CURVE]
    rows = []
    for anchor in anchors:
        ref = points[points["curve"] == anchor]
        if ref.empty:
            continue
        row = {"test": CURVE, "anchor": anchor, "test_points": len(test), "anchor_points": len(ref)}
        row.update(bd.compare(ref["bpp"], ref["psnr"], test["bpp"], test["psnr"]))
        rows.append(row)
    return pd.DataFrame(rows, columns=["test", "anchor", "test_points", "anchor_points",
                                       "bd_rate_pct", "bd_psnr_db", "psnr_overlap",
                                       "rate_overlap", "note"])


def _write_evaluation(result: dict[str, Any], anchors_img: "pd.DataFrame", earlier: list[str],
                      plot: bool) -> None:
    """The output folder; the files of an ``earlier`` evaluation go first, so none survives."""
    out_dir = result["out"]
    out_dir.mkdir(parents=True, exist_ok=True)
    for name in earlier:
        (out_dir / name).unlink()
    result["per_image"].to_csv(out_dir / "per_image.csv", index=False)
    if not anchors_img.empty:
        anchors_img.to_csv(out_dir / "anchors_per_image.csv", index=False)
    result["points"].to_csv(out_dir / "rd_points.csv", index=False)
    result["bd"].to_csv(out_dir / "bd.csv", index=False)
    result["deltas"].to_csv(out_dir / "start_deltas.csv", index=False)
    (out_dir / "evaluation.json").write_text(json.dumps(result["meta"], indent=2))
    if plot:
        from analysis.plots import plot_rd

        plot_rd(result["points"], out_dir / "rd.png", result["bd"])
    (out_dir / "summary.md").write_text(summary_markdown(result))


def _start_deltas(points: "pd.DataFrame") -> "pd.DataFrame":
    """Each checkpoint vs the start checkpoint (same lambda if several): rate and PSNR change."""
    import pandas as pd

    test, start = points[points["curve"] == CURVE], points[points["curve"] == START]
    rows = []
    for _, t in test.iterrows():
        if start.empty:
            break
        same = start if len(start) == 1 else start[start["lmbda"] == t["lmbda"]]
        if same.empty:
            continue
        ref = same.iloc[0]
        rows.append({"label": t["label"], "start": ref["label"],
                     "bpp_change_pct": 100 * (t["bpp"] - ref["bpp"]) / ref["bpp"],
                     "psnr_change_db": t["psnr"] - ref["psnr"]})
    return pd.DataFrame(rows, columns=["label", "start", "bpp_change_pct", "psnr_change_db"])


def format_cell(v: Any, digits: int | None = 3) -> str:
    """A table cell: floats to ``digits`` decimals, or ``None``: their significant digits
    (lambdas such as 0.0003); NaN as n/a; anything else as str."""
    if isinstance(v, float):
        return "n/a" if math.isnan(v) else f"{v:g}" if digits is None else f"{v:.{digits}f}"
    return str(v)


#: Digits of the evaluation's own table (``evaluate`` and the sweep report).
RD_DIGITS: dict[str, int | None] = {"lmbda": None, "bpp": 4, "est_bpp": 4, "bits_gap_pct": 2,
                                    "psnr": 2, "ms_ssim": 4, "encode_s": 2, "decode_s": 2}


def markdown_table(df: "pd.DataFrame", digits: dict[str, int | None] | None = None) -> str:
    """A GitHub markdown table (no extra dependency)."""
    digits = digits or {}
    cols = list(df.columns)
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for _, row in df.iterrows():
        lines.append("| " + " | ".join(format_cell(row[c], digits.get(c, 3)) for c in cols) + " |")
    return "\n".join(lines)


def summary_markdown(result: dict[str, Any]) -> str:
    points, bd_table, deltas = result["points"], result["bd"], result["deltas"]
    meta = result["meta"]
    own = points[points["curve"].isin([CURVE, START])][
        ["curve", "label", "lmbda", "bpp", "est_bpp", "bits_gap_pct", "psnr", "ms_ssim",
         "ms_ssim_images", "encode_s", "decode_s"]]
    count = len(meta["images"])
    parts = [f"# Evaluation ({count} image{'s' if count != 1 else ''}: {meta['data']})", "",
             "Real bitstreams: bpp = 8 x bytes / original pixels; PSNR / MS-SSIM on the decoded "
             "8-bit image; `bits_gap_pct` = (actual - estimated) / estimated bits. MS-SSIM "
             "is the mean over the `ms_ssim_images` images above 160 pixels a side (it is "
             "undefined for smaller ones).", "",
             markdown_table(own, RD_DIGITS), ""]
    if not bd_table.empty:
        parts += ["## BD-rate of the checkpoints' curve (pchip; negative = fewer bits)", "",
                  markdown_table(bd_table[["anchor", "test_points", "anchor_points",
                                           "bd_rate_pct", "bd_psnr_db", "note"]],
                                 {"bd_rate_pct": 2, "bd_psnr_db": 3}), ""]
    if not deltas.empty:
        parts += ["## Against the start checkpoint", "",
                  markdown_table(deltas, {"bpp_change_pct": 2, "psnr_change_db": 3}), ""]
    anchors = points[~points["curve"].isin([CURVE, START])]
    if not anchors.empty:
        parts += ["## Codec anchors", "",
                  markdown_table(anchors[["curve", "quality", "bpp", "psnr", "ms_ssim",
                                          "encode_s", "decode_s"]],
                                 {"quality": None, "bpp": 4, "psnr": 2, "ms_ssim": 4,
                                  "encode_s": 3, "decode_s": 3}), ""]
    return "\n".join(parts)
