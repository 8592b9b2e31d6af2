"""Outputs: logits (+ targets), VQ codes and attention maps."""

from __future__ import annotations

import functools
import math
import operator

import torch
from torch import Tensor

from advisor.probe.metrics.stats import Stats, constant, safe_div, xlogx

MAX_LOGIT_ROWS = 16384  # logits rows read per step (strided); enough for shares and means
LOGIT_CHUNK_ELEMENTS = 1 << 23  # softmax in chunks so a 50k-vocabulary batch needs ~32 MB at a time
MAX_ATTENTION_ROWS = 65536


def prediction_entropy(logits: Tensor) -> Tensor:
    """Mean per-sample entropy (nats) of softmax(logits)."""
    logp = torch.log_softmax(logits.detach().double(), dim=-1)
    return -(torch.where(logp.exp() > 0, logp.exp() * logp, torch.zeros_like(logp))).sum(-1).mean()


def perplexity(counts: Tensor) -> Tensor:
    """exp(entropy) of a histogram: the number of equally used bins it is worth."""
    c = counts.double()
    p = c / c.sum().clamp(min=1)
    return torch.exp(-xlogx(p).sum())


# --------------------------------------------------------------------------------------------------
# Outputs: logits (+ targets), VQ codes, attention maps


def logit_stats(logits: Tensor, targets: Tensor | None = None) -> Stats:
    """Per-class prediction counts, summed entropy and confidence, and correct counts when targets are given.

    A last dimension of 1 (or a 1-D tensor) is a binary classifier's logit: read as two classes.
    Targets may be class indices (negative = ignored, as -100 in Hugging Face) or one-hot/probabilities.
    """
    x = logits.detach()
    binary = x.ndim == 1 or x.shape[-1] == 1
    if binary:
        x = x.reshape(-1, 1).float()
        x = torch.cat([torch.zeros_like(x), x], dim=1)
    n_classes = x.shape[-1]
    x = x.reshape(-1, n_classes)
    t = None
    if targets is not None:
        t = targets.detach()
        if t.is_floating_point() and not binary and t.shape == logits.shape:
            t = t.argmax(-1)  # one-hot or soft targets
        elif t.is_floating_point():
            t = t.round()
        t = t.reshape(-1).long()
        if t.numel() != x.shape[0]:
            raise ValueError(f"targets have {t.numel()} entries for {x.shape[0]} rows of logits")
    stride = max(1, math.ceil(x.shape[0] / MAX_LOGIT_ROWS))
    if stride > 1:
        x = x[::stride]
        t = t[::stride] if t is not None else None
    hist = torch.zeros(n_classes, dtype=torch.float64, device=x.device)
    # Per-chunk sums, added up at the end (a batch of one chunk, the usual case, adds nothing).
    parts: list[tuple[Tensor, ...]] = []
    chunk = max(1, LOGIT_CHUNK_ELEMENTS // n_classes)
    for start in range(0, x.shape[0], chunk):
        xc = x[start : start + chunk].float()
        finite = torch.isfinite(xc).all(1)
        xc = torch.where(finite.unsqueeze(1), xc, 0.0)
        logp = torch.log_softmax(xc, dim=-1)
        p = logp.exp()
        entropy = -torch.where(p > 0, p * logp, 0.0).sum(-1)
        w = finite.double()
        pred = xc.argmax(-1)
        hist.index_add_(0, pred, w)
        part = ((entropy.double() * w).sum(), (p.max(-1).values.double() * w).sum(), w.sum())
        if t is not None:
            tc = t[start : start + chunk]
            valid = finite & (tc >= 0) & (tc < n_classes)
            part += (((pred == tc) & valid).double().sum(), valid.double().sum())
        parts.append(part)
    if not parts:  # no rows
        parts.append(tuple(torch.zeros((), dtype=torch.float64, device=x.device) for _ in range(5)))
    entropy_sum, confidence_sum, n, *target_sums = (functools.reduce(operator.add, sums) for sums in zip(*parts))
    if t is not None:
        correct, n_targets = target_sums
    stats: Stats = {
        "n": n,
        "hist": hist,
        "entropy_sum": entropy_sum,
        "confidence_sum": confidence_sum,
        "num_classes": constant(n_classes),
    }
    if t is not None:
        stats["correct"] = correct
        stats["n_targets"] = n_targets
    return stats


def logit_readings(s: Stats) -> dict[str, Tensor]:
    n = s["n"]
    entropy = safe_div(s["entropy_sum"], n)
    out = {
        "entropy": entropy,
        "entropy_ratio": entropy / torch.log(s["num_classes"].clamp(min=2)),
        "top_class_share": safe_div(s["hist"].max(), n),
        "confidence": safe_div(s["confidence_sum"], n),
        "num_classes": s["num_classes"],
    }
    if "correct" in s:
        out["accuracy"] = safe_div(s["correct"], s["n_targets"])
    return out


def code_stats(codes: Tensor, codebook_size: int | None = None) -> Stats:
    """Histogram of VQ code indices. Floating (..., K) input is read as soft assignments (argmax)."""
    c = codes.detach()
    if c.is_floating_point():
        if c.ndim >= 2:
            codebook_size = codebook_size or c.shape[-1]
            c = c.argmax(-1)
        else:
            c = c.round()
    idx = c.reshape(-1).long()
    if codebook_size is None:
        codebook_size = int(idx.max().item()) + 1 if idx.numel() else 1  # one sync, only without a known size
    valid = (idx >= 0) & (idx < codebook_size)
    hist = torch.zeros(codebook_size, dtype=torch.float64, device=idx.device)
    hist.index_add_(0, idx.clamp(0, codebook_size - 1), valid.double())
    return {"hist": hist}


def code_readings(s: Stats) -> dict[str, Tensor]:
    hist = s["hist"]
    size = float(hist.numel())
    ppl = torch.where(hist.sum() > 0, perplexity(hist), torch.full_like(hist.sum(), math.nan))
    return {
        "usage_share": (hist > 0).double().mean(),
        "perplexity": ppl,
        "perplexity_ratio": ppl / size,
    }


CAUSAL_TOLERANCE = 1e-6  # attention mass above the diagonal that still counts as causal (rounding)


def attention_stats(attention: Tensor) -> Stats:
    """Row entropies of (..., L_query, L_key) attention probabilities, raw and normalised.

    Scores that are not probabilities (negative entries, -inf masks, rows not summing to 1) are
    softmaxed first. Each row's entropy is normalised by the log of the number of keys it may see:
    all L_key keys, or under a causal mask (no row puts mass on a key after its own position) the
    keys up to it, so that exactly uniform causal attention reads 1, as uniform full attention does.
    Rows that may see a single key carry no spread and are left out of the normalised mean.
    """
    a = attention.detach()
    keys = a.shape[-1]
    queries = a.shape[-2] if a.ndim >= 2 else 1
    rows = a.reshape(-1, keys)
    stride = max(1, math.ceil(rows.shape[0] / MAX_ATTENTION_ROWS))
    query_index = torch.arange(0, rows.shape[0], stride, device=rows.device) % queries
    rows = rows[::stride].float()
    finite = ~(torch.isnan(rows) | (rows == math.inf)).any(1)  # -inf is a mask, not a fault
    rows = torch.where(finite.unsqueeze(1), rows, torch.zeros_like(rows))
    is_prob = (rows.min() >= 0) & ((rows.sum(-1) - 1).abs() <= 1e-2).logical_or(~finite).all()
    p = torch.where(is_prob, rows, torch.softmax(rows, dim=-1))
    finite = finite & torch.isfinite(p).all(1)  # a row masked everywhere has no distribution
    p = torch.where(finite.unsqueeze(1), p, torch.zeros_like(p))
    entropy = -xlogx(p).sum(-1)
    # The last query sees every key: queries are aligned to the end of the keys (a KV cache).
    last_key = query_index + (keys - queries)
    after = torch.arange(keys, device=p.device).unsqueeze(0) > last_key.unsqueeze(1)
    causal = (queries >= 2) & ((p * after).sum(-1) <= CAUSAL_TOLERANCE).logical_or(~finite).all()
    visible = torch.where(causal, (last_key + 1).clamp(min=1, max=keys), torch.full_like(last_key, keys)).double()
    w = finite.double()
    spread = w * (visible >= 2)
    return {
        "entropy_sum": (entropy.double() * w).sum(),
        "rows": w.sum(),
        "norm_entropy_sum": (entropy.double() / visible.clamp(min=2).log() * spread).sum(),
        "norm_rows": spread.sum(),
        "causal_rows": w.sum() * causal,
    }


def attention_readings(s: Stats) -> dict[str, Tensor]:
    return {
        "entropy": safe_div(s["entropy_sum"], s["rows"]),
        "entropy_ratio": safe_div(s["norm_entropy_sum"], s["norm_rows"]),
        "causal_share": safe_div(s["causal_rows"], s["rows"]),
    }

