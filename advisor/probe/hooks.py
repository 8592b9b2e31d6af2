"""Forward hooks that read activations on sampled steps only.

probe.step() runs after backward, so the forward of a sampled step has already happened by then: the
probe arms the hooks at the end of the step *before* a sampled one. On an eager model the hooks are
registered when armed and removed when disarmed, so unsampled steps pay nothing. A torch.compile'd
model never sees hooks added after it was compiled, so there they are registered once, up front, and
gated by a flag that compiled code guards on; their bodies run outside the compiled graph.
"""

from __future__ import annotations

import time
from typing import Callable, Iterable

import torch
from torch import nn

from advisor import reading_names as rn
from advisor.probe import metrics
from advisor.probe.modules import layer_name, unwrap

# Activation modules by type, in lookup order (ReLU6 subclasses Hardtanh: it must come first).
_KIND_OF_TYPE: tuple[tuple[tuple[type, ...], str], ...] = (
    ((nn.ReLU, nn.ReLU6), rn.ACT_RELU),
    ((nn.LeakyReLU, nn.PReLU, nn.RReLU, nn.ELU, nn.CELU, nn.SELU), rn.ACT_LEAKY),
    ((nn.GELU,), rn.ACT_GELU),
    ((nn.SiLU, nn.Mish, nn.Hardswish), rn.ACT_SILU),
    ((nn.Softplus,), rn.ACT_SOFTPLUS),
    ((nn.Tanh, nn.Softsign, nn.Hardtanh), rn.ACT_TANH),
    ((nn.Sigmoid, nn.Hardsigmoid), rn.ACT_SIGMOID),
)
# Other libraries' activations (Hugging Face's GELUActivation, NewGELUActivation...) by class-name
# word, most specific first.
_KIND_OF_WORD = (
    ("gelu", rn.ACT_GELU), ("silu", rn.ACT_SILU), ("swish", rn.ACT_SILU), ("mish", rn.ACT_SILU),
    ("softplus", rn.ACT_SOFTPLUS), ("leakyrelu", rn.ACT_LEAKY), ("elu", rn.ACT_LEAKY), ("relu", rn.ACT_RELU),
    ("tanh", rn.ACT_TANH), ("sigmoid", rn.ACT_SIGMOID),
)  # fmt: skip
_NOT_ACTIVATION_WORDS = ("tanhshrink", "logsigmoid")
_PLAIN_FALLBACK_TYPES = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)


def _bounds(module: nn.Module, kind: str) -> tuple[float, float] | None:
    if isinstance(module, nn.Hardtanh) and not isinstance(module, nn.ReLU6):
        return float(module.min_val), float(module.max_val)
    if kind == rn.ACT_TANH:
        return -1.0, 1.0
    if kind == rn.ACT_SIGMOID:
        return 0.0, 1.0
    return None


def classify(module: nn.Module) -> tuple[str, tuple[float, float] | None] | None:
    """(activation kind, bounds of a saturating one) for an activation module, None for anything else.

    Torch's own activations by type; other libraries' by class name, for leaf modules without
    parameters of their own.
    """
    for types, kind in _KIND_OF_TYPE:
        if isinstance(module, types):
            return kind, _bounds(module, kind)
    if any(True for _ in module.children()) or any(True for _ in module.parameters(recurse=False)):
        return None
    name = type(module).__name__.lower()
    if any(w in name for w in _NOT_ACTIVATION_WORDS):
        return None
    for word, kind in _KIND_OF_WORD:
        if word in name:
            return kind, _bounds(module, kind)
    return None


def select_layers(
    model: nn.Module, extra: Iterable[str | type] | None = None
) -> list[tuple[str, nn.Module, str, tuple[float, float] | None]]:
    """Activation modules to hook: (clean name, module, kind, bounds).

    `extra` adds layers by qualified name or module type (read as plain layers unless they are
    activations). A model with no activation modules at all (functional activations) falls back to
    its Linear/Conv outputs, which still give spread and sample similarity.
    """
    inner = unwrap(model)
    extra = list(extra or [])
    extra_names = {e for e in extra if isinstance(e, str)}
    extra_types = tuple(e for e in extra if isinstance(e, type))
    chosen = []
    for qualified, module in inner.named_modules():
        if not qualified:
            continue
        kind = classify(module)
        if kind is None and (qualified in extra_names or (extra_types and isinstance(module, extra_types))):
            kind = (rn.ACT_PLAIN, None)
        if kind is not None:
            chosen.append((layer_name(qualified), module, kind[0], kind[1]))
    if not chosen:
        for qualified, module in inner.named_modules():
            if qualified and isinstance(module, _PLAIN_FALLBACK_TYPES):
                chosen.append((layer_name(qualified), module, rn.ACT_PLAIN, None))
    return chosen


class ActivationRecorder:
    """Collects per-layer activation statistics while armed; `take()` hands them over and clears them.

    A layer's hook only sets its output aside (up to STASH_BYTES in all); a hook on the model itself
    reads them all when its forward returns. Reading many layers back to back costs far less than
    interleaving small reductions with the model's own kernels (on a CPU, about half), and the
    outputs set aside are ones the forward pass holds anyway. Larger outputs are read in their hook.
    An output changed in place before it is read (its version moved on) is skipped, not misread, and
    that layer is read inside its hook from then on.
    """

    STASH_BYTES = 64 << 20

    def __init__(
        self,
        model: nn.Module,
        on_error: Callable[[str, BaseException], None],
        extra_layers: Iterable[str | type] | None = None,
        permanent: bool = False,
    ) -> None:
        self.layers = select_layers(model, extra_layers)
        self.permanent = permanent
        self.armed = False
        self.seconds = 0.0  # time spent reading activations, for the cost report
        self.calls = 0  # hook calls since the last take()
        self.autocast_dtype: str | None = None  # seen in a training forward pass (mixed precision)
        self._root = unwrap(model)
        self._on_error = on_error
        self._stats: dict[str, metrics.Stats] = {}
        self._stash: list[tuple[str, str, tuple[float, float] | None, torch.Tensor, int]] = []
        self._stash_bytes = 0
        self._disabled: set[str] = set()
        self._read_in_hook: set[str] = set()  # layers whose outputs the model changes in place
        self._handles: list = []
        # Compiled models: the bodies run eagerly (a graph break only while armed).
        self._record = torch.compiler.disable(self._record_eager) if permanent else self._record_eager
        self._drain = torch.compiler.disable(self._drain_eager) if permanent else self._drain_eager
        if permanent:
            self._register()

    def _register(self) -> None:
        for name, module, kind, bounds in self.layers:
            if name not in self._disabled:
                self._handles.append(module.register_forward_hook(self._make_hook(name, kind, bounds)))
        if self.layers:
            self._handles.append(self._root.register_forward_hook(self._end_of_forward))

    def _remove(self) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles = []

    def _make_hook(self, name: str, kind: str, bounds: tuple[float, float] | None):
        def hook(module: nn.Module, inputs, output) -> None:
            # Evaluation passes (no grad) between training steps are not the training batch.
            if self.armed and torch.is_grad_enabled():
                self._record(name, kind, bounds, output)

        return hook

    def _end_of_forward(self, module: nn.Module, inputs, output) -> None:
        if self.armed:
            self._drain()

    def _record_eager(self, name: str, kind: str, bounds, output) -> None:
        self.calls += 1
        if name in self._disabled:
            return
        y = output[0] if isinstance(output, (tuple, list)) else output
        if not (isinstance(y, torch.Tensor) and y.numel() and y.is_floating_point()):
            return
        if self.autocast_dtype is None and torch.is_autocast_enabled(y.device.type):
            self.autocast_dtype = str(torch.get_autocast_dtype(y.device.type)).replace("torch.", "")
        size = y.numel() * y.element_size()
        if self._stash_bytes + size <= self.STASH_BYTES and name not in self._read_in_hook:
            y = y.detach()
            self._stash.append((name, kind, bounds, y, y._version))
            self._stash_bytes += size
        else:
            self._read(name, kind, bounds, y.detach())

    def _drain_eager(self) -> None:
        if not self._stash:
            return
        stash, self._stash, self._stash_bytes = self._stash, [], 0
        for name, kind, bounds, y, version in stash:
            if y._version != version:
                self._read_in_hook.add(name)
            elif name not in self._disabled:
                self._read(name, kind, bounds, y)

    def _read(self, name: str, kind: str, bounds, y: torch.Tensor) -> None:
        started = time.perf_counter()
        try:
            stats = metrics.activation_stats(y, kind, bounds)  # detached input: no graph, no autocast ops
            prev = self._stats.get(name)
            self._stats[name] = stats if prev is None else metrics.merge_stats(prev, stats)
        except Exception as exc:  # a reading must never break the forward pass
            self._disabled.add(name)
            self._stats.pop(name, None)
            self._on_error(f"act/{name}", exc)
        finally:
            self.seconds += time.perf_counter() - started

    def set_armed(self, armed: bool) -> None:
        if armed == self.armed:
            return
        self.armed = armed
        if not armed:
            self._stash, self._stash_bytes = [], 0
        if not self.permanent:
            self._register() if armed else self._remove()

    def take(self) -> dict[str, metrics.Stats]:
        """The statistics gathered since the last take (outputs still set aside are read first)."""
        if self._stash:
            self._drain_eager()
        stats, self._stats = self._stats, {}
        self.calls = 0
        return stats

    def close(self) -> None:
        self.armed = False
        self._remove()
        self._stats = {}
        self._stash, self._stash_bytes = [], 0
