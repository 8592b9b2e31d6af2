"""Representations: metric functions on an (N, D) embedding or its spectrum, and the family that
reads `embeddings` (and the first of two `views`) from statistics that add up across ranks."""

from __future__ import annotations

import math

import torch
from torch import Tensor

from advisor.probe.metrics.stats import Stats, as_f64, as_rows, safe_div

RANKME_EPS = 1e-7
DEAD_DIM_REL = 0.01  # a dimension whose std is below 1% of the mean per-dimension std is near-dead
DEAD_DIM_ABS = 1e-8


# --------------------------------------------------------------------------------------------------
# Metric functions


def rankme(singular_values: Tensor, count: Tensor | int | None = None) -> Tensor:
    """RankMe effective rank (Garrido et al. 2023): exp of the entropy of p_k = s_k / sum(s) + 1e-7.

    Uses singular values, not their squares; D orthogonal directions of equal strength give D.
    `count` keeps only the largest `count` values: an N x D matrix has min(N, D) singular values,
    while the eigenvalues of its D x D Gram matrix number D.
    """
    s = singular_values.double().clamp(min=0)
    keep = None
    if count is not None:
        s = torch.sort(s, descending=True).values
        keep = torch.arange(s.numel(), device=s.device) < count
        s = s * keep
    p = s / s.sum().clamp(min=torch.finfo(torch.float64).tiny) + RANKME_EPS
    plogp = p * p.log()
    return torch.exp(-(plogp if keep is None else plogp * keep).sum())


def effective_rank(z: Tensor) -> Tensor:
    """RankMe of an (N, D) embedding matrix, straight from its singular values."""
    return rankme(torch.linalg.svdvals(as_rows(z).double()))


def variance_share(eigenvalues: Tensor, k: int) -> Tensor:
    """Share of the total variance carried by the top-k eigenvalues of a covariance (eigenvalue decay)."""
    e = eigenvalues.double().clamp(min=0)
    top = torch.topk(e, min(k, e.numel())).values.sum()
    return safe_div(top, e.sum())


def offdiag_energy_share(cov_fro2: Tensor, cov_diag: Tensor) -> Tensor:
    """Share of a covariance's squared Frobenius norm that lies off the diagonal.

    0 for decorrelated dimensions; 1 - 1/D when all D dimensions carry the same signal.
    """
    fro2 = as_f64(cov_fro2)
    return safe_div((fro2 - cov_diag.double().square().sum()).clamp(min=0), fro2)


def offdiag_cov_energy(z: Tensor) -> Tensor:
    cov = torch.cov(as_rows(z).double().T)
    cov = cov.reshape(1, 1) if cov.ndim == 0 else cov
    return offdiag_energy_share((cov**2).sum(), torch.diagonal(cov))


def dead_dim_share(dim_std: Tensor) -> Tensor:
    """Share of dimensions whose std is below 1% of the mean per-dimension std (or ~0 outright)."""
    std = dim_std.double()
    return (std <= (DEAD_DIM_REL * std.mean()).clamp(min=DEAD_DIM_ABS)).double().mean()


def l2norm_std(z: Tensor) -> Tensor:
    """Mean over dimensions of the batch std of L2-normalised rows (SimSiam's collapse check).

    About 1/sqrt(D) for healthy embeddings spread over the sphere, 0 when every row points the same way.
    """
    u = torch.nn.functional.normalize(as_rows(z).double(), dim=1)
    return u.std(dim=0).mean()


def mean_pairwise_cosine(z: Tensor) -> Tensor:
    """Mean cosine similarity over all pairs of distinct rows (1 = every row points the same way)."""
    u = torch.nn.functional.normalize(as_rows(z).double(), dim=1)
    n = u.shape[0]
    return safe_div((u.sum(0) ** 2).sum() - (u**2).sum(), as_f64(n * (n - 1)))


def paired_cosine(a: Tensor, b: Tensor) -> Tensor:
    """Mean cosine similarity between row i of `a` and row i of `b` (two augmented views)."""
    return torch.nn.functional.cosine_similarity(as_rows(a).double(), as_rows(b).double(), dim=1).mean()


def norm_spread(z: Tensor) -> tuple[Tensor, Tensor]:
    """(max / median, coefficient of variation) of the per-row L2 norms."""
    norms = as_rows(z).double().norm(dim=1)
    return norms.max() / torch.quantile(norms, 0.5), norms.std() / norms.mean()


# --------------------------------------------------------------------------------------------------
# Representations: `embeddings` (N x D) and the first of two `views`


def representation_stats(z: Tensor, additive: bool = True) -> Stats:
    """Sufficient statistics of an (N, D) representation; rows with NaN/Inf are left out.

    additive=True keeps D x D pieces that sum across ranks; additive=False (one process) may use the
    N x N kernel instead when D > N, which gives the same spectra much faster. Float64 throughout:
    float32 rounding in a rank-deficient Gram matrix shows up as spurious singular values in RankMe.
    """
    x = as_rows(z).double()
    n_rows, dim = x.shape
    finite = torch.isfinite(x).all(dim=1, keepdim=True)
    x = torch.where(finite, x, 0.0)
    n = finite.sum().double()
    total = x.sum(0)
    mean = total / n.clamp(min=1)
    centred = (x - mean) * finite
    norms = torch.linalg.vector_norm(x, dim=1)
    unit = x / norms.clamp(min=1e-12).unsqueeze(1)
    stats: Stats = {
        "n": n,
        "sum": total,
        "sum_u": unit.sum(0),
        "sum_u2": unit.square().sum(0),
        "norms": torch.where(finite.squeeze(1), norms, math.nan),
        "norm_sum": norms.sum(),
        "norm_sq_sum": norms.square().sum(),
        "norm_max": norms.max() if n_rows else torch.zeros((), dtype=torch.float64, device=x.device),
    }
    if additive or dim <= n_rows:
        # Raw Gram = scatter about the batch mean + n * mean mean': both add up across batches and ranks.
        stats["m2"] = centred.T @ centred
        stats["mean_outer"] = torch.outer(total, mean)
    else:
        kernel = centred @ centred.T
        dof = (n - 1).clamp(min=1)
        stats["gram_eig"] = torch.linalg.eigvalsh(x @ x.T)
        stats["cov_eig"] = torch.linalg.eigvalsh(kernel) / dof
        stats["cov_fro2"] = kernel.square().sum() / dof.square()
        stats["cov_diag"] = centred.square().sum(0) / dof
    return stats


def representation_readings(s: Stats) -> dict[str, Tensor | float]:
    n = s["n"]
    dim = s["sum"].numel()
    rows = n.clamp(min=1)
    dof = (n - 1).clamp(min=1)
    if "m2" in s:
        gram = s["m2"] + s["mean_outer"]
        cov = (gram - torch.outer(s["sum"], s["sum"]) / rows) / dof
        gram_eig = torch.linalg.eigvalsh(gram)  # reads one triangle: rounding asymmetry does not matter
        cov_eig = torch.linalg.eigvalsh(cov)
        cov_fro2 = cov.square().sum()
        cov_diag = cov.diagonal()
    else:
        gram_eig, cov_eig, cov_fro2, cov_diag = s["gram_eig"], s["cov_eig"], s["cov_fro2"], s["cov_diag"]
    erank = rankme(gram_eig.clamp(min=0).sqrt(), count=n)
    variance = cov_eig.clamp(min=0)  # ascending, as eigvalsh returns them
    total_variance = variance.sum()
    dim_std = cov_diag.clamp(min=0).sqrt()
    unit_std = ((s["sum_u2"] - s["sum_u"].square() / rows) / dof).clamp(min=0).sqrt()
    norm_std = ((s["norm_sq_sum"] - s["norm_sum"].square() / rows) / dof).clamp(min=0).sqrt()
    one_row = n < 2  # spreads of fewer than two rows are undefined, not zero
    return {
        "effective_rank": erank,
        "effective_rank_ratio": erank / dim,
        "top1_variance_share": variance[-1] / total_variance,
        "top5_variance_share": variance[-5:].sum() / total_variance,
        "offdiag_cov_energy": offdiag_energy_share(cov_fro2, cov_diag),
        "dim_std_mean": torch.where(one_row, math.nan, dim_std.mean()),
        "dead_dim_share": torch.where(one_row, math.nan, dead_dim_share(dim_std)),
        "l2norm_std": torch.where(one_row, math.nan, unit_std.mean()),
        "l2norm_std_ref": 1.0 / math.sqrt(dim),
        # ||sum of unit rows||^2 counts every ordered pair once and every row with itself once.
        "mean_pairwise_cosine": (s["sum_u"].square().sum() - s["sum_u2"].sum()) / (n * (n - 1)),
        "norm_max_median": s["norm_max"] / torch.nanquantile(s["norms"], 0.5),
        "norm_cv": torch.where(one_row, math.nan, norm_std / (s["norm_sum"] / rows)),
        "dim": float(dim),
    }


def view_stats(a: Tensor, b: Tensor, additive: bool = True) -> Stats:
    """Cosine between paired rows of two views, plus the representation statistics of the first view."""
    xa, xb = as_rows(a), as_rows(b)
    finite = torch.isfinite(xa).all(1) & torch.isfinite(xb).all(1)
    cos = torch.nn.functional.cosine_similarity(xa, xb, dim=1)
    stats = representation_stats(a, additive)
    stats["pair_cos_sum"] = torch.where(finite, cos, torch.zeros_like(cos)).double().sum()
    stats["pair_n"] = finite.sum().double()
    return stats


def view_readings(s: Stats) -> dict[str, Tensor]:
    out = representation_readings(s)
    out["cosine"] = safe_div(s["pair_cos_sum"], s["pair_n"])
    return out

