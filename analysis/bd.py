"""Bjontegaard deltas (BD-rate, BD-PSNR) between two rate-distortion curves.

A thin wrapper of the ``bjontegaard`` package (pchip interpolation by default, which matches
the JVET/VCEG spreadsheet) that prepares the curves first: points are sorted by rate, points
that are not better than a cheaper one are dropped (pchip needs a monotone curve), the curves
may have different numbers of points, and curves that do not overlap give NaN instead of an
extrapolated number. Negative BD-rate = the test curve needs fewer bits for the same PSNR.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence

METHODS = ("pchip", "akima", "cubic")


def monotone(rates: Sequence[float], dists: Sequence[float]) -> tuple[list[float], list[float]]:
    """The points sorted by rate, keeping only those with a higher distortion metric (PSNR)
    than every cheaper point; non-finite and non-positive rates are dropped."""
    points = sorted((float(r), float(d)) for r, d in zip(rates, dists)
                    if math.isfinite(r) and math.isfinite(d) and r > 0)
    out_r: list[float] = []
    out_d: list[float] = []
    for r, d in points:
        if out_d and d <= out_d[-1]:
            continue
        if out_r and r == out_r[-1]:
            continue
        out_r.append(r)
        out_d.append(d)
    return out_r, out_d


def overlap(a: Sequence[float], b: Sequence[float]) -> float:
    """The length of the common interval of two value sets, relative to their union (0..1)."""
    lo, hi = max(min(a), min(b)), min(max(a), max(b))
    span = max(max(a), max(b)) - min(min(a), min(b))
    return max(hi - lo, 0.0) / span if span > 0 else 0.0


def _prepare(rate_anchor, dist_anchor, rate_test, dist_test):
    ra, da = monotone(rate_anchor, dist_anchor)
    rt, dt = monotone(rate_test, dist_test)
    if len(ra) < 2 or len(rt) < 2:
        return None
    return ra, da, rt, dt


def _bd(metric: str, rate_anchor, dist_anchor, rate_test, dist_test, method: str) -> float:
    """``bjontegaard.bd_rate`` or ``bd_psnr`` on cleaned curves; NaN without an overlap (on
    PSNR for BD-rate, on log-rate for BD-PSNR)."""
    import bjontegaard

    curves = _prepare(rate_anchor, dist_anchor, rate_test, dist_test)
    if curves is None:
        return math.nan
    ra, da, rt, dt = curves
    shared = (overlap(da, dt) if metric == "bd_rate"
              else overlap([math.log10(r) for r in ra], [math.log10(r) for r in rt]))
    if shared == 0:
        return math.nan
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return float(getattr(bjontegaard, metric)(ra, da, rt, dt, method=method,
                                                  require_matching_points=False, min_overlap=0))


def bd_rate(rate_anchor, dist_anchor, rate_test, dist_test, method: str = "pchip") -> float:
    """Average rate difference in percent at equal distortion (NaN if not computable)."""
    return _bd("bd_rate", rate_anchor, dist_anchor, rate_test, dist_test, method)


def bd_psnr(rate_anchor, dist_anchor, rate_test, dist_test, method: str = "pchip") -> float:
    """Average distortion (PSNR, dB) difference at equal rate (NaN if not computable)."""
    return _bd("bd_psnr", rate_anchor, dist_anchor, rate_test, dist_test, method)


def compare(anchor_rates, anchor_dists, test_rates, test_dists, method: str = "pchip") -> dict:
    """BD-rate (%), BD-PSNR (dB), the overlaps they were computed on, and a note when NaN."""
    curves = _prepare(anchor_rates, anchor_dists, test_rates, test_dists)
    out = {"bd_rate_pct": math.nan, "bd_psnr_db": math.nan, "psnr_overlap": math.nan,
           "rate_overlap": math.nan, "note": ""}
    if curves is None:
        out["note"] = "needs 2+ monotone points on each curve (evaluate several lambdas)"
        return out
    ra, da, rt, dt = curves
    out["psnr_overlap"] = overlap(da, dt)
    out["rate_overlap"] = overlap([math.log10(r) for r in ra], [math.log10(r) for r in rt])
    out["bd_rate_pct"] = bd_rate(ra, da, rt, dt, method)
    out["bd_psnr_db"] = bd_psnr(ra, da, rt, dt, method)
    if math.isnan(out["bd_rate_pct"]) or math.isnan(out["bd_psnr_db"]):
        out["note"] = "curves do not overlap"
    elif min(out["psnr_overlap"], out["rate_overlap"]) < 0.5:
        out["note"] = "small overlap: average over a short interval"
    return out
