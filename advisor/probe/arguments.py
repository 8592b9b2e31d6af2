"""How the probe reads the keyword arguments of step(), log() and observe(): control arguments,
scalars, and tensors routed to the reading family that reads them (embeddings, views, logits,
codes, attention, any other tensor), each with a non-finite count."""

from __future__ import annotations

import numbers
from typing import Any

import numpy as np
import torch
from torch import Tensor

from advisor import reading_names as rn
from advisor.probe import metrics

# Special keyword arguments of step(); everything else is a reading.
CONTROL = {"step", "step_time", "data_time", "codebook_size", "scaler"}
NONFINITE_FAMILY = "nonfinite"


def _nonfinite_readings(stats: metrics.Stats) -> dict[str, Tensor]:
    return {"": stats["count"]}


FAMILIES = dict(metrics.FAMILIES)
FAMILIES[NONFINITE_FAMILY] = (lambda *parts: {"count": sum(metrics.nonfinite_count(p) for p in parts)}, _nonfinite_readings)

# A statistics source waiting to be turned into readings: (family, reading prefix, statistics).
Source = tuple[str, str, metrics.Stats]
# A source to compute: (key: what a failure disables, family, reading prefix, arguments of its statistics).
Planned = tuple[str, str, str, tuple]


def is_scalar(value: Any) -> bool:
    if isinstance(value, Tensor):
        return value.numel() == 1
    return isinstance(value, numbers.Number) and not isinstance(value, complex)


def split(named: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any], dict[str, str]]:
    """(scalars, tensors or lists of tensors, unreadable names with their type); None values are skipped."""
    scalars, tensors, unreadable = {}, {}, {}
    for name, value in named.items():
        if value is None:
            continue
        if isinstance(value, np.ndarray):
            value = torch.from_numpy(value)
        if is_scalar(value):
            scalars[name] = value
        elif isinstance(value, Tensor) or (
            isinstance(value, (tuple, list)) and value and all(isinstance(v, Tensor) for v in value)
        ):
            tensors[name] = value
        else:
            unreadable[name] = type(value).__name__
    return scalars, tensors, unreadable


def plan_sources(
    tensors: dict[str, Any], embedding_names: tuple[str, ...], codebook_size: int | None, additive: bool
) -> tuple[list[Planned], dict[str, str]]:
    """Which family reads each tensor argument, and how each argument was read (for the store's meta).

    additive: statistics that must add up (across ranks, or across observe() calls).
    """
    targets = next((tensors[n] for n in rn.TARGETS if n in tensors and isinstance(tensors[n], Tensor)), None)
    planned: list[Planned] = []
    families: dict[str, str] = {}

    def add(key: str, family: str, prefix: str, *args: Any) -> None:
        if family != NONFINITE_FAMILY:
            families[name] = family
        planned.append((key, family, prefix, args))

    for name, value in tensors.items():
        parts = list(value) if isinstance(value, (tuple, list)) else [value]
        if any(p.is_floating_point() for p in parts):
            add(f"nonfinite/{name}", NONFINITE_FAMILY, f"nonfinite/{name}", *parts)
        if name == "views":
            if len(parts) == 1 and parts[0].ndim >= 3 and parts[0].shape[0] == 2:
                parts = [parts[0][0], parts[0][1]]  # one (2, N, D) tensor
            if len(parts) >= 2:
                add("views", "views", "views", parts[0], parts[1], additive)
            continue
        if len(parts) != 1:
            for i, part in enumerate(parts):
                add(f"{name}.{i}", "tensor", f"{name}.{i}", part)
            continue
        x = parts[0]
        if name in embedding_names:
            add(name, "representation", name, x, additive)
        elif name == "logits":
            add("logits", "logits", "logits", x, targets)
        elif name in rn.TARGETS and "logits" in tensors:
            families[name] = "targets"
            continue
        elif name == "codes":
            add("codes", "codes", "codes", x, codebook_size)
        elif name == "attention":
            add("attention", "attention", "attention", x)
        else:
            add(name, "tensor", name, x)
    return planned, families


def source_shape(key: str, embedding_names: tuple[str, ...]) -> Source:
    """An empty source for a key another rank had and this one lacks: its family and prefix from the key."""
    if key.startswith("act/"):
        return ("activation", key, {})
    if key.startswith("nonfinite/"):
        return (NONFINITE_FAMILY, key, {})
    family = {"views": "views", "logits": "logits", "codes": "codes", "attention": "attention"}.get(key)
    if family is None:
        family = "representation" if key in embedding_names else "tensor"
    return (family, key, {})


def scaler_scale(scaler: Any) -> Any:
    """A torch.amp.GradScaler's scale: its device tensor (read at the next flush, no sync now), a float
    from get_scale(), or None when the scaler is disabled."""
    scale = getattr(scaler, "_scale", None)
    if isinstance(scale, Tensor):
        return scale.detach().reshape(())
    if getattr(scaler, "is_enabled", lambda: True)():
        return float(scaler.get_scale())
    return None
