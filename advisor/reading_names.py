"""The names of the readings the probe writes to its run store, and of the run-store meta keys.

One vocabulary for the writer (advisor.probe), the run-store reader and the detectors: a name typed
by hand in two places drifts apart silently, a constant fails at import. Plain strings, no torch.

Layout of a name: `{family}/{suffix}` for model-wide readings, `{family}/{layer}/{suffix}` for
per-layer ones, `{tensor name}/{suffix}` for tensors handed to `probe.step()`. Layer names are
qualified module names without wrapper prefixes (`_orig_mod.`, `module.`).
"""

from __future__ import annotations

# ---------------------------------------------------------------------------------------- families
ACT = "act"
GRAD = "grad"
WEIGHT = "weight"
UPDATE = "update"
LOGITS = "logits"
CODES = "codes"
ATTENTION = "attention"
VIEWS = "views"
NONFINITE = "nonfinite"
GPU = "gpu"
TIME = "time"
EMBEDDINGS = "embeddings"  # the default representation argument of probe.step()
TARGETS = ("targets", "labels")  # step() arguments read as the targets of `logits`

# ------------------------------------------------------------------------- model-wide readings
GRAD_GLOBAL_NORM = "grad/global_norm"
GRAD_FIRST_LAST_RATIO = "grad/first_last_ratio"
GRAD_MIN_LAYER_NORM = "grad/min_layer_norm"
GRAD_ZERO_SHARE = "grad/zero_share"
GRAD_NONFINITE_COUNT = "grad/nonfinite_count"
WEIGHT_GLOBAL_NORM = "weight/global_norm"
UPDATE_MAX_RATIO = "update/max_ratio"
UPDATE_FROZEN_SHARE = "update/frozen_share"
UPDATE_FROZEN_PARAMS = "update/frozen_params"
TIME_STEP_S = "time/step_s"
TIME_DATA_WAIT_SHARE = "time/data_wait_share"
GPU_MEM_ALLOCATED_GB = "gpu/mem_allocated_gb"
GPU_MEM_RESERVED_GB = "gpu/mem_reserved_gb"
GPU_MEM_PEAK_GB = "gpu/mem_peak_gb"
GPU_MEM_TOTAL_GB = "gpu/mem_total_gb"
GPU_UTILIZATION = "gpu/utilization"
GPU_TEMPERATURE_C = "gpu/temperature_c"
GPU_POWER_W = "gpu/power_w"
AMP_LOSS_SCALE = "amp/loss_scale"  # the GradScaler's scale, when one is passed as `scaler=`

# ------------------------------------------------------------------------- per-layer suffixes
# act/{layer}/...
ZERO_FRACTION = "zero_fraction"  # ReLU layers only: share of outputs <= 0
DEAD_UNIT_SHARE = "dead_unit_share"  # ReLU layers only: units inactive for the whole batch
SATURATION_FRACTION = "saturation_fraction"  # tanh/sigmoid-like layers
STD = "std"
SAMPLE_SIMILARITY = "sample_similarity"
# grad/{layer}/norm, weight/{layer}/norm, weight/{layer}/norm_growth, update/{layer}/ratio
NORM = "norm"
NORM_GROWTH = "norm_growth"
RATIO = "ratio"

# ------------------------------------------------- representations: {name}/... and views/...
EFFECTIVE_RANK = "effective_rank"
EFFECTIVE_RANK_RATIO = "effective_rank_ratio"
TOP1_VARIANCE_SHARE = "top1_variance_share"
TOP5_VARIANCE_SHARE = "top5_variance_share"
OFFDIAG_COV_ENERGY = "offdiag_cov_energy"
DIM_STD_MEAN = "dim_std_mean"
DEAD_DIM_SHARE = "dead_dim_share"
L2NORM_STD = "l2norm_std"
L2NORM_STD_REF = "l2norm_std_ref"
MEAN_PAIRWISE_COSINE = "mean_pairwise_cosine"
NORM_MAX_MEDIAN = "norm_max_median"
NORM_CV = "norm_cv"
DIM = "dim"
COSINE = "cosine"  # views/cosine: paired cosine between the two views
REPRESENTATION_SUFFIXES = (
    EFFECTIVE_RANK, EFFECTIVE_RANK_RATIO, TOP1_VARIANCE_SHARE, TOP5_VARIANCE_SHARE, OFFDIAG_COV_ENERGY,
    DIM_STD_MEAN, DEAD_DIM_SHARE, L2NORM_STD, L2NORM_STD_REF, MEAN_PAIRWISE_COSINE, NORM_MAX_MEDIAN, NORM_CV, DIM,
)  # fmt: skip

# --------------------------------------------------------------------- outputs: logits, codes, attention
ENTROPY = "entropy"
ENTROPY_RATIO = "entropy_ratio"
TOP_CLASS_SHARE = "top_class_share"
CONFIDENCE = "confidence"
ACCURACY = "accuracy"
NUM_CLASSES = "num_classes"
USAGE_SHARE = "usage_share"
PERPLEXITY = "perplexity"
PERPLEXITY_RATIO = "perplexity_ratio"
LOGITS_SUFFIXES = (ENTROPY, ENTROPY_RATIO, TOP_CLASS_SHARE, CONFIDENCE, ACCURACY, NUM_CLASSES)
CODES_SUFFIXES = (USAGE_SHARE, PERPLEXITY, PERPLEXITY_RATIO)
CAUSAL_SHARE = "causal_share"  # share of attention rows read under a causal mask
ATTENTION_SUFFIXES = (ENTROPY, ENTROPY_RATIO, CAUSAL_SHARE)
# any other tensor x: x/mean, x/std, x/norm, x/nonfinite
MEAN = "mean"
TENSOR_SUFFIXES = (MEAN, STD, NORM, NONFINITE)

ACTIVATION_SUFFIXES = (ZERO_FRACTION, DEAD_UNIT_SHARE, SATURATION_FRACTION, STD, SAMPLE_SIMILARITY)

# Every suffix a probe reading can end with (what tells a probe reading from a user's own scalar).
SUFFIXES = frozenset(
    REPRESENTATION_SUFFIXES + LOGITS_SUFFIXES + CODES_SUFFIXES + ATTENTION_SUFFIXES + ACTIVATION_SUFFIXES + TENSOR_SUFFIXES
    + (COSINE, NORM_GROWTH, RATIO, "global_norm", "first_last_ratio", "min_layer_norm", "zero_share",
       "nonfinite_count", "max_ratio", "frozen_share", "frozen_params", "step_s", "data_wait_share", "loss_scale",
       "mem_allocated_gb", "mem_reserved_gb", "mem_peak_gb", "mem_total_gb", "utilization", "temperature_c", "power_w")
)  # fmt: skip

# -------------------------------------------------------------------------- activation kinds
# Written per layer in the meta key ACTIVATION_KINDS ({layer: kind}). Dead-unit readings exist for
# RELU only: GELU/SiLU/softplus outputs near zero still pass gradient, leaky/ELU ones pass it below zero.
ACT_RELU = "relu"  # ReLU, ReLU6: zero output, zero gradient
ACT_LEAKY = "leaky_relu"  # LeakyReLU, PReLU, RReLU, ELU, CELU, SELU
ACT_GELU = "gelu"
ACT_SILU = "silu"  # SiLU/swish, Mish, Hardswish
ACT_SOFTPLUS = "softplus"
ACT_TANH = "tanh"  # tanh, softsign, hardtanh
ACT_SIGMOID = "sigmoid"  # sigmoid, hardsigmoid
ACT_PLAIN = "plain"  # a Linear/Conv output or a layer named by the user: spread and similarity only
ACTIVATION_KINDS_ALL = (ACT_RELU, ACT_LEAKY, ACT_GELU, ACT_SILU, ACT_SOFTPLUS, ACT_TANH, ACT_SIGMOID, ACT_PLAIN)
DEAD_UNIT_KINDS = frozenset({ACT_RELU})
SATURATING_KINDS = frozenset({ACT_TANH, ACT_SIGMOID})

# ------------------------------------------------------------------------------ run-store meta
META_RUN_ID = "run_id"  # a uuid made when the store is created; notes are keyed by it
META_PID = "pid"  # the writer's process id ...
META_HOST = "hostname"  # ... and host: a run whose process is gone is stopped, not live
META_HEARTBEAT = "heartbeat"  # time of the writer's last transaction (seconds since the epoch)
META_STARTED = "started"
META_FINISHED = "finished"
META_STATUS = "status"
META_WORLD_SIZE = "world_size"
META_DISTRIBUTED = "distributed"  # {"world_size", "backend", "wrapper": "ddp" | "fsdp2" | None}
META_AMP = "amp"  # {"autocast_dtype", "grad_scaler"}: what mixed precision the run uses
META_MODULES = "modules"  # {"attention": [...], "vq": [...], "norm": {...}, "activation_counts": {...}}
META_ACTIVATION_KINDS = "activation_kinds"  # {layer: kind}
META_TENSORS = "tensors"  # {step() argument: family it was read as}, e.g. {"embeddings": "representation"}


# ------------------------------------------------------------------------------------ builders


def act(layer: str, suffix: str) -> str:
    """`act/{layer}/{suffix}`."""
    return f"{ACT}/{layer}/{suffix}"


def grad_layer_norm(layer: str) -> str:
    return f"{GRAD}/{layer}/{NORM}"


def weight_layer_norm(layer: str) -> str:
    return f"{WEIGHT}/{layer}/{NORM}"


def weight_layer_growth(layer: str) -> str:
    return f"{WEIGHT}/{layer}/{NORM_GROWTH}"


def update_layer_ratio(layer: str) -> str:
    return f"{UPDATE}/{layer}/{RATIO}"


def of(prefix: str, suffix: str) -> str:
    """`{prefix}/{suffix}` for a tensor argument (`embeddings/effective_rank`, `logits/entropy`...)."""
    return f"{prefix}/{suffix}" if suffix else prefix


def nonfinite(tensor_name: str) -> str:
    return f"{NONFINITE}/{tensor_name}"


def layer_of(name: str, family: str, suffix: str) -> str | None:
    """The layer of a per-layer reading (`act/enc.1/zero_fraction` -> `enc.1`), None if it is not one."""
    head, tail = f"{family}/", f"/{suffix}"
    if name.startswith(head) and name.endswith(tail) and len(name) > len(head) + len(tail):
        return name[len(head) : -len(tail)]
    return None


def is_probe_reading(name: str) -> bool:
    """A name the probe writes (as opposed to a scalar the user passed, like `loss` or `lr`)."""
    return name.startswith(f"{NONFINITE}/") or ("/" in name and suffix_of(name) in SUFFIXES)


def suffix_of(name: str) -> str:
    """The last segment of a reading name."""
    return name.rpartition("/")[2]
