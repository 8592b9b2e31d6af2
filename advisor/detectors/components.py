"""Loss-component detectors: one term of a multi-term loss growing while the rest falls.
"""

from __future__ import annotations

import math

import numpy as np

from advisor.detectors.base import (
    MAX_POINTS,
    Context,
    fmt,
    odd,
    pct,
    plain,
    rolling_median,
    spearman,
)
from advisor.models import Signal


# ---- component_growth -------------------------------------------------------------------------------
# One term of a multi-term loss grows for a sustained stretch while the rest of the loss falls: the
# imbalance GradNorm (Chen et al. 2018) and uncertainty weighting (Kendall et al. 2018) address.
COMPONENT_GROWTH_RATIO = 1.5  # the term grows by half of its low point at least
COMPONENT_MIN_SHARE_GROWTH = 0.01  # and by at least 1% of the total, so negligible terms stay quiet
COMPONENT_MIN_TREND = 0.6  # Spearman rho of the term over the window: a trend, not noise
COMPONENT_HIGH_RATIO = 3.0
COMPONENT_HIGH_SHARE = 0.10


def _aligned(a, b) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Two curves on common steps (reduced to at most MAX_POINTS buckets)."""
    return _reduce_pairs(*_aligned_full(a, b))


def _aligned_full(a, b) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    if len(a.steps) == len(b.steps) and np.array_equal(a.steps, b.steps):
        return a.steps, a.values, b.values
    common, ia, ib = np.intersect1d(a.steps, b.steps, assume_unique=True, return_indices=True)
    if len(common) >= max(8, 0.5 * min(len(a), len(b))):
        return common, a.values[ia], b.values[ib]
    if not len(a) or not len(b):
        return a.steps[:0], a.values[:0], a.values[:0]
    # different logging steps: the total interpolated onto the component's steps
    inside = (a.steps >= b.steps[0]) & (a.steps <= b.steps[-1]) if len(b) else np.zeros(len(a), bool)
    return a.steps[inside], a.values[inside], np.interp(a.steps[inside], b.steps, b.values)


def _reduce_pairs(steps: np.ndarray, *ys: np.ndarray, limit: int = MAX_POINTS):
    n = len(steps)
    if n <= limit:
        return (steps, *ys)
    size = math.ceil(n / limit)
    cut = (n // size) * size
    out = [steps[:cut].reshape(-1, size)[:, -1]]
    out += [np.median(y[:cut].reshape(-1, size), axis=1) for y in ys]
    return tuple(out)


def detect_component_growth(ctx: Context) -> list[Signal]:
    out = []
    components = ctx.with_role("loss_component")
    for s in components:
        total_name = s.component_of or (ctx.main_loss.name if ctx.main_loss is not None else None)
        total = ctx.get(total_name) if total_name else None
        if total is None:
            continue
        steps, x, tot = _aligned(ctx.curve(s), ctx.curve(total))
        n = len(x)
        if n < 8:
            continue
        w = odd(max(3, n // 12))
        xs, ts = rolling_median(x, w), rolling_median(tot, w)
        rest = ts - xs
        after = np.flatnonzero(steps > ctx.early_end)
        if len(after) < 4:
            continue
        ip = int(after[np.argmax(xs[after])])
        it0 = int(np.argmin(xs[: ip + 1]))
        if ip - it0 < max(4, 0.2 * n):
            continue
        low, high = float(xs[it0]), float(xs[ip])
        growth = high - low
        ratio = high / low if low > 0 else math.inf
        trend = spearman(x[it0: ip + 1])
        total_level = abs(float(ts[it0])) or 1e-12
        rest_change = float(rest[ip] - rest[it0])
        if not (ratio >= COMPONENT_GROWTH_RATIO and growth / total_level >= COMPONENT_MIN_SHARE_GROWTH
                and trend >= COMPONENT_MIN_TREND and rest_change < 0):
            continue
        end = it0 + int(np.argmax(x[it0:]))  # the term's own peak after its low point
        start = int(np.argmin(x[: end + 1]))
        raw_ratio = float(x[end] / x[start]) if x[start] > 0 else math.inf
        share_start = float(x[start] / tot[start]) if tot[start] else None
        share_end = float(x[end] / tot[end]) if tot[end] else None
        total_change = float((ts[ip] - ts[it0]) / total_level)
        # the main loss: the largest other term of the same total, else the total itself
        siblings = [o for o in components if o is not s and (o.component_of or total_name) == total_name]
        main, main_change = total.name, total_change
        if siblings:
            big = max(siblings, key=lambda o: float(np.nanmedian(np.abs(ctx.curve(o).values))) if len(ctx.curve(o)) else -1)
            bs, bx, _ = _aligned(ctx.curve(big), ctx.curve(total))
            if len(bs) >= 8:
                bxs = rolling_median(bx, odd(max(3, len(bx) // 12)))
                a, b = np.interp(steps[it0], bs, bxs), np.interp(steps[ip], bs, bxs)
                main, main_change = big.name, float((b - a) / (abs(a) or 1e-12))
        severity = "high" if ratio >= COMPONENT_HIGH_RATIO and (share_end or 0) >= COMPONENT_HIGH_SHARE else "medium"
        axis = ctx.run.axis
        e0, e1 = ctx.epoch_at(s, float(steps[start])), ctx.epoch_at(s, float(steps[end]))
        at0 = f"epoch {fmt(e0)}" if e0 is not None else f"{axis} {fmt(float(steps[start]))}"
        at1 = f"epoch {fmt(e1)}" if e1 is not None else f"{axis} {fmt(float(steps[end]))}"
        summary = (f"{s.name} grows from {fmt(float(x[start]))} ({at0}) to {fmt(float(x[end]))} ({at1}), "
                   f"{raw_ratio:.1f}x and from {share_start:.1%} to {share_end:.1%} of {total.name}, "
                   f"while {main} changes {pct(main_change)}.")
        query = f"{plain(s.name)} loss component keeps growing while the total loss decreases"
        out.append(ctx.signal("component_growth", s, steps[start], steps[end], severity, summary, query,
                              value=raw_ratio, threshold=COMPONENT_GROWTH_RATIO,
                              numbers={"start_value": float(x[start]), "end_value": float(x[end]), "growth_ratio": raw_ratio,
                                       "trend_ratio": ratio,
                                       "share_start": share_start, "share_end": share_end, "total": total.name,
                                       "total_start": float(tot[start]), "total_end": float(tot[end]),
                                       "total_change_pct": total_change * 100, "main": main,
                                       "main_change_pct": main_change * 100, "trend_rho": trend}))
    return out
