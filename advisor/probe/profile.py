"""The run's profile in the store's meta: what the run is when the probe starts (versions, device,
model, modules, distributed set-up) and what it turns out to have (mixed precision, the tensors
step() is given), written when it changes."""

from __future__ import annotations

import platform
import socket
import time
from typing import Any

import torch
from torch import nn

from advisor import reading_names as rn
from advisor.probe.modules import first_parameter, model_summary, module_inventory
from advisor.probe.writer import StoreWriter


def distributed_meta(world_size: int, wrapper: str | None) -> dict[str, Any]:
    backend = None
    if world_size > 1:
        import torch.distributed as dist

        backend = str(dist.get_backend())
    return {"world_size": world_size, "backend": backend, "wrapper": wrapper}


def start_meta(
    model: nn.Module | None,
    root: nn.Module | None,
    layers: list[tuple] | None,
    *,
    every: int,
    max_overhead: float | None,
    first_step: int,
    world_size: int,
    wrapper: str | None,
    compiled: bool,
    embedding_names: tuple[str, ...],
    codebook_size: int | None,
) -> dict[str, Any]:
    """The meta written when the probe starts. layers: the activation recorder's (name, module, kind, bounds)."""
    p = first_parameter(root) if root is not None else None
    return {
        "source": "advisor.probe",
        "status": "running",
        "started": time.time(),
        "every": every,
        "max_overhead": max_overhead,
        "first_step": first_step,
        "torch_version": torch.__version__,
        "python_version": platform.python_version(),
        "hostname": socket.gethostname(),
        "device": str(p.device) if p is not None else None,
        "dtype": str(p.dtype).replace("torch.", "") if p is not None else None,
        "cuda_device_name": torch.cuda.get_device_name(p.device) if p is not None and p.device.type == "cuda" else None,
        "world_size": world_size,
        "compiled": compiled,
        "embedding_names": list(embedding_names),
        "codebook_size": codebook_size,
        "model": model_summary(model) if model is not None else None,
        "activation_layers": [name for name, *_ in layers] if layers is not None else [],
        rn.META_ACTIVATION_KINDS: {name: kind for name, _, kind, _ in layers} if layers is not None else {},
        rn.META_MODULES: module_inventory(model) if model is not None else None,
        rn.META_DISTRIBUTED: distributed_meta(world_size, wrapper),
        rn.META_AMP: {"autocast_dtype": None, "grad_scaler": False},
        rn.META_TENSORS: {},
    }


class RunProfile:
    """Writes meta as it is learnt; on ranks other than 0 (no writer) it only keeps track."""

    def __init__(self, writer: StoreWriter | None) -> None:
        self.writer = writer
        self.amp: dict[str, Any] = {"autocast_dtype": None, "grad_scaler": False}
        self.tensor_families: dict[str, str] = {}

    def write(self, meta: dict[str, Any]) -> None:
        if self.writer is not None:
            self.writer.meta(meta)

    def note_amp(self, autocast_dtype: str | None = None, grad_scaler: bool = False) -> None:
        """Record mixed precision once it is seen (autocast in a forward pass, a GradScaler passed to step)."""
        amp = dict(self.amp)
        if autocast_dtype and not amp["autocast_dtype"]:
            amp["autocast_dtype"] = autocast_dtype
        if grad_scaler:
            amp["grad_scaler"] = True
        if amp != self.amp:
            self.amp = amp
            self.write({rn.META_AMP: amp})

    def note_tensors(self, families: dict[str, str]) -> None:
        """Record which tensors the run passes and how they were read (embeddings, views, codes...)."""
        if any(self.tensor_families.get(n) != f for n, f in families.items()):
            self.tensor_families.update(families)
            self.write({rn.META_TENSORS: dict(self.tensor_families)})
