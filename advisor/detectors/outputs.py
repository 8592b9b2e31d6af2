"""Detectors on the model's outputs and the machine: class collapse, overconfidence, GPU memory pressure.

Class collapse: one class takes most predictions although there are many (a model stuck on the majority
class; a majority-class baseline, Buda et al. 2018). Overconfidence: confidence far above accuracy
(Guo et al. 2017). Memory: reserved (or peak) memory within 5% of the card is one allocation away from
an OOM (PyTorch CUDA caching-allocator notes).
"""

from __future__ import annotations

import numpy as np

from advisor import reading_names as rn
from advisor.detectors.base import Context, fmt
from advisor.detectors.readings import MIN_READINGS, family, sustained, sustained_points, window_numbers
from advisor.models import Signal

CLASS_TOP_SHARE = 0.6
CLASS_TOP_HIGH = 0.9
BINARY_TOP_SHARE = 0.95
OVERCONFIDENCE_GAP = 0.2
OVERCONFIDENCE_MEDIUM_GAP = 0.3
GPU_MEMORY_SHARE = 0.95
GPU_MEMORY_HIGH = 0.98


def _logit_families(ctx: Context) -> set[str]:
    return {family(s.name) for s in ctx.probes(rn.TOP_CLASS_SHARE) + ctx.probes(rn.NUM_CLASSES)}


def detect_class_collapse(ctx: Context) -> list[Signal]:
    out = []
    for s in ctx.probes(rn.TOP_CLASS_SHARE):
        fam = family(s.name)
        k = ctx.median_of(rn.of(fam, rn.NUM_CLASSES), how="max")
        if k is not None and k < 2:
            continue
        limit = BINARY_TOP_SHARE if k == 2 else max(CLASS_TOP_SHARE, 3.0 / k) if k else CLASS_TOP_SHARE
        w = sustained(ctx, s, lambda v: v >= limit)
        if w is None:
            continue
        severity = "low" if w.lapsing else "high" if w.median >= CLASS_TOP_HIGH and (k or 3) > 2 else "medium"
        summary = (f"One class takes {w.median:.0%} of the predictions" + (f" among {fmt(k)} classes" if k else "")
                   + f" from {ctx.run.axis} {fmt(w.start)} on.")
        out.append(ctx.signal("class_collapse", s, w.start, w.end, severity, summary,
                              "model predicts only one or a few classes, majority class", value=w.median, threshold=limit,
                              numbers=window_numbers(w, num_classes=k)))
    return out


def detect_overconfidence(ctx: Context) -> list[Signal]:
    out = []
    for s in ctx.probes(rn.CONFIDENCE):
        fam = family(s.name)
        acc = ctx.get(rn.of(fam, rn.ACCURACY))
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
        severity = "medium" if w.median >= OVERCONFIDENCE_MEDIUM_GAP and not w.lapsing else "low"
        out.append(ctx.signal("overconfidence", s, w.start, w.end, severity, summary,
                              "model confidence is always high but accuracy is not, miscalibrated", value=w.median,
                              threshold=OVERCONFIDENCE_GAP, numbers=window_numbers(w)))
    return out


def detect_gpu_memory(ctx: Context) -> list[Signal]:
    t = ctx.median_of(rn.GPU_MEM_TOTAL_GB, how="max")
    used = ctx.get(rn.GPU_MEM_RESERVED_GB) or ctx.get(rn.GPU_MEM_PEAK_GB)
    if used is None or not t or t <= 0:
        return []
    w = sustained(ctx, used, lambda v: v / t >= GPU_MEMORY_SHARE)
    if w is None:
        return []
    share = w.median / t
    severity = "high" if share >= GPU_MEMORY_HIGH else "medium"
    summary = f"{used.name} is at {share:.0%} of the GPU's {fmt(t)} GB from {ctx.run.axis} {fmt(w.start)} on: close to running out of memory."
    return [ctx.signal("gpu_memory_pressure", used, w.start, w.end, severity, summary,
                       "GPU memory nearly full, out of memory errors", value=share, threshold=GPU_MEMORY_SHARE,
                       numbers=window_numbers(w, total_gb=t, share=share))]
