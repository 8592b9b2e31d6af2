"""Representation detectors: collapse (complete, partial, dimensional), correlated dimensions, and
effective-rank curves that fall — from the probe's readings on an embedding and from a log's rank curves.
"""

from __future__ import annotations

import math

import numpy as np

from advisor import reading_names as rn
from advisor.detectors.base import Context, fmt, odd, pct, rolling_median, welch_t
from advisor.detectors.readings import family, sustained, window_numbers
from advisor.models import Signal

# ---- representations ----------------------------------------------------------------------------------
# SimSiam (Chen & He 2021): the std of L2-normalised embeddings is ~1/sqrt(D) when healthy and -> 0 when
# collapsed; a fifth of the reference is collapse. Mean pairwise cosine near 1: every sample points the
# same way. RankMe (Garrido et al. 2023) / dimensional collapse (Jing et al. 2022): an effective rank
# that is a small share of the width and not rising. VICReg (Bardes et al. 2022) penalises off-diagonal
# covariance and dimensions with no variance.
COLLAPSE_STD_RATIO = 0.2
COLLAPSE_COSINE = 0.9
COLLAPSE_COSINE_HIGH = 0.98
LOW_RANK_RATIO = 0.1
LOW_RANK_HIGH_RATIO = 0.03
CORRELATED_ENERGY = 0.8
CORRELATED_TOP1 = 0.5


def _std_reference(ctx: Context, fam: str) -> float | None:
    """The healthy std of L2-normalised rows, 1/sqrt(D): the probe's own reference, else from the width."""
    ref = ctx.median_of(rn.of(fam, rn.L2NORM_STD_REF))
    if ref is None:
        dim = ctx.median_of(rn.of(fam, rn.DIM))
        ref = 1 / math.sqrt(dim) if dim and dim > 0 else None
    return ref


def detect_representation_collapse(ctx: Context) -> list[Signal]:
    out = []
    families = {family(s.name) for s in ctx.probes(rn.L2NORM_STD) + ctx.probes(rn.MEAN_PAIRWISE_COSINE)}
    for fam in sorted(families):
        std, cos = ctx.get(rn.of(fam, rn.L2NORM_STD)), ctx.get(rn.of(fam, rn.MEAN_PAIRWISE_COSINE))
        w_std = None
        ref_value = _std_reference(ctx, fam)
        if std is not None:
            if ref_value:
                w_std = sustained(ctx, std, lambda v: v < COLLAPSE_STD_RATIO * ref_value)
        w_cos = sustained(ctx, cos, lambda v: v > COLLAPSE_COSINE) if cos is not None else None
        if w_std is None and w_cos is None:
            continue
        main = w_std or w_cos
        s = std if w_std is not None else cos
        numbers = window_numbers(main)
        parts = []
        if w_std is not None:
            numbers.update({"l2norm_std": w_std.median, "l2norm_std_ref": ref_value, "std_ratio": w_std.median / ref_value})
            parts.append(f"the std of its L2-normalised rows is {fmt(w_std.median)}, {w_std.median / ref_value:.2f}x the healthy 1/sqrt(D) = {fmt(ref_value)}")
        if w_cos is not None:
            numbers["mean_pairwise_cosine"] = w_cos.median
            parts.append(f"the mean pairwise cosine is {w_cos.median:.3f}")
        severity = "high" if (w_std is not None and (w_cos is not None or w_std.median < 0.1 * ref_value)) or (
            w_cos is not None and w_cos.median >= COLLAPSE_COSINE_HIGH) else "medium"
        summary = f"The {fam} representation collapses from {ctx.run.axis} {fmt(main.start)}: " + " and ".join(parts) + "."
        out.append(ctx.signal("representation_collapse", s, main.start, main.end, severity, summary,
                              "embeddings collapse, all outputs are nearly identical, cosine similarity near 1",
                              value=numbers.get("std_ratio", numbers.get("mean_pairwise_cosine")),
                              threshold=COLLAPSE_STD_RATIO if w_std is not None else COLLAPSE_COSINE, numbers=numbers))
    return out


def detect_low_rank(ctx: Context) -> list[Signal]:
    out = []
    for s in ctx.probes(rn.EFFECTIVE_RANK_RATIO):
        w = sustained(ctx, s, lambda v: v < LOW_RANK_RATIO)
        if w is None:
            continue
        third = max(2, len(w.values) // 3)
        if np.median(w.values[-third:]) > 1.2 * np.median(w.values[:third]):
            continue  # still rising: the representation is opening up
        fam = family(s.name)
        if partial_collapse(ctx, fam) is not None:
            continue  # the same collapse, told with its cause by partial_collapse
        rank_v = ctx.median_of(rn.of(fam, rn.EFFECTIVE_RANK), last=w.points)
        dim_v = ctx.median_of(rn.of(fam, rn.DIM))
        severity = "high" if w.median < LOW_RANK_HIGH_RATIO else "medium"
        summary = (f"The {fam} representation uses an effective rank of {fmt(rank_v) if rank_v is not None else 'about ' + format(w.median, '.1%')}"
                   + (f" of {fmt(dim_v)} dimensions" if dim_v else "") + f" ({w.median:.1%}) from {ctx.run.axis} {fmt(w.start)}, not rising.")
        out.append(ctx.signal("low_rank", s, w.start, w.end, severity, summary,
                              "representation rank is low, dimensional collapse", value=w.median, threshold=LOW_RANK_RATIO,
                              numbers=window_numbers(w, effective_rank=rank_v, dim=dim_v)))
    return out


def detect_correlated_dimensions(ctx: Context) -> list[Signal]:
    out = []
    for s in ctx.probes(rn.OFFDIAG_COV_ENERGY):
        fam = family(s.name)
        w = sustained(ctx, s, lambda v: v >= CORRELATED_ENERGY)
        if w is None:
            continue
        top1_v = ctx.median_of(rn.of(fam, rn.TOP1_VARIANCE_SHARE), last=w.points)
        if top1_v is not None and top1_v < CORRELATED_TOP1:
            continue  # off-diagonal energy without one dominant direction is mostly sampling noise (D close to N)
        # Early in training a healthy SSL representation concentrates on a few directions and adds the
        # next ones step by step (Simon et al. 2023, the stepwise nature of SSL): correlation is a fault
        # when the representation narrows with it, its effective rank at half of its peak (the
        # partial-collapse limit) or under the low-rank limit, not while the rank holds its level.
        narrow = _rank_fell(ctx, fam)[2] or (ctx.median_of(rn.of(fam, rn.EFFECTIVE_RANK_RATIO), last=w.points) or 1.0) < LOW_RANK_RATIO
        summary = (f"{w.median:.0%} of the {fam} covariance energy is off the diagonal"
                   + (f" and one direction holds {top1_v:.0%} of the variance" if top1_v is not None else "")
                   + f" from {ctx.run.axis} {fmt(w.start)}: the dimensions carry the same signal"
                   + ("." if narrow else ", though the effective rank holds over half of its peak."))
        out.append(ctx.signal("correlated_dimensions", s, w.start, w.end, "medium" if narrow else "low", summary,
                              "embedding dimensions are highly correlated, redundant features", value=w.median,
                              threshold=CORRELATED_ENERGY, numbers=window_numbers(w, top1_variance_share=top1_v)))
    return out


# ---- partial collapse -------------------------------------------------------------------------------------
# Below the hard thresholds above, a representation can still fold onto a few directions: the mean
# pairwise cosine sits at >= 0.5 in the last third (random directions in high dimension are ~0 apart;
# Wang & Isola 2020 measure uniformity on the hypersphere) having risen by >= 0.3 from its start, or
# the RankMe effective rank (Garrido et al. 2023) falls to half of its peak while the cosine is high.
# That is the dimensional collapse of Jing et al. 2022 and of SimSiam without its stop-gradient or
# predictor (Chen & He 2021): a missing asymmetry, not a loss-coefficient question.
PARTIAL_COSINE = 0.5
PARTIAL_COSINE_RISE = 0.3
PARTIAL_RANK_FALL = 0.5
# A slow partial collapse crosses none of those limits: the cosine creeps up by less than 0.3 while the
# spread of the L2-normalised rows (scale-free: the variance criterion of Bardes et al. 2022 / the std
# check of Chen & He 2021, read on directions) shrinks. Each change is judged against the curve's own
# noise, Welch's t between its first and last third (as the reward trends are), and the cosine must rise
# third by third: healthy SSL runs rise in their first steps and then fall back as the spread recovers.
PARTIAL_TREND_T = 2.0


def _rank_fell(ctx: Context, fam: str) -> tuple[float | None, float | None, bool]:
    """(peak, last-third level, whether it is at <= PARTIAL_RANK_FALL of the peak) of a family's effective rank."""
    rank = ctx.get(rn.of(fam, rn.EFFECTIVE_RANK_RATIO)) or ctx.get(rn.of(fam, rn.EFFECTIVE_RANK))
    if rank is None or len(ctx.curve(rank)) < 6:
        return None, None, False
    rv = ctx.curve(rank).values
    peak, last = float(np.max(rolling_median(rv, 3))), float(np.median(rv[-max(2, len(rv) // 3):]))
    return peak, last, peak > 0 and last <= PARTIAL_RANK_FALL * peak


def partial_collapse(ctx: Context, fam: str) -> dict | None:
    """Evidence of partial collapse of one representation family, or None."""
    cos = ctx.get(rn.of(fam, rn.MEAN_PAIRWISE_COSINE))
    if cos is None:
        return None
    c = ctx.curve(cos)
    keep = c.steps > ctx.early_end
    v = c.values[keep] if keep.sum() >= 6 else c.values
    if len(v) < 6:
        return None
    third = max(2, len(v) // 3)
    first, last = float(np.median(v[:third])), float(np.median(v[-third:]))
    if last < PARTIAL_COSINE or last > COLLAPSE_COSINE:
        return None  # low: healthy; above the hard limit: representation_collapse says it
    ref = _std_reference(ctx, fam)
    std_last = ctx.median_of(rn.of(fam, rn.L2NORM_STD), last=third)
    if ref and std_last is not None and std_last < COLLAPSE_STD_RATIO * ref:
        return None  # complete collapse by the std test
    rank_peak, rank_last, rank_fell = _rank_fell(ctx, fam)
    creep = _slow_collapse(ctx, fam, v)
    if last - first < PARTIAL_COSINE_RISE and not rank_fell and creep is None:
        return None
    return {"cosine_first_third": first, "cosine_last_third": last, "rank_peak": rank_peak, "rank_last": rank_last,
            "rank_fell": rank_fell, **(creep or {}), "start": float(c.steps[keep][0] if keep.sum() >= 6 else c.steps[0]), "end": float(c.steps[-1]),
            "series": cos.name, "effective_rank": ctx.median_of(rn.of(fam, rn.EFFECTIVE_RANK), last=third),
            "dim": ctx.median_of(rn.of(fam, rn.DIM))}


def _thirds(v: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    third = max(2, len(v) // 3)
    return v[:third], v[third:-third], v[-third:]


def _slow_collapse(ctx: Context, fam: str, cos_v: np.ndarray) -> dict | None:
    """The cosine rising third by third beyond its noise while the normalised spread falls beyond its own."""
    spread = ctx.get(rn.of(fam, rn.L2NORM_STD))
    if spread is None:
        return None
    c = ctx.curve(spread)
    sv = c.values[c.steps > ctx.early_end] if (c.steps > ctx.early_end).sum() >= 6 else c.values
    if len(sv) < 6:
        return None
    a, m, b = _thirds(cos_v)
    if not (len(m) and np.median(a) < np.median(m) < np.median(b)):
        return None
    cos_t = welch_t(a, b)
    sa, _, sb = _thirds(sv)
    spread_t = welch_t(sa, sb)
    if cos_t < PARTIAL_TREND_T or spread_t > -PARTIAL_TREND_T:
        return None
    return {"cosine_trend_t": cos_t, "spread_trend_t": spread_t, "spread_first_third": float(np.median(sa)),
            "spread_last_third": float(np.median(sb))}


def detect_partial_collapse(ctx: Context) -> list[Signal]:
    out = []
    for fam in sorted({family(s.name) for s in ctx.probes(rn.MEAN_PAIRWISE_COSINE)}):
        ev = partial_collapse(ctx, fam)
        if ev is None:
            continue
        rank_text = ""
        if ev["effective_rank"] is not None:
            rank_text = f"; its effective rank is {fmt(ev['effective_rank'])}" + (f" of {fmt(ev['dim'])} dimensions" if ev["dim"] else "")
        elif ev["rank_fell"]:
            rank_text = f"; its effective rank fell from {fmt(ev['rank_peak'])} to {fmt(ev['rank_last'])}"
        if "spread_trend_t" in ev:
            rank_text += (f"; the spread of its L2-normalised rows shrinks from {fmt(ev['spread_first_third'])} to "
                          f"{fmt(ev['spread_last_third'])} (Welch t {ev['spread_trend_t']:.1f}) while the cosine keeps rising (t {ev['cosine_trend_t']:.1f})")
        summary = (f"The {fam} representation partly collapses: the mean pairwise cosine rises from {ev['cosine_first_third']:.2f} "
                   f"to {ev['cosine_last_third']:.2f}{rank_text} — the embeddings fold onto a few directions.")
        severity = "high" if ev["rank_fell"] and ev["cosine_last_third"] - ev["cosine_first_third"] >= PARTIAL_COSINE_RISE else "medium"
        s = ctx.get(ev["series"])
        numbers = {k: v for k, v in ev.items() if k not in ("series", "start", "end")}
        out.append(ctx.signal("partial_collapse", s, ev["start"], ev["end"], severity, summary,
                              "partial dimensional collapse, embeddings become similar, missing stop-gradient or predictor asymmetry",
                              value=ev["cosine_last_third"], threshold=PARTIAL_COSINE, numbers=numbers))
    return out


# ---- low_rank (from a log's rank curves) ---------------------------------------------------------------
# An effective rank (RankMe, Garrido et al. 2023) that falls to half of its peak and stays there is
# dimensional collapse (Jing et al. 2022). Rising ranks are healthy and stay quiet.
RANK_DROP = 0.5


def detect_rank_drop(ctx: Context) -> list[Signal]:
    out = []
    for s in ctx.with_role("rank"):
        c = ctx.curve(s)
        steps, y = c.r_steps, c.r_level
        n = len(y)
        if n < 8:
            continue
        sm = rolling_median(y, odd(max(3, n // 10)))
        after = np.flatnonzero(steps > ctx.early_end)
        if len(after) < 4:
            continue
        p = int(after[np.argmax(sm[after])])
        k = int(np.clip(n // 10, 2, 10))
        final = float(np.median(y[-k:]))
        peak = float(sm[p])
        if peak <= 0 or final > RANK_DROP * peak or p >= n - k:
            continue
        summary = f"{s.name} falls from {fmt(peak)} at {ctx.run.axis} {fmt(float(steps[p]))} to {fmt(final)} at the end ({pct(final / peak - 1)})."
        out.append(ctx.signal("low_rank", s, steps[p], steps[-1], "medium", summary,
                              "effective rank of the representation drops, dimensional collapse",
                              value=final / peak, threshold=RANK_DROP,
                              numbers={"peak": peak, "peak_step": float(steps[p]), "final": final, "drop_pct": (final / peak - 1) * 100}))
    return out
