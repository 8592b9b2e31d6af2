"""Detectors on the probe's readings (activations, gradients, weights, updates, representations, outputs,
hardware). A finding must hold over a window — most of the run's last third of sampled steps, after
warm-up — never on one noisy reading. Reading names follow the probe: `act/{layer}/zero_fraction`,
`grad/first_last_ratio`, `{family}/effective_rank_ratio`, ... (any family prefix).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import numpy as np

from advisor.detectors.base import Context, episodes, fmt, spearman
from advisor.models import Series, Signal

SUSTAINED_SHARE = 0.6  # share of the last third of readings that must show the symptom
MIN_READINGS = 3
MAX_LAYERS_REPORTED = 5  # per kind; the worst layers first


@dataclass
class Window:
    start: float
    end: float
    points: int
    median: float  # of the flagged readings in the window
    last: float
    share: float  # flagged share of the last third
    values: np.ndarray  # every reading from the window's start


def sustained(ctx: Context, s: Series, predicate: Callable[[np.ndarray], np.ndarray]) -> Window | None:
    """The window at the end of the run where `predicate` holds for most readings of `s`, or None."""
    c = ctx.curve(s)
    return sustained_points(ctx, c.steps, c.values, predicate)


def sustained_points(ctx: Context, steps: np.ndarray, v: np.ndarray, predicate: Callable[[np.ndarray], np.ndarray]) -> Window | None:
    keep = steps > ctx.early_end
    if keep.sum() >= MIN_READINGS:
        steps, v = steps[keep], v[keep]
    n = len(v)
    if n < MIN_READINGS:
        return None
    with np.errstate(invalid="ignore", divide="ignore"):
        flags = np.asarray(predicate(v), dtype=bool)
    cut = steps[0] + (2.0 / 3.0) * (steps[-1] - steps[0])
    last = steps >= cut
    if last.sum() < 2:
        last = np.arange(n) >= n - 2
    share = float(flags[last].mean())
    if share < SUSTAINED_SHARE:
        return None
    eps = episodes(flags, max_gap=1)
    if not eps:
        return None
    ep = eps[-1]
    inside = v[ep.first:]
    return Window(float(steps[ep.first]), float(steps[-1]), len(inside), float(np.median(v[ep.first:][flags[ep.first:]])),
                  float(v[-1]), share, inside)


def _layer(name: str, prefix: str, suffix: str) -> str:
    core = name[len(prefix):] if name.startswith(prefix) else name
    return core[: -len(suffix)] if core.endswith(suffix) else core


def _worst(signals: list[tuple[float, Signal]]) -> list[Signal]:
    signals.sort(key=lambda t: -t[0])
    out = [sig for _, sig in signals[:MAX_LAYERS_REPORTED]]
    if len(signals) > MAX_LAYERS_REPORTED:
        for sig in out:
            sig.numbers["layers_affected"] = len(signals)
    return out


def _window_numbers(w: Window, **extra) -> dict:
    return {"median": w.median, "last": w.last, "share_of_last_third": w.share, "readings": w.points, **extra}


# ---- activations --------------------------------------------------------------------------------------
# DeepDiagnosis (Wardat et al. 2022): a ReLU layer with >= 70% of its outputs at zero is dying; more
# than half of tanh/sigmoid outputs at their bounds is saturation.
DEAD_ZERO_FRACTION = 0.70
DEAD_HIGH = 0.90
SATURATION_FRACTION = 0.50
SATURATION_HIGH = 0.80
IDENTICAL_SIMILARITY = 0.995  # ||mean sample||^2 / mean ||sample||^2: every sample gives the same output


def detect_dead_units(ctx: Context) -> list[Signal]:
    found = []
    seen_layers = set()
    for s in ctx.probes("zero_fraction") + ctx.probes("dead_unit_share"):
        if not s.name.startswith("act/"):
            continue
        suffix = "/zero_fraction" if s.name.endswith("/zero_fraction") else "/dead_unit_share"
        layer = _layer(s.name, "act/", suffix)
        if layer in seen_layers:
            continue
        w = sustained(ctx, s, lambda v: v >= DEAD_ZERO_FRACTION)
        if w is None:
            continue
        seen_layers.add(layer)
        dead = ctx.get(f"act/{layer}/dead_unit_share")
        dead_share = float(np.nanmedian(ctx.curve(dead).values[-max(1, w.points):])) if dead is not None and len(ctx.curve(dead)) else None
        severity = "high" if w.median >= DEAD_HIGH or (dead_share or 0) >= 0.5 else "medium"
        what = "outputs are zero" if suffix == "/zero_fraction" else "units are dead"
        summary = (f"{w.median:.0%} of layer {layer}'s {what} (median over {w.points} readings from {ctx.run.axis} "
                   f"{fmt(w.start)})" + (f"; {dead_share:.0%} of its units never fire." if dead_share is not None and suffix == "/zero_fraction" else "."))
        found.append((w.median, ctx.signal("dead_units", s, w.start, w.end, severity, summary,
                                           "ReLU activations are mostly zero, dead neurons", value=w.median, threshold=DEAD_ZERO_FRACTION,
                                           numbers=_window_numbers(w, layer=layer, dead_unit_share=dead_share))))
    return _worst(found)


def detect_saturation(ctx: Context) -> list[Signal]:
    found = []
    for s in ctx.probes("saturation_fraction"):
        w = sustained(ctx, s, lambda v: v > SATURATION_FRACTION)
        if w is None:
            continue
        layer = _layer(s.name, "act/", "/saturation_fraction")
        severity = "high" if w.median >= SATURATION_HIGH else "medium"
        summary = f"{w.median:.0%} of layer {layer}'s outputs sit at the bounds of its activation from {ctx.run.axis} {fmt(w.start)} on."
        found.append((w.median, ctx.signal("saturation", s, w.start, w.end, severity, summary,
                                           "tanh or sigmoid activations saturated at their bounds", value=w.median,
                                           threshold=SATURATION_FRACTION, numbers=_window_numbers(w, layer=layer))))
    return _worst(found)


def detect_identical_outputs(ctx: Context) -> list[Signal]:
    found = []
    for s in ctx.probes("sample_similarity"):
        w = sustained(ctx, s, lambda v: v >= IDENTICAL_SIMILARITY)
        if w is None:
            continue
        layer = _layer(s.name, "act/", "/sample_similarity")
        summary = f"Layer {layer} gives nearly the same output for every sample (similarity {w.median:.4f}) from {ctx.run.axis} {fmt(w.start)} on."
        found.append((w.median, ctx.signal("identical_outputs", s, w.start, w.end, "medium", summary,
                                           "layer outputs are identical across samples", value=w.median,
                                           threshold=IDENTICAL_SIMILARITY, numbers=_window_numbers(w, layer=layer))))
    return _worst(found)


# ---- gradients ----------------------------------------------------------------------------------------
# AUTOTRAINER (Zhang et al. 2021): r = ||grad first layer|| / ||grad last layer||; vanishing when
# r < 1e-3, exploding when r > 70. DeepDiagnosis flags mean |dW| < 1e-7 as vanishing.
VANISHING_RATIO = 1e-3
VANISHING_HIGH_RATIO = 1e-5
VANISHING_GLOBAL_NORM = 1e-6
EXPLODING_RATIO = 70.0
EXPLODING_GLOBAL_NORM = 1e3
EXPLODING_HIGH_GLOBAL_NORM = 1e5
EXPLODING_GROWTH = 10.0  # last third's median ten times the first third's, and still rising
ZERO_GRAD_SHARE = 0.90  # AUTOTRAINER's dying-ReLU check uses >= 70% zero gradients per layer; over a whole model 90%
ZERO_GRAD_HIGH = 0.99
NONFINITE_HIGH_SHARE = 0.10


def detect_vanishing_gradients(ctx: Context) -> list[Signal]:
    out = []
    ratio = ctx.get("grad/first_last_ratio")
    if ratio is not None:
        w = sustained(ctx, ratio, lambda v: v < VANISHING_RATIO)
        if w is not None:
            severity = "high" if w.median < VANISHING_HIGH_RATIO else "medium"
            summary = (f"The first layer's gradient is {fmt(w.median)} times the last layer's (median over {w.points} readings "
                       f"from {ctx.run.axis} {fmt(w.start)}): gradients vanish before they reach the input layers.")
            out.append(ctx.signal("vanishing_gradients", ratio, w.start, w.end, severity, summary,
                                  "vanishing gradients, early layers get tiny gradients", value=w.median,
                                  threshold=VANISHING_RATIO, numbers=_window_numbers(w)))
    norm = ctx.get("grad/global_norm")
    if norm is not None and not out:
        w = sustained(ctx, norm, lambda v: v < VANISHING_GLOBAL_NORM)
        if w is not None:
            summary = f"The global gradient norm stays below {fmt(VANISHING_GLOBAL_NORM)} (median {fmt(w.median)}) from {ctx.run.axis} {fmt(w.start)}."
            out.append(ctx.signal("vanishing_gradients", norm, w.start, w.end, "medium", summary,
                                  "gradients are vanishingly small, training stalls", value=w.median,
                                  threshold=VANISHING_GLOBAL_NORM, numbers=_window_numbers(w)))
    return out


def detect_exploding_gradients(ctx: Context) -> list[Signal]:
    out = []
    ratio = ctx.get("grad/first_last_ratio")
    if ratio is not None:
        w = sustained(ctx, ratio, lambda v: v > EXPLODING_RATIO)
        if w is not None:
            summary = (f"The first layer's gradient is {fmt(w.median)} times the last layer's from {ctx.run.axis} {fmt(w.start)}: "
                       f"gradients grow on their way back through the network.")
            out.append(ctx.signal("exploding_gradients", ratio, w.start, w.end, "medium", summary,
                                  "exploding gradients, early layers get huge gradients", value=w.median,
                                  threshold=EXPLODING_RATIO, numbers=_window_numbers(w)))
    norm = ctx.get("grad/global_norm")
    if norm is not None:
        w = sustained(ctx, norm, lambda v: v > EXPLODING_GLOBAL_NORM)
        if w is not None:
            severity = "high" if w.median >= EXPLODING_HIGH_GLOBAL_NORM else "medium"
            summary = f"The global gradient norm stays above {fmt(EXPLODING_GLOBAL_NORM)} (median {fmt(w.median)}) from {ctx.run.axis} {fmt(w.start)}."
            out.append(ctx.signal("exploding_gradients", norm, w.start, w.end, severity, summary,
                                  "gradient norm is huge, exploding gradients", value=w.median,
                                  threshold=EXPLODING_GLOBAL_NORM, numbers=_window_numbers(w)))
        else:
            c = ctx.curve(norm)
            keep = c.steps > ctx.early_end
            v, st = c.values[keep], c.steps[keep]
            if len(v) >= 6:
                third = len(v) // 3
                first, last = float(np.median(v[:third])), float(np.median(v[-third:]))
                rising = v[-1] >= np.median(v[-third:])
                if first > 0 and last >= EXPLODING_GROWTH * first and rising:
                    summary = (f"The global gradient norm grows from about {fmt(first)} to {fmt(last)} "
                               f"({last / first:.0f}x) and is still rising at the end.")
                    out.append(ctx.signal("exploding_gradients", norm, st[0], st[-1], "medium", summary,
                                          "gradient norm keeps growing, exploding gradients", value=last / first,
                                          threshold=EXPLODING_GROWTH,
                                          numbers={"first_third_median": first, "last_third_median": last, "last": float(v[-1])}))
    return out


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
    s = ctx.get("grad/nonfinite_count")
    if s is None:
        return []
    sig = _nonfinite_signal(ctx, s, "nonfinite_gradients", "gradients contain NaN or inf values", "Gradients hold")
    return [sig] if sig else []


def detect_nonfinite_tensors(ctx: Context) -> list[Signal]:
    out = []
    for s in ctx.series:
        if s.role == "probe" and s.name.startswith("nonfinite/"):
            what = s.name.split("/", 1)[1]
            sig = _nonfinite_signal(ctx, s, "nan_inf", f"{what} becomes NaN or inf during training", f"{what} holds")
            if sig:
                out.append(sig)
    return out


def detect_zero_gradients(ctx: Context) -> list[Signal]:
    s = ctx.get("grad/zero_share")
    if s is None:
        return []
    w = sustained(ctx, s, lambda v: v >= ZERO_GRAD_SHARE)
    if w is None:
        return []
    severity = "high" if w.median >= ZERO_GRAD_HIGH else "medium"
    summary = f"{w.median:.1%} of gradient entries are exactly zero from {ctx.run.axis} {fmt(w.start)} on."
    return [ctx.signal("zero_gradients", s, w.start, w.end, severity, summary, "gradients are all zero, nothing learns",
                       value=w.median, threshold=ZERO_GRAD_SHARE, numbers=_window_numbers(w))]


# ---- updates and weights ------------------------------------------------------------------------------
# Update/weight ratio ~1e-3 is the usual healthy scale (Karpathy, CS231n notes); 1e-1 sustained means
# each step rewrites a tenth of the weights. Frozen: parameters with non-zero gradients that never move
# (left out of the optimizer, lr 0). Weights growing without bound: Soudry et al. 2018 (separable data,
# no weight decay) — the norm grows several-fold and is still rising.
LARGE_UPDATE_RATIO = 0.1
LARGE_UPDATE_HIGH = 1.0
FROZEN_HIGH_SHARE = 0.5
WEIGHT_GROWTH = 5.0
WEIGHT_GROWTH_HIGH = 20.0


def detect_large_updates(ctx: Context) -> list[Signal]:
    s = ctx.get("update/max_ratio")
    if s is None:
        return []
    w = sustained(ctx, s, lambda v: v > LARGE_UPDATE_RATIO)
    if w is None:
        return []
    worst = None
    layers = [x for x in ctx.probes("ratio") if x.name.startswith("update/") and x.name != "update/max_ratio"]
    if layers:
        worst = max(layers, key=lambda x: float(np.nanmedian(ctx.curve(x).values)) if len(ctx.curve(x)) else -math.inf)
    severity = "high" if w.median >= LARGE_UPDATE_HIGH else "medium"
    layer = _layer(worst.name, "update/", "/ratio") if worst is not None else None
    summary = (f"Each optimizer step changes up to {fmt(w.median)} of a layer's weight norm (median over {w.points} readings"
               + (f"; worst layer {layer}" if layer else "") + f"), far above the ~1e-3 of healthy training.")
    return [ctx.signal("large_updates", s, w.start, w.end, severity, summary,
                       "parameter updates are too large relative to the weights, learning rate too high",
                       value=w.median, threshold=LARGE_UPDATE_RATIO, numbers=_window_numbers(w, worst_layer=layer))]


def detect_frozen_parameters(ctx: Context) -> list[Signal]:
    s = ctx.get("update/frozen_share")
    if s is None:
        return []
    w = sustained(ctx, s, lambda v: v > 0)
    if w is None:
        return []
    count = ctx.get("update/frozen_params")
    n_frozen = float(np.median(ctx.curve(count).values[-w.points:])) if count is not None and len(ctx.curve(count)) else None
    severity = "high" if w.median >= FROZEN_HIGH_SHARE else "medium"
    ratio = ctx.get("grad/first_last_ratio")
    vanishing = ratio is not None and sustained(ctx, ratio, lambda v: v < VANISHING_RATIO) is not None
    why = ("their gradients are too small to move float32 weights (they vanish on the way back)" if vanishing
           else "they are probably missing from the optimizer or have a zero learning rate")
    summary = (f"{w.median:.0%} of the parameters that receive gradients never change"
               + (f" ({fmt(n_frozen)} tensors)" if n_frozen is not None else "") + f" from {ctx.run.axis} {fmt(w.start)} on: {why}.")
    return [ctx.signal("frozen_parameters", s, w.start, w.end, severity, summary,
                       "gradients are nonzero but parameters do not change, frozen layers",
                       value=w.median, threshold=0, numbers=_window_numbers(w, frozen_params=n_frozen))]


def detect_weight_growth(ctx: Context) -> list[Signal]:
    found = []
    cands = ctx.probes("norm_growth")
    glob = ctx.get("weight/global_norm")
    for s in cands + ([glob] if glob is not None else []):
        c = ctx.curve(s)
        if len(c) < 6:
            continue
        v = c.values
        growth = float(v[-1]) if s.name.endswith("/norm_growth") else (float(v[-1] / v[0]) if v[0] > 0 else math.nan)
        if not math.isfinite(growth) or growth < WEIGHT_GROWTH:
            continue
        third = max(2, len(v) // 3)
        tail = v[-third:]
        if not (tail[-1] > tail[0] and spearman(tail) > 0.5):
            continue  # it grew, but has levelled off
        layer = _layer(s.name, "weight/", "/norm_growth") if s.name.endswith("/norm_growth") else "all layers"
        severity = "high" if growth >= WEIGHT_GROWTH_HIGH else "medium"
        start = float(c.steps[0])
        summary = f"The weight norm of {layer} has grown {growth:.1f}x since the first reading and is still rising."
        found.append((growth, ctx.signal("weight_growth", s, start, float(c.steps[-1]), severity, summary,
                                         "weight norms grow without bound", value=growth, threshold=WEIGHT_GROWTH,
                                         numbers={"growth": growth, "first": float(v[0]), "last": float(v[-1]), "layer": layer},
                                         early_cap=False)))
    return _worst(found)


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
DEAD_DIM_SHARE = 0.3
DEAD_DIM_HIGH = 0.7
NORM_CV = 1.0


def _family(name: str) -> str:
    return name.rsplit("/", 1)[0]


def detect_representation_collapse(ctx: Context) -> list[Signal]:
    out = []
    families = {_family(s.name) for s in ctx.probes("l2norm_std") + ctx.probes("mean_pairwise_cosine")}
    for fam in sorted(families):
        std, ref, cos = ctx.get(f"{fam}/l2norm_std"), ctx.get(f"{fam}/l2norm_std_ref"), ctx.get(f"{fam}/mean_pairwise_cosine")
        w_std = None
        if std is not None:
            ref_value = float(np.nanmedian(ctx.curve(ref).values)) if ref is not None and len(ctx.curve(ref)) else None
            if ref_value is None:
                dim = ctx.get(f"{fam}/dim")
                ref_value = 1 / math.sqrt(float(np.nanmedian(ctx.curve(dim).values))) if dim is not None and len(ctx.curve(dim)) else None
            if ref_value:
                w_std = sustained(ctx, std, lambda v: v < COLLAPSE_STD_RATIO * ref_value)
        w_cos = sustained(ctx, cos, lambda v: v > COLLAPSE_COSINE) if cos is not None else None
        if w_std is None and w_cos is None:
            continue
        main = w_std or w_cos
        s = std if w_std is not None else cos
        numbers = _window_numbers(main)
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
    for s in ctx.probes("effective_rank_ratio"):
        w = sustained(ctx, s, lambda v: v < LOW_RANK_RATIO)
        if w is None:
            continue
        third = max(2, len(w.values) // 3)
        if np.median(w.values[-third:]) > 1.2 * np.median(w.values[:third]):
            continue  # still rising: the representation is opening up
        fam = _family(s.name)
        rank = ctx.get(f"{fam}/effective_rank")
        dim = ctx.get(f"{fam}/dim")
        rank_v = float(np.median(ctx.curve(rank).values[-w.points:])) if rank is not None and len(ctx.curve(rank)) else None
        dim_v = float(np.median(ctx.curve(dim).values)) if dim is not None and len(ctx.curve(dim)) else None
        severity = "high" if w.median < LOW_RANK_HIGH_RATIO else "medium"
        summary = (f"The {fam} representation uses an effective rank of {fmt(rank_v) if rank_v is not None else 'about ' + format(w.median, '.1%')}"
                   + (f" of {fmt(dim_v)} dimensions" if dim_v else "") + f" ({w.median:.1%}) from {ctx.run.axis} {fmt(w.start)}, not rising.")
        out.append(ctx.signal("low_rank", s, w.start, w.end, severity, summary,
                              "representation rank is low, dimensional collapse", value=w.median, threshold=LOW_RANK_RATIO,
                              numbers=_window_numbers(w, effective_rank=rank_v, dim=dim_v)))
    return out


def detect_correlated_dimensions(ctx: Context) -> list[Signal]:
    out = []
    for s in ctx.probes("offdiag_cov_energy"):
        fam = _family(s.name)
        top1 = ctx.get(f"{fam}/top1_variance_share")
        w = sustained(ctx, s, lambda v: v >= CORRELATED_ENERGY)
        if w is None:
            continue
        top1_v = float(np.median(ctx.curve(top1).values[-w.points:])) if top1 is not None and len(ctx.curve(top1)) else None
        if top1_v is not None and top1_v < CORRELATED_TOP1:
            continue  # off-diagonal energy without one dominant direction is mostly sampling noise (D close to N)
        summary = (f"{w.median:.0%} of the {fam} covariance energy is off the diagonal"
                   + (f" and one direction holds {top1_v:.0%} of the variance" if top1_v is not None else "")
                   + f" from {ctx.run.axis} {fmt(w.start)}: the dimensions carry the same signal.")
        out.append(ctx.signal("correlated_dimensions", s, w.start, w.end, "medium", summary,
                              "embedding dimensions are highly correlated, redundant features", value=w.median,
                              threshold=CORRELATED_ENERGY, numbers=_window_numbers(w, top1_variance_share=top1_v)))
    return out


def detect_dead_dimensions(ctx: Context) -> list[Signal]:
    out = []
    for s in ctx.probes("dead_dim_share"):
        w = sustained(ctx, s, lambda v: v >= DEAD_DIM_SHARE)
        if w is None:
            continue
        fam = _family(s.name)
        severity = "high" if w.median >= DEAD_DIM_HIGH else "medium"
        summary = f"{w.median:.0%} of the {fam} dimensions carry almost no variance from {ctx.run.axis} {fmt(w.start)} on."
        out.append(ctx.signal("dead_dimensions", s, w.start, w.end, severity, summary,
                              "embedding dimensions are unused, near-zero variance", value=w.median,
                              threshold=DEAD_DIM_SHARE, numbers=_window_numbers(w)))
    return out


def detect_uneven_norms(ctx: Context) -> list[Signal]:
    out = []
    for s in ctx.probes("norm_cv"):
        w = sustained(ctx, s, lambda v: v >= NORM_CV)
        if w is None:
            continue
        fam = _family(s.name)
        summary = f"The {fam} row norms vary widely (coefficient of variation {fmt(w.median)}) from {ctx.run.axis} {fmt(w.start)}."
        out.append(ctx.signal("uneven_feature_norms", s, w.start, w.end, "low", summary,
                              "feature norms are highly uneven across samples", value=w.median, threshold=NORM_CV,
                              numbers=_window_numbers(w)))
    return out


# ---- outputs ----------------------------------------------------------------------------------------
# Class collapse: one class takes most predictions although there are many (a model stuck on the
# majority class). Overconfidence: confidence far above accuracy (Guo et al. 2017). Uniform attention:
# attention entropy within 5% of the maximum log(L) — every key weighted alike. Codebook collapse: few
# codes used (van den Oord et al. 2017; Dhariwal et al. 2020).
CLASS_TOP_SHARE = 0.6
CLASS_TOP_HIGH = 0.9
BINARY_TOP_SHARE = 0.95
OVERCONFIDENCE_GAP = 0.2
UNIFORM_ATTENTION = 0.95
CODE_USAGE_SHARE = 0.25
CODE_USAGE_HIGH = 0.05
CODE_PERPLEXITY_RATIO = 0.1


def _logit_families(ctx: Context) -> set[str]:
    return {_family(s.name) for s in ctx.probes("top_class_share") + ctx.probes("num_classes")}


def detect_class_collapse(ctx: Context) -> list[Signal]:
    out = []
    for s in ctx.probes("top_class_share"):
        fam = _family(s.name)
        nc = ctx.get(f"{fam}/num_classes")
        k = float(np.nanmax(ctx.curve(nc).values)) if nc is not None and len(ctx.curve(nc)) else None
        if k is not None and k < 2:
            continue
        limit = BINARY_TOP_SHARE if k == 2 else max(CLASS_TOP_SHARE, 3.0 / k) if k else CLASS_TOP_SHARE
        w = sustained(ctx, s, lambda v: v >= limit)
        if w is None:
            continue
        severity = "high" if w.median >= CLASS_TOP_HIGH and (k or 3) > 2 else "medium"
        summary = (f"One class takes {w.median:.0%} of the predictions" + (f" among {fmt(k)} classes" if k else "")
                   + f" from {ctx.run.axis} {fmt(w.start)} on.")
        out.append(ctx.signal("class_collapse", s, w.start, w.end, severity, summary,
                              "model predicts only one or a few classes, majority class", value=w.median, threshold=limit,
                              numbers=_window_numbers(w, num_classes=k)))
    return out


def detect_overconfidence(ctx: Context) -> list[Signal]:
    out = []
    for s in ctx.probes("confidence"):
        fam = _family(s.name)
        acc = ctx.get(f"{fam}/accuracy")
        if acc is None or fam not in _logit_families(ctx):
            continue
        cs, ac = ctx.curve(s), ctx.curve(acc)
        common, i1, i2 = np.intersect1d(cs.steps, ac.steps, return_indices=True)
        if len(common) < MIN_READINGS:
            continue
        gap = cs.values[i1] - ac.values[i2]
        w = sustained_points(ctx, common, gap, lambda v: v >= OVERCONFIDENCE_GAP)
        if w is None:
            continue
        summary = f"Mean confidence exceeds accuracy by {w.median:.0%} from {ctx.run.axis} {fmt(w.start)} on: the model is overconfident."
        out.append(ctx.signal("overconfidence", s, w.start, w.end, "medium" if w.median >= 0.3 else "low", summary,
                              "model confidence is always high but accuracy is not, miscalibrated", value=w.median,
                              threshold=OVERCONFIDENCE_GAP, numbers=_window_numbers(w)))
    return out


def detect_uniform_attention(ctx: Context) -> list[Signal]:
    out = []
    logits = _logit_families(ctx)
    for s in ctx.probes("entropy_ratio"):
        if _family(s.name) in logits:
            continue
        w = sustained(ctx, s, lambda v: v >= UNIFORM_ATTENTION)
        if w is None:
            continue
        summary = f"Attention in {_family(s.name)} is nearly uniform (entropy {w.median:.0%} of its maximum) from {ctx.run.axis} {fmt(w.start)} on."
        out.append(ctx.signal("uniform_attention", s, w.start, w.end, "medium", summary,
                              "attention weights are uniform over all positions", value=w.median,
                              threshold=UNIFORM_ATTENTION, numbers=_window_numbers(w)))
    return out


def detect_codebook_collapse(ctx: Context) -> list[Signal]:
    out = []
    for s in ctx.probes("usage_share") + ctx.probes("perplexity_ratio"):
        is_usage = s.name.endswith("/usage_share")
        limit = CODE_USAGE_SHARE if is_usage else CODE_PERPLEXITY_RATIO
        w = sustained(ctx, s, lambda v: v < limit)
        if w is None:
            continue
        severity = "high" if w.median < (CODE_USAGE_HIGH if is_usage else CODE_PERPLEXITY_RATIO / 5) else "medium"
        what = "of the codebook is used" if is_usage else "is the perplexity of code use relative to the codebook size"
        summary = f"Only {w.median:.1%} {what} in {_family(s.name)} from {ctx.run.axis} {fmt(w.start)} on."
        out.append(ctx.signal("codebook_collapse", s, w.start, w.end, severity, summary,
                              "codebook collapse, only a few codes are used", value=w.median, threshold=limit,
                              numbers=_window_numbers(w, codebook_size=ctx.run.meta.get("codebook_size"))))
    return out


# ---- hardware and input pipeline --------------------------------------------------------------------
# Memory: reserved (or peak) memory within 5% of the card is one allocation away from an OOM (PyTorch
# CUDA caching-allocator notes). Input: the step waiting on data for 30%+ of its time is input-bound
# (PyTorch performance tuning guide; tf.data guide).
GPU_MEMORY_SHARE = 0.95
GPU_MEMORY_HIGH = 0.98
DATA_WAIT_SHARE = 0.3
DATA_WAIT_HIGH = 0.6


def detect_gpu_memory(ctx: Context) -> list[Signal]:
    total = ctx.get("gpu/mem_total_gb")
    used = ctx.get("gpu/mem_reserved_gb") or ctx.get("gpu/mem_peak_gb")
    if total is None or used is None:
        return []
    t = float(np.nanmax(ctx.curve(total).values)) if len(ctx.curve(total)) else 0.0
    if t <= 0:
        return []
    w = sustained(ctx, used, lambda v: v / t >= GPU_MEMORY_SHARE)
    if w is None:
        return []
    share = w.median / t
    severity = "high" if share >= GPU_MEMORY_HIGH else "medium"
    summary = f"{used.name} is at {share:.0%} of the GPU's {fmt(t)} GB from {ctx.run.axis} {fmt(w.start)} on: close to running out of memory."
    return [ctx.signal("gpu_memory_pressure", used, w.start, w.end, severity, summary,
                       "GPU memory nearly full, out of memory errors", value=share, threshold=GPU_MEMORY_SHARE,
                       numbers=_window_numbers(w, total_gb=t, share=share))]


def detect_data_loading(ctx: Context) -> list[Signal]:
    s = ctx.get("time/data_wait_share")
    if s is None:
        return []
    w = sustained(ctx, s, lambda v: v >= DATA_WAIT_SHARE)
    if w is None:
        return []
    util = ctx.get("gpu/utilization")
    util_v = float(np.nanmedian(ctx.curve(util).values)) if util is not None and len(ctx.curve(util)) else None
    step = ctx.get("time/step_s")
    step_v = float(np.nanmedian(ctx.curve(step).values)) if step is not None and len(ctx.curve(step)) else None
    severity = "high" if w.median >= DATA_WAIT_HIGH else "medium"
    summary = (f"Training waits for data {w.median:.0%} of each step from {ctx.run.axis} {fmt(w.start)} on"
               + (f" (GPU utilisation {util_v:.0f}%)" if util_v is not None else "") + ".")
    return [ctx.signal("data_loading_bottleneck", s, w.start, w.end, severity, summary,
                       "training is slow because the data loader is the bottleneck, GPU idle", value=w.median,
                       threshold=DATA_WAIT_SHARE, numbers=_window_numbers(w, gpu_utilization=util_v, step_s=step_v))]
