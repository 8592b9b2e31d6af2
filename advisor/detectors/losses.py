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
    crosses_zero,
    episodes,
    fmt,
    noise_sigma,
    odd,
    pct,
    plain,
    quantum,
    rolling_median,
    spearman,
    start_level,
    tail_level,
    what,
)
from advisor.models import Series, Signal


# ---- nan_inf --------------------------------------------------------------------------------------
# Any NaN/Inf a log wrote. A loss that ends non-finite has diverged (high); one that recovers is a
# skipped batch (e.g. AMP's GradScaler skipping an overflow step) unless it is frequent.
NAN_FREQUENT_SHARE = 0.05
GRAD_NAN_RARE_SHARE = 0.01  # inf grad norms on <1% of steps are AMP loss-scale probing, not a fault ...
GRAD_NAN_RARE_COUNT = 2  # ... and so are one or two on a short log (the GradScaler skips that step)
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
            rare = share < GRAD_NAN_RARE_SHARE or count <= GRAD_NAN_RARE_COUNT
            severity = "high" if not recovered else ("low" if rare else "medium")
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
# Severity is scale-free, against what the loss is about, not against a level that has fallen to ~0:
# - a loss below a tenth of where it started is judged against that tenth (one misclassified sample in
#   a batch of 16 takes a 0.05 loss to 0.3: 6x its level, but a tenth of the way back to the start);
# - a loss term is judged by how much it moves the total (a term at 1% of the total can triple unseen);
# - excursions that recur (5+ episodes) and this one no more than 3x their median size are the series'
#   own heavy-tailed minibatch noise (Simsekli et al. 2019, heavy-tailed SGD noise), a note at most.
SPIKE_LEVEL_FLOOR = 0.1
SPIKE_RECURRENT = 5
SPIKE_STANDOUT = 3.0
# - and for a finding the jump must stand out of the series' own largest fluctuations: 3x the 98th
#   percentile of its upward residuals elsewhere (a Gaussian series' 6-sigma spike is 3x its 2-sigma P98;
#   a heavy-tailed batch-16 loss has excursions of that size every few dozen steps).
SPIKE_TAIL_QUANTILE = 98


def _total_level(ctx: Context, s: Series, step: float) -> float | None:
    """The level of the total a loss term belongs to, at a step."""
    total_name = s.component_of or (ctx.main_loss.name if ctx.main_loss is not None else None)
    total = ctx.get(total_name) if total_name and total_name != s.name else None
    if total is None or not len(ctx.curve(total)):
        return None
    tc = ctx.curve(total)
    return float(np.interp(step, tc.r_steps, rolling_median(tc.r_level, 5)))


def detect_spikes(ctx: Context) -> list[Signal]:
    out = []
    for s in ctx.with_role(*LOSS_ROLES):
        c = ctx.curve(s)
        steps = c.r_steps
        y = -c.r_low if s.higher_is_better else c.r_high
        n = len(y)
        if n < SPIKE_MIN_POINTS or crosses_zero(c.r_level):
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
        flags[0] = False  # the first logged point is where the loss starts, never a spike
        eps = episodes(flags, max_gap=1)
        excess = np.array([max(y[i] - base[i] for i in ep.members) for ep in eps])
        recurrent = len(eps) >= SPIKE_RECURRENT
        typical_excess = float(np.median(excess)) if len(excess) else 0.0
        resid = y - base
        settled_mask = steps > ctx.early_end if (steps > ctx.early_end).sum() >= 3 else np.ones(n, bool)
        start = abs(start_level(-c.r_level if s.higher_is_better else c.r_level))
        found = []
        for ep in eps:
            peak = max(ep.members, key=lambda i: rel[i])
            if ep.first > 0 and y[peak] <= y[ep.first - 1]:
                continue  # still on its way down from a higher point (a steep start): no spike rises above its past
            after = y[ep.last + 1: ep.last + 1 + half]
            returned = len(after) == 0 or float(np.median(after)) <= base[peak] + 0.5 * (y[peak] - base[peak])
            if not returned:
                continue  # the level moved: level_shift / divergence describe it
            found.append((ep, peak))
        found.sort(key=lambda e: -rel[e[1]])
        for ep, peak in found[:SPIKES_REPORTED]:
            jump = float(y[peak] - base[peak])
            judge = max(abs(float(base[peak])), SPIKE_LEVEL_FLOOR * start)
            total = _total_level(ctx, s, float(steps[peak])) if s.role == "loss_component" else None
            if total is not None:
                judge = max(judge, abs(total))
            r = jump / judge if judge > 0 else float(rel[peak])
            severity = "high" if r >= SPIKE_HIGH_REL else "medium" if r >= SPIKE_MEDIUM_REL else "low"
            elsewhere = settled_mask.copy()
            elsewhere[max(0, ep.first - 1): ep.last + 2] = False
            up = resid[elsewhere & (resid > 0)]
            tail = float(np.percentile(up, SPIKE_TAIL_QUANTILE)) if len(up) >= 10 else 0.0
            noise_like = (recurrent and jump < SPIKE_STANDOUT * typical_excess) or (tail > 0 and jump < SPIKE_STANDOUT * tail)
            if noise_like:
                severity = "low"
            value, baseline = float(y[peak]), float(base[peak])
            with np.errstate(all="ignore"):
                ratio = value / baseline if baseline else math.inf
            if s.higher_is_better:
                value, baseline = -value, -baseline
            summary = (f"{s.name} spikes to {fmt(value)} at {ctx.run.axis} {fmt(float(steps[peak]))}, "
                       f"{ratio:.1f}x its running level of {fmt(baseline)}, then returns"
                       + (f" — within the loss's own noise (its other excursions reach {fmt(max(typical_excess, tail))})."
                          if noise_like else "."))
            out.append(ctx.signal("spike", s, steps[ep.first], steps[ep.last], severity, summary,
                                  f"sudden spike in the {what(s)} that recovers", value=float(z[peak]), threshold=SPIKE_Z,
                                  numbers={"peak": value, "peak_step": float(steps[peak]), "baseline": baseline,
                                           "ratio": ratio if math.isfinite(ratio) else None, "severity_ratio": r,
                                           "robust_z": float(z[peak]), "points": len(ep.members), "count": len(found),
                                           "excursions": len(eps), **({"total_level": total} if total is not None else {})}))
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
        if n < 5 or crosses_zero(c.r_level):
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


# ---- blowup -------------------------------------------------------------------------------------------
# Between a spike (one or two points) and divergence (never comes back): the smoothed loss climbs to at
# least 1.5x its best level so far, stays up for several logs, then falls back at least halfway. The
# loss-spike literature describes exactly these excursions in large runs (Chowdhery et al. 2022, PaLM:
# spikes over tens to hundreds of steps that recover; Molybog et al. 2023 trace them to Adam's update
# size); fastai's LR finder calls 4x the minimum a blow-up, so 4x is high here too.
BLOWUP_RISE = 1.5
BLOWUP_HIGH = 4.0
BLOWUP_MIN_POINTS = 3  # fewer is a spike
BLOWUP_RECOVERY = 0.5  # falls back at least halfway from its peak to where it started
BLOWUP_MIN_SHARE_OF_START = SPIKE_LEVEL_FLOOR  # and climbs by a tenth of the loss's starting level at least
BLOWUP_NOISE_SIGMAS = 4.0  # the two medians (before, during) differ by 4 standard errors (a median's is 1.25 sigma/sqrt(n))


def detect_blowup(ctx: Context) -> list[Signal]:
    out = []
    for s in ctx.with_role("loss", "val_loss"):
        c = ctx.curve(s)
        steps, y = c.r_steps, c.oriented(c.r_level)
        n = len(y)
        if n < 10 or crosses_zero(c.r_level):
            continue
        w = odd(max(3, n // 25))
        ys = rolling_median(y, w)  # one-point spikes removed: they are the spike detector's
        best = np.minimum.accumulate(ys)
        start = abs(start_level(y))
        sigma = noise_sigma(y)
        with np.errstate(all="ignore"):
            up = (best > 0) & (ys >= BLOWUP_RISE * best) & (ys - best >= BLOWUP_MIN_SHARE_OF_START * start) & (steps > ctx.early_end)
        found = []
        for ep in episodes(up, max_gap=w):
            inside = y[ep.first: ep.last + 1]
            pre = y[max(0, ep.first - max(5, w)): ep.first]
            if len(inside) < BLOWUP_MIN_POINTS or len(pre) < 3:
                continue
            before, up_level = float(np.median(pre)), float(np.median(inside))
            # the excursion as a whole, in raw points: 1.5x the level just before it and beyond the noise
            if before <= 0 or up_level < BLOWUP_RISE * before or up_level - before < BLOWUP_NOISE_SIGMAS * 1.25 * sigma * math.sqrt(1 / len(inside) + 1 / len(pre)):
                continue
            peak = ep.first + int(np.argmax(ys[ep.first: ep.last + 1]))
            top = float(ys[peak])
            later = ys[ep.last + 1:]
            bar = before + BLOWUP_RECOVERY * (top - before)
            if not len(later) or float(later.min()) > bar:
                continue  # never came back: divergence or a level shift describes it
            back = ep.last + 1 + int(np.argmax(later <= bar))
            found.append((top / before, ep.first, peak, back, before))
        found.sort(key=lambda f: -f[0])
        for factor, i0, peak, back, before in found[:SPIKES_REPORTED]:
            severity = "high" if factor >= BLOWUP_HIGH else "medium"
            raw_peak = float(c.r_level[i0 + int(np.argmax(c.r_level[i0: back + 1]))])
            summary = (f"{s.name} climbs from about {fmt(before)} at {ctx.run.axis} {fmt(float(steps[i0]))} to {fmt(raw_peak)} "
                       f"({factor:.1f}x, smoothed) over {back - i0} logs, then recovers to {fmt(float(ys[back]))} by "
                       f"{ctx.run.axis} {fmt(float(steps[back]))}: a blow-up the run survived.")
            out.append(ctx.signal("blowup", s, steps[i0], steps[back], severity, summary,
                                  f"{what(s)} blows up for a while then recovers, loss spike over many steps",
                                  value=factor, threshold=BLOWUP_RISE,
                                  numbers={"before": before, "peak": raw_peak, "peak_step": float(steps[peak]), "factor": factor,
                                           "recovered_to": float(ys[back]), "recovered_step": float(steps[back]),
                                           "logs_up": back - i0, "episodes": len(found)}))
    return out


# ---- oscillation ------------------------------------------------------------------------------------
# Loss going up and down wildly: consecutive swings between turning points, each at least half of the
# lower level, several in a row (AUTOTRAINER, Zhang et al. 2021, flags oscillating loss as a training
# problem). Swings must also clear the log's rounding (ten times its smallest step between values).
OSC_SWING_REL = 0.5
OSC_MIN_SWINGS = 4
OSC_ONGOING_FRACTION = 0.75  # still oscillating in the last quarter ...
OSC_MEDIUM_SWING = 1.0  # ... with swings that double the loss (median): medium. Noise alone rarely doubles it.
# A batch-8 loss jumps between 0.2 and 1.1 from log to log: runs of a handful of big swings are the
# minibatch noise of a healthy run. A finding needs twice the minimum run of swings, over a fifth of the
# series — an optimiser that oscillates keeps doing it.
OSC_MEDIUM_SWINGS = 2 * OSC_MIN_SWINGS
OSC_MEDIUM_COVERAGE = 0.2


def detect_oscillation(ctx: Context) -> list[Signal]:
    out = []
    for s in ctx.with_role("loss", "val_loss"):
        c = ctx.curve(s)
        steps, y = c.r_steps, c.oriented(c.r_level)
        n = len(y)
        if n < 8 or crosses_zero(c.r_level):
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
        persistent = len(ep.members) >= OSC_MEDIUM_SWINGS and (i1 - i0) >= OSC_MEDIUM_COVERAGE * n
        severity = "medium" if ongoing and rel_swing >= OSC_MEDIUM_SWING and persistent else "low"
        summary = (f"{s.name} swings up and down {len(ep.members)} times between {fmt(float(raw.min()))} and "
                   f"{fmt(float(raw.max()))} from {ctx.run.axis} {fmt(float(steps[i0]))} to {fmt(float(steps[i1]))}"
                   + (" and is still oscillating at the end." if ongoing else ", then settles."))
        out.append(ctx.signal("oscillation", s, steps[i0], steps[i1], severity, summary,
                              f"{what(s)} oscillates wildly up and down", value=len(ep.members), threshold=OSC_MIN_SWINGS,
                              numbers={"swings": len(ep.members), "min_in_window": float(raw.min()), "max_in_window": float(raw.max()),
                                       "median_swing": float(np.median(swings)), "median_swing_pct": rel_swing * 100,
                                       "ongoing": ongoing}))
    return out
