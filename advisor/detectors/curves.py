"""Detectors on a log's curves: losses, validation metrics, gradient norms, codebook usage, ranks.

Every threshold is a named constant next to the reasoning or literature it comes from. Detectors
judge smoothed levels and sustained windows, not single noisy points, and cap anything inside the
warm-up region at "low" (see base.EARLY_FRACTION).
"""

from __future__ import annotations

import math

import numpy as np

from advisor.detectors.base import (
    MAD_TO_SIGMA,
    MAX_POINTS,
    Context,
    episodes,
    fmt,
    forward_median,
    lower,
    noise_sigma,
    odd,
    pct,
    quantum,
    rolling_median,
    smooth_keep_edges,
    spearman,
    trailing,
)
from advisor.models import Series, Signal
from advisor.roles import leaf

LOSS_ROLES = ("loss", "val_loss", "loss_component")


def _plain(name: str) -> str:
    """A metric name as words for a search query: `train/relational` -> `relational`."""
    return leaf(name).replace("_", " ").replace("-", " ").strip() or name


def _what(s: Series) -> str:
    return {
        "loss": "training loss",
        "val_loss": "validation loss",
        "loss_component": "loss component",
        "val_metric": "validation metric",
        "train_metric": "training metric",
        "grad_norm": "gradient norm",
        "usage": "codebook usage",
        "rank": "effective rank",
        "lr": "learning rate",
    }.get(s.role, "metric")


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
            query = f"{_what(s)} becomes NaN or inf during training"
        elif s.role == "grad_norm":
            query = "gradient norm becomes inf or NaN, gradients overflow"
        else:
            query = f"{_plain(s.name)} metric becomes NaN"
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
                                  f"sudden spike in the {_what(s)} that recovers", value=float(z[peak]), threshold=SPIKE_Z,
                                  numbers={"peak": value, "peak_step": float(steps[peak]), "baseline": baseline,
                                           "ratio": ratio if math.isfinite(ratio) else None,
                                           "robust_z": float(z[peak]), "points": len(ep.members), "count": len(found)}))
    return out


# ---- grad_spike -------------------------------------------------------------------------------------
# Gradient-norm peaks far above the running (trailing) median: the signature of the instabilities in
# Chowdhery et al. 2022 (PaLM loss spikes) and Molybog et al. 2023 (Adam instability), and of the
# exploding gradients of Pascanu et al. 2013. Trailing, so a burst of several points still stands out.
GRAD_SPIKE_RATIO = 2.0
GRAD_SPIKE_Z = 5.0
GRAD_SPIKE_HIGH_RATIO = 10.0
GRAD_SPIKE_MEDIUM_RATIO = 4.0
GRAD_SPIKE_SUSTAINED_POINTS = 3


def detect_grad_spikes(ctx: Context) -> list[Signal]:
    out = []
    for s in ctx.with_role("grad_norm"):
        c = ctx.curve(s)
        steps, y = c.r_steps, c.r_high
        n = len(y)
        if n < SPIKE_MIN_POINTS:
            continue
        window = int(np.clip(n // 5, 5, 200))
        base = trailing(y, window, "median", min_periods=max(3, window // 2))
        mad = trailing(np.abs(y - base), window, "median", min_periods=max(3, window // 2))
        with np.errstate(all="ignore"):
            scale = np.maximum(MAD_TO_SIGMA * np.nan_to_num(mad, nan=0.0), 0.05 * np.abs(base))
            ratio = y / base
            z = (y - base) / scale
        flags = np.isfinite(base) & (base > 0) & (ratio >= GRAD_SPIKE_RATIO) & (z >= GRAD_SPIKE_Z)
        eps = episodes(flags, max_gap=2)
        eps.sort(key=lambda e: -max(ratio[i] for i in e.members))
        for ep in eps[:SPIKES_REPORTED]:
            peak = max(ep.members, key=lambda i: y[i])
            r = float(ratio[peak])
            points = len(ep.members)
            if r >= GRAD_SPIKE_HIGH_RATIO:
                severity = "high"
            elif r >= GRAD_SPIKE_MEDIUM_RATIO or points >= GRAD_SPIKE_SUSTAINED_POINTS:
                severity = "medium"
            else:
                severity = "low"
            lo, hi = float(np.min(y[ep.members])), float(y[peak])
            span = f"{fmt(lo)}-{fmt(hi)}" if points > 1 else fmt(hi)
            summary = (f"{s.name} peaks at {span} over {points} point(s) from {ctx.run.axis} {fmt(float(steps[ep.first]))} "
                       f"to {fmt(float(steps[ep.last]))}, up to {r:.1f}x its running median of {fmt(float(base[peak]))}.")
            out.append(ctx.signal("grad_spike", s, steps[ep.first], steps[ep.last], severity, summary,
                                  "gradient norm spikes far above its usual level", value=r, threshold=GRAD_SPIKE_RATIO,
                                  numbers={"peak": hi, "peak_step": float(steps[peak]), "baseline": float(base[peak]),
                                           "ratio": r, "points": points, "min_in_window": lo, "episodes": len(eps)}))
    return out


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
        query = f"{_plain(s.name)} loss component keeps growing while the total loss decreases"
        out.append(ctx.signal("component_growth", s, steps[start], steps[end], severity, summary, query,
                              value=raw_ratio, threshold=COMPONENT_GROWTH_RATIO,
                              numbers={"start_value": float(x[start]), "end_value": float(x[end]), "growth_ratio": raw_ratio,
                                       "trend_ratio": ratio,
                                       "share_start": share_start, "share_end": share_end, "total": total.name,
                                       "total_start": float(tot[start]), "total_end": float(tot[end]),
                                       "total_change_pct": total_change * 100, "main": main,
                                       "main_change_pct": main_change * 100, "trend_rho": trend}))
    return out


# ---- divergence -------------------------------------------------------------------------------------
# The training loss climbs well above its best level and stays there. fastai's learning-rate finder
# calls a loss 4x its minimum diverged (Smith 2017's LR range test); 30% sustained is an earlier warning.
DIVERGENCE_RISE = 0.30
DIVERGENCE_HIGH_FACTOR = 4.0
DIVERGENCE_NOISE_SIGMAS = 3.0


def _tail_level(y: np.ndarray, k_after: int) -> float:
    k = int(np.clip(k_after // 2, 1, 5))
    return float(np.median(y[-k:]))


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
        tail = _tail_level(y, k_after)
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


# ---- plateau ----------------------------------------------------------------------------------------
# No meaningful improvement over a long final window (the patience/min_delta rule of Keras'
# ReduceLROnPlateau and EarlyStopping, on a smoothed curve): from the window's start the curve never
# gets more than 2% better than where it is, it stays inside a 5% band (a rising curve is overfitting
# or divergence, not a plateau), and the window covers at least a quarter of the run. A plateau is
# often convergence, so it is "low" unless the curve has been stuck (< 0.5% change) for most of the run.
PLATEAU_REL_TOL = 0.02
PLATEAU_BAND = 0.05
PLATEAU_MIN_FRACTION = 0.25
PLATEAU_STUCK_FRACTION = 0.75  # stuck for three quarters of the run: more than early convergence
PLATEAU_STUCK_TOL = 0.005  # first third of the window vs its last third
PLATEAU_MIN_POINTS = 8


def detect_plateau(ctx: Context) -> list[Signal]:
    out = []
    targets = [ctx.main_loss] if ctx.main_loss is not None else []
    targets += ctx.with_role("val_loss", "val_metric")
    for s in targets:
        c = ctx.curve(s)
        steps, y = c.r_steps, c.oriented(c.r_level)
        n = len(y)
        if n < PLATEAU_MIN_POINTS:
            continue
        w = odd(n // 10) if n >= 20 else (3 if n >= 10 else 1)
        ys = rolling_median(y, w)
        after = np.flatnonzero(steps > ctx.early_end)
        if len(after) < PLATEAU_MIN_POINTS // 2:
            continue
        first = int(after[0])
        suffix_best = np.minimum.accumulate(ys[::-1])[::-1]
        scale = np.maximum(np.abs(suffix_best), 1e-12)
        remaining = (ys - suffix_best) / scale  # how much better the curve still gets, relative
        sigma = noise_sigma(y[first:]) / math.sqrt(w)
        tol = np.maximum(PLATEAU_REL_TOL, 2 * sigma / scale)
        not_flat = np.flatnonzero(remaining[first:] >= tol[first:])
        t0 = first + (int(not_flat[-1]) + 1 if len(not_flat) else 0)
        if t0 >= n - 1:
            continue
        # the flat stretch must also stay in a band and end about where it began (a rising curve is
        # overfitting or divergence): move the start forward until it does
        suffix_max = np.maximum.accumulate(ys[::-1])[::-1]
        with np.errstate(all="ignore"):
            band_ok = (suffix_max - suffix_best) / scale <= np.maximum(PLATEAU_BAND, 4 * sigma / scale)
            drift_ok = np.abs(ys[-1] - ys) / scale <= np.maximum(PLATEAU_REL_TOL, 2 * sigma / scale)
        ok = np.flatnonzero((band_ok & drift_ok)[t0:])
        if not len(ok):
            continue
        t0 += int(ok[0])
        series_span = float(steps[-1] - steps[0]) or 1.0
        fraction = float(steps[-1] - steps[t0]) / series_span
        points = n - t0
        if fraction < PLATEAU_MIN_FRACTION or points < 5:
            continue
        raw = c.r_level[t0:]
        seg = ys[t0:]
        level = float(np.median(np.abs(seg))) or 1e-12
        gain = float(remaining[t0])
        change = (float(seg[-1]) - float(seg[0])) / level
        third = max(1, len(seg) // 3)
        trend = abs(float(np.median(y[t0:t0 + third]) - np.median(y[n - third:]))) / level
        stuck = fraction >= PLATEAU_STUCK_FRACTION and trend < PLATEAU_STUCK_TOL
        severity = "medium" if stuck else "low"
        what = _what(s)
        summary = (f"{s.name} stays between {fmt(float(raw.min()))} and {fmt(float(raw.max()))} from {ctx.run.axis} "
                   f"{fmt(float(steps[t0]))} to the end ({fraction:.0%} of the run) without a lasting improvement"
                   + (": stuck." if stuck else "."))
        out.append(ctx.signal("plateau", s, steps[t0], steps[-1], severity, summary,
                              f"{what} stops improving and plateaus", value=fraction, threshold=PLATEAU_MIN_FRACTION,
                              numbers={"start_value": float(raw[0]), "end_value": float(raw[-1]), "min_in_window": float(raw.min()),
                                       "max_in_window": float(raw.max()), "improvement_pct": gain * 100,
                                       "change_pct": change * 100,
                                       "band_pct": float((seg.max() - seg.min()) / level) * 100, "trend_pct": trend * 100,
                                       "fraction_of_run": fraction, "points": points}))
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
                              f"{_what(s)} oscillates wildly up and down", value=len(ep.members), threshold=OSC_MIN_SWINGS,
                              numbers={"swings": len(ep.members), "min_in_window": float(raw.min()), "max_in_window": float(raw.max()),
                                       "median_swing": float(np.median(swings)), "median_swing_pct": rel_swing * 100,
                                       "ongoing": ongoing}))
    return out


# ---- overfitting ------------------------------------------------------------------------------------
# Validation loss reaches its minimum and then rises while training continues: Prechelt (1998)'s
# generalisation loss GL(t) = 100 (E_va(t) / E_opt(t) - 1), with early stopping at GL > 2..5%.
# The rise must beat the curve's own noise. If training loss rose as much, the run as a whole went
# bad and the kind is `divergence`; if a validation metric still improved after the loss minimum, the
# loss rise is mostly miscalibration and the severity drops one level.
OVERFIT_GL = 0.02  # Prechelt's GL_2
OVERFIT_HIGH_GL = 0.25
OVERFIT_NOISE_SIGMAS = 2.0  # the end level (a median of up to 5 points) beats the noise of its median
OVERFIT_ALL_ABOVE = 0.8  # nearly every evaluation after the best is worse ...
OVERFIT_TREND = 0.3  # ... or most are, with a rising rank trend (Spearman rho)
OVERFIT_STRONG_TREND = 0.6  # ... or a clearly rising trend over 5+ evaluations
OVERFIT_TRAIN_RISE = 0.10  # training loss up 10% over the same window: not overfitting, divergence
METRIC_STILL_IMPROVING = 0.02


def _level_near(c, step: float, k: int = 2) -> float | None:
    if not len(c):
        return None
    i = int(np.searchsorted(c.steps, step))
    lo, hi = max(0, i - k), min(len(c), i + k + 1)
    return float(np.median(c.values[lo:hi])) if hi > lo else float(c.values[min(i, len(c) - 1)])


def detect_overfitting(ctx: Context) -> list[Signal]:
    out = []
    vals = ctx.with_role("val_loss") or ctx.with_role("val_metric")
    train = ctx.main_loss
    for s in vals:
        c = ctx.curve(s)
        steps, y = c.r_steps, c.oriented(c.r_level)
        n = len(y)
        if n < 5:
            continue
        b = int(np.argmin(y))  # the early-stopping checkpoint: the raw minimum
        k_after = n - 1 - b
        if k_after < 2:
            continue
        ys = smooth_keep_edges(y, 3 if n < 30 else odd(n // 10))
        best = float(ys.min())  # the best level, smoothed so that one lucky evaluation does not set it
        tail = _tail_level(y, k_after)
        scale = max(abs(best), 1e-12)
        gl = (tail - best) / scale
        k = int(np.clip(k_after // 2, 1, 5))
        sigma = noise_sigma(y)
        after = y[b + 1:]
        share = float(np.mean(after > best + 0.5 * (tail - best)))
        rho = spearman(y[b:])
        sustained = (share >= OVERFIT_ALL_ABOVE or (share >= 0.5 and rho >= OVERFIT_TREND)
                     or (k_after >= 5 and share >= 0.3 and rho >= OVERFIT_STRONG_TREND))
        if gl < OVERFIT_GL or tail - best < OVERFIT_NOISE_SIGMAS * sigma / math.sqrt(k) or not sustained:
            continue
        best_step = float(steps[b])
        sign = -1.0 if s.higher_is_better else 1.0
        best_value = float(c.r_level[b])
        final_value = float(c.r_level[-1])
        rise_pct = (final_value - best_value) / (abs(best_value) or 1e-12) * sign * 100
        numbers: dict = {"best_step": best_step, "best_epoch": ctx.epoch_at(s, best_step), "best_value": best_value,
                         "final_value": final_value, "final_step": float(steps[-1]), "rise_pct": rise_pct,
                         "best_level": float(c.unoriented(best)), "tail_level": float(c.unoriented(tail)), "gl_pct": gl * 100,
                         "trend_rho": rho}
        kind = "overfitting"
        train_note = ""
        if train is not None:
            tc = ctx.curve(train)
            inside = tc.steps >= best_step
            if inside.sum() >= 2:
                t_start = _level_near(tc, best_step) if tc.steps[0] <= best_step else float(tc.values[inside][0])
                t_end = float(np.median(tc.values[-max(1, min(5, int(inside.sum()) // 2)):]))
                change = (t_end - t_start) / (abs(t_start) or 1e-12)
                numbers["train_metric"] = train.name
                numbers["train_change_pct"] = change * 100
                if change >= OVERFIT_TRAIN_RISE:
                    kind = "divergence"
                    train_note = f" while {train.name} rose too ({pct(change)})"
                else:
                    train_note = f" while {train.name} changed {pct(change)}"
        severity = "high" if gl >= OVERFIT_HIGH_GL else "medium"
        improving = _metric_after(ctx, best_step, exclude=s)
        if improving and kind == "overfitting" and s.role == "val_loss":
            m, m_step, m_gain = improving
            numbers.update({"metric": m.name, "metric_best_step": m_step, "metric_gain_pct": m_gain * 100})
            severity = lower(severity)
            train_note += f"; {m.name} still improved until {ctx.run.axis} {fmt(m_step)}"
        best_ckpt = ctx.run.meta.get("trainer_best_step")
        if best_ckpt is not None:
            numbers["trainer_best_step"] = best_ckpt
        be = numbers["best_epoch"]
        where = f"{ctx.run.axis} {fmt(best_step)}" + (f" (epoch {fmt(be)})" if be is not None and ctx.run.axis != "epoch" else "")
        summary = (f"{s.name} is best at {where} with {fmt(best_value)} and ends at {fmt(final_value)} "
                   f"({pct(rise_pct / 100)} worse){train_note}.")
        query = ("validation loss increases while training loss decreases, overfitting" if kind == "overfitting"
                 else "validation and training loss both increase, training diverges")
        out.append(ctx.signal(kind, s, best_step, steps[-1], severity, summary, query, value=gl * 100,
                              threshold=OVERFIT_GL * 100, numbers=numbers, early_cap=False))
    return out


def _metric_after(ctx: Context, step: float, exclude: Series):
    """A validation metric whose best comes after `step` and beats its value there by 2%+."""
    for m in ctx.with_role("val_metric"):
        if m is exclude:
            continue
        c = ctx.curve(m)
        if len(c) < 3:
            continue
        y = c.oriented(c.values)
        at = _level_near(c, step, k=0)
        if at is None:
            continue
        at = float(c.oriented(np.array([at]))[0])
        i = int(np.argmin(y))
        if c.steps[i] > step and (at - y[i]) / (abs(at) or 1e-12) >= METRIC_STILL_IMPROVING:
            return m, float(c.steps[i]), float((at - y[i]) / (abs(at) or 1e-12))
    return None


# ---- level_shift ------------------------------------------------------------------------------------
# A discontinuity: one step that moves the curve by many times its usual step-to-step change (a
# one-step CUSUM-style change point, Page 1954), at least 30% of the level. Persistent shifts change
# the regime; transient ones (jump and back, e.g. a codebook reset's burst of usage) are reported as
# such. Losses only report persistent worsening jumps (their one-point excursions are spikes).
LEVEL_SHIFT_Z = 6.0
LEVEL_SHIFT_REL = 0.30
LEVEL_SHIFT_TRANSIENT_REL = 0.4  # a jump-and-back must be bigger to count: 40% of the level
LEVEL_SHIFT_ROLES = ("usage", "rank", "val_metric", "train_metric", "loss", "val_loss", "loss_component")


def detect_level_shift(ctx: Context) -> list[Signal]:
    out = []
    for s in ctx.with_role(*LEVEL_SHIFT_ROLES):
        c = ctx.curve(s)
        steps, y = c.r_steps, c.r_level
        n = len(y)
        if n < 10:
            continue
        d = np.r_[np.nan, np.diff(y)]
        window = int(np.clip(n // 4, 10, 200))
        typical = trailing(np.abs(d), window, "median", min_periods=5)
        k = int(np.clip(n // 20, 3, 10))
        before_level = trailing(y, k, "median", min_periods=2)
        with np.errstate(all="ignore"):
            z = np.abs(d) / np.maximum(MAD_TO_SIGMA * typical, 1e-12 + 1e-3 * np.abs(before_level))
            rel = np.abs(d) / np.maximum(np.abs(before_level), 1e-12)
        flags = np.isfinite(z) & (z >= LEVEL_SHIFT_Z) & (rel >= LEVEL_SHIFT_REL) & (steps > ctx.early_end)
        loss_like = s.role in LOSS_ROLES
        worse_is_up = not s.higher_is_better
        for ep in episodes(flags, max_gap=k - 1):
            i0, i1 = ep.first, ep.last
            before = float(before_level[i0])
            after_vals = y[i1 + 1: i1 + 1 + k]
            after = float(np.median(after_vals)) if len(after_vals) else float(y[i1])
            inside = y[i0: i1 + 1]
            jump_up = d[i0] > 0
            peak = float(inside.max() if jump_up else inside.min())
            scale = max(abs(before), 1e-12)
            shift = (after - before) / scale
            persistent = abs(shift) >= LEVEL_SHIFT_REL and (shift > 0) == jump_up
            worsening = (shift > 0) == worse_is_up if persistent else jump_up == worse_is_up
            if loss_like and not (persistent and worsening):
                continue
            if not persistent and abs(peak - before) / scale < LEVEL_SHIFT_TRANSIENT_REL:
                continue
            if s.role in ("val_metric", "train_metric") and not worsening:
                continue  # metrics jumping the good way (a learning-rate drop) are progress
            if persistent and worsening:
                severity = "high" if loss_like and abs(shift) >= 1.0 else "medium"
            else:
                severity = "low"
            # a transient window ends where the curve came back (the return jump, or the point after a lone one)
            back = i1 if persistent or i1 > i0 else min(i1 + 1, n - 1)
            t0, t1 = float(steps[i0]), float(steps[back])
            if persistent:
                summary = (f"{s.name} jumps from about {fmt(before)} to {fmt(peak)} at {ctx.run.axis} {fmt(t0)} "
                           f"and settles at a new level of {fmt(after)} ({pct(shift)}).")
            else:
                summary = (f"{s.name} jumps abruptly from about {fmt(before)} to {fmt(peak)} at {ctx.run.axis} {fmt(t0)}, "
                           f"then falls back to {fmt(after)} — a discontinuity such as a reset.")
            if s.role == "usage":
                query = "codebook usage jumps abruptly after a codebook reset or refresh, discontinuity"
            else:
                query = f"{_what(s)} shows a sudden jump or drop, discontinuity"
            out.append(ctx.signal("level_shift", s, t0, t1, severity, summary, query, value=float(z[i0]), threshold=LEVEL_SHIFT_Z,
                                  numbers={"before": before, "peak": peak, "after": after,
                                           "jump_pct": (peak - before) / scale * 100, "shift_pct": shift * 100,
                                           "persistent": persistent, "direction": "up" if jump_up else "down",
                                           "robust_z": float(z[i0])}))
    return out


# ---- usage_collapse ---------------------------------------------------------------------------------
# Codebook usage falling to half of its peak or less and staying there: codebook collapse (van den
# Oord et al. 2017; Dhariwal et al. 2020 restart dead codes against it; Łańcucki et al. 2020).
USAGE_DROP = 0.5
USAGE_HIGH_DROP = 0.25


def _usage_series(ctx: Context) -> list[Series]:
    out = [s for s in ctx.with_role("usage") if s.higher_is_better]
    out += ctx.probes("usage_share") + ctx.probes("perplexity_ratio")
    return out


def detect_usage_collapse(ctx: Context) -> list[Signal]:
    out = []
    for s in _usage_series(ctx):
        c = ctx.curve(s)
        steps, y = c.r_steps, c.r_level
        n = len(y)
        if n < 8:
            continue
        sm = rolling_median(y, 3)
        peak_so_far = np.maximum.accumulate(sm)
        k = int(np.clip(n // 20, 3, 20))
        ahead = forward_median(y, k)
        collapsed = (ahead <= USAGE_DROP * peak_so_far) & (peak_so_far > 0)
        final = float(np.median(y[-k:]))
        peak_all = float(sm.max())
        still = final <= USAGE_DROP * peak_all
        hits = np.flatnonzero(collapsed)
        if not len(hits):
            continue
        i = int(hits[0])
        if steps[i] <= ctx.early_end and not still:
            continue  # an early dip that recovered
        p_max = int(np.argmax(sm[: i + 1]))
        # the decline starts at the last point still near the peak (a flat plateau's maximum is anywhere on it)
        near = np.flatnonzero(sm[p_max: i + 1] >= 0.9 * sm[p_max])
        p = p_max + int(near[-1])
        runs = episodes(collapsed, max_gap=1)
        end = next((e.last for e in runs if e.first <= i <= e.last), i)
        end = n - 1 if still else min(end + k - 1, n - 1)
        peak = float(sm[p_max])
        level = float(ahead[i])
        severity = ("high" if final <= USAGE_HIGH_DROP * peak else "medium") if still else "low"
        summary = (f"{s.name} falls from a peak of {fmt(peak)} at {ctx.run.axis} {fmt(float(steps[p]))} to about {fmt(level)} "
                   f"({pct(level / peak - 1)})" + (" and stays low to the end." if still else f", recovering later (final {fmt(final)})."))
        out.append(ctx.signal("usage_collapse", s, steps[p], steps[end], severity, summary,
                              "codebook usage collapses, few codes used, dead codes", value=level / peak, threshold=USAGE_DROP,
                              numbers={"peak": peak, "peak_step": float(steps[p]), "level_after": level, "final": final,
                                       "drop_pct": (level / peak - 1) * 100, "recovered": not still},
                              early_cap=not still))
    return out


# ---- clip_pressure ----------------------------------------------------------------------------------
# Gradient norm above the clipping threshold most of the time: the clip, not the learning rate, sets
# the step size (Pascanu et al. 2013; Zhang et al. 2020 on clipping). Needs the clip value from the
# run's meta or the roles file ([settings] clip_value).
CLIP_SHARE_MEDIUM = 0.5
CLIP_SHARE_HIGH = 0.9
CLIP_RATIO_HIGH = 10.0


def detect_clip_pressure(ctx: Context) -> list[Signal]:
    clip = ctx.run.meta.get("clip_value")
    try:
        clip = float(clip) if clip is not None else None
    except (TypeError, ValueError):
        clip = None
    if not clip or clip <= 0:
        return []
    grads = ctx.with_role("grad_norm") or [s for s in ctx.series if s.name.endswith("grad/global_norm")]
    if not grads:
        return []
    plain = [g for g in grads if not set(g.name.lower().replace("/", "_").split("_")) & {"max", "min", "std"}]
    g = (plain or grads)[0]
    c = ctx.curve(g)
    keep = c.steps > ctx.early_end
    v = c.values[keep] if keep.sum() >= 3 else c.values
    if len(v) < 3:
        return []
    share = float(np.mean(v > clip))
    ratio = float(np.median(v) / clip)
    if share < CLIP_SHARE_MEDIUM:
        return []
    severity = "high" if share >= CLIP_SHARE_HIGH and ratio >= CLIP_RATIO_HIGH else "medium"
    summary = (f"{g.name} is above the clip value {fmt(clip)} at {share:.0%} of points (median {ratio:.1f}x the clip): "
               f"clipping sets the step size most of the time.")
    return [ctx.signal("clip_pressure", g, c.steps[0], c.steps[-1], severity, summary,
                       "gradient norm constantly above the clipping threshold, gradients clipped every step",
                       value=share, threshold=CLIP_SHARE_MEDIUM,
                       numbers={"clip_value": clip, "share_above": share, "median_ratio": ratio, "max": float(v.max())},
                       early_cap=False)]


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
