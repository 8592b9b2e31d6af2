"""Loss-curve detectors: non-finite values, spikes, divergence, oscillation.

Every threshold is a named constant next to the reasoning or literature it comes from. Detectors
judge smoothed levels and sustained windows, not single noisy points, and cap anything inside the
warm-up region at "low" (see base.EARLY_FRACTION).
"""

from __future__ import annotations

import math

import numpy as np

from advisor.detectors.base import (
    LOSS_ROLES,
    MAD_TO_SIGMA,
    Context,
    episodes,
    fmt,
    noise_sigma,
    odd,
    pct,
    plain,
    quantum,
    rolling_median,
    spearman,
    tail_level,
    what,
)
from advisor.models import Signal


# ---- nan_inf --------------------------------------------------------------------------------------
# Any NaN/Inf a log wrote. A loss that ends non-finite has diverged (high); one that recovers is a
# skipped batch (e.g. AMP's GradScaler skipping an overflow step) unless it is frequent.
NAN_FREQUENT_SHARE = 0.05
GRAD_NAN_RARE_SHARE = 0.01  # inf grad norms on <1% of steps are AMP loss-scale probing, not a fault
# NaN at most points but finite values to the end: a logger writing NaN for "not computed this step"
# (a validation loss evaluated every N steps), not a numerical problem.
NAN_AS_MISSING_SHARE = 0.5


def detect_nan_inf(ctx: Context) -> list[Signal]:
    out = []
    for s in ctx.series:
        if s.role == "probe":
            continue
        values = np.asarray(s.values, dtype=np.float64)
        bad = ~np.isfinite(values)
        count = int(bad.sum())
        if not count:
            continue
        idx = np.flatnonzero(bad)
        share = count / len(values)
        recovered = bool(np.isfinite(values[idx[-1] + 1:]).any())
        n_nan = int(np.isnan(values).sum())
        first, last = float(s.steps[idx[0]]), float(s.steps[idx[-1]])
        finite_to_the_end = bool(np.isfinite(values[int(0.9 * len(values)):]).any())
        placeholder = finite_to_the_end and n_nan == count and share >= NAN_AS_MISSING_SHARE
        if placeholder:
            severity = "low"
        elif s.role in LOSS_ROLES:
            severity = "high" if (not recovered or share >= NAN_FREQUENT_SHARE) else "medium"
        elif s.role == "grad_norm":
            severity = "high" if not recovered else ("low" if share < GRAD_NAN_RARE_SHARE else "medium")
        else:
            severity = "medium" if not recovered else "low"
        kinds = " and ".join(k for k, c in (("NaN", n_nan), ("Inf", count - n_nan)) if c)
        if placeholder:
            summary = (f"{s.name} is NaN at {count} of {len(values)} points between finite values — most likely "
                       f"steps where it was not computed.")
        else:
            state = "and stays non-finite to the end" if not recovered else f"at {count} point(s), then recovers"
            summary = f"{s.name} becomes {kinds} at {ctx.run.axis} {fmt(first)} {state}."
        if s.role in LOSS_ROLES:
            query = f"{what(s)} becomes NaN or inf during training"
        elif s.role == "grad_norm":
            query = "gradient norm becomes inf or NaN, gradients overflow"
        else:
            query = f"{plain(s.name)} metric becomes NaN"
        out.append(ctx.signal("nan_inf", s, first, last, severity, summary, query, value=count, threshold=0,
                              numbers={"count": count, "share": share, "nan_count": n_nan, "inf_count": count - n_nan,
                                       "first_step": first, "last_step": last, "recovered": recovered},
                              early_cap=False))
    return out


# ---- spike ------------------------------------------------------------------------------------------
# Robust (modified) z-score against a centred rolling median/MAD (Iglewicz & Hoaglin 1993 use 3.5 for
# single outliers; a loss curve has thousands of points, so 6 keeps false alarms per run rare), and a
# jump of at least 25% of the running level so that a near-constant curve's tiny wiggles never count.
SPIKE_Z = 6.0
SPIKE_REL = 0.25
SPIKE_MEDIUM_REL = 1.0  # the loss doubles for a moment
SPIKE_HIGH_REL = 3.0  # four times its level
SPIKE_MIN_POINTS = 8
SPIKES_REPORTED = 3
# ... and large against the curve's whole range (5%) and its rounding (10 steps of the last printed
# digit): a loss of 0.0003 printing as 0.0008 is not a spike anyone should act on.
SPIKE_MIN_RANGE_SHARE = 0.05
SPIKE_MIN_QUANTA = 10


def detect_spikes(ctx: Context) -> list[Signal]:
    out = []
    for s in ctx.with_role(*LOSS_ROLES):
        c = ctx.curve(s)
        steps = c.r_steps
        y = -c.r_low if s.higher_is_better else c.r_high
        n = len(y)
        if n < SPIKE_MIN_POINTS:
            continue
        half = int(np.clip(n // 20, 3, 50))
        w = 2 * half + 1
        base = rolling_median(y, w)
        mad = rolling_median(np.abs(y - base), w)
        level = np.maximum(np.abs(base), 1e-12)
        scale = np.maximum(MAD_TO_SIGMA * mad, 0.01 * level)
        with np.errstate(all="ignore"):
            z = (y - base) / scale
            rel = (y - base) / level
        settled = y[steps > ctx.early_end] if (steps > ctx.early_end).sum() >= 3 else y
        spread = float(np.percentile(settled, 99) - np.percentile(settled, 1))
        floor = max(SPIKE_MIN_RANGE_SHARE * spread, SPIKE_MIN_QUANTA * quantum(y))
        flags = (z >= SPIKE_Z) & (rel >= SPIKE_REL) & (y - base >= floor)
        found = []
        for ep in episodes(flags, max_gap=1):
            peak = max(ep.members, key=lambda i: rel[i])
            after = y[ep.last + 1: ep.last + 1 + half]
            returned = len(after) == 0 or float(np.median(after)) <= base[peak] + 0.5 * (y[peak] - base[peak])
            if not returned:
                continue  # the level moved: level_shift / divergence describe it
            found.append((ep, peak))
        found.sort(key=lambda e: -rel[e[1]])
        for ep, peak in found[:SPIKES_REPORTED]:
            r = float(rel[peak])
            severity = "high" if r >= SPIKE_HIGH_REL else "medium" if r >= SPIKE_MEDIUM_REL else "low"
            value, baseline = float(y[peak]), float(base[peak])
            with np.errstate(all="ignore"):
                ratio = value / baseline if baseline else math.inf
            if s.higher_is_better:
                value, baseline = -value, -baseline
            summary = (f"{s.name} spikes to {fmt(value)} at {ctx.run.axis} {fmt(float(steps[peak]))}, "
                       f"{ratio:.1f}x its running level of {fmt(baseline)}, then returns.")
            out.append(ctx.signal("spike", s, steps[ep.first], steps[ep.last], severity, summary,
                                  f"sudden spike in the {what(s)} that recovers", value=float(z[peak]), threshold=SPIKE_Z,
                                  numbers={"peak": value, "peak_step": float(steps[peak]), "baseline": baseline,
                                           "ratio": ratio if math.isfinite(ratio) else None,
                                           "robust_z": float(z[peak]), "points": len(ep.members), "count": len(found)}))
    return out


# ---- divergence -------------------------------------------------------------------------------------
# The training loss climbs well above its best level and stays there. fastai's learning-rate finder
# calls a loss 4x its minimum diverged (Smith 2017's LR range test); 30% sustained is an earlier warning.
DIVERGENCE_RISE = 0.30
DIVERGENCE_HIGH_FACTOR = 4.0
DIVERGENCE_NOISE_SIGMAS = 3.0


def detect_divergence(ctx: Context) -> list[Signal]:
    out = []
    for s in ctx.with_role("loss"):
        c = ctx.curve(s)
        steps, y = c.r_steps, c.oriented(c.r_level)
        n = len(y)
        if n < 5:
            continue
        ys = rolling_median(y, odd(n // 10) if n >= 20 else 1)
        after = np.flatnonzero(steps > ctx.early_end)
        if len(after) < 4:
            after = np.arange(n)
        im = int(after[np.argmin(ys[after])])
        k_after = n - 1 - im
        if k_after < 2:
            continue
        best = float(ys[im])
        tail = tail_level(y, k_after)
        scale = max(abs(best), 1e-12)
        rise = (tail - best) / scale
        sigma = noise_sigma(y)
        # sustained: most later points are well above the best, or the climb is steady (an accelerating
        # blow-up spends most of its time below half its final height)
        sustained = float(np.mean(y[im + 1:] > best + 0.5 * (tail - best))) >= 0.6 or spearman(y[im:]) >= 0.6
        noisy = n >= 10 and tail - best < DIVERGENCE_NOISE_SIGMAS * sigma  # 5-9 points: too few to estimate noise
        if rise < DIVERGENCE_RISE or noisy or not sustained:
            continue
        severity = "high" if (best > 0 and tail >= DIVERGENCE_HIGH_FACTOR * best) else "medium"
        peak = im + int(np.argmax(y[im:]))
        summary = (f"{s.name} rises from its best level {fmt(best)} at {ctx.run.axis} {fmt(float(steps[im]))} "
                   f"to {fmt(tail)} at the end ({pct(rise)}), peaking at {fmt(float(y[peak]))}.")
        out.append(ctx.signal("divergence", s, steps[im], steps[-1], severity, summary,
                              "training loss increases instead of decreasing, diverges", value=rise, threshold=DIVERGENCE_RISE,
                              numbers={"best_value": best, "best_step": float(steps[im]), "final_value": tail,
                                       "peak_value": float(y[peak]), "peak_step": float(steps[peak]), "rise_pct": rise * 100}))
    return out


# ---- oscillation ------------------------------------------------------------------------------------
# Loss going up and down wildly: consecutive swings between turning points, each at least half of the
# lower level, several in a row (AUTOTRAINER, Zhang et al. 2021, flags oscillating loss as a training
# problem). Swings must also clear the log's rounding (ten times its smallest step between values).
OSC_SWING_REL = 0.5
OSC_MIN_SWINGS = 4
OSC_ONGOING_FRACTION = 0.75  # still oscillating in the last quarter ...
OSC_MEDIUM_SWING = 1.0  # ... with swings that double the loss (median): medium. Noise alone rarely doubles it.


def detect_oscillation(ctx: Context) -> list[Signal]:
    out = []
    for s in ctx.with_role("loss", "val_loss"):
        c = ctx.curve(s)
        steps, y = c.r_steps, c.oriented(c.r_level)
        n = len(y)
        if n < 8:
            continue
        d = np.diff(y)
        nz = np.flatnonzero(d != 0)
        if len(nz) < OSC_MIN_SWINGS + 1:
            continue
        step_q = quantum(y)
        sign = np.sign(d[nz])
        turns = nz[np.flatnonzero(sign[1:] != sign[:-1]) + 1]  # index in d where the direction flips
        ext = np.unique(turns)  # interior turning points only: the first descent is not a swing
        if len(ext) < OSC_MIN_SWINGS + 1:
            continue
        a, b = y[ext[:-1]], y[ext[1:]]
        lo = np.minimum(np.abs(a), np.abs(b))
        swing = np.abs(b - a)
        big = (swing >= OSC_SWING_REL * np.maximum(lo, 1e-12)) & (swing >= 10 * step_q) & (steps[ext[1:]] > ctx.early_end)
        runs = [ep for ep in episodes(big, max_gap=0) if len(ep.members) >= OSC_MIN_SWINGS]
        if not runs:
            continue
        ep = max(runs, key=lambda e: len(e.members))
        i0, i1 = int(ext[ep.first]), int(ext[ep.last + 1])
        ongoing = steps[i1] >= steps[0] + OSC_ONGOING_FRACTION * (steps[-1] - steps[0])
        raw = c.r_level[i0: i1 + 1]
        swings = swing[ep.first: ep.last + 1]
        with np.errstate(all="ignore"):
            rel_swing = float(np.median(swings / np.maximum(lo[ep.first: ep.last + 1], 1e-12)))
        severity = "medium" if ongoing and rel_swing >= OSC_MEDIUM_SWING else "low"
        summary = (f"{s.name} swings up and down {len(ep.members)} times between {fmt(float(raw.min()))} and "
                   f"{fmt(float(raw.max()))} from {ctx.run.axis} {fmt(float(steps[i0]))} to {fmt(float(steps[i1]))}"
                   + (" and is still oscillating at the end." if ongoing else ", then settles."))
        out.append(ctx.signal("oscillation", s, steps[i0], steps[i1], severity, summary,
                              f"{what(s)} oscillates wildly up and down", value=len(ep.members), threshold=OSC_MIN_SWINGS,
                              numbers={"swings": len(ep.members), "min_in_window": float(raw.min()), "max_in_window": float(raw.max()),
                                       "median_swing": float(np.median(swings)), "median_swing_pct": rel_swing * 100,
                                       "ongoing": ongoing}))
    return out
