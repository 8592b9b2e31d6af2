"""Activations: one layer's output read inside a forward hook on sampled steps."""

from __future__ import annotations

import math

import torch
from torch import Tensor

from advisor import reading_names as rn
from advisor.probe.metrics.stats import Stats, constant, safe_div

SATURATION_BAND = 0.01  # share of a bounded activation's output range counted as "at the bound"
MAX_SAMPLE_FEATURES = 4096  # features per sample kept for activation sample similarity

# --------------------------------------------------------------------------------------------------
# Activations (computed inside forward hooks on sampled steps)

# Activation kinds (advisor.reading_names): dead units are read for ReLU layers only (outputs <= 0:
# no gradient), saturation for any layer given bounds; every layer gets spread and sample similarity.
RELU_LIKE = rn.ACT_RELU
BOUNDED = "bounded"  # a saturating layer of no particular kind (bounds passed explicitly)
PLAIN = rn.ACT_PLAIN


def unit_axis(ndim: int) -> int:
    """Which axis holds the units: channels for (N, C, H, W...) conv maps, the last axis otherwise."""
    return 1 if ndim >= 4 else ndim - 1


# On the CPU a pass over a large activation, and worse a temporary of its size (fresh memory pages),
# costs about as much as the layer itself; there the moments and fractions of outputs larger than
# CPU_SUBSET values are read from an evenly spread subset of that many values (a share to about
# +-0.4%, a std to about 0.3%). On a GPU they are exact up to GPU_SUBSET values, which bounds the
# float32 temporaries of a sampled step (a large language model's MLP output has ~10^8 values).
# Unit maxima are always exact.
CPU_SUBSET = 1 << 16
GPU_SUBSET = 1 << 24


SUBSET_BLOCK = 64  # values read together: a strided pick of single values would touch every cache line


def _block_subset(flat: Tensor, limit: int) -> Tensor:
    """About `limit` values of a 1-D tensor as every k-th block of SUBSET_BLOCK contiguous values
    (k odd, so the blocks do not fall in lock-step with even feature-map widths); (blocks, B) view."""
    blocks = flat.numel() // SUBSET_BLOCK
    every = math.ceil(blocks / max(1, limit // SUBSET_BLOCK)) | 1
    return flat[: blocks * SUBSET_BLOCK].view(blocks, SUBSET_BLOCK)[::every]


def _reading_subset(y: Tensor) -> tuple[Tensor, float]:
    """(float32 values to read, factor that scales their sums up to all of y)."""
    flat = y.reshape(-1)
    limit = CPU_SUBSET if y.device.type == "cpu" else GPU_SUBSET
    scale = 1.0
    if flat.numel() > limit:
        subset = _block_subset(flat, limit)
        flat, scale = subset, flat.numel() / subset.numel()
    return (flat if flat.dtype in (torch.float32, torch.float64) else flat.float()), scale


def _positive_count(part: Tensor) -> Tensor:
    # Through sign(): several times faster than a boolean mask on the CPU. NaN is not positive.
    return torch.sign(part).clamp_(min=0).nansum()


def _beyond_count(part: Tensor, mid: float, reach: float) -> Tensor:
    """How many |x - mid| >= reach: sign(|x - mid| - reach) + 1, clamped to 1."""
    return torch.sign((part - mid).abs_().sub_(reach)).add_(1).clamp_(max=1).nansum()


def _raw_moments(x: Tensor) -> tuple[Tensor, Tensor]:
    """(sum, sum of squares) in float64, accurate even when the mean dwarfs the spread."""
    n = x.numel()
    x = x.reshape(-1) if x.is_contiguous() else x
    if x.device.type == "cpu":
        # On the CPU reading a number is free: take the plain moments unless they would cancel.
        total = float(x.sum())
        total_sq = float(torch.linalg.vector_norm(x)) ** 2
        mean = total / n
        if total_sq / n - mean * mean > 1e-3 * mean * mean:
            return torch.tensor(total, dtype=torch.float64), torch.tensor(total_sq, dtype=torch.float64)
    # Moments about a cheap estimate of the mean, rebuilt as raw moments in float64 (which add up
    # across batches and ranks) without a host round trip.
    shift = x.reshape(-1)[:4096].mean() if x.is_contiguous() else x[:64].mean()
    centred = x - shift
    sum_c = centred.sum().double()
    sumsq_c = torch.linalg.vector_norm(centred).double() ** 2
    shift = shift.double()
    return sum_c + n * shift, sumsq_c + 2 * shift * sum_c + n * shift**2


def activation_stats(y: Tensor, kind: str, bounds: tuple[float, float] | None = None) -> Stats:
    """Counts and moments of one layer's output for one batch.

    - ReLU: outputs <= 0 count as inactive (NaN counts too); a unit (channel / feature) is dead when
      it is inactive for every sample and position in the batch. Not for GELU/SiLU/leaky kinds, whose
      outputs at or below zero still pass gradient.
    - bounds given (tanh/sigmoid-like): an output within 1% of the range from either bound is saturated (tanh |y| >= 0.98).
    - sample similarity uses each sample's flattened output (at most MAX_SAMPLE_FEATURES features, in
      evenly spread blocks).

    This runs inside the forward pass of sampled steps, on tensors of millions of values: float32
    reductions (pairwise/tree summed), no temporaries of the output's size on the CPU (see CPU_SUBSET),
    and moments about a cheap estimate of the mean so that a large offset cannot cancel the variance.
    """
    y = y.detach()  # in its own dtype: only the subsets read below are converted to float32
    n = float(y.numel())
    values, scale = _reading_subset(y)
    total, total_sq = _raw_moments(values)
    stats: Stats = {"n": constant(n), "sum": total * scale, "sum_sq": total_sq * scale}
    if kind in rn.DEAD_UNIT_KINDS:
        stats["inactive"] = n - _positive_count(values).double() * scale
        if y.ndim >= 2:
            axis = unit_axis(y.ndim)
            per_unit = y.amax(dim=0)  # the batch axis first: a contiguous reduction
            other = [d for d in range(per_unit.ndim) if d != axis - 1]
            stats["unit_max"] = (per_unit.amax(dim=other) if other else per_unit).double()
    elif bounds is not None:
        lo, hi = bounds
        mid, reach = (lo + hi) / 2, (hi - lo) / 2 - SATURATION_BAND * (hi - lo)
        stats["saturated"] = _beyond_count(values, mid, reach).double() * scale
    if y.ndim >= 2 and y.shape[0] >= 2:
        flat = y.reshape(y.shape[0], -1)
        if flat.shape[1] > MAX_SAMPLE_FEATURES and flat.shape[1] >= SUBSET_BLOCK:
            blocks = flat.shape[1] // SUBSET_BLOCK
            every = math.ceil(blocks / (MAX_SAMPLE_FEATURES // SUBSET_BLOCK))
            flat = flat[:, : blocks * SUBSET_BLOCK].reshape(flat.shape[0], blocks, SUBSET_BLOCK)[:, ::every]
            flat = flat.reshape(flat.shape[0], -1)
        flat = flat.float()
        stats["sample_sum"] = flat.sum(0).double()
        stats["sample_sq"] = torch.linalg.vector_norm(flat).double() ** 2
        stats["samples"] = constant(flat.shape[0])
    return stats


def activation_readings(s: Stats) -> dict[str, Tensor]:
    n = s["n"]
    var = (s["sum_sq"] - s["sum"] ** 2 / n.clamp(min=1)) / (n - 1).clamp(min=1)
    out = {"std": var.clamp(min=0).sqrt()}
    if "inactive" in s:
        out["zero_fraction"] = safe_div(s["inactive"], n)
    if "unit_max" in s:
        out["dead_unit_share"] = (s["unit_max"] <= 0).double().mean()
    if "saturated" in s:
        out["saturation_fraction"] = safe_div(s["saturated"], n)
    if "sample_sum" in s:
        # ||mean sample||^2 / mean ||sample||^2: 1 when every sample gives the same output.
        samples = s["samples"]
        mean_sq = ((s["sample_sum"] / samples) ** 2).sum()
        out["sample_similarity"] = safe_div(mean_sq, s["sample_sq"] / samples)
    return out

