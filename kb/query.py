"""Turn what a user pastes (log lines, metric names, shorthand) into words the documents use.

People describe runs in logging shorthand — `emb_norm/mean 5.2 -> 398.7`, `lr 3e-3`, `val acc` —
while the documents say "feature norms grow", "learning rate", "validation accuracy". The expansion
is appended to the query, never replaces it, so nothing the user wrote is lost.
"""

from __future__ import annotations

import re

# ML logging shorthand -> the words troubleshooting documents use. General vocabulary only.
ABBREVIATIONS: dict[str, str] = {
    "lr": "learning rate",
    "emb": "embedding feature",
    "embs": "embeddings features",
    "feat": "feature",
    "feats": "features",
    "acc": "accuracy",
    "val": "validation",
    "ep": "epoch",
    "grad": "gradient",
    "grads": "gradients",
    "gnorm": "gradient norm",
    "pos": "positional",
    "dim": "dimension",
    "dims": "dimensions",
    "nt_xent": "InfoNCE contrastive loss",
    "ntxent": "InfoNCE contrastive loss",
    "info_nce": "InfoNCE contrastive loss",
    "xent": "cross entropy loss",
    "ce": "cross entropy",
    "kl": "KL divergence",
    "vram": "GPU memory",
    "oom": "out of memory",
    "util": "utilization",
    "seg": "segmentation",
    "cls": "class",
    "bs": "batch size",
    "wd": "weight decay",
    "ema": "EMA target",
    "attn": "attention",
    "nan": "NaN",
    "inf": "Inf",
    "ckpt": "checkpoint",
    "aug": "augmentation",
    "augs": "augmentations",
    "vq": "VQ codebook",
    "bn": "BatchNorm",
    "ln": "LayerNorm",
}

_NUMBER = r"[-+]?(?:\d+\.?\d*|\.\d+)(?:e[-+]?\d+)?"
# "a -> b", "a → b", "from a to b", "a to b"
_TREND = re.compile(rf"({_NUMBER})\s*%?\s*(?:\([^)]*\))?\s*(?:->|→|=>|\bto\b)\s*({_NUMBER})", re.I)
_DURATION = re.compile(rf"({_NUMBER})\s*(s|sec|secs|seconds|min|mins|minutes|h|hours)\b", re.I)
_SMALL = re.compile(rf"(?<![\w.]){_NUMBER}(?![\w.])")


def _trend_words(text: str) -> list[str]:
    words: list[str] = []
    for a, b in _TREND.findall(text):
        try:
            x, y = float(a), float(b)
        except ValueError:
            continue
        if y > x * 1.5 and y - x > 1e-12:
            words.append("grows increases over time")
        elif y < x / 1.5:
            words.append("drops decreases")
    durations = [float(v) * {"min": 60, "mins": 60, "minutes": 60, "h": 3600, "hours": 3600}.get(u.lower(), 1) for v, u in _DURATION.findall(text)]
    if len(durations) >= 2 and durations[-1] > 1.5 * durations[0]:
        words.append("takes longer slower over time")
    return words


def expand_query(text: str) -> str:
    """The query plus words for its shorthand, trends and near-zero values."""
    extra: list[str] = []
    identifiers = re.findall(r"[A-Za-z][A-Za-z0-9]*(?:[_/.\-][A-Za-z0-9]+)+|[A-Za-z]+", text)
    for ident in identifiers:
        low = ident.lower()
        if low in ABBREVIATIONS:
            extra.append(ABBREVIATIONS[low])
            continue
        parts = re.split(r"[_/.\-]+", low)
        if len(parts) > 1:
            extra.append(" ".join(ABBREVIATIONS.get(p, p) for p in parts))
    extra.extend(_trend_words(text))
    numbers = []
    for tok in _SMALL.findall(text):
        try:
            numbers.append(float(tok))
        except ValueError:
            pass
    if numbers and "loss" in (text + " ".join(extra)).lower() and all(0 <= n < 0.01 for n in numbers if n != int(n)) and any(0 < n < 0.01 for n in numbers):
        extra.append("loss is always near zero")
    if not extra:
        return text
    return text + "\n" + " ".join(dict.fromkeys(extra))
