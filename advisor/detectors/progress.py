"""Progress detectors: a training or validation curve that stops improving (plateau) or turns worse
on held-out data (overfitting).
"""

from __future__ import annotations

import math

import numpy as np

from advisor.detectors.base import (
    Context,
    tail_level,
    fmt,
    lower,
    noise_sigma,
    odd,
    pct,
    rolling_median,
    smooth_keep_edges,
    spearman,
    what,
)
from advisor.models import Series, Signal


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
        summary = (f"{s.name} stays between {fmt(float(raw.min()))} and {fmt(float(raw.max()))} from {ctx.run.axis} "
                   f"{fmt(float(steps[t0]))} to the end ({fraction:.0%} of the run) without a lasting improvement"
                   + (": stuck." if stuck else "."))
        out.append(ctx.signal("plateau", s, steps[t0], steps[-1], severity, summary,
                              f"{what(s)} stops improving and plateaus", value=fraction, threshold=PLATEAU_MIN_FRACTION,
                              numbers={"start_value": float(raw[0]), "end_value": float(raw[-1]), "min_in_window": float(raw.min()),
                                       "max_in_window": float(raw.max()), "improvement_pct": gain * 100,
                                       "change_pct": change * 100,
                                       "band_pct": float((seg.max() - seg.min()) / level) * 100, "trend_pct": trend * 100,
                                       "fraction_of_run": fraction, "points": points}))
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
        tail = tail_level(y, k_after)
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
