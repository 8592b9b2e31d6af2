"""Evidence in a query: pasted log lines, metric dumps and tracebacks turned into named numbers and judged.

A practitioner pastes `train/mean_cos 0.998` or `loss: 2.3026` or a CUDA traceback; the words
alone do not say "collapse" or "no learning". `read_numbers` keeps numbers whole (scientific
notation, percentages, ranges, `a -> b` chains) and names each by the key before it; the judges below
compare them with thresholds from the literature and return the symptom in the documents' words.

The thresholds are plain constants and pure functions so that `advisor.detectors` can share them
(kb imports nothing from advisor; advisor may import these).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field

# ---- thresholds (pure constants; sources in the comments) -----------------------------------------
COLLAPSE_STD_FRACTION = 0.1  # per-dim std of L2-normalised z below 0.1/sqrt(D) is collapse (SimSiam, healthy ~ 1/sqrt(D))
TINY_STD = 1e-3  # without D: a std this small across samples is constant output
COSINE_COLLAPSE = 0.95  # mean pairwise cosine above this: embeddings point the same way
CHANCE_TOLERANCE = 0.2  # accuracy within 20% (relative) of 1/C is chance level
LN_C_TOLERANCE = 0.01  # loss within 1% (relative) of ln(C) is the loss of uniform predictions
LN_C_EXACT = 5e-4  # without a class count: loss equal to ln(2), ln(10), ln(100), ln(1000) to 4 decimals,
# or to the precision it was written with (a loss of "2.3" is ln(10) as a person reads a curve)
COMMON_CLASS_COUNTS = (2, 10, 100, 1000)
EXPLODING_GRAD_NORM = 100.0  # gradient norm above 100 (troubleshooting guide: "Gradient norms > 100")
VANISHING_GRAD_NORM = 1e-7  # DeepDiagnosis: mean |dW| < 1e-7 is vanishing
VANISHING_RATIO = 1e-3  # AUTOTRAINER: first-layer/last-layer gradient norm ratio below 1e-3
DEAD_FRACTION = 0.7  # DeepDiagnosis: >= 70% of a ReLU layer at zero is a dead layer
SATURATED_FRACTION = 0.5  # DeepDiagnosis: > 50% of tanh/sigmoid units saturated
LOW_CODEBOOK_USAGE = 0.25  # fewer than a quarter of the codes in use: dead codes
NEAR_ZERO_LOSS = 0.01  # a contrastive/KL loss below this carries no signal
GROWTH_FACTOR = 3.0  # a norm that grows 3x over the series is growing without bound
SLOWDOWN_FACTOR = 1.5  # epoch time up 1.5x: training slows down over time
LOSS_RISE = 1.1  # loss up 10% over its series
FLAT_RELATIVE = 0.02  # a loss series moving less than 2% is flat
ACCURACY_DROP = 1.1  # accuracy down 10% (relative) over its series
SCALE_DROPS = 2  # an AMP loss scale halved twice in a row is the scaler backing off from overflow

_NUMBER = r"[-+]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?"
_TOKEN = re.compile(
    rf"(?P<range>(?<![\w.])\d+(?:\.\d+)?[-–]\d+(?:\.\d+)?%?(?![\w.]))"
    rf"|(?P<num>(?<![\w.]){_NUMBER}(?:%|(?P<unit>ms|s|sec|min|h|gb|gib|mb))?(?![\w]))"
    r"|(?P<nan>(?<![\w])(?:nan|inf|-inf)(?![\w]))"
    r"|(?P<arrow>->|→|=>|⟶|\bto\b)"
    r"|(?P<word>[A-Za-z_][\w/.\-]*[A-Za-z0-9_])|(?P<word1>[A-Za-z])"
    r"|(?P<sep>[,;|\n{}\[\]]|\.\s)",
    re.I,
)
# words that sit between a key and its value, or are indexes rather than metrics
_FILLER = frozenset("is are was at of the a an = : from around about only still stays stuck sits by every each after while with".split())
_INDEX = re.compile(r"^(?:epoch|epochs|ep|step|steps|iter|iters|iteration|iterations|batch|_step|global_step|layer|block)$", re.I)
# a reading named by one of these says what it measures; one that is not ("then it hovers around 0.69")
# measures what the sentence last named
_METRIC_WORD = re.compile(r"loss|acc|top1|norm|std|cos|sim|scale|entropy|rank|usage|perplexity|time|\blr\b", re.I)
# "after 10 epochs", "800 steps": a number before these counts where in the run, not a value
_COUNTED = frozenset("epochs steps iters iterations batches updates".split())
# a "from a to b" on these is a config change the user made, not a curve
_HYPERPARAMETER = re.compile(r"\b(?:lr|learning[ _]rate|weight[ _]decay|wd|batch[ _]size|bs|momentum|temperature|temp|tau|warmup|dropout|beta\d?|eps|seed)\b")
_SIZE_UNITS = frozenset(
    "units unit dims dim dimensions channels layers heads neurons hidden tokens params parameters samples images examples codes gb gib mb mib kb classes class k m".split()
)
_DURATION_UNITS = {"ms": 0.001, "s": 1.0, "sec": 1.0, "secs": 1.0, "seconds": 1.0, "min": 60.0, "mins": 60.0, "minutes": 60.0, "h": 3600.0, "hours": 3600.0, "hour": 3600.0}
_DATASET_CLASSES = {"cifar-10": 10, "cifar10": 10, "cifar-100": 100, "cifar100": 100, "mnist": 10, "fashion-mnist": 10, "svhn": 10, "imagenet": 1000, "imagenet-1k": 1000, "stl-10": 10, "stl10": 10}


@dataclass
class Reading:
    """A named series of numbers from the text: `loss: 0.9 ... 1.1`, `scale 8192 -> 4096`, `acc 10%`."""

    name: str
    values: list[float] = field(default_factory=list)
    unit: str = ""
    percent: bool = False
    is_range: bool = False
    arrow: bool = False
    decimals: list[int] = field(default_factory=list)  # digits after the point of each value as written


def _decimals(tok: str) -> int:
    """Digits after the decimal point as written ("2.3" -> 1, "2.3026" -> 4, "3e-4" -> 0, "2" -> 0)."""
    m = re.match(r"[-+]?\d*\.(\d+)(?![\d])(?![eE])", tok)
    return len(m.group(1)) if m else 0


def _value(tok: str) -> tuple[float, bool]:
    pct = tok.endswith("%")
    v = float(tok.rstrip("%"))
    return (v / 100.0 if pct else v), pct


def read_numbers(text: str) -> list[Reading]:
    """Named readings in text order. Repeated keys extend one series (`epoch 6 loss 3.2 | epoch 7 loss 3.1`).

    Index words (epoch, step, ...) take the one number that follows them and nothing else, so
    `w_norm 3.1 (ep 2) -> 90.4 (ep 60)` is one norm series and `epoch 2: 75s | epoch 40: 300s`
    one duration series; numbers that follow a value without a new key continue its series.
    """
    readings: dict[str, Reading] = {}
    order: list[str] = []
    name_words: list[str] = []
    metric: Reading | None = None  # the reading a bare number or an arrow continues
    after_arrow = False
    pending_index: str | None = None

    def add(name: str, values: list[float], pct: bool, unit: str = "", is_range: bool = False, decimals: int = 0) -> Reading:
        key = f"{name}#range{len(order)}" if is_range else name
        if key in readings:
            readings[key].values.extend(values)
            readings[key].decimals.extend([decimals] * len(values))
            readings[key].unit = readings[key].unit or unit
        else:
            readings[key] = Reading(name=name, values=values, percent=pct, unit=unit, is_range=is_range, decimals=[decimals] * len(values))
            order.append(key)
        return readings[key]

    last_value: Reading | None = None  # the reading the previous token (a number) went to
    after_from = False  # the previous word was "from"
    subject: str | None = None  # the metric the sentence last named
    from_reading: Reading | None = None  # "rose from 52 s early on to 130 s": the reading "to" continues
    for m in _TOKEN.finditer(text):
        kind = m.lastgroup
        tok = m.group(0)
        just_valued, last_value = last_value, None
        was_from, after_from = after_from, False
        if kind in ("word", "word1"):
            low = tok.lower()
            after_from = low == "from"
            if just_valued is not None and low in _COUNTED and just_valued.values:
                # "after 10 epochs", "for 800 steps": the number counted the index, it is not a value
                just_valued.values.pop()
                del just_valued.decimals[len(just_valued.values):]
                continue
            if metric is not None and not name_words and pending_index is None and (low in _SIZE_UNITS or low in _DURATION_UNITS):
                metric.unit = metric.unit or low
                continue
            if low in _FILLER or re.fullmatch(r"(?:ep|epoch|step|iter)\d+", low):
                continue  # "(ep3)" inside a series marks where, not what
            if _INDEX.match(low):
                pending_index = low
                continue
            pending_index = None
            if _METRIC_WORD.search(low):
                split = name_words[-1:] if name_words and name_words[-1].startswith(("val", "train", "test", "eval")) else []
                subject = " ".join(split + [low])
            name_words = (name_words + [low])[-3:]
            metric = None
            after_arrow = False
        elif kind == "sep":
            name_words = []
            pending_index = None
            after_arrow = False
            from_reading = None
            if tok != "," and tok != "|":
                subject = None  # a new sentence or line names its own metric
        elif kind == "arrow":
            if metric is None and from_reading is not None:
                metric, name_words = from_reading, []
            after_arrow = metric is not None
            from_reading = pending_index = None  # "from 1.2 in the first epoch to 2.5": not epoch 2.5
        elif kind in ("num", "nan", "range"):
            unit = (m.group("unit") or "").lower() if kind == "num" else ""
            if pending_index is not None:  # "epoch 3": where in the run, not a value
                add("epoch" if pending_index.startswith("ep") else pending_index, [float(re.sub(r"[^\d.]", "", tok) or 0)], False)
                pending_index = None
                continue
            name = " ".join(name_words)
            if subject and name and kind != "range" and not _METRIC_WORD.search(name):
                name = f"{subject} {name}"
            if kind == "range":
                lo, hi = re.split(r"[-–]", tok.rstrip("%"), maxsplit=1)
                pct = tok.endswith("%")
                metric = add(name, [float(lo) / (100 if pct else 1), float(hi) / (100 if pct else 1)], pct, is_range=True)
                name_words, after_arrow = [], False
                continue
            if kind == "nan":
                v, pct = (math.nan if "nan" in tok.lower() else math.inf), False
            else:
                v, pct = _value(tok[: len(tok) - len(unit)] if unit else tok)
            if metric is not None and (after_arrow or not name_words):
                metric.values.append(v)  # "a -> b" or "loss: 0.9 (ep3) 1.1 (ep6)": one series
                metric.decimals.append(0 if pct or kind == "nan" else _decimals(tok))
                last_value = metric
                metric.arrow = metric.arrow or after_arrow
                metric.unit = metric.unit or unit
                after_arrow = False
                continue
            metric = add(name, [v], pct, unit, decimals=0 if pct or kind == "nan" else _decimals(tok))
            last_value = metric
            from_reading = metric if was_from else None
            name_words = []
    return [readings[k] for k in order]


# ---- pure judges ------------------------------------------------------------------------------------
def is_chance_accuracy(accuracy: float, num_classes: int) -> bool:
    chance = 1.0 / num_classes
    return abs(accuracy - chance) <= CHANCE_TOLERANCE * chance


def is_uniform_prediction_loss(loss: float, num_classes: int | None = None, decimals: int | None = None) -> bool:
    """Cross-entropy at ln(C): the model predicts the uniform distribution (nothing learned).

    decimals: how many digits the loss was written with; a rounded reading ("2.3", "0.69") is
    compared with ln(C) rounded the same way."""
    if num_classes and num_classes > 1:
        return abs(loss - math.log(num_classes)) <= LN_C_TOLERANCE * math.log(num_classes)
    if decimals is not None and 0 < decimals < 4:
        return any(round(math.log(c), decimals) == round(loss, decimals) for c in COMMON_CLASS_COUNTS)
    return any(abs(loss - math.log(c)) <= LN_C_EXACT for c in COMMON_CLASS_COUNTS)


def is_collapsed_std(std: float, dim: int | None = None) -> bool:
    if dim:
        return std < COLLAPSE_STD_FRACTION / math.sqrt(dim)
    return std < TINY_STD


def is_exploding_grad(norm: float) -> bool:
    return not math.isfinite(norm) or norm > EXPLODING_GRAD_NORM


def is_vanishing_grad(norm: float) -> bool:
    return 0 < norm < VANISHING_GRAD_NORM


def is_scale_backing_off(scales: list[float]) -> bool:
    """An AMP loss scale halved again and again: fp16 gradients overflow at every step."""
    drops = sum(1 for a, b in zip(scales, scales[1:]) if b < a)
    return drops >= SCALE_DROPS


def class_count(text: str) -> int | None:
    low = text.lower()
    m = re.search(r"(\d+)\s*(?:-\s*)?(?:classes|class|categories|labels|way)\b", low) or re.search(r"num_classes\s*[=:]\s*(\d+)", low)
    if m:
        return int(m.group(1))
    for name, c in _DATASET_CLASSES.items():
        if re.search(rf"(?<![\w-]){re.escape(name)}(?![\w-])", low):
            return c
    if re.search(r"\bbinary\b", low):
        return 2
    return None


def embedding_dim(text: str) -> int | None:
    m = re.search(r"\b(?:d|dim|dims|embed_dim|hidden_dim)\s*[=:]\s*(\d+)", text, re.I) or re.search(
        r"(\d+)[-\s]?(?:d\b|dims?\b|dimensions?\b|dimensional\b)", text, re.I
    ) or re.search(r"out of (\d+)\b", text, re.I)
    return int(m.group(1)) if m else None


def _has(name: str, *parts: str) -> bool:
    return any(p in name for p in parts)


_PATTERNS: list[tuple[re.Pattern, str]] = [
    (re.compile(r"out of memory|outofmemoryerror|cublas_status_alloc_failed|\boom\b", re.I), "CUDA out of memory OOM"),
    (re.compile(r"gradient overflow|reducing loss scale|loss scaler|found_inf|skipping step", re.I),
     "AMP mixed precision fp16 overflow loss scale reduced"),
    (re.compile(r"does not require grad|does not have a grad_fn|\.grad is none|grad is none|\.numpy\(\)|\.detach\(\)\.cpu\(\)", re.I),
     "gradients are zero tensor detached from the computation graph parameters don't update"),
    # a held-out loss that rises is the textbook overfitting signal, with or without numbers
    (re.compile(r"\b(?:val|valid|validation|eval|test|held-out)[\s_/-]*loss\w*\s+(?:\w+\s+){0,2}?(?:goes up|go up|went up|going up|rises|rising|increas\w*|climbs|climbing|creeps up|grows)", re.I),
     "validation loss increasing overfitting"),
]


def findings(text: str) -> list[str]:
    """Symptoms the text's numbers and messages show, each in the words the documents use."""
    out: list[str] = [words for pat, words in _PATTERNS if pat.search(text)]
    classes = class_count(text)
    dim = embedding_dim(text)
    readings = read_numbers(text)
    losses = [r for r in readings if _has(r.name, "loss", "xent", "nce", "kl") and not r.is_range]
    for r in readings:
        name, vals = r.name, r.values
        finite = [v for v in vals if math.isfinite(v)]
        if any(not math.isfinite(v) for v in vals):
            out.append("loss becomes NaN Inf")
        if not finite or r.is_range:
            continue
        first, last_v = finite[0], finite[-1]
        series = len(finite) >= 2 and r.unit not in _SIZE_UNITS and not _INDEX.match(name)
        if _has(name, "scale", "scaler") and series and is_scale_backing_off(finite):
            out.append("AMP mixed precision fp16 overflow loss scale reduced")
        elif _has(name, "grad") and _has(name, "norm") or name in ("gnorm",):
            if any(is_exploding_grad(v) for v in finite):
                out.append("exploding gradients gradient norm large")
            if all(v == 0 for v in finite):
                out.append("gradients are all zero parameters don't update")
            elif any(is_vanishing_grad(v) for v in finite):
                out.append("vanishing gradients tiny gradients")
        if _has(name, "acc", "top1") and classes and any(is_chance_accuracy(v if v <= 1 else v / 100, classes) for v in finite):
            out.append("chance-level accuracy not learning predicts one class loss constant")
        written = [(v, d) for v, d in zip(vals, r.decimals or [None] * len(vals)) if math.isfinite(v)]
        if _has(name, "loss", "xent", "entropy") and any(is_uniform_prediction_loss(v, classes, d) for v, d in written):
            out.append("loss constant at chance not learning loss not decreasing")
        if _has(name, "std") and not _has(name, "norm") and any(is_collapsed_std(v, dim) for v in finite):
            out.append("collapse very low variance outputs constant across samples")
        if _has(name, "cos", "sim") and not series and first > COSINE_COLLAPSE:
            out.append("cosine similarity near 1 embeddings collapse")
        if _has(name, "dead", "zero", "sparsity", "relu") and r.percent and first >= DEAD_FRACTION:
            out.append("dead ReLU units activations mostly zero")
        if _has(name, "usage", "utilization", "codebook") and _has(name, "code", "usage") and 0 < first < LOW_CODEBOOK_USAGE:
            out.append("low codebook usage dead codes")
        if _has(name, "loss", "nce", "kl", "xent") and 0 < max(finite) < NEAR_ZERO_LOSS:
            out.append("loss is near zero")
        if series:
            ratio = last_v / first if first else math.inf
            if _has(name, "time", "epoch_s", "duration", "sec") or r.unit in _DURATION_UNITS:
                if ratio >= SLOWDOWN_FACTOR:
                    out.append("training becomes slower over time epoch time increases")
            elif _has(name, "norm") and not _has(name, "grad") and ratio >= GROWTH_FACTOR:
                out.append("norms grow over time")
            elif _HYPERPARAMETER.search(name):
                out.append("hyperparameter changed small change sensitive to hyperparameters")
            elif _has(name, "acc", "top1", "f1", "map") and ratio <= 1 / ACCURACY_DROP:
                out.append("accuracy drops performance degrades")
            elif _has(name, "loss") and ratio >= LOSS_RISE:
                out.append("validation loss increases" if _has(name, "val", "eval", "test") else "loss increases")
            elif _has(name, "loss") and abs(last_v - first) <= FLAT_RELATIVE * abs(first) and len(finite) >= 2:
                out.append("loss stops decreasing flat plateau")
    train = [r for r in losses if not _has(r.name, "val", "eval", "test") and r.values and math.isfinite(r.values[-1])]
    val = [r for r in losses if _has(r.name, "val", "eval", "test") and r.values and math.isfinite(r.values[-1])]
    if train and val and val[-1].values[-1] > 2 * train[-1].values[-1]:
        out.append("validation loss much higher than training loss overfitting")
    return list(dict.fromkeys(out))


def signal_words(text: str) -> list[str]:
    """The words `kb.search` appends to a query for the evidence it carries (empty for plain sentences)."""
    if not re.search(r"\d|nan|inf|error|grad|numpy|scaler|overflow|memory|loss", text, re.I):
        return []
    return findings(text)
