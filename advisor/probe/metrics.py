"""Readings as small pure functions on tensors.

Two layers:

- Metric functions (`rankme`, `variance_share`, `l2norm_std`, ...) compute one number from a
  tensor or from a spectrum. They are what the tests check against hand-computed values.
- Families turn one input into *statistics* (`*_stats`: sums, counts, maxima, Gram pieces — small
  tensors that add up across micro-batches and across ranks) and statistics into *readings*
  (`*_readings`: {suffix: 0-d tensor or float}). Splitting them is what lets the probe reduce a batch that is
  spread over several processes exactly, and keep every number on the device until one transfer.

Everything is computed in float32/float64 whatever the input dtype, never changes its input, never
draws random numbers (strided subsampling only: the user's RNG stream must not move), and treats
NaN/Inf rows as absent so the readings stay finite while `nonfinite/{name}` counts them.
"""

from __future__ import annotations

import math
from typing import Callable

import torch
from torch import Tensor

from advisor import reading_names as rn

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

RANKME_EPS = 1e-7
DEAD_DIM_REL = 0.01  # a dimension whose std is below 1% of the mean per-dimension std is near-dead
DEAD_DIM_ABS = 1e-8
SATURATION_BAND = 0.01  # share of a bounded activation's output range counted as "at the bound"
MAX_LOGIT_ROWS = 16384  # logits rows read per step (strided); enough for shares and means
LOGIT_CHUNK_ELEMENTS = 1 << 23  # softmax in chunks so a 50k-vocabulary batch needs ~32 MB at a time
MAX_ATTENTION_ROWS = 65536
MAX_SAMPLE_FEATURES = 4096  # features per sample kept for activation sample similarity


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


def _constant(value: float) -> Tensor:
    """A statistic known on the host. Kept on the CPU: a 0-d CPU tensor mixes with device tensors in
    arithmetic, while creating it on a GPU would be a host-to-device copy that waits for the stream."""
    return torch.tensor(float(value), dtype=torch.float64)


def _f64(n: Tensor | float) -> Tensor:
    return n.double() if isinstance(n, Tensor) else torch.tensor(float(n), dtype=torch.float64)


def _safe_div(a: Tensor, b: Tensor) -> Tensor:
    """a / b, NaN where both are 0: an undefined reading is stored as NULL, never as a fake number.

    Plain IEEE division does exactly that (0/0 = NaN); the name marks the places that rely on it.
    """
    return a / b


def _xlogx(p: Tensor) -> Tensor:
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
    return _safe_div(top, e.sum())


def offdiag_energy_share(cov_fro2: Tensor, cov_diag: Tensor) -> Tensor:
    """Share of a covariance's squared Frobenius norm that lies off the diagonal.

    0 for decorrelated dimensions; 1 - 1/D when all D dimensions carry the same signal.
    """
    fro2 = _f64(cov_fro2)
    return _safe_div((fro2 - cov_diag.double().square().sum()).clamp(min=0), fro2)


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
    return _safe_div((u.sum(0) ** 2).sum() - (u**2).sum(), _f64(n * (n - 1)))


def paired_cosine(a: Tensor, b: Tensor) -> Tensor:
    """Mean cosine similarity between row i of `a` and row i of `b` (two augmented views)."""
    return torch.nn.functional.cosine_similarity(as_rows(a).double(), as_rows(b).double(), dim=1).mean()


def norm_spread(z: Tensor) -> tuple[Tensor, Tensor]:
    """(max / median, coefficient of variation) of the per-row L2 norms."""
    norms = as_rows(z).double().norm(dim=1)
    return norms.max() / torch.quantile(norms, 0.5), norms.std() / norms.mean()


def prediction_entropy(logits: Tensor) -> Tensor:
    """Mean per-sample entropy (nats) of softmax(logits)."""
    logp = torch.log_softmax(logits.detach().double(), dim=-1)
    return -(torch.where(logp.exp() > 0, logp.exp() * logp, torch.zeros_like(logp))).sum(-1).mean()


def perplexity(counts: Tensor) -> Tensor:
    """exp(entropy) of a histogram: the number of equally used bins it is worth."""
    c = counts.double()
    p = c / c.sum().clamp(min=1)
    return torch.exp(-_xlogx(p).sum())


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
    out["cosine"] = _safe_div(s["pair_cos_sum"], s["pair_n"])
    return out


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
    device = x.device
    hist = torch.zeros(n_classes, dtype=torch.float64, device=device)
    entropy_sum = torch.zeros((), dtype=torch.float64, device=device)
    confidence_sum = torch.zeros((), dtype=torch.float64, device=device)
    correct = torch.zeros((), dtype=torch.float64, device=device)
    n_targets = torch.zeros((), dtype=torch.float64, device=device)
    n = torch.zeros((), dtype=torch.float64, device=device)
    chunk = max(1, LOGIT_CHUNK_ELEMENTS // n_classes)
    for start in range(0, x.shape[0], chunk):
        xc = x[start : start + chunk].float()
        finite = torch.isfinite(xc).all(1)
        xc = torch.where(finite.unsqueeze(1), xc, torch.zeros_like(xc))
        logp = torch.log_softmax(xc, dim=-1)
        p = logp.exp()
        entropy = -torch.where(p > 0, p * logp, torch.zeros_like(p)).sum(-1)
        w = finite.double()
        pred = xc.argmax(-1)
        hist.index_add_(0, pred, w)
        entropy_sum += (entropy.double() * w).sum()
        confidence_sum += (p.max(-1).values.double() * w).sum()
        n += w.sum()
        if t is not None:
            tc = t[start : start + chunk]
            valid = finite & (tc >= 0) & (tc < n_classes)
            correct += ((pred == tc) & valid).double().sum()
            n_targets += valid.double().sum()
    stats: Stats = {
        "n": n,
        "hist": hist,
        "entropy_sum": entropy_sum,
        "confidence_sum": confidence_sum,
        "num_classes": _constant(n_classes),
    }
    if t is not None:
        stats["correct"] = correct
        stats["n_targets"] = n_targets
    return stats


def logit_readings(s: Stats) -> dict[str, Tensor]:
    n = s["n"]
    entropy = _safe_div(s["entropy_sum"], n)
    out = {
        "entropy": entropy,
        "entropy_ratio": entropy / torch.log(s["num_classes"].clamp(min=2)),
        "top_class_share": _safe_div(s["hist"].max(), n),
        "confidence": _safe_div(s["confidence_sum"], n),
        "num_classes": s["num_classes"],
    }
    if "correct" in s:
        out["accuracy"] = _safe_div(s["correct"], s["n_targets"])
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
    entropy = -_xlogx(p).sum(-1)
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
        "entropy": _safe_div(s["entropy_sum"], s["rows"]),
        "entropy_ratio": _safe_div(s["norm_entropy_sum"], s["norm_rows"]),
        "causal_share": _safe_div(s["causal_rows"], s["rows"]),
    }


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
        "mean": _safe_div(s["sum"], n),
        "std": torch.where(n >= 2, var.clamp(min=0).sqrt(), torch.full_like(n, math.nan)),
        "norm": s["sum_sq"].sqrt(),
        "nonfinite": s["nonfinite"],
    }


def nonfinite_count(x: Tensor) -> Tensor:
    t = x.detach()
    if not (t.is_floating_point() or t.is_complex()):
        return torch.zeros((), dtype=torch.float64, device=t.device)
    return (~torch.isfinite(t)).sum().double()


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
    stats: Stats = {"n": _constant(n), "sum": total * scale, "sum_sq": total_sq * scale}
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
        stats["samples"] = _constant(flat.shape[0])
    return stats


def activation_readings(s: Stats) -> dict[str, Tensor]:
    n = s["n"]
    var = (s["sum_sq"] - s["sum"] ** 2 / n.clamp(min=1)) / (n - 1).clamp(min=1)
    out = {"std": var.clamp(min=0).sqrt()}
    if "inactive" in s:
        out["zero_fraction"] = _safe_div(s["inactive"], n)
    if "unit_max" in s:
        out["dead_unit_share"] = (s["unit_max"] <= 0).double().mean()
    if "saturated" in s:
        out["saturation_fraction"] = _safe_div(s["saturated"], n)
    if "sample_sum" in s:
        # ||mean sample||^2 / mean ||sample||^2: 1 when every sample gives the same output.
        samples = s["samples"]
        mean_sq = ((s["sample_sum"] / samples) ** 2).sum()
        out["sample_similarity"] = _safe_div(mean_sq, s["sample_sq"] / samples)
    return out


# --------------------------------------------------------------------------------------------------
# The registry: family -> (statistics, readings). The probe looks families up here by the kind of
# input; `METRICS` lists the single-tensor metric functions by the reading suffix they produce.

FAMILIES: dict[str, tuple[Callable[..., Stats], Callable[[Stats], dict[str, Tensor]]]] = {
    "representation": (representation_stats, representation_readings),
    "views": (view_stats, view_readings),
    "logits": (logit_stats, logit_readings),
    "codes": (code_stats, code_readings),
    "attention": (attention_stats, attention_readings),
    "tensor": (tensor_stats, tensor_readings),
    "activation": (activation_stats, activation_readings),
}

METRICS: dict[str, Callable[..., Tensor]] = {
    "effective_rank": effective_rank,
    "offdiag_cov_energy": offdiag_cov_energy,
    "l2norm_std": l2norm_std,
    "mean_pairwise_cosine": mean_pairwise_cosine,
    "cosine": paired_cosine,
    "entropy": prediction_entropy,
    "perplexity": perplexity,
    "rankme": rankme,
    "variance_share": variance_share,
    "dead_dim_share": dead_dim_share,
}
