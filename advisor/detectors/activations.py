"""Dead units, read only where an output of zero means a dead unit: ReLU-like layers.

DeepDiagnosis (Wardat et al. 2022) and AUTOTRAINER (Zhang et al. 2021): a ReLU layer with >= 70% of
its outputs at zero is dying. GELU/SiLU/softplus outputs near or below zero still pass gradient, and
leaky/ELU units pass it below zero, so their zeros are not dead units. The probe writes each layer's
activation kind in the run's meta (`activation_kinds`); older stores without it are judged by the
layer's name when it names its activation, else taken as ReLU (the only kind those stores counted).
"""

from __future__ import annotations

from advisor import reading_names as rn
from advisor.detectors.base import Context, fmt
from advisor.detectors.readings import layer, sustained, window_numbers, worst
from advisor.models import Signal

DEAD_ZERO_FRACTION = 0.70
DEAD_HIGH = 0.90
DEAD_UNIT_HIGH_SHARE = 0.5  # half of the units never fire on a whole batch: high whatever the zero share
# Mostly-zero outputs with every unit still firing on some sample are sparse, not dead (a dead ReLU never
# fires: Lu et al. 2019, Dying ReLU and Initialization). When the probe counts dead units, a finding needs
# a tenth of them dead or 90% of the outputs at zero; else it is a note.
DEAD_UNIT_MEDIUM_SHARE = 0.1
# Layer-name words of activations whose zeros are not dead units (for stores without activation kinds).
NOT_DEAD_WORDS = ("gelu", "silu", "swish", "mish", "softplus", "leaky", "elu", "selu", "celu", "prelu", "tanh", "sigmoid")


def dead_units_apply(ctx: Context, name: str) -> bool:
    """Whether a layer's zero outputs can be dead units: its activation kind is ReLU (or unknown, not named otherwise)."""
    kinds = ctx.run.meta.get(rn.META_ACTIVATION_KINDS)
    if isinstance(kinds, dict) and name in kinds:
        return kinds[name] in rn.DEAD_UNIT_KINDS
    low = name.lower()
    return not any(w in low for w in NOT_DEAD_WORDS) or "relu" in low.replace("leakyrelu", "").replace("leaky_relu", "").replace("prelu", "")


def detect_dead_units(ctx: Context) -> list[Signal]:
    found = []
    seen_layers = set()
    for s in ctx.probes(rn.ZERO_FRACTION) + ctx.probes(rn.DEAD_UNIT_SHARE):
        if not s.name.startswith(rn.ACT + "/"):
            continue
        suffix = rn.ZERO_FRACTION if s.name.endswith("/" + rn.ZERO_FRACTION) else rn.DEAD_UNIT_SHARE
        name = layer(s.name, rn.ACT, suffix)
        if name in seen_layers or not dead_units_apply(ctx, name):
            continue
        w = sustained(ctx, s, lambda v: v >= DEAD_ZERO_FRACTION)
        if w is None:
            continue
        seen_layers.add(name)
        dead_share = ctx.median_of(rn.act(name, rn.DEAD_UNIT_SHARE), last=w.points)
        severity = "high" if w.median >= DEAD_HIGH or (dead_share or 0) >= DEAD_UNIT_HIGH_SHARE else "medium"
        if (severity == "medium" and dead_share is not None and dead_share < DEAD_UNIT_MEDIUM_SHARE) or w.lapsing:
            severity = "low"
        what = "outputs are zero" if suffix == rn.ZERO_FRACTION else "units are dead"
        summary = (f"{w.median:.0%} of layer {name}'s {what} (median over {w.points} readings from {ctx.run.axis} "
                   f"{fmt(w.start)})" + (f"; {dead_share:.0%} of its units never fire." if dead_share is not None and suffix == rn.ZERO_FRACTION else "."))
        found.append((w.median, ctx.signal("dead_units", s, w.start, w.end, severity, summary,
                                           "ReLU activations are mostly zero, dead neurons", value=w.median, threshold=DEAD_ZERO_FRACTION,
                                           numbers=window_numbers(w, layer=name, dead_unit_share=dead_share,
                                                                  activation=(ctx.run.meta.get(rn.META_ACTIVATION_KINDS) or {}).get(name)))))
    return worst(found)


# ---- input scale ----------------------------------------------------------------------------------------
# Default initialisations (LeCun et al. 1998, Efficient BackProp; Glorot & Bengio 2010; He et al. 2015)
# keep a layer's outputs at about the scale of its inputs, and assume inputs of about unit scale
# (standardised features, pixels in [0, 1]): a healthy first layer reads a std well under 1 before the
# first update. Ten times the unit scale there means the inputs (or that layer's initial weights) are an
# order of magnitude off; the first gradients are as many times too large, and the first steps blow the
# weights up or kill the units. Read on the first layer the probe watches, at the run's first step only
# (a probe attached to a resumed run reads trained weights, whose scale says nothing about the inputs).
INPUT_SCALE_STD = 10.0
INIT_STEP_MAX = 1  # training loops count from 0 or 1


def _first_layer_std(ctx: Context):
    """(layer, Series of its act std) for the first layer the probe watches, in module order."""
    kinds = ctx.run.meta.get(rn.META_ACTIVATION_KINDS)
    order = list(kinds) if isinstance(kinds, dict) else []
    order += [layer(s.name, rn.ACT, rn.STD) for s in ctx.probes(rn.STD) if s.name.startswith(rn.ACT + "/")]
    for name in order:
        s = ctx.get(rn.act(name, rn.STD))
        if s is not None:
            return name, s
    return None


def detect_input_scale(ctx: Context) -> list[Signal]:
    found = _first_layer_std(ctx)
    if found is None:
        return []
    name, s = found
    c = ctx.curve(s)
    if not len(c) or c.steps[0] > INIT_STEP_MAX or c.steps[0] > ctx.axis_start:
        return []
    std0, step0 = float(c.values[0]), float(c.steps[0])
    if std0 < INPUT_SCALE_STD:
        return []
    grad = ctx.get(rn.GRAD_GLOBAL_NORM)
    g0 = float(ctx.curve(grad).values[0]) if grad is not None and len(ctx.curve(grad)) and ctx.curve(grad).steps[0] == step0 else None
    summary = (f"At {ctx.run.axis} {fmt(step0)}, before any update, layer {name}'s outputs have a std of {fmt(std0)}, "
               f"{std0:.0f}x the unit scale weight initialisation assumes"
               + (f" (the gradient norm is {fmt(g0)})" if g0 is not None else "")
               + ": the inputs are not normalised, or the first layer starts with weights far too large.")
    return [ctx.signal("input_scale", s, step0, step0, "high", summary,
                       "inputs not normalised, raw input scale, gradient norms exploding at the start, weight scale mismatch",
                       value=std0, threshold=INPUT_SCALE_STD, numbers={"layer": name, "std_at_init": std0, "grad_norm_at_init": g0},
                       early_cap=False)]
