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

# Parameters or modules registered anywhere in the process since the layout was read (torch's global
# registration hooks bump it): the cached layout is then read again. Freezing is caught by comparing
# requires_grad flags, FSDP2's parameter swaps by reading sharded models' layouts on every sampled step.
_registrations = [0]
_hooks_installed = False


def _count_registration(*args) -> None:
    _registrations[0] += 1


def _install_registration_hooks() -> None:
    global _hooks_installed
    if not _hooks_installed:
        nn.modules.module.register_module_parameter_registration_hook(_count_registration)
        nn.modules.module.register_module_module_registration_hook(_count_registration)
        _hooks_installed = True


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


@dataclass
class _Layout:
    """Trainable parameters, in registration order, grouped into layers (kept as plain Python lists)."""

    params: list[nn.Parameter]
    layer_names: list[str]
    layer_of: list[int]  # layer position of each parameter
    every_param: list[nn.Parameter]  # trainable or not, with their requires_grad flags when read
    flags: list[bool]
    registrations: int  # _registrations when read

    def __post_init__(self) -> None:
        # What every sampled step needs, worked out once per layout: per-layer names, layer indices.
        self.names: dict[tuple[str, str], tuple[str, ...]] = {}
        self._index: dict[tuple, Tensor] = {}
        self._layers_of: dict[tuple[int, ...], tuple[list[int], Tensor]] = {}

    def index(self, device: torch.device) -> Tensor:
        key = (None, device)
        if key not in self._index:
            self._index[key] = torch.tensor(self.layer_of, dtype=torch.long, device=device)
        return self._index[key]

    def layers_of(self, positions: list[int], device: torch.device) -> tuple[list[int], Tensor]:
        """(layers holding these parameters, in order; each parameter's place among those layers)."""
        key = (tuple(positions), device)
        found = self._layers_of.get(key)
        if found is None:
            used = sorted({self.layer_of[i] for i in positions})
            remap = {layer: j for j, layer in enumerate(used)}
            found = self._layers_of[key] = (used, torch.tensor([remap[self.layer_of[i]] for i in positions], dtype=torch.long, device=device))
        return found

    def per_layer(self, prefix: str, suffix: str, layers: list[int] | None = None) -> tuple[str, ...]:
        if layers is not None and len(layers) != len(self.layer_names):
            return _per_layer(prefix, [self.layer_names[j] for j in layers], suffix)
        key = (prefix, suffix)
        if key not in self.names:
            self.names[key] = _per_layer(prefix, self.layer_names, suffix)
        return self.names[key]

    def current(self) -> bool:
        """Still the model's trainable parameters: nothing registered since, no flag flipped."""
        return self.registrations == _registrations[0] and all(p.requires_grad is f for p, f in zip(self.every_param, self.flags))


@dataclass
class _Snapshot:
    step: int
    layout: _Layout
    samples: list[Tensor]
    grad_norms: Tensor | None  # per parameter at the sampled step, for the frozen check
    weight_norms: Tensor | None = None  # per parameter, when the samples are whole parameters read by weight_readings


def _per_layer(prefix: str, names: list[str], suffix: str) -> tuple[str, ...]:
    return tuple(f"{prefix}/{name}/{suffix}" for name in names)


class ParameterReader:
    """Readings keyed by name; a tuple of names keys a 1-D tensor with one value per name (one
    tensor per family instead of one per layer keeps sampled steps cheap)."""

    def __init__(self, model: nn.Module) -> None:
        _install_registration_hooks()
        self.model = unwrap(model)
        self._first_weight_norm: dict[str, Tensor] = {}
        self._first_norms: tuple[tuple[str, ...], Tensor] | None = None
        self._snapshot: _Snapshot | None = None
        self._spare: list[Tensor] = []
        self._layout: _Layout | None = None
        self._sharding: Sharding | None = None
        self._unsupported: Exception | None = None  # a sharding the readings cannot add up
        self._weight_norms: tuple[_Layout, Tensor] | None = None  # the last weight_readings' local norms

    @property
    def sharded(self) -> bool:
        """Parameters are FSDP2 shards: every rank must read them (the readings add up over ranks)."""
        try:
            self.layout()
        except NotImplementedError:
            return False
        return self._sharding is not None

    def refresh(self) -> None:
        """Check the parameter layout (once per sampled step): read again when parameters were
        (un)frozen, added or replaced, and always for sharded models (FSDP2 swaps parameters)."""
        layout = self._layout
        if layout is not None and (self._sharding is not None or not layout.current()):
            self._layout = None

    def layout(self) -> _Layout:
        if self._layout is None:
            registrations = _registrations[0]
            params, layer_of, names, position, every_param = [], [], [], {}, []
            for qualified, p in self.model.named_parameters():
                every_param.append(p)
                if not p.requires_grad:
                    continue
                owner, _, _ = qualified.rpartition(".")
                layer = layer_name(owner or qualified)  # a parameter of the root module is its own layer
                if layer not in position:
                    position[layer] = len(names)
                    names.append(layer)
                params.append(p)
                layer_of.append(position[layer])
            self._layout = _Layout(params, names, layer_of, every_param, [p.requires_grad for p in every_param], registrations)
            try:
                self._sharding, self._unsupported = Sharding.of(params), None
            except NotImplementedError as exc:
                self._sharding, self._unsupported = None, exc
        if self._unsupported is not None:  # raised inside the readings, which then disable themselves
            raise self._unsupported
        return self._layout

    def gradient_readings(self) -> tuple[dict, Tensor | None]:
        """Readings from .grad, and each trainable parameter's grad norm (NaN where it has none).

        A handful of fused ops whatever the number of parameters: one L2 and one L0 "norm" over all
        gradients, one host check for non-finite values, then small vectors.
        """
        layout = self.layout()
        params = layout.params
        with_grad = [i for i, p in enumerate(params) if p.grad is not None]
        if not with_grad:
            return {}, None
        everything = len(with_grad) == len(params)
        grads = [_dense(local(p.grad)) for p in params] if everything else [_dense(local(params[i].grad)) for i in with_grad]
        elements = float(sum(params[i].grad.numel() for i in with_grad))  # global sizes under FSDP2
        # L2 norms and non-zero counts (NaN counts as non-zero) of every gradient in one stack. The
        # counts: one fused L0 "norm" on a GPU; on the CPU, where that kernel is slow, a sum of bool()
        # per tensor (about 4x faster than the fused L0, 2x faster than count_nonzero).
        if grads[0].device.type == "cpu":
            counts = tuple(g.bool().sum() for g in grads)
        else:
            counts = torch._foreach_norm(grads, 0, dtype=torch.float32)
        both = torch._foreach_norm(grads, 2, dtype=torch.float32) + counts
        both = _stack(both).view(2, -1)
        norms, nonzero = both[0], both[1]
        device = norms.device
        sq = norms.square()
        global_sq = sq.sum()
        nonfinite_per = None
        # A tensor without NaN/Inf has a finite norm, so elements are only counted in the rare tensors
        # whose norm is not finite (one host check; sampled steps synchronise once anyway).
        if not math.isfinite(float(global_sq)) or self._sharding is not None:
            bad = torch.nonzero(~torch.isfinite(norms)).flatten().tolist()
            nonfinite_per = torch.zeros_like(norms)
            for i in bad:
                nonfinite_per[i] = (~torch.isfinite(grads[i])).sum()
        if self._sharding is not None:
            summed = self._sharding.sum_over_ranks(torch.stack([sq, nonzero, nonfinite_per]), with_grad)
            sq, nonzero, nonfinite_per = summed[0], summed[1], summed[2]
            norms, global_sq = sq.sqrt(), summed[0].sum()
        nonfinite = nonfinite_per.sum() if nonfinite_per is not None else 0.0
        # Only layers that received a gradient take part in the layer profile.
        if everything:
            used, grad_layer = None, layout.index(device)
            n_layers = len(layout.layer_names)
        else:
            used, grad_layer = layout.layers_of(with_grad, device)
            n_layers = len(used)
        layer_norms = torch.zeros(n_layers, dtype=torch.float64, device=device).index_add_(0, grad_layer, sq).sqrt_()
        summary = torch.cat([global_sq.sqrt().reshape(1), layer_norms[:1] / layer_norms[-1:], layer_norms.min().reshape(1),
                             ((elements - nonzero.sum()) / elements).reshape(1)])  # fmt: skip
        out: dict = {
            (rn.GRAD_GLOBAL_NORM, rn.GRAD_FIRST_LAST_RATIO, rn.GRAD_MIN_LAYER_NORM, rn.GRAD_ZERO_SHARE): summary,
            rn.GRAD_NONFINITE_COUNT: nonfinite,
            layout.per_layer(rn.GRAD, rn.NORM, used): layer_norms,
        }
        if everything:
            return out, norms
        per_param = torch.full((len(params),), math.nan, dtype=torch.float64, device=device)
        per_param[torch.tensor(with_grad, device=device)] = norms
        return out, per_param

    def weight_readings(self) -> dict:
        layout = self.layout()
        if not layout.params:
            return {}
        norms = _stack(torch._foreach_norm([local(p.detach()) for p in layout.params], 2, dtype=torch.float32))
        self._weight_norms = (layout, norms)  # the snapshot taken next holds the same values: not read twice
        sq = norms.square()
        if self._sharding is not None:
            sq = self._sharding.sum_over_ranks(sq)
        layer_norms = torch.zeros(len(layout.layer_names), dtype=torch.float64, device=sq.device)
        layer_norms = layer_norms.index_add_(0, layout.index(sq.device), sq).sqrt_()
        names = layout.per_layer(rn.WEIGHT, rn.NORM)
        if self._first_norms is None or self._first_norms[0] != names:
            # The first sampled norms are the reference for growth (per layer, kept across re-layouts).
            for j, layer in enumerate(layout.layer_names):
                self._first_weight_norm.setdefault(layer, layer_norms[j].clone())
            first = torch.stack([self._first_weight_norm[layer].to(layer_norms.device) for layer in layout.layer_names])
            self._first_norms = (names, first)
        return {
            rn.WEIGHT_GLOBAL_NORM: sq.sum().sqrt(),
            names: layer_norms,
            layout.per_layer(rn.WEIGHT, rn.NORM_GROWTH): layer_norms / self._first_norms[1],
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
        # Whole parameters just read by weight_readings: their norms are the snapshot's norms.
        known = self._weight_norms
        whole = known is not None and known[0] is layout and all(_stride(v.numel()) == 1 for v in views)
        self._weight_norms = None
        self._snapshot = _Snapshot(step, layout, samples, grad_norms, known[1] if whole else None)

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
            weight_norms = None if everything and snap.weight_norms is not None else torch._foreach_norm(old, 2, dtype=torch.float32)
            # The snapshot becomes the (negated) update in place: no model-sized temporary.
            torch._foreach_sub_(old, now if everything else [now[i] for i in keep])
            # Squared weight and update norms, (2, P), in one stack.
            if weight_norms is None:
                diff = _stack(torch._foreach_norm(old, 2, dtype=torch.float32))
                sq = torch.stack([snap.weight_norms, diff.to(snap.weight_norms.device)]).square()
            else:
                sq = _stack(weight_norms + torch._foreach_norm(old, 2, dtype=torch.float32)).view(2, -1).square()
            if self._sharding is not None:  # shard shapes do not change between steps: every rank keeps the same
                sq = self._sharding.sum_over_ranks(sq, keep)
        self._spare = snap.samples if keep_buffers else []
        if everything:
            present, index = None, layout.index(sq.device)
            n_layers = len(layout.layer_names)
        else:
            present, index = layout.layers_of(keep, sq.device)
            n_layers = len(present)
        layer_sq = torch.zeros(2, n_layers, dtype=torch.float64, device=sq.device).index_add_(1, index, sq)
        ratios = (layer_sq[1] / layer_sq[0]).sqrt_()
        diff_norms = sq[1]
        out: dict = {
            rn.UPDATE_MAX_RATIO: torch.nan_to_num(ratios, nan=-math.inf).max(),
            layout.per_layer(rn.UPDATE, rn.RATIO, present): ratios,
        }
        if snap.grad_norms is not None:
            g = snap.grad_norms if everything else snap.grad_norms[torch.tensor(keep, device=snap.grad_norms.device)]
            moving = (g > 0) & (g < math.inf)
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
