"""Gradient-norm curve detectors: spikes and clipping pressure.
"""

from __future__ import annotations

import numpy as np

from advisor.detectors.base import (
    MAD_TO_SIGMA,
    Context,
    episodes,
    fmt,
    plain,
    rolling_median,
    trailing,
)
from advisor.models import Signal


# ---- grad_spike -------------------------------------------------------------------------------------
# Gradient-norm peaks far above the running (trailing) median: the signature of the instabilities in
# Chowdhery et al. 2022 (PaLM loss spikes) and Molybog et al. 2023 (Adam instability), and of the
# exploding gradients of Pascanu et al. 2013. Trailing, so a burst of several points still stands out.
GRAD_SPIKE_RATIO = 2.0
GRAD_SPIKE_Z = 5.0
GRAD_SPIKE_HIGH_RATIO = 10.0
GRAD_SPIKE_MEDIUM_RATIO = 4.0
GRAD_SPIKE_SUSTAINED_POINTS = 3
GRAD_SPIKE_MIN_POINTS = 8
# A lone gradient-norm spike the loss does not feel (the loss at those steps within 10% of its running
# level) is common and harmless in long runs (Takase et al. 2023, Spike No More, separate the loss spikes
# that matter); it is a note unless it lasts or the loss jumps with it.
GRAD_SPIKE_LOSS_REACTION = 0.10
GRAD_SPIKES_REPORTED = 3


def _loss_reaction(ctx: Context, first: float, last: float) -> float | None:
    """How far the training loss rises above its running level between two steps (and the log after); None without one."""
    s = ctx.main_loss
    if s is None or len(ctx.curve(s)) < GRAD_SPIKE_MIN_POINTS:
        return None
    c = ctx.curve(s)
    level = rolling_median(c.r_level, 9)
    i0 = int(np.searchsorted(c.r_steps, first))
    i1 = min(len(c.r_steps) - 1, int(np.searchsorted(c.r_steps, last, side="right")))
    if i0 >= len(c.r_steps):
        return None
    window = slice(max(0, i0), i1 + 1)
    with np.errstate(all="ignore"):
        rel = (c.r_high[window] - level[window]) / np.maximum(np.abs(level[window]), 1e-12)
    return float(np.max(rel)) if len(rel) else None


def detect_grad_spikes(ctx: Context) -> list[Signal]:
    out = []
    for s in ctx.with_role("grad_norm"):
        c = ctx.curve(s)
        steps, y = c.r_steps, c.r_high
        n = len(y)
        if n < GRAD_SPIKE_MIN_POINTS:
            continue
        # a long trailing window: on a short log a few earlier peaks must not lift the baseline
        window = int(np.clip(n // 2, 10, 200))
        base = trailing(y, window, "median", min_periods=max(3, window // 2))
        mad = trailing(np.abs(y - base), window, "median", min_periods=max(3, window // 2))
        with np.errstate(all="ignore"):
            scale = np.maximum(MAD_TO_SIGMA * np.nan_to_num(mad, nan=0.0), 0.05 * np.abs(base))
            ratio = y / base
            z = (y - base) / scale
        flags = np.isfinite(base) & (base > 0) & (ratio >= GRAD_SPIKE_RATIO) & (z >= GRAD_SPIKE_Z)
        eps = episodes(flags, max_gap=2)
        eps.sort(key=lambda e: -max(ratio[i] for i in e.members))
        for ep in eps[:GRAD_SPIKES_REPORTED]:
            peak = max(ep.members, key=lambda i: y[i])
            r = float(ratio[peak])
            points = len(ep.members)
            if r >= GRAD_SPIKE_HIGH_RATIO:
                severity = "high"
            elif r >= GRAD_SPIKE_MEDIUM_RATIO or points >= GRAD_SPIKE_SUSTAINED_POINTS:
                severity = "medium"
            else:
                severity = "low"
            loss_jump = _loss_reaction(ctx, float(steps[ep.first]), float(steps[ep.last]))
            if points < GRAD_SPIKE_SUSTAINED_POINTS and loss_jump is not None and loss_jump < GRAD_SPIKE_LOSS_REACTION:
                severity = "low"  # one or two steps the loss never felt
            lo, hi = float(np.min(y[ep.members])), float(y[peak])
            span = f"{fmt(lo)}-{fmt(hi)}" if points > 1 else fmt(hi)
            summary = (f"{s.name} peaks at {span} over {points} point(s) from {ctx.run.axis} {fmt(float(steps[ep.first]))} "
                       f"to {fmt(float(steps[ep.last]))}, up to {r:.1f}x its running median of {fmt(float(base[peak]))}.")
            out.append(ctx.signal("grad_spike", s, steps[ep.first], steps[ep.last], severity, summary,
                                  "gradient norm spikes far above its usual level", value=r, threshold=GRAD_SPIKE_RATIO,
                                  numbers={"peak": hi, "peak_step": float(steps[peak]), "baseline": float(base[peak]),
                                           "ratio": r, "points": points, "min_in_window": lo, "episodes": len(eps)}))
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
