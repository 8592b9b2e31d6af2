"""Parameters sharded over ranks by FSDP2 (`torch.distributed.fsdp.fully_shard`).

Each parameter (and its gradient) is a DTensor whose `to_local()` is this rank's shard. Norms, counts
and update sizes are read on the local shards as sums (squared norms, counts) and added up over the
shard group in one all_reduce per reading family, which gives exactly the unsharded model's values
without gathering a parameter. Every rank of the group must take part: the probe reads parameters on
all ranks of a sharded model, and rank 0 writes.

Covered: FSDP2 with one shard dimension (a 1-D mesh, or HSDP's replicate x shard mesh: sums run
over the shard dimension only, as the replicas hold the same values). Not covered: tensor or
sequence parallelism (parameters sharded over more than one mesh dimension) and DeepSpeed ZeRO
(flat partitions that are not DTensors): a model with such parameters gets no parameter readings.

The ranks must fail alike: a parameter reading that fails on one rank only (it never has in tests:
the code and the shapes are the same everywhere) would leave the others waiting in its all_reduce.
"""

from __future__ import annotations

import sys

import torch
from torch import Tensor


def _dtensor_type() -> type | None:
    # Only loaded where someone sharded a model: reading it from sys.modules costs nothing otherwise.
    module = sys.modules.get("torch.distributed.tensor")
    return getattr(module, "DTensor", None)


def local(t: Tensor) -> Tensor:
    """This rank's shard of a DTensor; any other tensor as it is."""
    dtensor = _dtensor_type()
    return t.to_local() if dtensor is not None and isinstance(t, dtensor) else t


class Sharding:
    """How to add up per-parameter sums over the ranks that hold the shards of one model."""

    def __init__(self, group, weights: list[float]) -> None:
        self.group = group
        self._weights = weights  # 1 for a sharded parameter; a whole one counts on one rank only
        self._weight_tensor: dict[torch.device, Tensor] = {}

    @staticmethod
    def of(params: list[Tensor]) -> "Sharding | None":
        """The sharding of a parameter list, None when no parameter is a DTensor (plain or DDP models)."""
        dtensor = _dtensor_type()
        if dtensor is None or not any(isinstance(p, dtensor) for p in params):
            return None
        import torch.distributed as dist

        group = None
        for p in params:
            if isinstance(p, dtensor):
                shard_dims = [i for i, placement in enumerate(p.placements) if placement.is_shard()]
                if len(shard_dims) > 1:
                    raise NotImplementedError("parameters sharded over several mesh dimensions (tensor parallelism)")
                if shard_dims:
                    group = p.device_mesh.get_group(shard_dims[0])
                    break
        if group is None:  # DTensors replicated everywhere: every rank holds all of it
            return None
        first = dist.get_rank(group) == 0
        weights = []
        for p in params:
            sharded = isinstance(p, dtensor) and any(placement.is_shard() for placement in p.placements)
            weights.append(1.0 if sharded or first else 0.0)
        return Sharding(group, weights)

    def sum_over_ranks(self, per_param: Tensor, positions: list[int] | None = None) -> Tensor:
        """Add up (k, P) per-parameter sums (or a (P,) vector) over the shard group.

        positions: which of the layout's parameters the P columns are (default all, in order).
        """
        import torch.distributed as dist

        device = per_param.device
        weights = self._weight_tensor.get(device)
        if weights is None:
            weights = self._weight_tensor[device] = torch.tensor(self._weights, dtype=torch.float64, device=device)
        w = weights if positions is None else weights[torch.tensor(positions, device=device)]
        out = (per_param.double() * w).contiguous()
        if dist.get_backend(self.group) == "nccl" and out.device.type != "cuda":
            out = out.cuda()
        dist.all_reduce(out, op=dist.ReduceOp.SUM, group=self.group)
        return out.to(device)
