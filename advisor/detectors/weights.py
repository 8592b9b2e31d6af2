"""Detectors on gradient, update and weight readings that need more than one limit: non-finite counts,
frozen parameters, weight norms that keep growing, and gradient norms that grow with the step count.
"""

from __future__ import annotations

import math

import numpy as np

from advisor import reading_names as rn
from advisor.detectors.base import Context, fmt, spearman
from advisor.detectors.readings import frozen_parameters_held, layer, sustained, window_numbers, worst
from advisor.models import Series, Signal

# ---- non-finite values ----------------------------------------------------------------------------------
# AUTOTRAINER (Zhang et al. 2021) treats NaN gradients as a fault at once; still there at the last
# reading, or at a tenth of readings, it is high.
NONFINITE_HIGH_SHARE = 0.10


def _nonfinite_signal(ctx: Context, s: Series, kind: str, query: str, what: str) -> Signal | None:
    c = ctx.curve(s)
    v = c.values
    if not len(v):
        return None
    hit = v > 0
    if not hit.any():
        return None
    idx = np.flatnonzero(hit)
    share = float(hit.mean())
    ongoing = bool(hit[-1])
    severity = "high" if ongoing or share >= NONFINITE_HIGH_SHARE else ("medium" if len(idx) >= 2 else "low")
    first, last = float(c.steps[idx[0]]), float(c.steps[idx[-1]])
    summary = (f"{what} non-finite values at {len(idx)} of {len(v)} readings, first at {ctx.run.axis} {fmt(first)}"
               + (", still at the last reading." if ongoing else "."))
    return ctx.signal(kind, s, first, last, severity, summary, query, value=float(np.max(v)), threshold=0,
                      numbers={"readings_with_nonfinite": len(idx), "share": share, "max_count": float(np.max(v)), "ongoing": ongoing},
                      early_cap=False)


def detect_nonfinite_gradients(ctx: Context) -> list[Signal]:
    s = ctx.get(rn.GRAD_NONFINITE_COUNT)
    if s is None:
        return []
    sig = _nonfinite_signal(ctx, s, "nonfinite_gradients", "gradients contain NaN or inf values", "Gradients hold")
    return [sig] if sig else []


def detect_nonfinite_tensors(ctx: Context) -> list[Signal]:
    out = []
    for s in ctx.series:
        if s.role == "probe" and s.name.startswith(rn.NONFINITE + "/"):
            what = s.name.split("/", 1)[1]
            sig = _nonfinite_signal(ctx, s, "nan_inf", f"{what} becomes NaN or inf during training", f"{what} holds")
            if sig:
                out.append(sig)
    return out


# ---- frozen parameters -----------------------------------------------------------------------------------
# Parameters with non-zero gradients that never move (left out of the optimizer, lr 0): a practitioner
# check; half of them frozen is high.
FROZEN_HIGH_SHARE = 0.5
VANISHING_RATIO = 1e-3  # AUTOTRAINER's vanishing limit on grad/first_last_ratio, to say why they are frozen


def detect_frozen_parameters(ctx: Context) -> list[Signal]:
    s = ctx.get(rn.UPDATE_FROZEN_SHARE)
    if s is None:
        return []
    w = sustained(ctx, s, lambda v: v > 0)
    if w is None:
        return []
    n_frozen = ctx.median_of(rn.UPDATE_FROZEN_PARAMS, last=w.points)
    severity = "high" if w.median >= FROZEN_HIGH_SHARE else "medium"
    ratio = ctx.get(rn.GRAD_FIRST_LAST_RATIO)
    vanishing = ratio is not None and sustained(ctx, ratio, lambda v: v < VANISHING_RATIO) is not None
    why = ("their gradients are too small to move float32 weights (they vanish on the way back)" if vanishing
           else "they are probably missing from the optimizer or have a zero learning rate")
    summary = (f"{w.median:.0%} of the parameters that receive gradients never change"
               + (f" ({fmt(n_frozen)} tensors)" if n_frozen is not None else "") + f" from {ctx.run.axis} {fmt(w.start)} on: {why}.")
    return [ctx.signal("frozen_parameters", s, w.start, w.end, severity, summary,
                       "gradients are nonzero but parameters do not change, frozen layers",
                       value=w.median, threshold=0, numbers=window_numbers(w, frozen_params=n_frozen))]


# ---- weight growth ---------------------------------------------------------------------------------------
# Weights growing without bound: Soudry et al. 2018 (separable data, no weight decay) — the norm grows
# several-fold and keeps growing: over the second half of the run it still gains at least half of what
# it gained over the quarter before (logarithmic growth, Soudry's rate, keeps that ratio near 1; a power
# law above 1). A norm that grew from a small initialisation and is settling to a level (a classifier
# head 1.8 -> 9.9, then flat) has that ratio near 0 and is not a fault.
WEIGHT_GROWTH = 5.0
WEIGHT_GROWTH_HIGH = 20.0
WEIGHT_GROWTH_STILL = 0.5
# High needs the growth to go on after the first steps: 20x overall and still 2x over the second half.
# A layer that starts tiny (a positional embedding at std 0.02) grows 10-30x in its first steps to the
# scale of the other layers and then moves slowly: a medium finding at most.
WEIGHT_GROWTH_HIGH_SECOND_HALF = 2.0


def detect_weight_growth(ctx: Context) -> list[Signal]:
    found = []
    glob = ctx.get(rn.WEIGHT_GLOBAL_NORM)
    for s in ctx.probes(rn.NORM_GROWTH) + ([glob] if glob is not None else []):
        c = ctx.curve(s)
        if len(c) < 6:
            continue
        v = c.values
        per_layer = s.name.endswith("/" + rn.NORM_GROWTH)
        growth = float(v[-1]) if per_layer else (float(v[-1] / v[0]) if v[0] > 0 else math.nan)
        if not math.isfinite(growth) or growth < WEIGHT_GROWTH:
            continue
        third = max(2, len(v) // 3)
        tail = v[-third:]
        t = c.steps - c.steps[0] + max(1.0, float(np.median(np.diff(c.steps))))
        span = float(t[-1])
        half, quarter = float(np.interp(span / 2, t, v)), float(np.interp(span / 4, t, v))
        still = (float(v[-1]) - half) / (half - quarter) if half > quarter else (math.inf if v[-1] > half else 0.0)
        if not (tail[-1] > tail[0] and spearman(tail) > 0.5 and still >= WEIGHT_GROWTH_STILL):
            continue  # it grew, but is levelling off
        name = layer(s.name, rn.WEIGHT, rn.NORM_GROWTH) if per_layer else "all layers"
        second_half = float(v[-1]) / half if half > 0 else math.inf
        severity = "high" if growth >= WEIGHT_GROWTH_HIGH and second_half >= WEIGHT_GROWTH_HIGH_SECOND_HALF else "medium"
        summary = f"The weight norm of {name} has grown {growth:.1f}x since the first reading and is still rising."
        found.append((growth, ctx.signal("weight_growth", s, float(c.steps[0]), float(c.steps[-1]), severity, summary,
                                         "weight norms grow without bound", value=growth, threshold=WEIGHT_GROWTH,
                                         numbers={"growth": growth, "first": float(v[0]), "last": float(v[-1]), "layer": name,
                                                  "late_growth_ratio": still, "second_half_growth": second_half},
                                         early_cap=False)))
    return worst(found)


# ---- gradient norms that grow with the step count ------------------------------------------------------------
# A gradient norm ten times its early level and still rising is exploding (Pascanu et al. 2013). When
# it grows as a power of the step count (norm ~ step^a, a in [0.4, 2.5], a straight line in log-log that
# fits better than an exponential), gradients are being summed across steps: `optimizer.zero_grad()` is
# missing (PyTorch accumulates .grad by design; consistent gradients sum to ~t, random ones to ~sqrt(t)).
GRAD_GROWTH = 10.0
ACCUMULATION_MIN_EXPONENT = 0.4
ACCUMULATION_MAX_EXPONENT = 2.5  # momentum on summed gradients compounds: up to ~t^2
ACCUMULATION_MIN_FIT = 0.9  # R^2 of the log-log line
ACCUMULATION_MIN_TREND = 0.97  # Spearman rho: a sum grows at nearly every reading, a learning run's norm is noisy
ACCUMULATION_HIGH_GROWTH = 100.0
# A classifier's gradient norm grows many-fold as it leaves its initial plateau (10-30x from a small init):
# with the loss 10%+ lower in the last third than in the first, a growing norm is learning, not an explosion (which comes with a
# loss that stops improving, Pascanu et al. 2013).
LOSS_IMPROVED = 0.10
GRAD_GROWTH_WHILE_LEARNING = 50.0  # ... up to 50x; beyond that it is exploding whatever the loss does


def _r2(x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """(slope, R^2) of the least-squares line y ~ x."""
    if len(x) < 3 or np.ptp(x) == 0:
        return 0.0, 0.0
    slope, icept = np.polyfit(x, y, 1)
    resid = y - (slope * x + icept)
    tot = float(np.sum((y - y.mean()) ** 2))
    return float(slope), (1.0 - float(np.sum(resid ** 2)) / tot) if tot > 0 else 0.0


def _gradient_norms(ctx: Context) -> list[Series]:
    norm = ctx.get(rn.GRAD_GLOBAL_NORM)
    plain = [g for g in ctx.with_role("grad_norm") if not set(g.name.lower().replace("/", "_").split("_")) & {"max", "min", "std"}]
    return ([norm] if norm is not None else []) + plain


def _growth(ctx: Context, s: Series) -> dict | None:
    """How a gradient norm grows: None unless it ends >= GRAD_GROWTH x where it began and is still rising."""
    c = ctx.curve(s)
    v, st = c.r_level, c.r_steps
    ok = v > 0
    v, st = v[ok], st[ok]
    if len(v) < 6:
        return None
    third = max(2, len(v) // 3)
    first, last = float(np.median(v[:third])), float(np.median(v[-third:]))
    begin = float(np.median(v[:2]))
    growth = float(v[-1]) / begin if begin > 0 else 0.0
    rising = v[-1] >= last
    if not (growth >= GRAD_GROWTH and rising):
        return None
    t = st - st[0] + max(1.0, float(np.median(np.diff(st))))  # steps since the start, > 0
    exponent, power_fit = _r2(np.log(t), np.log(v))
    _, exp_fit = _r2(t, np.log(v))
    rho = spearman(v)
    accumulating = (ACCUMULATION_MIN_EXPONENT <= exponent <= ACCUMULATION_MAX_EXPONENT and power_fit >= ACCUMULATION_MIN_FIT
                    and power_fit >= exp_fit and rho >= ACCUMULATION_MIN_TREND)
    return {"first_third_median": first, "last_third_median": last, "first": float(v[0]), "last": float(v[-1]),
            "growth": growth, "power_exponent": exponent, "power_fit_r2": power_fit,
            "exponential_fit_r2": exp_fit, "trend_rho": rho, "accumulating": accumulating,
            "start": float(st[0]), "end": float(st[-1])}


def _numbers(g: dict) -> dict:
    return {k: v for k, v in g.items() if k not in ("start", "end")}


def detect_accumulating_gradients(ctx: Context) -> list[Signal]:
    out = []
    for s in _gradient_norms(ctx):
        g = _growth(ctx, s)
        if g is None or not g["accumulating"]:
            continue
        severity = "high" if g["growth"] >= ACCUMULATION_HIGH_GROWTH else "medium"
        frozen = frozen_parameters_held(ctx)
        if frozen:
            severity = "low"  # optimizer.zero_grad() clears only the parameters the optimizer holds
        summary = (f"{s.name} grows steadily from {fmt(g['first'])} to {fmt(g['last'])} ({g['growth']:.0f}x), as the step "
                   f"count to the power {g['power_exponent']:.2f}: gradients are summed across steps instead of being reset"
                   + (": parameters left out of the optimizer keep theirs, since optimizer.zero_grad() clears only the "
                      "ones it holds (see frozen_parameters)." if frozen else " (is optimizer.zero_grad() called every step?)."))
        out.append(ctx.signal("accumulating_gradients", s, g["start"], g["end"], severity, summary,
                              "gradient norm grows with every step, gradients accumulate, forgot zero_grad",
                              value=g["power_exponent"], threshold=ACCUMULATION_MIN_EXPONENT, numbers=_numbers(g), early_cap=False))
    return out


def _loss_improved(ctx: Context) -> bool:
    """The training loss's last third is 10%+ below its first third (it is learning)."""
    s = ctx.main_loss
    if s is None or len(ctx.curve(s)) < 6:
        return False
    y = ctx.curve(s).r_level
    third = max(2, len(y) // 3)
    first, last = float(np.median(y[:third])), float(np.median(y[-third:]))
    return first > 0 and last <= (1 - LOSS_IMPROVED) * first


def detect_gradient_growth(ctx: Context) -> list[Signal]:
    s = ctx.get(rn.GRAD_GLOBAL_NORM)
    g = _growth(ctx, s) if s is not None else None
    if g is None or g["accumulating"] or g["last_third_median"] < GRAD_GROWTH * g["first_third_median"]:
        return []
    if _loss_improved(ctx) and g["last_third_median"] < GRAD_GROWTH_WHILE_LEARNING * g["first_third_median"]:
        return []
    ratio = g["last_third_median"] / g["first_third_median"]
    summary = (f"The global gradient norm grows from about {fmt(g['first_third_median'])} to {fmt(g['last_third_median'])} "
               f"({ratio:.0f}x) and is still rising at the end.")
    return [ctx.signal("exploding_gradients", s, g["start"], g["end"], "medium", summary,
                       "gradient norm keeps growing, exploding gradients", value=ratio, threshold=GRAD_GROWTH, numbers=_numbers(g))]
