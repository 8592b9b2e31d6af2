"""What the probe needs to know about the user's model: its real module tree and clean layer names."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

# Prefixes that wrappers add to qualified names: torch.compile's OptimizedModule and (Distributed)DataParallel.
_COMPILE_PREFIX = "_orig_mod"
_WRAPPER_PREFIX = "module"


def unwrap(model: nn.Module) -> nn.Module:
    """The user's own module under torch.compile / DataParallel / DistributedDataParallel wrappers."""
    seen = 0
    while seen < 8:
        seen += 1
        if hasattr(model, "_orig_mod") and isinstance(getattr(model, "_orig_mod"), nn.Module):
            model = model._orig_mod
        elif type(model).__name__ in ("DistributedDataParallel", "DataParallel") and isinstance(
            getattr(model, "module", None), nn.Module
        ):
            model = model.module
        else:
            break
    return model


def layer_name(qualified: str) -> str:
    """A module or parameter name without wrapper segments ('module._orig_mod.fc1' -> 'fc1')."""
    parts = [p for p in qualified.split(".") if p != _COMPILE_PREFIX]
    while parts and parts[0] == _WRAPPER_PREFIX:
        parts = parts[1:]
    return ".".join(parts)


def is_compiled(model: nn.Module) -> bool:
    """True when the model or any submodule runs through torch.compile (hooks must then exist before compiling)."""
    if hasattr(model, "_orig_mod"):
        return True
    inner = unwrap(model)
    if inner is not model and is_compiled(inner):
        return True
    for module in inner.modules():
        if hasattr(module, "_orig_mod") or getattr(module, "_compiled_call_impl", None) is not None:
            return True
    return False


def first_parameter(model: nn.Module) -> torch.Tensor | None:
    for p in model.parameters():
        return p
    return None


def model_summary(model: nn.Module, max_layers: int = 200) -> dict[str, Any]:
    inner = unwrap(model)
    total = trainable = 0
    for p in inner.parameters():
        total += p.numel()
        if p.requires_grad:
            trainable += p.numel()
    layers = [layer_name(n) for n, m in inner.named_modules() if n and any(True for _ in m.parameters(recurse=False))]
    return {
        "class": type(inner).__name__,
        "wrapper": type(model).__name__ if model is not inner else None,
        "parameters": total,
        "trainable_parameters": trainable,
        "modules": sum(1 for _ in inner.modules()),
        "layers_with_parameters": len(layers),
        "layers": layers[:max_layers],
    }
