"""Detectors on the probe's readings: the shared "sustained window" test and the rule table.

A finding must hold over a window — most of the run's last third of sampled steps, after warm-up —
never on one noisy reading. Threshold-style checks (one reading against one limit) are rows of
`RULES`; each row carries its threshold and the literature it comes from, and `rule_detectors()`
turns the rows of one signal kind into one registry entry. Checks that need more than one reading
and a limit live in `activations`, `weights`, `representations` and `outputs`.

Reading names follow the probe (advisor.reading_names): `act/{layer}/zero_fraction`,
`grad/first_last_ratio`, `{family}/effective_rank_ratio`, ... (any family prefix).
"""

from __future__ import annotations

import operator
from dataclasses import dataclass
from typing import Callable

import numpy as np

from advisor import reading_names as rn
from advisor.detectors.base import Context, Detector, episodes, fmt
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

    @property
    def lapsing(self) -> bool:
        """The symptom's latest episode is its last reading alone: it came and went over the last third
        (that is what let it pass the share), so one reading is all that shows it now — weak evidence,
        never more than a low finding."""
        return self.points < 2


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


def layer(name: str, prefix: str, suffix: str) -> str:
    """`act/enc.1/zero_fraction` -> `enc.1` (prefix and suffix without their slashes)."""
    core = name[len(prefix) + 1:] if prefix and name.startswith(prefix + "/") else name
    return core[: -len(suffix) - 1] if core.endswith("/" + suffix) else core


def family(name: str) -> str:
    """`embeddings/effective_rank` -> `embeddings`."""
    return name.rsplit("/", 1)[0]


def worst(signals: list[tuple[float, Signal]]) -> list[Signal]:
    """At most MAX_LAYERS_REPORTED signals of one kind, the worst first; each says how many layers had it."""
    signals.sort(key=lambda t: -t[0])
    out = [sig for _, sig in signals[:MAX_LAYERS_REPORTED]]
    if len(signals) > MAX_LAYERS_REPORTED:
        for sig in out:
            sig.numbers["layers_affected"] = len(signals)
    return out


def window_numbers(w: Window, **extra) -> dict:
    return {"median": w.median, "last": w.last, "share_of_last_third": w.share, "readings": w.points, **extra}


# ---- the rule table -----------------------------------------------------------------------------------

_OPS = {">=": operator.ge, ">": operator.gt, "<": operator.lt, "<=": operator.le}


@dataclass(frozen=True)
class Rule:
    """One threshold-style reading check: a reading against a limit, sustained.

    `reading` is an exact name (`grad/zero_share`) or, with `prefix`, a suffix read on every layer or
    family (`act/*/saturation_fraction`; prefix "" means any family). `high` is the limit beyond which
    the finding is high (same direction as `op`). `summary` is formatted with median, layer, family,
    axis, start and points. `alone`: only when the rows of the same kind before it found nothing.
    """

    kind: str
    reading: str
    op: str
    limit: float
    summary: str
    query: str
    reference: str
    high: float | None = None
    severity: str = "medium"
    prefix: str | None = None  # None: `reading` is an exact name
    alone: bool = False
    extra: Callable[[Context, Series, Window], dict] | None = None
    applies: Callable[[Context, Series], bool] | None = None
    explained: Callable[[Context], str | None] | None = None  # another finding that explains it: a note, with why

    def flagged(self, v: np.ndarray) -> np.ndarray:
        return _OPS[self.op](v, self.limit)

    def beyond_high(self, x: float) -> bool:
        return self.high is not None and bool(_OPS[self.op](x, self.high))

    def series(self, ctx: Context) -> list[Series]:
        if self.prefix is None:
            s = ctx.get(self.reading)
            return [s] if s is not None else []
        found = ctx.probes(self.reading)
        return [s for s in found if not self.prefix or s.name.startswith(self.prefix + "/")]

    def describe(self) -> str:
        where = self.reading if self.prefix is None else f"{self.prefix or '{family}'}/*/{self.reading}"
        high = f" (high {self.op} {self.high:g})" if self.high is not None else ""
        return f"{where} {self.op} {self.limit:g} sustained{high}"

    def check(self, ctx: Context) -> list[tuple[float, Signal]]:
        out = []
        for s in self.series(ctx):
            if self.applies is not None and not self.applies(ctx, s):
                continue
            w = sustained(ctx, s, self.flagged)
            if w is None:
                continue
            severity = "low" if w.lapsing else "high" if self.beyond_high(w.median) else self.severity
            lay = layer(s.name, self.prefix, self.reading) if self.prefix else s.name
            summary = self.summary.format(median=w.median, layer=lay, family=family(s.name), axis=ctx.run.axis,
                                          start=fmt(w.start), points=w.points, median_text=fmt(w.median))
            why = self.explained(ctx) if self.explained else None
            if why:
                severity, summary = "low", f"{summary[:-1]} — {why}."
            numbers = window_numbers(w, **(self.extra(ctx, s, w) if self.extra else {}))
            if self.prefix:
                numbers.setdefault("layer", lay)
            sig = ctx.signal(self.kind, s, w.start, w.end, severity, summary, self.query, value=w.median,
                             threshold=self.limit, numbers=numbers)
            # the worst first: the furthest past the limit, relative to it
            badness = w.median / self.limit if self.op in (">", ">=") else self.limit / max(w.median, 1e-300)
            out.append((badness, sig))
        return out


def frozen_parameters_held(ctx: Context) -> bool:
    """Parameters that receive gradients but never move, sustained: they sit outside the optimizer, so
    optimizer.zero_grad() never clears their .grad and it grows step after step."""
    s = ctx.get(rn.UPDATE_FROZEN_SHARE)
    return s is not None and sustained(ctx, s, lambda v: v > 0) is not None


def _frozen_gradients(ctx: Context) -> str | None:
    if frozen_parameters_held(ctx):
        return "parameters outside the optimizer accumulate their gradients (see frozen_parameters)"
    return None


def _not_logits(ctx: Context, s: Series) -> bool:
    """Entropy ratios of the output logits are read by the class checks, not as attention."""
    return family(s.name) not in {family(x.name) for x in ctx.probes(rn.NUM_CLASSES) + ctx.probes(rn.TOP_CLASS_SHARE)}


def _data_wait_extra(ctx: Context, s: Series, w: Window) -> dict:
    return {"gpu_utilization": ctx.median_of(rn.GPU_UTILIZATION), "step_s": ctx.median_of(rn.TIME_STEP_S)}


def _worst_update_layer(ctx: Context, s: Series, w: Window) -> dict:
    layers = [x for x in ctx.probes(rn.RATIO) if x.name.startswith(rn.UPDATE + "/") and x.name != rn.UPDATE_MAX_RATIO]
    if not layers:
        return {}
    top = max(layers, key=lambda x: ctx.median_of(x.name) or -np.inf)
    return {"worst_layer": layer(top.name, rn.UPDATE, rn.RATIO)}


def _codebook_extra(ctx: Context, s: Series, w: Window) -> dict:
    return {"codebook_size": ctx.run.meta.get("codebook_size")}


AUTOTRAINER = "Zhang et al. 2021 (AUTOTRAINER)"
DEEPDIAGNOSIS = "Wardat et al. 2022 (DeepDiagnosis)"

# Limits, each with its source:
# - saturation: DeepDiagnosis flags more than half of tanh/sigmoid outputs at their bounds.
# - identical outputs: ||mean sample||^2 / mean ||sample||^2 >= 0.995 — every sample gives the same output.
# - gradients: AUTOTRAINER's r = ||grad first layer|| / ||grad last layer||, vanishing below 1e-3 and
#   exploding above 70; DeepDiagnosis calls mean |dW| < 1e-7 vanishing (a global norm under 1e-6 here);
#   a global norm above 1e3 sustained is Pascanu et al. 2013's exploding regime; AUTOTRAINER's dying-ReLU
#   check uses >= 70% zero gradients per layer, over a whole model 90%.
# - updates: update/weight ratio ~1e-3 is healthy (Karpathy, CS231n notes); 1e-1 sustained rewrites a
#   tenth of the weights each step.
# - dimensions: VICReg's variance term (Bardes et al. 2022) — a third of the dimensions without variance.
# - codebook: van den Oord et al. 2017; Dhariwal et al. 2020 — a quarter of the codes in use, or a code
#   perplexity a tenth of the codebook size.
# - attention: entropy within 5% of its maximum (the log of the keys each query may see) is uniform
#   attention (Zhai et al. 2023 track attention entropy for stability).
# - input pipeline: the step waiting on data 30% of its time (PyTorch performance tuning guide; tf.data guide).
RULES: tuple[Rule, ...] = (
    Rule("saturation", rn.SATURATION_FRACTION, ">", 0.50, prefix=rn.ACT, high=0.80,
         summary="{median:.0%} of layer {layer}'s outputs sit at the bounds of its activation from {axis} {start} on.",
         query="tanh or sigmoid activations saturated at their bounds", reference=f"{DEEPDIAGNOSIS}; Glorot & Bengio 2010"),
    Rule("identical_outputs", rn.SAMPLE_SIMILARITY, ">=", 0.995, prefix=rn.ACT,
         summary="Layer {layer} gives nearly the same output for every sample (similarity {median:.4f}) from {axis} {start} on.",
         query="layer outputs are identical across samples", reference="practitioner check: a layer blind to its input"),
    Rule("vanishing_gradients", rn.GRAD_FIRST_LAST_RATIO, "<", 1e-3, high=1e-5,
         summary=("The first layer's gradient is {median_text} times the last layer's (median over {points} readings from "
                  "{axis} {start}): gradients vanish before they reach the input layers."),
         query="vanishing gradients, early layers get tiny gradients", reference=f"{AUTOTRAINER}; {DEEPDIAGNOSIS}"),
    Rule("vanishing_gradients", rn.GRAD_GLOBAL_NORM, "<", 1e-6, alone=True,
         summary="The global gradient norm stays below 1e-06 (median {median_text}) from {axis} {start}.",
         query="gradients are vanishingly small, training stalls", reference=DEEPDIAGNOSIS),
    Rule("exploding_gradients", rn.GRAD_FIRST_LAST_RATIO, ">", 70.0, explained=_frozen_gradients,
         summary=("The first layer's gradient is {median_text} times the last layer's from {axis} {start}: "
                  "gradients grow on their way back through the network."),
         query="exploding gradients, early layers get huge gradients", reference=f"{AUTOTRAINER}; Pascanu et al. 2013"),
    Rule("exploding_gradients", rn.GRAD_GLOBAL_NORM, ">", 1e3, high=1e5, explained=_frozen_gradients,
         summary="The global gradient norm stays above 1000 (median {median_text}) from {axis} {start}.",
         query="gradient norm is huge, exploding gradients", reference="Pascanu et al. 2013"),
    Rule("zero_gradients", rn.GRAD_ZERO_SHARE, ">=", 0.90, high=0.99,
         summary="{median:.1%} of gradient entries are exactly zero from {axis} {start} on.",
         query="gradients are all zero, nothing learns", reference=f"{AUTOTRAINER} (>= 70% zero gradients per layer)"),
    Rule("large_updates", rn.UPDATE_MAX_RATIO, ">", 0.1, high=1.0, extra=_worst_update_layer,
         summary=("Each optimizer step changes up to {median_text} of a layer's weight norm (median over {points} readings), "
                  "far above the ~1e-3 of healthy training."),
         query="parameter updates are too large relative to the weights, learning rate too high",
         reference="Karpathy, CS231n notes (update/weight ratio ~1e-3)"),
    Rule("dead_dimensions", rn.DEAD_DIM_SHARE, ">=", 0.30, prefix="", high=0.70,
         summary="{median:.0%} of the {family} dimensions carry almost no variance from {axis} {start} on.",
         query="embedding dimensions are unused, near-zero variance", reference="Bardes et al. 2022 (VICReg variance term); Jing et al. 2022"),
    Rule("uneven_feature_norms", rn.NORM_CV, ">=", 1.0, prefix="", severity="low",
         summary="The {family} row norms vary widely (coefficient of variation {median_text}) from {axis} {start}.",
         query="feature norms are highly uneven across samples", reference="practitioner check on embedding norms"),
    Rule("codebook_collapse", rn.USAGE_SHARE, "<", 0.25, prefix="", high=0.05, extra=_codebook_extra,
         summary="Only {median:.1%} of the codebook is used in {family} from {axis} {start} on.",
         query="codebook collapse, only a few codes are used", reference="van den Oord et al. 2017; Dhariwal et al. 2020"),
    Rule("codebook_collapse", rn.PERPLEXITY_RATIO, "<", 0.1, prefix="", high=0.02, extra=_codebook_extra,
         summary="Only {median:.1%} is the perplexity of code use relative to the codebook size in {family} from {axis} {start} on.",
         query="codebook collapse, only a few codes are used", reference="van den Oord et al. 2017; Dhariwal et al. 2020"),
    Rule("uniform_attention", rn.ENTROPY_RATIO, ">=", 0.95, prefix="", applies=_not_logits,
         summary="Attention in {family} is nearly uniform (entropy {median:.0%} of its maximum over the keys it may see) from {axis} {start} on.",
         query="attention weights are uniform over all positions", reference="Zhai et al. 2023 (attention entropy and training stability)"),
    Rule("data_loading_bottleneck", rn.TIME_DATA_WAIT_SHARE, ">=", 0.30, high=0.60, extra=_data_wait_extra,
         summary="Training waits for data {median:.0%} of each step from {axis} {start} on.",
         query="training is slow because the data loader is the bottleneck, GPU idle",
         reference="PyTorch performance tuning guide; TensorFlow tf.data guide"),
)


def _rule_detector(kind: str, rules: tuple[Rule, ...]) -> Callable[[Context], list[Signal]]:
    def detect(ctx: Context) -> list[Signal]:
        found: list[tuple[float, Signal]] = []
        for rule in rules:
            if rule.alone and found:
                continue
            found.extend(rule.check(ctx))
        return worst(found)

    detect.__name__ = detect.__qualname__ = f"detect_{kind}"
    return detect


def rule_detectors() -> list[Detector]:
    """One registry row per signal kind of the rule table, in table order."""
    kinds = list(dict.fromkeys(r.kind for r in RULES))
    out = []
    for kind in kinds:
        rows = tuple(r for r in RULES if r.kind == kind)
        out.append(Detector(kind, _rule_detector(kind, rows), "; or ".join(r.describe() for r in rows),
                            "; ".join(dict.fromkeys(r.reference for r in rows)), "readings"))
    return out
