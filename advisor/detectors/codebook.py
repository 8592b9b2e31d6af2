"""Codebook and discontinuity detectors: abrupt level shifts and codebook usage collapse.
"""

from __future__ import annotations

import numpy as np

from advisor.detectors.base import (
    LOSS_ROLES,
    MAD_TO_SIGMA,
    Context,
    episodes,
    fmt,
    forward_median,
    pct,
    rolling_median,
    trailing,
    what,
)
from advisor.models import Series, Signal


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
            if len(after_vals) < 2:
                continue  # a jump at the last logged points: too few points after it to tell a shift from a spike
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
                query = f"{what(s)} shows a sudden jump or drop, discontinuity"
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
