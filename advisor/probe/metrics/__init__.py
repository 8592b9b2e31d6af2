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

Modules by family: `stats` (combining statistics, shared helpers, any other tensor), `representations`,
`outputs` (logits, codes, attention), `activations`. Gradients, weights and updates are read from the
model's parameters in `advisor.probe.parameters`.
"""

from __future__ import annotations

from typing import Callable

from torch import Tensor

from advisor.probe.metrics.stats import (  # noqa: F401  (the package's names: tests and the probe import them from here)
    Stats,
    REDUCE_OPS,
    PADDABLE,
    reduce_op,
    merge_stats,
    constant,
    as_f64,
    safe_div,
    xlogx,
    as_rows,
    tensor_stats,
    tensor_readings,
    nonfinite_count,
)
from advisor.probe.metrics.representations import (  # noqa: F401  (the package's names: tests and the probe import them from here)
    RANKME_EPS,
    DEAD_DIM_REL,
    DEAD_DIM_ABS,
    rankme,
    effective_rank,
    variance_share,
    offdiag_energy_share,
    offdiag_cov_energy,
    dead_dim_share,
    l2norm_std,
    mean_pairwise_cosine,
    paired_cosine,
    norm_spread,
    representation_stats,
    representation_readings,
    view_stats,
    view_readings,
)
from advisor.probe.metrics.outputs import (  # noqa: F401  (the package's names: tests and the probe import them from here)
    MAX_LOGIT_ROWS,
    LOGIT_CHUNK_ELEMENTS,
    MAX_ATTENTION_ROWS,
    prediction_entropy,
    perplexity,
    logit_stats,
    logit_readings,
    code_stats,
    code_readings,
    CAUSAL_TOLERANCE,
    attention_stats,
    attention_readings,
)
from advisor.probe.metrics.activations import (  # noqa: F401  (the package's names: tests and the probe import them from here)
    SATURATION_BAND,
    MAX_SAMPLE_FEATURES,
    RELU_LIKE,
    BOUNDED,
    PLAIN,
    unit_axis,
    CPU_SUBSET,
    GPU_SUBSET,
    SUBSET_BLOCK,
    activation_stats,
    activation_readings,
)

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

