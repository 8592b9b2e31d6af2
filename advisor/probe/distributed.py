"""Reduce the probe's batch statistics across torch.distributed ranks so rank 0 reads the whole batch.

Every rank calls `reduce_stats` on the same sampled steps with its own statistics. The ranks first
agree on which statistics they all have (one small all_gather_object: a reading that failed on one
rank must not hang the others), then reduce them in one flat buffer per operation (sum / max / min)
and gather the variable-length ones (per-sample norms for a median).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from advisor.probe.arguments import Source, source_shape
from advisor.probe.metrics import PADDABLE, reduce_op


def rank_and_world() -> tuple[int, int]:
    try:
        import torch.distributed as dist
    except ImportError:  # a torch built without distributed support
        return 0, 1
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def _stat_name(key: str) -> str:
    return key.rpartition("|")[2]


def _collective_device() -> torch.device:
    import torch.distributed as dist

    if dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


_REDUCE_OPS = {"sum": "SUM", "max": "MAX", "min": "MIN"}


_IDENTITY = {"sum": 0.0, "max": -math.inf, "min": math.inf}


def reduce_stats(stats: dict[str, Tensor]) -> tuple[dict[str, Tensor], list[str]]:
    """(reduced statistics, keys dropped because the ranks that have them disagree on their shape).

    Keys are 'source|stat'; how a statistic combines comes from `metrics.reduce_op`. A rank without
    a statistic (its reading failed, or its probe stopped) contributes the operation's identity, so
    the others still get their part. Statistics that only make sense for one batch ('local') are dropped.
    """
    import torch.distributed as dist

    world = dist.get_world_size()
    device = _collective_device()
    spec = {k: (tuple(v.shape), reduce_op(_stat_name(k))) for k, v in stats.items() if reduce_op(_stat_name(k)) != "local"}
    specs: list[dict] = [None] * world  # type: ignore[list-item]
    dist.all_gather_object(specs, spec)

    kept: dict[str, tuple[str, int]] = {}  # key -> (op, length every rank contributes)
    dropped = [k for k in stats if k not in spec]
    for key in sorted({k for s in specs for k in s}):
        entries = [s[key] for s in specs if key in s]
        shapes = [shape for shape, _ in entries]
        op = entries[0][1]
        if op == "cat":
            kept[key] = (op, max(math.prod(s) for s in shapes))
        elif all(s == shapes[0] for s in shapes):
            kept[key] = (op, math.prod(shapes[0]))
        elif _stat_name(key) in PADDABLE and all(len(s) == 1 for s in shapes):
            kept[key] = (op, max(s[0] for s in shapes))
        elif key in stats:
            dropped.append(key)

    def contribution(key: str, op: str, length: int) -> Tensor:
        if key not in stats:
            fill = math.nan if op == "cat" else _IDENTITY[op]
            return torch.full((length,), fill, dtype=torch.float64, device=device)
        flat = stats[key].detach().reshape(-1).to(device, torch.float64)
        # Padding: zeros for sums (histograms), NaN for gathered values (readers skip NaN).
        pad = math.nan if op == "cat" else 0.0
        return torch.cat([flat, flat.new_full((length - flat.numel(),), pad)])

    def shape_of(key: str, length: int) -> tuple[int, ...]:
        for s in specs:
            if key in s and math.prod(s[key][0]) == length:
                return s[key][0]
        return (length,)

    out: dict[str, Tensor] = {}
    for op, dist_op in _REDUCE_OPS.items():
        keys = [k for k, (o, _) in kept.items() if o == op]
        if not keys:
            continue
        parts = [contribution(k, op, kept[k][1]) for k in keys]
        buffer = torch.cat(parts)
        dist.all_reduce(buffer, op=getattr(dist.ReduceOp, dist_op))
        offset = 0
        for k, part in zip(keys, parts):
            out[k] = buffer[offset : offset + part.numel()].reshape(shape_of(k, part.numel()))
            offset += part.numel()

    for k in [k for k, (o, _) in kept.items() if o == "cat"]:
        padded = contribution(k, "cat", kept[k][1])
        gathered = [torch.empty_like(padded) for _ in range(world)]
        dist.all_gather(gathered, padded)
        out[k] = torch.cat(gathered)
    return out, dropped


def reduce_sources(sources: dict[str, Source], embedding_names: tuple[str, ...]) -> tuple[dict[str, Source], set[str]]:
    """Every source's statistics reduced over the ranks, and the keys of sources some rank could not
    reduce (their shapes differ between ranks). A source only another rank had is rebuilt from its key."""
    flat = {f"{key}|{stat}": t for key, (_, _, stats) in sources.items() for stat, t in stats.items()}
    reduced, dropped = reduce_stats(flat)
    regrouped: dict[str, Source] = {}
    for flat_key, value in reduced.items():
        key, _, stat = flat_key.rpartition("|")
        family, prefix, _ = sources.get(key) or source_shape(key, embedding_names)
        regrouped.setdefault(key, (family, prefix, {}))[2][stat] = value
    return regrouped, {d.rpartition("|")[0] for d in dropped}
