"""What the probe needs to know about the user's model: its real module tree and clean layer names."""

from __future__ import annotations

import sys
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


# What a model is built from, for the run profile (which advice can apply to it). Class-name words
# cover other libraries' modules (Hugging Face's GPT2Attention, vector-quantize-pytorch's VectorQuantize...).
_ATTENTION_WORDS = ("attention", "attn")
_VQ_WORDS = ("vectorquant", "quantizer", "codebook", "vq")  # not "quantizable": torch's Linear subclasses
_NORM_TYPES: tuple[tuple[str, tuple[type, ...]], ...] = (
    ("layer_norm", (nn.LayerNorm,)),
    ("batch_norm", (nn.modules.batchnorm._BatchNorm,)),
    ("group_norm", (nn.GroupNorm,)),
    ("instance_norm", (nn.modules.instancenorm._InstanceNorm,)),
    ("rms_norm", (nn.RMSNorm,) if hasattr(nn, "RMSNorm") else ()),
)
_NORM_WORDS = (("layernorm", "layer_norm"), ("rmsnorm", "rms_norm"), ("batchnorm", "batch_norm"), ("groupnorm", "group_norm"))


def _class_words(module: nn.Module) -> str:
    return type(module).__name__.lower()


def module_inventory(model: nn.Module, max_names: int = 50) -> dict[str, Any]:
    """Attention, vector-quantisation and normalisation modules of a model, and where LN sits when
    the model says so (torch's Transformer layers' `norm_first`; else None: not cheaply knowable)."""
    inner = unwrap(model)
    attention: list[str] = []
    vq: list[str] = []
    norms: dict[str, int] = {}
    norm_first: set[bool] = set()
    for qualified, module in inner.named_modules():
        words = _class_words(module)
        name = layer_name(qualified)
        if not qualified:  # the model itself: its class name says what it is for, not what it holds
            pass
        elif isinstance(module, nn.MultiheadAttention) or any(w in words for w in _ATTENTION_WORDS):
            # The outermost attention module only (its projections are not separate attentions).
            if not any(name.startswith(f"{a}.") for a in attention):
                attention.append(name)
        elif not isinstance(module, nn.Linear) and any(w in words for w in _VQ_WORDS):
            if not any(name.startswith(f"{v}.") for v in vq):
                vq.append(name)
        for kind, types in _NORM_TYPES:
            if types and isinstance(module, types):
                norms[kind] = norms.get(kind, 0) + 1
                break
        else:
            if not any(True for _ in module.children()):
                for word, kind in _NORM_WORDS:
                    if word in words:
                        norms[kind] = norms.get(kind, 0) + 1
                        break
        if isinstance(module, (nn.TransformerEncoderLayer, nn.TransformerDecoderLayer)):
            norm_first.add(bool(module.norm_first))
    placement = None
    if len(norm_first) == 1:
        placement = "pre" if norm_first.pop() else "post"
    return {
        "attention": attention[:max_names],
        "attention_count": len(attention),
        "vq": vq[:max_names],
        "vq_count": len(vq),
        "norm": norms,
        "norm_placement": placement,
    }


def wrapper_kind(model: nn.Module) -> str | None:
    """How the model is distributed: "ddp", "fsdp2" (fully_shard), "fsdp1", "dp", or None."""
    name = type(model).__name__
    if name == "DistributedDataParallel":
        return "ddp"
    if name == "DataParallel":
        return "dp"
    if name == "FullyShardedDataParallel":
        return "fsdp1"
    fsdp = sys.modules.get("torch.distributed.fsdp")  # imported by whoever called fully_shard
    module_type = getattr(fsdp, "FSDPModule", None)
    if module_type is not None and any(isinstance(m, module_type) for m in unwrap(model).modules()):
        return "fsdp2"
    return None
