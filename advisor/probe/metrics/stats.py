"""Statistics: the small tensors a reading family computes from one input (sums, counts, maxima,
Gram pieces), how they combine across micro-batches and ranks, the helpers every family shares, and
the family of any other tensor (mean, std, norm, non-finite count)."""

from __future__ import annotations

import math

import torch
from torch import Tensor

Stats = dict[str, Tensor]

# How a statistic combines across micro-batches and ranks; any name not listed sums.
REDUCE_OPS: dict[str, str] = {
    "norm_max": "max",
    "norms": "cat",  # per-sample norms, for the median
    "unit_max": "max",
    "num_classes": "max",
    # Spectra computed locally from an N x N kernel (cheaper than D x D when D > N); they do not add
    # up across ranks, so the distributed path never produces them.
    "gram_eig": "local",
    "cov_eig": "local",
    "cov_fro2": "local",
    "cov_diag": "local",
}
# Sums that may differ in length between ranks and are zero-padded to the longest (histograms whose
# size was inferred from the largest index seen).
PADDABLE = {"hist"}


def reduce_op(stat: str) -> str:
    return REDUCE_OPS.get(stat, "sum")


def merge_stats(a: Stats, b: Stats) -> Stats:
    """Combine the statistics of two batches of the same input (micro-batches, repeated module calls)."""
    out = dict(a)
    for key, value in b.items():
        if key not in out:
            out[key] = value
            continue
        op = reduce_op(key)
        prev = out[key]
        if op == "cat":
            out[key] = torch.cat([prev.reshape(-1), value.reshape(-1).to(prev.device)])
        elif prev.shape != value.shape:
            if key in PADDABLE and prev.ndim == value.ndim == 1:
                size = max(prev.numel(), value.numel())
                out[key] = _pad(prev, size) + _pad(value.to(prev.device), size)
            # otherwise incompatible shapes (e.g. a module called on different-size inputs): keep the first
        elif op == "max":
            out[key] = torch.maximum(prev, value.to(prev.device))
        elif op == "min":
            out[key] = torch.minimum(prev, value.to(prev.device))
        elif op == "local":
            pass  # spectra of one batch; the first one stands
        else:
            out[key] = prev + value.to(prev.device)
    return out


def _pad(t: Tensor, size: int) -> Tensor:
    return t if t.numel() == size else torch.cat([t, t.new_zeros(size - t.numel())])


def constant(value: float) -> Tensor:
    """A statistic known on the host. Kept on the CPU: a 0-d CPU tensor mixes with device tensors in
    arithmetic, while creating it on a GPU would be a host-to-device copy that waits for the stream."""
    return torch.tensor(float(value), dtype=torch.float64)


def as_f64(n: Tensor | float) -> Tensor:
    return n.double() if isinstance(n, Tensor) else torch.tensor(float(n), dtype=torch.float64)


def safe_div(a: Tensor, b: Tensor) -> Tensor:
    """a / b, NaN where both are 0: an undefined reading is stored as NULL, never as a fake number.

    Plain IEEE division does exactly that (0/0 = NaN); the name marks the places that rely on it.
    """
    return a / b


def xlogx(p: Tensor) -> Tensor:
    return torch.special.xlogy(p, p)


def as_rows(x: Tensor) -> Tensor:
    """(N, D) float32 view of a representation: leading dimensions are samples (tokens count as samples)."""
    x = x.detach()
    if x.ndim == 1:
        x = x.reshape(1, -1)
    elif x.ndim > 2:
        x = x.reshape(-1, x.shape[-1])
    return x.float()



# --------------------------------------------------------------------------------------------------
# Any other tensor, and non-finite counts


def tensor_stats(x: Tensor) -> Stats:
    t = x.detach()
    finite = torch.isfinite(t)
    values = torch.where(finite, t, torch.zeros_like(t)).double()
    n = finite.sum().double()
    return {"n": n, "sum": values.sum(), "sum_sq": (values**2).sum(), "nonfinite": t.numel() - n}


def tensor_readings(s: Stats) -> dict[str, Tensor]:
    n = s["n"]
    var = (s["sum_sq"] - s["sum"] ** 2 / n.clamp(min=1)) / (n - 1).clamp(min=1)
    return {
        "mean": safe_div(s["sum"], n),
        "std": torch.where(n >= 2, var.clamp(min=0).sqrt(), torch.full_like(n, math.nan)),
        "norm": s["sum_sq"].sqrt(),
        "nonfinite": s["nonfinite"],
    }


def nonfinite_count(x: Tensor) -> Tensor:
    t = x.detach()
    if not (t.is_floating_point() or t.is_complex()):
        return torch.zeros((), dtype=torch.float64, device=t.device)
    return (~torch.isfinite(t)).sum().double()

