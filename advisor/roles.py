"""What each column of a training log is: a role inferred from its name, overridable by a TOML file.

Names are read as words, not matched against a list of known logs: `val/loss`, `validation_loss`,
`eval_loss` and `Valid MSE` are all validation losses; `grad_norm/max`, `gradnorm_max` and
`train/grad_norm` are gradient norms; `vq/usage` and `codebook_utilization` are codebook usage.

Loss components: a loss-like name that is not the total, in the same namespace as a total —
`train/relational` next to `train/total`, `loss/kl_term` next to `loss/total`, `loss_kl` or
`recon_loss` next to `loss`, Keras' `output_1_loss` next to `loss`. A namespace is what comes before
the last `/` (or `.`); a total is a member named `total`/`sum`/`overall`/..., or exactly `loss`.

Roles file (TOML), for logs whose names say too little::

    [roles]                 # column -> role (loss, loss_component, val_loss, val_metric,
    "my col" = "val_loss"   #   train_metric, grad_norm, lr, rank, usage, epoch, step, other)
    "bleu dev" = "val_metric"

    [components]            # component column -> the total column it is a term of
    "a" = "total"

    [higher_is_better]      # direction of a metric, when its name does not say
    "bleu dev" = true

    [settings]
    step = "iteration"      # the column to use as the step axis
    epoch = "ep"            # the column holding the epoch
    clip_value = 1.0        # gradient clipping threshold (enables the clip_pressure check)
    ignore = ["gpu_temp"]   # columns to leave out

Everything in the file is optional; names not mentioned keep their inferred role.
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, get_args

from advisor.models import AdvisorError, Role

ROLES: tuple[str, ...] = get_args(Role)

# ---- vocabulary -------------------------------------------------------------------------------
# Each set holds whole words of a name (after splitting on punctuation and camelCase).

VAL_WORDS = {"val", "valid", "validation", "eval", "evaluation", "dev", "holdout", "heldout"}
TEST_WORDS = {"test", "testing"}
TRAIN_WORDS = {"train", "training", "tr"}
SPLIT_WORDS = VAL_WORDS | TEST_WORDS | TRAIN_WORDS
# Words that say how a value was aggregated, not what it is (Lightning's `_step`/`_epoch` split,
# smoothed copies, per-epoch means): ignored when deciding what a name means.
AGGREGATE_WORDS = {"step", "epoch", "avg", "mean", "ema", "smooth", "smoothed", "running", "batch", "iter",
                   "last", "median", "max", "min", "std", "value", "val_", "per", "global"}
TOTAL_WORDS = {"total", "sum", "overall", "combined", "full", "all", "main", "objective", "weighted"}
LOSS_WORDS = {"loss", "losses", "cost"}
# Loss functions by name: a loss when nothing in the same split is called "loss", else a metric.
LOSS_FUNCTION_WORDS = {"mse", "mae", "rmse", "rmsle", "msle", "nll", "bce", "ce", "xent", "crossentropy", "huber",
                       "smoothl1", "logloss", "elbo"}
HIGHER_BETTER_WORDS = {"acc", "accuracy", "top1", "top5", "top", "f1", "f1score", "fscore", "fbeta", "precision",
                       "prec", "recall", "auc", "auroc", "roc", "ap", "map", "iou", "miou", "dice", "jaccard",
                       "bleu", "sacrebleu", "rouge", "rouge1", "rouge2", "rougel", "rougelsum", "meteor", "chrf",
                       "r2", "psnr", "ssim", "sensitivity", "specificity", "mcc", "kappa", "em", "exact", "correct",
                       "score", "reward", "return", "hit", "hits", "ndcg", "mrr", "coef", "spearman", "pearson",
                       "matthews", "tpr", "tnr"}
LOWER_BETTER_WORDS = {"wer", "cer", "ter", "error", "err", "fid", "kid", "ece", "mape", "smape", "perplexity", "ppl",
                      "bpd", "bpc", "fpr", "fnr", "eer", "distance"}
# Bookkeeping: timings, throughput, memory, counters. Never a loss component.
BOOKKEEPING_WORDS = {"runtime", "time", "timestamp", "seconds", "second", "sec", "flos", "flops", "tflops", "mfu",
                     "throughput", "samples", "tokens", "seen", "wall", "duration", "memory", "mem", "gpu", "cpu",
                     "speed", "temperature", "temp", "power", "util", "utilization", "fps", "it_s", "eta",
                     "elapsed", "hours", "minutes", "ms", "count", "num", "size", "scale", "grad_scale"}
CODEBOOK_WORDS = {"codebook", "vq", "code", "codes", "quantizer", "quantiser", "vqvae", "fsq", "rvq", "cb"}
USAGE_WORDS = {"usage", "utilization", "utilisation", "util", "used", "active", "perplexity", "ppl", "share",
               "coverage", "dead", "unused"}
SCALE_WORDS = {"scale", "scaler", "scaling"}
REWARD_WORDS = {"reward", "rewards", "return", "returns"}
# DPO-style implicit rewards of the chosen/rejected pair move in opposite directions by design: metrics, not the reward.
PREFERENCE_PAIR_WORDS = {"chosen", "rejected", "margin", "margins", "accuracies"}
STEP_WORDS = {"step", "steps", "iteration", "iterations", "iter", "it"}
EPOCH_WORDS = {"epoch", "epochs", "ep"}
AXIS_FILLER_WORDS = {"trainer", "train", "global", "optimizer", "current", "num", "total"}


def words(name: str) -> list[str]:
    """Lower-case words of a column name: `val/loss` -> [val, loss]; `trainLoss` -> [train, loss]."""
    spaced = re.sub(r"([a-z])([A-Z])", r"\1 \2", name)
    return re.findall(r"[a-z0-9]+", spaced.lower())


def namespace(name: str) -> str:
    """What comes before the last `/` (or `.` when there is no `/`); '' at the top level."""
    for sep in ("/", "."):
        if sep in name:
            return name.rsplit(sep, 1)[0]
    return ""


def leaf(name: str) -> str:
    for sep in ("/", "."):
        if sep in name:
            return name.rsplit(sep, 1)[1]
    return name


def _split(ws: list[str]) -> str | None:
    s = set(ws)
    if s & VAL_WORDS:
        return "val"
    if s & TEST_WORDS:
        return "test"
    if s & TRAIN_WORDS:
        return "train"
    return None


def _is_step(ws: list[str]) -> bool:
    s = set(ws)
    return bool(s) and bool(s & STEP_WORDS) and s <= (STEP_WORDS | AXIS_FILLER_WORDS)


def _is_epoch(ws: list[str]) -> bool:
    s = set(ws)
    return bool(s) and bool(s & EPOCH_WORDS) and s <= (EPOCH_WORDS | AXIS_FILLER_WORDS)


def _is_lr(ws: list[str]) -> bool:
    s = set(ws)
    return "lr" in s or "learningrate" in s or {"learning", "rate"} <= s


def _is_grad_norm(ws: list[str]) -> bool:
    s = set(ws)
    if s & {"gradnorm", "gradnorms", "gnorm", "gradientnorm"}:
        return True
    if s & {"grad", "grads", "gradient", "gradients"} and s & {"norm", "norms", "l2"}:
        return True
    return {"total", "norm"} <= s and len(s) <= 3  # clip_grad_norm_'s return value logged as `total_norm`


def _is_usage(ws: list[str]) -> bool:
    s = set(ws)
    if "codebook" in s and s & (USAGE_WORDS | {"utilization"}):
        return True
    return bool(s & CODEBOOK_WORDS) and bool(s & USAGE_WORDS)


def _is_rank(ws: list[str]) -> bool:
    s = set(ws)
    return bool(s & {"rank", "rankme", "erank", "effrank", "effectiverank"})


def _is_iou(ws: list[str]) -> bool:
    # Keras names MeanIoU `mean_io_u`
    joined = "".join(ws)
    return "iou" in joined or "io_u" in "_".join(ws)


@dataclass(frozen=True)
class RoleGuess:
    role: str
    higher_is_better: bool = False
    component_of: str | None = None
    split: str | None = None  # train / val / test / None, as the name says


def infer_role(name: str) -> RoleGuess:
    """The role a name suggests on its own (no knowledge of the other columns)."""
    ws = words(name)
    s = set(ws)
    split = _split(ws)
    if not ws:
        return RoleGuess("other")
    if _is_step(ws):
        return RoleGuess("step")
    if _is_epoch(ws):
        return RoleGuess("epoch")
    if _is_lr(ws):
        return RoleGuess("lr", split=split)
    if _is_grad_norm(ws):
        return RoleGuess("grad_norm", split=split)
    if _is_usage(ws):
        return RoleGuess("usage", higher_is_better=not (s & {"dead", "unused"}), split=split)
    if _is_rank(ws) and not (s & LOSS_WORDS):
        return RoleGuess("rank", higher_is_better=True, split=split)
    if s & SCALE_WORDS and (s & LOSS_WORDS or s & {"grad", "amp"}):
        return RoleGuess("loss_scale", split=split)  # AMP's loss_scale / grad_scale / scaler scale: not a loss
    if s & REWARD_WORDS and not s & PREFERENCE_PAIR_WORDS and not s & LOSS_WORDS:
        return RoleGuess("reward", higher_is_better=True, split=split)
    if s & LOSS_WORDS:
        return RoleGuess(_loss_role(split), split=split)
    if s & BOOKKEEPING_WORDS - {"util", "utilization", "count", "num", "size", "scale"}:
        return RoleGuess("other", split=split)
    metric_hib: bool | None = None
    if s & LOWER_BETTER_WORDS:
        metric_hib = False
    elif s & HIGHER_BETTER_WORDS or _is_iou(ws):
        metric_hib = True
    if metric_hib is not None:
        return RoleGuess(_metric_role(split), higher_is_better=metric_hib, split=split)
    if s & LOSS_FUNCTION_WORDS:
        # decided against the other columns in assign_roles: a loss unless something is named "loss"
        return RoleGuess(_loss_role(split), split=split)
    if s & (BOOKKEEPING_WORDS | {"lr_scale"}):
        return RoleGuess("other", split=split)
    return RoleGuess("other", split=split)


def _loss_role(split: str | None) -> str:
    return "val_loss" if split in ("val", "test") else "loss"


def _metric_role(split: str | None) -> str:
    return "val_metric" if split in ("val", "test") else "train_metric"


def _core_words(name: str) -> set[str]:
    """Words that say what a value is (split, aggregation and total words removed)."""
    return set(words(name)) - SPLIT_WORDS - AGGREGATE_WORDS - TOTAL_WORDS - {"term", "component", "part"}


def _is_total_name(name: str) -> bool:
    lw = set(words(leaf(name)))
    core = lw - SPLIT_WORDS - AGGREGATE_WORDS
    return bool(lw & TOTAL_WORDS) or core <= LOSS_WORDS and bool(core)


# ---- overrides --------------------------------------------------------------------------------


@dataclass
class RoleOverrides:
    roles: dict[str, str] = field(default_factory=dict)
    components: dict[str, str] = field(default_factory=dict)
    higher_is_better: dict[str, bool] = field(default_factory=dict)
    step: str | None = None
    epoch: str | None = None
    clip_value: float | None = None
    ignore: set[str] = field(default_factory=set)
    source: str = ""

    def settings(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if self.clip_value is not None:
            out["clip_value"] = self.clip_value
        return out


def load_roles_file(path: str | Path | None) -> RoleOverrides:
    """Read a roles TOML file (see the module docstring); AdvisorError when it is unreadable or wrong."""
    if path is None:
        return RoleOverrides()
    p = Path(path)
    try:
        data = tomllib.loads(p.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise AdvisorError(f"Roles file {p} does not exist.") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise AdvisorError(f"Roles file {p} is not valid TOML: {exc}.") from None
    known = {"roles", "components", "higher_is_better", "settings"}
    unknown = set(data) - known
    if unknown:
        raise AdvisorError(f"Roles file {p} has unknown section(s) {sorted(unknown)}; expected {sorted(known)}.")
    out = RoleOverrides(source=str(p))
    for col, role in (data.get("roles") or {}).items():
        if role not in ROLES:
            raise AdvisorError(f"Roles file {p}: role {role!r} for column {col!r} is not one of {', '.join(ROLES)}.")
        out.roles[str(col)] = role
    for col, total in (data.get("components") or {}).items():
        if not isinstance(total, str):
            raise AdvisorError(f"Roles file {p}: [components] {col!r} must name its total column as a string.")
        out.components[str(col)] = total
    for col, hib in (data.get("higher_is_better") or {}).items():
        if not isinstance(hib, bool):
            raise AdvisorError(f"Roles file {p}: [higher_is_better] {col!r} must be true or false.")
        out.higher_is_better[str(col)] = hib
    settings = data.get("settings") or {}
    if "step" in settings:
        out.step = str(settings["step"])
    if "epoch" in settings:
        out.epoch = str(settings["epoch"])
    if "clip_value" in settings:
        try:
            out.clip_value = float(settings["clip_value"])
        except (TypeError, ValueError):
            raise AdvisorError(f"Roles file {p}: clip_value must be a number.") from None
    if "ignore" in settings:
        ignore = settings["ignore"]
        out.ignore = {str(x) for x in (ignore if isinstance(ignore, list) else [ignore])}
    return out


# ---- assigning roles over a whole log ---------------------------------------------------------


def assign_roles(names: Iterable[str], overrides: RoleOverrides | None = None) -> dict[str, RoleGuess]:
    """Roles for every column of one log, using the other columns for context (components, loss vs metric)."""
    names = list(dict.fromkeys(names))
    overrides = overrides or RoleOverrides()
    guesses = {n: infer_role(n) for n in names}
    has_val_split = any(g.split == "val" for g in guesses.values())

    # A test split stands in for validation only when the log has no validation split.
    for n, g in guesses.items():
        if g.split == "test" and has_val_split and g.role in ("val_loss", "val_metric"):
            guesses[n] = RoleGuess("other", g.higher_is_better, split="test")

    # Loss functions by name (mse, nll...) are losses only where nothing in their split is called "loss".
    named_loss_splits = {_split_key(g.split) for n, g in guesses.items() if set(words(n)) & LOSS_WORDS and g.role in ("loss", "val_loss")}
    for n, g in guesses.items():
        ws = set(words(n))
        if g.role in ("loss", "val_loss") and not ws & LOSS_WORDS and ws & LOSS_FUNCTION_WORDS:
            if _split_key(g.split) in named_loss_splits:
                guesses[n] = RoleGuess(_metric_role(g.split), False, split=g.split)

    _assign_components(names, guesses)

    for n in names:
        g = guesses[n]
        role, hib, comp = g.role, g.higher_is_better, g.component_of
        if n in overrides.roles:
            role = overrides.roles[n]
            if role != "loss_component":
                comp = None
            if n not in overrides.higher_is_better:
                hib = role in ("rank", "usage") or (role in ("val_metric", "train_metric") and hib)
        if n in overrides.components:
            role, comp = "loss_component", overrides.components[n]
        if n in overrides.higher_is_better:
            hib = overrides.higher_is_better[n]
        if n == overrides.step:
            role = "step"
        if n == overrides.epoch:
            role = "epoch"
        guesses[n] = RoleGuess(role, hib, comp, g.split)
    return guesses


def _split_key(split: str | None) -> str:
    return "val" if split in ("val", "test") else "train"


def _assign_components(names: list[str], guesses: dict[str, RoleGuess]) -> None:
    """Mark loss terms that sit next to a total as components of it (in place)."""
    open_roles = ("other", "loss", "val_loss")

    # 1. Namespaces with a total member: `train/total` + `train/relational`, `loss/total` + `loss/kl_term`.
    by_ns: dict[str, list[str]] = {}
    for n in names:
        ns = namespace(n)
        if ns:
            by_ns.setdefault(ns, []).append(n)
    for ns, members in by_ns.items():
        totals = [m for m in members if _is_total_name(m) and guesses[m].role in open_roles]
        ns_is_loss = bool(set(words(ns)) & LOSS_WORDS)
        if not totals and ns_is_loss and ns in guesses and guesses[ns].role in ("loss", "val_loss"):
            totals = [ns]  # `loss` with `loss/kl`, `loss/recon`
        if len(totals) != 1:
            continue
        total = totals[0]
        split = _split(words(total)) or _split(words(ns))
        total_role = _loss_role(split)
        guesses[total] = RoleGuess(total_role, False, None, split)
        explicit_total = bool(set(words(leaf(total))) & TOTAL_WORDS) or total == ns
        for m in members:
            if m == total:
                continue
            g = guesses[m]
            mw = set(words(leaf(m)))
            loss_like = bool(mw & (LOSS_WORDS | LOSS_FUNCTION_WORDS | {"term", "reg", "penalty", "kl", "kld"}))
            bookkeeping = bool(mw & BOOKKEEPING_WORDS)
            if g.role in open_roles and not bookkeeping and (loss_like or explicit_total or ns_is_loss):
                guesses[m] = RoleGuess("loss_component", False, total, split)

    # 2. Affixed names at any level: `loss_kl`, `kl_loss`, `output_1_loss` next to `loss`; `val_kl_loss` next to `val_loss`.
    totals_by_key: dict[tuple[str, str], str] = {}
    for n in names:
        g = guesses[n]
        if g.role in ("loss", "val_loss") and _is_total_name(n):
            key = (namespace(n), _split_key(g.split))
            # prefer the plainest name (`loss` over `train_loss_epoch`)
            if key not in totals_by_key or len(words(n)) < len(words(totals_by_key[key])):
                totals_by_key[key] = n
    for n in names:
        g = guesses[n]
        if g.role not in ("loss", "val_loss") or _is_total_name(n):
            continue
        if not set(words(n)) & LOSS_WORDS:
            continue  # `mse` next to `loss` is a metric, not a term
        total = totals_by_key.get((namespace(n), _split_key(g.split)))
        if total and total != n and _core_words(n) - _core_words(total):
            guesses[n] = RoleGuess("loss_component", False, total, g.split)


def main_loss(guesses: dict[str, RoleGuess], role: str = "loss", counts: dict[str, int] | None = None) -> str | None:
    """The main series of a loss role: the plainest name, then the one with most points."""
    cands = [n for n, g in guesses.items() if g.role == role]
    if not cands:
        return None
    counts = counts or {}

    def key(n: str) -> tuple:
        core = _core_words(n) - LOSS_WORDS
        return (len(core), -counts.get(n, 0), len(n))

    return min(cands, key=key)
