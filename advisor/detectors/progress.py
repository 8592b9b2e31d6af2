"""Progress detectors: a curve that stops improving (plateau), stays flat while the learning rate is cut
(lr_decay_plateau), never leaves its starting level (high_plateau), or turns worse on held-out data
(overfitting).
"""

from __future__ import annotations

import math

import numpy as np

from advisor import reading_names as rn
from advisor.detectors.base import (
    LOSS_ROLES,
    Context,
    crosses_zero,
    fmt,
    lower,
    noise_sigma,
    odd,
    pct,
    rolling_median,
    smooth_keep_edges,
    spearman,
    start_level,
    tail_level,
    welch_t,
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


def plateau_window(ctx: Context, s: Series) -> dict | None:
    """The flat final stretch of a curve (see above), as indices into its reduced copy and its numbers; None if none."""
    c = ctx.curve(s)
    steps, y = c.r_steps, c.oriented(c.r_level)
    n = len(y)
    if n < PLATEAU_MIN_POINTS or (s.role in LOSS_ROLES and crosses_zero(c.r_level)):
        return None
    w = odd(n // 10) if n >= 20 else (3 if n >= 10 else 1)
    ys = rolling_median(y, w)
    after = np.flatnonzero(steps > ctx.early_end)
    if len(after) < PLATEAU_MIN_POINTS // 2:
        return None
    first = int(after[0])
    suffix_best = np.minimum.accumulate(ys[::-1])[::-1]
    scale = np.maximum(np.abs(suffix_best), 1e-12)
    remaining = (ys - suffix_best) / scale  # how much better the curve still gets, relative
    sigma = noise_sigma(y[first:]) / math.sqrt(w)
    tol = np.maximum(PLATEAU_REL_TOL, 2 * sigma / scale)
    not_flat = np.flatnonzero(remaining[first:] >= tol[first:])
    t0 = first + (int(not_flat[-1]) + 1 if len(not_flat) else 0)
    if t0 >= n - 1:
        return None
    # the flat stretch must also stay in a band and end about where it began (a rising curve is
    # overfitting or divergence): move the start forward until it does
    suffix_max = np.maximum.accumulate(ys[::-1])[::-1]
    with np.errstate(all="ignore"):
        band_ok = (suffix_max - suffix_best) / scale <= np.maximum(PLATEAU_BAND, 4 * sigma / scale)
        drift_ok = np.abs(ys[-1] - ys) / scale <= np.maximum(PLATEAU_REL_TOL, 2 * sigma / scale)
    ok = np.flatnonzero((band_ok & drift_ok)[t0:])
    if not len(ok):
        return None
    t0 += int(ok[0])
    series_span = float(steps[-1] - steps[0]) or 1.0
    fraction = float(steps[-1] - steps[t0]) / series_span
    points = n - t0
    if fraction < PLATEAU_MIN_FRACTION or points < 5:
        return None
    raw = c.r_level[t0:]
    seg = ys[t0:]
    level = float(np.median(np.abs(seg))) or 1e-12
    third = max(1, len(seg) // 3)
    trend = abs(float(np.median(y[t0:t0 + third]) - np.median(y[n - third:]))) / level
    return {"t0": t0, "start": float(steps[t0]), "end": float(steps[-1]), "fraction": fraction, "points": points,
            "raw": raw, "level": level, "trend": trend,
            "numbers": {"start_value": float(raw[0]), "end_value": float(raw[-1]), "min_in_window": float(raw.min()),
                        "max_in_window": float(raw.max()), "improvement_pct": float(remaining[t0]) * 100,
                        "change_pct": (float(seg[-1]) - float(seg[0])) / level * 100,
                        "band_pct": float((seg.max() - seg.min()) / level) * 100, "trend_pct": trend * 100,
                        "fraction_of_run": fraction, "points": points}}


def detect_plateau(ctx: Context) -> list[Signal]:
    out = []
    targets = [ctx.main_loss] if ctx.main_loss is not None else []
    targets += ctx.with_role("val_loss", "val_metric")
    for s in targets:
        p = plateau_window(ctx, s)
        if p is None:
            continue
        stuck = p["fraction"] >= PLATEAU_STUCK_FRACTION and p["trend"] < PLATEAU_STUCK_TOL
        severity = "medium" if stuck else "low"
        raw = p["raw"]
        summary = (f"{s.name} stays between {fmt(float(raw.min()))} and {fmt(float(raw.max()))} from {ctx.run.axis} "
                   f"{fmt(p['start'])} to the end ({p['fraction']:.0%} of the run) without a lasting improvement"
                   + (": stuck." if stuck else "."))
        out.append(ctx.signal("plateau", s, p["start"], p["end"], severity, summary,
                              f"{what(s)} stops improving and plateaus", value=p["fraction"], threshold=PLATEAU_MIN_FRACTION,
                              numbers=p["numbers"]))
    return out


# ---- lr_decay_plateau -------------------------------------------------------------------------------------
# The learning rate is cut abruptly (in one logged interval it loses half of its value and a tenth of its
# peak: a ReduceLROnPlateau or step-schedule cut, not a smooth cosine/linear decay) by 10x or more in
# total, and the training loss gains almost nothing afterwards: less than a tenth of what it had gained
# before the cut, or less than 2% of its level, or nothing beyond its own noise (Welch t < 2). The cuts that Keras' ReduceLROnPlateau or a
# step schedule make to unlock progress do not help: the limit is not a step size too large but capacity,
# data or labels — or an LR now too small to move at all. A finding (medium) while the loss is still above
# half of where it started; once it has come down, a note (a converged model need not respond).
LR_CUT = 10.0
LR_ABRUPT_SHARE = 0.5  # of its own value, in one logged interval ...
LR_ABRUPT_PEAK_SHARE = 0.1  # ... and of the run's peak LR
LR_CUT_GAIN_SHARE = 0.1
LR_CUT_LEVEL_SHARE = PLATEAU_REL_TOL  # and less than 2% of its level (the plateau tolerance above)
LR_CUT_T = 2.0
LR_CUT_STILL_HIGH = 0.5


def _learning_rate(ctx: Context) -> Series | None:
    lrs = [x for x in ctx.with_role("lr") if len(ctx.curve(x)) >= 2]
    return max(lrs, key=lambda x: len(ctx.curve(x))) if lrs else None


def _abrupt_cuts(steps: np.ndarray, lr: np.ndarray) -> list[int]:
    """Indices i where the LR falls abruptly between point i-1 and point i."""
    if len(lr) < 2 or np.max(lr) <= 0:
        return []
    drop = lr[:-1] - lr[1:]
    with np.errstate(all="ignore"):
        abrupt = (drop >= LR_ABRUPT_SHARE * lr[:-1]) & (drop >= LR_ABRUPT_PEAK_SHARE * np.max(lr))
    return [int(i) + 1 for i in np.flatnonzero(abrupt)]


def detect_lr_decay_plateau(ctx: Context) -> list[Signal]:
    s, lr = ctx.main_loss, _learning_rate(ctx)
    if s is None or lr is None:
        return []
    c, lc = ctx.curve(s), ctx.curve(lr)
    steps, y = c.r_steps, c.r_level
    n = len(y)
    if n < PLATEAU_MIN_POINTS or crosses_zero(y):
        return []
    cuts = [i for i in _abrupt_cuts(lc.steps, lc.values) if lc.steps[i] > ctx.early_end]
    if not cuts:
        return []
    first_cut = float(lc.steps[cuts[0]])
    pre = np.flatnonzero(steps < first_cut)
    before_idx = pre[-max(2, min(max(3, n // 10), len(pre) // 2)):]  # the later half of the run before the cut
    after = y[steps >= first_cut]
    if len(before_idx) < 2 or len(after) < 3:
        return []
    lr_before = float(lc.values[cuts[0] - 1])
    lr_lowest = float(lc.values[cuts[0]:].min())
    cut = lr_before / lr_lowest if lr_lowest > 0 else math.inf
    if cut < LR_CUT:
        return []
    before = y[before_idx]
    tail = after[-max(3, len(after) // 3):]
    start = start_level(y)
    level_before, level_after = float(np.median(before)), float(np.median(tail))
    gain, gained_before = level_before - level_after, start - level_before
    t = welch_t(before, tail) * -1.0  # positive when the loss fell
    if gain >= LR_CUT_LEVEL_SHARE * abs(level_before) and gain >= LR_CUT_GAIN_SHARE * max(gained_before, 0.0) and t >= LR_CUT_T:
        return []  # the cuts helped
    still_high = start > 0 and level_after >= LR_CUT_STILL_HIGH * start
    severity = "medium" if still_high else "low"
    cut_text = f"{fmt(cut)}x" if math.isfinite(cut) else "to zero"
    summary = (f"{lr.name} is cut {cut_text} from {ctx.run.axis} {fmt(first_cut)} on, but {s.name} barely moves: about "
               f"{fmt(level_before)} before the cut and {fmt(level_after)} at the end (it had fallen from {fmt(start)}): "
               f"lowering the learning rate does not help.")
    numbers = {"lr_before": lr_before, "lr_lowest": lr_lowest, "lr_cut": cut if math.isfinite(cut) else None, "lr": lr.name,
               "cuts": len(cuts), "first_cut_step": first_cut, "loss_before_cut": level_before, "loss_at_end": level_after,
               "loss_start": start, "gain_after_cut": gain, "gain_before_cut": gained_before, "welch_t": t}
    return [ctx.signal("lr_decay_plateau", s, first_cut, steps[-1], severity, summary,
                       "training loss plateaus and lowering the learning rate does not help",
                       value=cut if math.isfinite(cut) else None, threshold=LR_CUT, numbers=numbers)]


# ---- high_plateau ----------------------------------------------------------------------------------------
# A training loss that never leaves its starting level: its last third is still within 10% of where it
# started (above or below; far above is divergence), or at 90%+ of chance (ln C for a C-class cross-entropy, when the probe saw the logits). The
# classic cause in transformers is a post-LN model trained without warmup (Xiong et al. 2020, On Layer
# Normalization in the Transformer Architecture; Liu et al. 2020), besides a learning rate far off
# and labels the inputs cannot predict. Over 20+ logs it is a finding (medium).
HIGH_PLATEAU_DROP = 0.10
HIGH_PLATEAU_CHANCE = 0.90
HIGH_PLATEAU_NEVER_LEFT = 0.8  # its smoothed best never got 20% below that level either
HIGH_PLATEAU_MIN_POINTS = 10
HIGH_PLATEAU_MEDIUM_POINTS = 20


def _chance_loss(ctx: Context) -> float | None:
    """ln C for the run's classifier output, when the probe recorded the number of classes."""
    ks = [ctx.median_of(x.name, how="max") for x in ctx.probes(rn.NUM_CLASSES)]
    ks = [k for k in ks if k and k >= 2]
    return math.log(max(ks)) if ks else None


def detect_high_plateau(ctx: Context) -> list[Signal]:
    s = ctx.main_loss
    if s is None:
        return []
    c = ctx.curve(s)
    y = c.r_level
    n = len(y)
    if n < HIGH_PLATEAU_MIN_POINTS or crosses_zero(y):
        return []
    start = start_level(y)
    third = max(3, n // 3)
    end = float(np.median(y[-third:]))
    chance = _chance_loss(ctx)
    near_start = start > 0 and (1 - HIGH_PLATEAU_DROP) * start <= end <= (1 + HIGH_PLATEAU_DROP) * start
    near_chance = chance is not None and HIGH_PLATEAU_CHANCE * chance <= end <= (1 + HIGH_PLATEAU_DROP) * chance
    if not (near_start or near_chance):
        return []
    best = float(np.min(rolling_median(y, 3)))
    if chance is not None and not near_chance:
        return []  # it started low (a pretrained model) and stayed: nothing says that level is bad
    if not near_chance and ctx.with_role("loss_component"):
        return []  # a multi-term total can hold its level while its terms trade off (component_growth's case)
    if best < HIGH_PLATEAU_NEVER_LEFT * (chance if near_chance else start):
        return []  # it came down and went back up: divergence or a blow-up, not a loss that never moved
    # without the chance level, a loss that barely moved may be a pretrained model's fine-tune: a note
    severity = "medium" if near_chance and n >= HIGH_PLATEAU_MEDIUM_POINTS else "low"
    ref = (f"chance level ln({math.exp(chance):.0f}) = {fmt(chance)}" if near_chance else f"where it started ({fmt(start)})")
    summary = (f"{s.name} stays near {ref} for the whole run: it ends at {fmt(end)} (last-third median), never below "
               f"{fmt(best)} — the model is not learning.")
    return [ctx.signal("high_plateau", s, c.r_steps[0], c.r_steps[-1], severity, summary,
                       "loss stays at its initial value, stuck at a high loss, model does not learn at all",
                       value=end / start if start > 0 else None, threshold=1 - HIGH_PLATEAU_DROP,
                       numbers={"start_level": start, "end_level": end, "best": best, "chance_loss": chance,
                                "near_chance": near_chance, "points": n}, early_cap=False)]


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
