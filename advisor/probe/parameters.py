"""Gradient, weight and update readings, read straight from the model's parameters.

A "layer" is the module that owns a parameter (its qualified name, wrapper prefixes stripped); its
norm combines that module's own weight and bias. Layers are ordered as the model registers them,
which is input-to-output order for ordinary models: that order gives `grad/first_last_ratio`.

probe.step() is called before optimizer.step(), so the update of a sampled step is only visible at
the next call: the sampled step keeps a copy of the weights (large tensors: a strided sample of at
most SNAPSHOT_ELEMENTS values, enough for a norm ratio) and the next call compares and drops it.
Under DistributedDataParallel every rank holds the same averaged gradients and the same weights, so
these readings need no reduction (rank 0 reads them). Under FSDP2 each rank holds shards: every rank
reads its shards and the sums are added up over the ranks (advisor.probe.sharding).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from advisor import reading_names as rn
from advisor.probe.modules import layer_name, unwrap
from advisor.probe.sharding import Sharding, local

SNAPSHOT_ELEMENTS = 1 << 18


def _stride(numel: int) -> int:
    return max(1, math.ceil(numel / SNAPSHOT_ELEMENTS))


def _dense(g: Tensor) -> Tensor:
    return g.coalesce().values() if g.is_sparse else g


def _stack(values: list[Tensor]) -> Tensor:
    try:
        return torch.stack(values).double()
    except RuntimeError:  # parameters spread over several devices (model parallel)
        device = values[0].device
        return torch.stack([v.to(device, torch.float64) for v in values])


def _layer_norms(norms: Tensor, layer_index: Tensor, n_layers: int) -> Tensor:
    sq = torch.zeros(n_layers, dtype=torch.float64, device=norms.device)
    return sq.index_add_(0, layer_index.to(norms.device), norms**2).sqrt()


@dataclass
class _Layout:
    """Trainable parameters, in registration order, grouped into layers (kept as plain Python lists)."""

    params: list[nn.Parameter]
    layer_names: list[str]
    layer_of: list[int]  # layer position of each parameter

    def index(self, positions: list[int] | None = None) -> Tensor:
        layers = self.layer_of if positions is None else [self.layer_of[i] for i in positions]
        return torch.tensor(layers, dtype=torch.long)


@dataclass
class _Snapshot:
    step: int
    layout: _Layout
    samples: list[Tensor]
    grad_norms: Tensor | None  # per parameter at the sampled step, for the frozen check


def _per_layer(prefix: str, names: list[str], suffix: str) -> tuple[str, ...]:
    return tuple(f"{prefix}/{name}/{suffix}" for name in names)


class ParameterReader:
    """Readings keyed by name; a tuple of names keys a 1-D tensor with one value per name (one
    tensor per family instead of one per layer keeps sampled steps cheap)."""

    def __init__(self, model: nn.Module) -> None:
        self.model = unwrap(model)
        self._first_weight_norm: dict[str, Tensor] = {}
        self._first_norms: tuple[tuple[str, ...], Tensor] | None = None
        self._snapshot: _Snapshot | None = None
        self._spare: list[Tensor] = []
        self._layout: _Layout | None = None
        self._sharding: Sharding | None = None
        self._unsupported: Exception | None = None  # a sharding the readings cannot add up

    @property
    def sharded(self) -> bool:
        """Parameters are FSDP2 shards: every rank must read them (the readings add up over ranks)."""
        try:
            self.layout()
        except NotImplementedError:
            return False
        return self._sharding is not None

    def refresh(self) -> None:
        """Forget the parameter layout (call once per sampled step: parameters may be (un)frozen)."""
        self._layout = None

    def layout(self) -> _Layout:
        if self._layout is None:
            params, layer_of, names, position = [], [], [], {}
            for qualified, p in self.model.named_parameters():
                if not p.requires_grad:
                    continue
                owner, _, _ = qualified.rpartition(".")
                layer = layer_name(owner or qualified)  # a parameter of the root module is its own layer
                if layer not in position:
                    position[layer] = len(names)
                    names.append(layer)
                params.append(p)
                layer_of.append(position[layer])
            self._layout = _Layout(params, names, layer_of)
            try:
                self._sharding, self._unsupported = Sharding.of(params), None
            except NotImplementedError as exc:
                self._sharding, self._unsupported = None, exc
        if self._unsupported is not None:  # raised inside the readings, which then disable themselves
            raise self._unsupported
        return self._layout

    def gradient_readings(self) -> tuple[dict, Tensor | None]:
        """Readings from .grad, and each trainable parameter's grad norm (NaN where it has none)."""
        layout = self.layout()
        with_grad = [i for i, p in enumerate(layout.params) if p.grad is not None]
        if not with_grad:
            return {}, None
        elements = float(sum(layout.params[i].grad.numel() for i in with_grad))  # global sizes under FSDP2
        grads = [_dense(local(layout.params[i].grad)) for i in with_grad]
        norms = _stack(list(torch._foreach_norm(grads, 2, dtype=torch.float32)))
        # Non-zero counts for the zero share (NaN counts as non-zero): one fused L0 "norm" on a GPU;
        # on the CPU count_nonzero per tensor is about twice as fast.
        if norms.device.type == "cpu":
            nonzero = _stack([torch.count_nonzero(g) for g in grads])
        else:
            nonzero = _stack(list(torch._foreach_norm(grads, 0)))
        device = norms.device
        # A tensor without NaN/Inf has a finite norm, so elements are only counted in the rare tensors
        # whose norm is not finite (one host check; sampled steps synchronise once anyway).
        bad = torch.nonzero(~torch.isfinite(norms)).flatten().tolist()
        nonfinite_per = torch.zeros_like(norms)
        for i in bad:
            nonfinite_per[i] = (~torch.isfinite(grads[i])).sum()
        if self._sharding is not None:
            summed = self._sharding.sum_over_ranks(torch.stack([norms.square(), nonzero.to(device), nonfinite_per]), with_grad)
            norms, nonzero, nonfinite_per = summed[0].sqrt(), summed[1], summed[2]
        nonfinite = nonfinite_per.sum()
        # Only layers that received a gradient take part in the layer profile.
        used = sorted({layout.layer_of[i] for i in with_grad})
        remap = {layer: j for j, layer in enumerate(used)}
        grad_layer = torch.tensor([remap[layout.layer_of[i]] for i in with_grad], dtype=torch.long)
        layer_norms = _layer_norms(norms, grad_layer, len(used))
        summary = torch.stack(
            [
                norms.square().sum().sqrt(),
                layer_norms[0] / layer_norms[-1],
                layer_norms.min(),
                (elements - nonzero.sum()) / elements,
            ]
        )
        out: dict = {
            (rn.GRAD_GLOBAL_NORM, rn.GRAD_FIRST_LAST_RATIO, rn.GRAD_MIN_LAYER_NORM, rn.GRAD_ZERO_SHARE): summary,
            rn.GRAD_NONFINITE_COUNT: nonfinite,
            _per_layer(rn.GRAD, [layout.layer_names[j] for j in used], rn.NORM): layer_norms,
        }
        per_param = torch.full((len(layout.params),), math.nan, dtype=torch.float64, device=device)
        per_param[torch.tensor(with_grad, device=device)] = norms
        return out, per_param

    def weight_readings(self) -> dict:
        layout = self.layout()
        if not layout.params:
            return {}
        norms = _stack(list(torch._foreach_norm([local(p.detach()) for p in layout.params], 2, dtype=torch.float32)))
        if self._sharding is not None:
            norms = self._sharding.sum_over_ranks(norms.square()).sqrt()
        layer_norms = _layer_norms(norms, layout.index(), len(layout.layer_names))
        names = _per_layer(rn.WEIGHT, layout.layer_names, rn.NORM)
        if self._first_norms is None or self._first_norms[0] != names:
            # The first sampled norms are the reference for growth (per layer, kept across re-layouts).
            for j, layer in enumerate(layout.layer_names):
                self._first_weight_norm.setdefault(layer, layer_norms[j])
            first = torch.stack([self._first_weight_norm[layer].to(layer_norms.device) for layer in layout.layer_names])
            self._first_norms = (names, first)
        return {
            rn.WEIGHT_GLOBAL_NORM: norms.square().sum().sqrt(),
            names: layer_norms,
            _per_layer(rn.WEIGHT, layout.layer_names, rn.NORM_GROWTH): layer_norms / self._first_norms[1],
        }

    @staticmethod
    def _sampled_view(p: Tensor) -> Tensor:
        """What a snapshot keeps of a parameter: all of it, or a strided sample of a large one."""
        stride = _stride(p.numel())
        return p if stride == 1 else p.detach().reshape(-1)[::stride]

    def take_snapshot(self, step: int, grad_norms: Tensor | None) -> None:
        layout = self.layout()
        with torch.no_grad():
            views = [self._sampled_view(local(p)) for p in layout.params]
            # Buffers the last update reading just released (every=1): refill them in one fused copy.
            spare, self._spare = self._spare, []
            if len(spare) == len(views) and all(a.shape == b.shape and a.dtype == b.dtype for a, b in zip(spare, views)):
                torch._foreach_copy_(spare, views)
                samples = spare
            else:
                samples = [v.detach().clone() for v in views]
        self._snapshot = _Snapshot(step, layout, samples, grad_norms)

    def has_snapshot(self) -> bool:
        return self._snapshot is not None

    def drop_snapshot(self) -> None:
        self._snapshot = None
        self._spare = []

    def update_readings(self, keep_buffers: bool = False) -> tuple[int, dict] | None:
        """The update since the snapshot (readings filed under the snapshot's step); releases it.

        keep_buffers=True holds the snapshot's memory for an immediate take_snapshot (the next step
        is sampled too), so every=1 does not allocate a model-sized copy per step.
        """
        snap, self._snapshot = self._snapshot, None
        if snap is None or not snap.layout.params:
            return None
        layout = snap.layout
        with torch.no_grad():
            now = [self._sampled_view(local(p)) for p in layout.params]
            keep = [i for i, (a, b) in enumerate(zip(now, snap.samples)) if a.shape == b.shape and a.dtype == b.dtype]
            everything = len(keep) == len(now)
            old = snap.samples if everything else [snap.samples[i] for i in keep]
            weight_norms = _stack(list(torch._foreach_norm(old, 2, dtype=torch.float32)))
            # The snapshot becomes the (negated) update in place: no model-sized temporary.
            torch._foreach_sub_(old, now if everything else [now[i] for i in keep])
            diff_norms = _stack(list(torch._foreach_norm(old, 2, dtype=torch.float32)))
            if self._sharding is not None:  # shard shapes do not change between steps: every rank keeps the same
                summed = self._sharding.sum_over_ranks(torch.stack([weight_norms.square(), diff_norms.square()]), keep)
                weight_norms, diff_norms = summed[0].sqrt(), summed[1].sqrt()
        self._spare = snap.samples if keep_buffers else []
        present = sorted({layout.layer_of[i] for i in keep})
        remap = {layer: j for j, layer in enumerate(present)}
        index = torch.tensor([remap[layout.layer_of[i]] for i in keep], dtype=torch.long)
        ratios = _layer_norms(diff_norms, index, len(present)) / _layer_norms(weight_norms, index, len(present))
        out: dict = {
            rn.UPDATE_MAX_RATIO: torch.nan_to_num(ratios, nan=-math.inf).max(),
            _per_layer(rn.UPDATE, [layout.layer_names[j] for j in present], rn.RATIO): ratios,
        }
        if snap.grad_norms is not None:
            g = snap.grad_norms if everything else snap.grad_norms[torch.tensor(keep, device=snap.grad_norms.device)]
            moving = (g > 0) & torch.isfinite(g)
            frozen = (moving & (diff_norms.to(g.device) == 0)).sum().double()
            out[rn.UPDATE_FROZEN_PARAMS] = frozen
            out[rn.UPDATE_FROZEN_SHARE] = frozen / moving.sum()  # 0/0 = NaN: nothing had a gradient
        return snap.step, out


def expand(readings: dict) -> dict[str, float]:
    """{name: float} from readings whose tuple keys hold one value per name (for tests and tools)."""
    out: dict[str, float] = {}
    for key, value in readings.items():
        if isinstance(key, tuple):
            out.update(zip(key, torch.as_tensor(value).reshape(-1).tolist()))
        else:
            out[key] = float(value)
    return out
