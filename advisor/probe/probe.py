"""The live Probe: three lines in a training loop, readings in a run store.

    probe = Probe(model, run="runs/exp1", every=50)
    ...  # after loss.backward(), before optimizer.step():
    probe.step(loss=loss, lr=sched.get_last_lr()[0], embeddings=z)
    probe.close()

Scalars are recorded every step; everything else only on sampled steps (step % every == 0). Numbers
stay on the device as 0-d tensors until a batch is flushed (every `flush_seconds` or 4096 values), so
the probe adds no synchronisation to ordinary steps: one device-to-host copy per batch.
"""

from __future__ import annotations

import atexit
import contextlib
import functools
import math
import numbers
import platform
import socket
import time
import traceback
import warnings
import weakref
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

import numpy as np
import torch
from torch import Tensor, nn

from advisor import reading_names as rn
from advisor.probe import metrics
from advisor.probe.distributed import rank_and_world, reduce_stats
from advisor.probe.hardware import HardwareReader
from advisor.probe.hooks import ActivationRecorder
from advisor.probe.modules import first_parameter, is_compiled, model_summary, module_inventory, unwrap, wrapper_kind
from advisor.probe.parameters import ParameterReader

# Special keyword arguments of step(); everything else is a reading.
_CONTROL = {"step", "step_time", "data_time", "codebook_size", "scaler"}
_TARGET_NAMES = rn.TARGETS
_MAX_PENDING = 4096  # queued values that trigger a flush before flush_seconds is up
_NONFINITE_FAMILY = "nonfinite"


def _nonfinite_readings(stats: metrics.Stats) -> dict[str, Tensor]:
    return {"": stats["count"]}


_FAMILIES = dict(metrics.FAMILIES)
_FAMILIES[_NONFINITE_FAMILY] = (lambda *parts: {"count": sum(metrics.nonfinite_count(p) for p in parts)}, _nonfinite_readings)

# A statistics source waiting to be turned into readings: (family, reading prefix, statistics).
_Source = tuple[str, str, metrics.Stats]


@contextlib.contextmanager
def _plain_math() -> Iterator[None]:
    """No autograd, no autocast: step() may be called inside an autocast region, the maths stays float32/64."""
    with torch.no_grad(), torch.autocast("cpu", enabled=False):
        if torch.cuda.is_available():
            with torch.autocast("cuda", enabled=False):
                yield
        else:
            yield


def _close_at_exit(ref: "weakref.ref[Probe]") -> None:
    probe = ref()
    if probe is not None:
        probe.close()


def _is_scalar(value: Any) -> bool:
    if isinstance(value, Tensor):
        return value.numel() == 1
    return isinstance(value, numbers.Number) and not isinstance(value, complex)


class Probe:
    """Reads a training run while it happens and writes the readings to a run store.

    Arguments:
        model: the model being trained (plain, torch.compile'd or DDP-wrapped), or None for
            readings from probe.step() arguments only.
        run: the run directory; the store is `run/run.db` (advisor.runstore).
        every: sample every `every`-th step for the expensive readings; scalars go in every step.
        embedding_names: step() arguments read as representations (default just "embeddings").
        codebook_size: size of the VQ codebook for `codes` (else inferred from the largest code).
        activations / gradients / weights / hardware: switch families off.
        activation_layers: extra layers (qualified names or module types) to hook.
        first_step: the step number of the first step() call when steps are not passed explicitly.
        flush_seconds: hand what was recorded to the store at least this often (live readers see
            readings this late at most; a killed process loses at most this much).
        meta: extra run metadata.
        max_overhead: a cap on the share of training time the sampled readings take (e.g. 0.25).
            When a sampled step costs more than the steps since the last one earned, the next grid
            steps are skipped until it is paid for (said once in the store's events). None (the
            default) reads every grid step whatever it costs, so which steps are read does not
            depend on timing. Ignored in multi-process runs, whose ranks must sample the same steps.
    """

    def __init__(
        self,
        model: nn.Module | None = None,
        run: str | Path = "runs/probe",
        every: int = 50,
        *,
        embedding_names: Iterable[str] = ("embeddings",),
        codebook_size: int | None = None,
        activations: bool = True,
        gradients: bool = True,
        weights: bool = True,
        hardware: bool = True,
        activation_layers: Iterable[str | type] | None = None,
        first_step: int = 0,
        flush_seconds: float = 2.0,
        meta: dict[str, Any] | None = None,
        max_overhead: float | None = None,
    ) -> None:
        if every < 1:
            raise ValueError("every must be >= 1")
        if max_overhead is not None and not max_overhead > 0:
            raise ValueError("max_overhead must be > 0 (or None)")
        self.every = int(every)
        self.run = Path(run)
        self.embedding_names = tuple(embedding_names)
        self.codebook_size = codebook_size
        self.flush_seconds = flush_seconds
        self.rank, self.world_size = rank_and_world()
        self.model = model
        self._root = unwrap(model) if model is not None else None
        self._closed = False
        self._broken = False
        self._next_step = int(first_step)
        self._last_step: int | None = None
        self._last_sampled: int | None = None
        self._force_next = False
        self._pending: list[tuple[int, str, Any, float]] = []
        self._staged: dict[str, _Source] = {}
        self._staged_scalars: dict[str, Any] = {}
        self._disabled: dict[str, str] = {}
        self._costs: dict[str, float] = {}
        self._steps = 0
        self._sampled_steps = 0
        self._last_flush = time.monotonic()
        self._interval_start: float | None = None
        self._interval_calls = 0
        self._user_step_time = [0.0, 0]
        self._user_data_time = [0.0, 0]
        self._notes: set[str] = set()  # one-time notes already written
        self._amp: dict[str, Any] = {"autocast_dtype": None, "grad_scaler": False}
        self._tensor_families: dict[str, str] = {}
        self._wrapper = wrapper_kind(model) if model is not None else None

        from advisor.probe.writer import StoreWriter

        self._writer = StoreWriter(self.run) if self.rank == 0 else None
        compiled = model is not None and is_compiled(model)
        self._params = ParameterReader(model) if model is not None and (gradients or weights) else None
        self._gradients, self._weights = gradients, weights
        self._acts = (
            ActivationRecorder(model, self._disable_from_hook, activation_layers, permanent=compiled)
            if model is not None and activations
            else None
        )
        self._hardware = HardwareReader() if hardware and self.rank == 0 else None
        # The cost budget (max_overhead): credit earned by training time, spent by the probe's own.
        self.max_overhead = max_overhead if self.world_size == 1 else None
        self._credit = 0.0
        self._sample_cost: float | None = None  # seconds the last sampled step cost
        self._last_exit: float | None = None  # perf_counter when the last step() returned (or __init__)
        self._hook_seconds = 0.0  # activation hook time already accounted for
        self._skipped = 0  # grid steps skipped to stay within the budget
        self._planned = self._on_grid(self._next_step)  # whether step number _next_step is sampled
        if self._acts is not None:
            self._acts.set_armed(self._planned)
        # Whether the next unsampled step may take the short path (nothing staged, no update to read).
        self._fast = True
        self._write_meta(self._start_meta(compiled, meta))
        self._last_exit = time.perf_counter()  # the first step's forward and backward earn credit too
        self._atexit = functools.partial(_close_at_exit, weakref.ref(self))
        atexit.register(self._atexit)

    # ------------------------------------------------------------------ public API

    def step(self, step: int | None = None, **named: Any) -> None:
        """Record one training step: call after backward, before optimizer.step()."""
        if self._fast and step is None and not self._planned:  # an ordinary step: the short path
            try:
                if self._fast_step(named):
                    return
            except Exception as exc:
                self._break(exc)
                return
        if self._closed:
            return
        if self._broken:
            k = self._next_step if step is None else int(step)
            self._next_step = k + 1
            self._keep_collectives(self._force_next or self._is_sampled(k))
            self._force_next = False
            return
        try:
            self._step(step, named, time.perf_counter())
        except Exception as exc:
            self._break(exc)

    def log(self, step: int | None = None, **named: Any) -> None:
        """Record values for a step already taken (default: the last), without advancing the probe.

        For numbers that arrive after step() (a validation loss, or integrations that see the loss
        only after the optimizer stepped). Tensors are read when that step was sampled.
        """
        if self._closed:
            return
        k = self._last_step if step is None else int(step)
        if k is None:
            k = self._next_step
        if self._broken:
            has_tensors = any(isinstance(v, (Tensor, tuple, list)) for v in named.values())
            self._keep_collectives(has_tensors and (self._is_sampled(k) or k == self._last_sampled))
            return
        try:
            now = time.time()
            named = {n: v for n, v in named.items() if n not in _CONTROL}
            scalars, tensors = self._split(named)
            self._record_scalars(k, now, scalars)
            if tensors and (self._is_sampled(k) or k == self._last_sampled):
                with _plain_math():
                    self._read_sampled(k, now, self._tensor_sources(tensors, None), model_readings=False)
            self._maybe_flush()
        except Exception as exc:
            self._break(exc)

    def observe(self, **named: Any) -> None:
        """Hand over values for the step about to be taken, before step() (e.g. from inside forward).

        Tensors are only read when that step will be sampled, and are reduced to statistics at once,
        so nothing large is kept until step(). Several calls (micro-batches) add up.
        """
        if self._closed or self._broken:
            return
        try:
            named = {n: v for n, v in named.items() if n not in _CONTROL}
            scalars, tensors = self._split(named)
            self._staged_scalars.update(scalars)
            self._fast = False
            if tensors and self.will_sample:
                with _plain_math():
                    sources = self._tensor_sources(tensors, None, mergeable=True)
                for key, source in sources.items():
                    prev = self._staged.get(key)
                    self._staged[key] = source if prev is None else (prev[0], prev[1], metrics.merge_stats(prev[2], source[2]))
        except Exception as exc:
            self._break(exc)

    @property
    def will_sample(self) -> bool:
        """Whether the next step() will be a sampled one."""
        return self._force_next or self._planned

    def sample_next(self) -> None:
        """Make the next step a sampled one (arms the activation hooks now, before its forward)."""
        self._force_next = True
        self._fast = False
        if self._acts is not None and not self._broken:
            self._acts.set_armed(True)

    def costs(self) -> dict[str, float]:
        """Seconds spent so far per reading family (plus 'steps' and 'sampled_steps' counts)."""
        out = dict(self._costs)
        if self._acts is not None:  # time inside the forward hooks belongs to the activation family
            out["activation"] = out.get("activation", 0.0) + self._acts.seconds
        out["steps"] = float(self._steps)
        out["sampled_steps"] = float(self._sampled_steps)
        out["skipped_for_budget"] = float(self._skipped)
        return out

    @property
    def disabled(self) -> dict[str, str]:
        """Readings that switched themselves off, and why."""
        return dict(self._disabled)

    def flush(self) -> None:
        """Write everything recorded so far and wait until it is in the store."""
        if self._closed:
            return
        try:
            self._flush()
            if self._writer is not None:
                self._writer.flush()
        except Exception as exc:
            self._break(exc)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._fast = False
        try:
            atexit.unregister(self._atexit)
        except Exception:
            pass
        try:
            if self._acts is not None:
                self._acts.close()
            if self._params is not None:
                self._params.drop_snapshot()
            if not self._broken:
                self._flush()
            if self._hardware is not None:
                self._hardware.close()
        except Exception as exc:
            self._warn(f"closing failed: {exc!r}")
        if self._writer is not None:
            self._writer.meta(
                {
                    "finished": time.time(),
                    "status": "failed" if self._broken else "closed",
                    "last_step": self._last_step,
                    "disabled_readings": self._disabled,
                }
            )
            self._writer.close()

    def __enter__(self) -> "Probe":
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()

    # ------------------------------------------------------------------ one step

    def _on_grid(self, step: int) -> bool:
        return step % self.every == 0

    def _is_sampled(self, step: int) -> bool:
        """Whether step number `step` is (or was) a sampled one: the plan for the next step, the grid
        and the budget for any other."""
        if step == self._next_step:
            return self._planned
        return self._on_grid(step) and self._affordable()

    def _affordable(self) -> bool:
        return self.max_overhead is None or self._sample_cost is None or self._credit >= self._sample_cost

    def _account(self, entered: float, sampled: bool) -> None:
        """Settle the budget for the step just taken and plan the next one (called last in a step)."""
        next_on_grid = self._on_grid(self._next_step)
        if self.max_overhead is None:
            self._planned = next_on_grid
            return
        left = time.perf_counter()
        hooks = self._acts.seconds if self._acts is not None else 0.0
        hook_delta, self._hook_seconds = hooks - self._hook_seconds, hooks
        spent = left - entered + hook_delta
        if self._last_exit is not None:  # training time since the last call, hooks excluded
            self._credit += self.max_overhead * max(entered - self._last_exit - hook_delta, 0.0)
        self._credit -= spent
        if sampled:
            self._sample_cost = spent
        if self._sample_cost is not None:  # no hoarding: credit beyond one sampled step is not kept
            self._credit = min(self._credit, self._sample_cost)
        self._last_exit = left
        self._planned = next_on_grid and self._affordable()
        if next_on_grid and not self._planned:
            self._skipped += 1
            if self._skipped == 1:
                self._event(self._next_step, "note", "sampling", (
                    f"sampled steps spaced out to keep the probe under {self.max_overhead:.0%} of the training time "
                    f"(a sampled step costs {1e3 * spent:.2f} ms here); Probe(max_overhead=None) reads every grid step"))

    def _step(self, step: int | None, named: dict[str, Any], wall: float) -> None:
        now = time.time()
        k = self._next_step if step is None else int(step)
        sampled = self._force_next or self._is_sampled(k)
        self._force_next = False
        step_time, data_time = named.pop("step_time", None), named.pop("data_time", None)
        codebook_size = named.pop("codebook_size", None)
        scaler = named.pop("scaler", None)
        if scaler is not None:
            self._read_scaler(k, now, scaler, sampled)
        if codebook_size is not None and f"codebook_size={codebook_size}" not in self._notes:
            self._notes.add(f"codebook_size={codebook_size}")
            self._write_meta({"codebook_size": int(codebook_size)})
        if self._staged_scalars:
            named = {**self._staged_scalars, **named}
            self._staged_scalars = {}

        # The optimizer has stepped since the last sampled step's snapshot: read that update first.
        if self._params is not None and self._params.has_snapshot():
            params = self._params
            result = self._timed("updates", lambda: self._guarded("updates", lambda: params.update_readings(sampled)))
            if result is not None:
                snap_step, readings = result
                self._queue_readings(snap_step, now, readings)

        scalars, tensors = self._split(named)
        if self.rank == 0:
            self._timed("scalars", lambda: self._record_scalars(k, now, scalars))
            self._guarded("time", lambda: self._record_time(k, now, wall, sampled, step_time, data_time))

        self._steps += 1
        if sampled:
            self._sampled_steps += 1
            self._last_sampled = k
            sources = dict(self._staged)
            self._staged = {}
            with _plain_math():  # only sampled steps pay for entering it
                sources.update(self._tensor_sources(tensors, codebook_size))
                self._read_sampled(k, now, sources, model_readings=True)
        else:
            self._staged = {}
            if self._acts is not None and self._acts.armed:
                self._acts.take()  # armed for a step that turned out not to be sampled

        self._last_step = k
        self._next_step = k + 1
        self._maybe_flush()
        self._account(wall, sampled)
        if self._acts is not None:
            self._acts.set_armed(self.will_sample)
        self._fast = not (self._staged or self._staged_scalars or (self._params is not None and self._params.has_snapshot()))

    def _fast_step(self, named: dict[str, Any]) -> bool:
        """An unsampled step whose arguments are plain scalars: queue them and return (a few µs).

        Only possible when nothing is staged, no update is due and the next step is not forced
        (`_fast`). Returns False, having changed nothing, for anything else: step() then takes the
        full path. Kept short: it runs between a backward pass and an optimizer step, on cold caches.
        """
        entered = time.perf_counter() if self.max_overhead is not None else 0.0
        k = self._next_step
        if self._writer is not None:
            now = time.time()
            pending = self._pending
            start = len(pending)
            for name, value in named.items():
                cls = type(value)
                if cls is float or cls is int:
                    pending.append((k, name, value, now))
                elif isinstance(value, Tensor) and name not in _CONTROL:
                    if value.numel() == 1:
                        # A CPU number is read now; a device one is kept until the flush (no sync).
                        pending.append((k, name, value.item() if value.is_cpu else value.detach(), now))
                    # other tensors are only read on sampled steps
                elif name in _CONTROL or not (value is None or isinstance(value, (tuple, list)) or _is_scalar(value)):
                    if name != "scaler" or not self._amp["grad_scaler"]:  # step/data times, codebook: full path
                        del pending[start:]
                        return False
                elif _is_scalar(value):
                    pending.append((k, name, float(value), now))
                # None, and lists of tensors (read on sampled steps only), are skipped
        elif "codebook_size" in named or "scaler" in named:
            return False
        self._interval_calls += 1
        self._steps += 1
        self._last_step = k
        self._next_step = k = k + 1
        if self.max_overhead is None:
            self._planned = k % self.every == 0
        else:
            self._account(entered, False)
        if self._planned and self._acts is not None:
            self._acts.set_armed(True)
        if len(self._pending) >= _MAX_PENDING or time.monotonic() - self._last_flush >= self.flush_seconds:
            self._flush()
        return True

    def _read_sampled(self, k: int, now: float, sources: dict[str, _Source], model_readings: bool) -> None:
        if model_readings and self._acts is not None:
            fired = self._acts.calls
            captured = self._acts.take()
            if self._acts.autocast_dtype and not self._amp["autocast_dtype"]:
                self._note_amp(autocast_dtype=self._acts.autocast_dtype)
            for layer, stats in captured.items():
                sources[f"act/{layer}"] = ("activation", f"act/{layer}", stats)
            if not fired and self._acts.armed and self._acts.layers and "no_activations" not in self._notes:
                self._notes.add("no_activations")
                self._event(k, "note", "activations", "activation hooks saw no training forward pass since the "
                            "last step (a model compiled before the probe was attached, or a forward without grad)")
        self._finalize(k, now, sources)
        # FSDP2 shards: every rank reads its part and the sums meet in a collective (rank 0 writes).
        if model_readings and (self.rank == 0 or (self._params is not None and self._params.sharded)):
            self._model_readings(k, now)

    def _model_readings(self, k: int, now: float) -> None:
        params = self._params
        grad_norms = None
        if params is not None:
            params.refresh()
        if params is not None and self._gradients:
            result = self._timed("gradients", lambda: self._guarded("gradients", params.gradient_readings))
            if result is not None:
                readings, grad_norms = result
                self._queue_readings(k, now, readings)
        if params is not None and self._weights:
            readings = self._timed("weights", lambda: self._guarded("weights", params.weight_readings))
            if readings:
                self._queue_readings(k, now, readings)
            if "updates" not in self._disabled:
                self._timed("updates", lambda: self._guarded("updates", lambda: params.take_snapshot(k, grad_norms)))
        if self._hardware is not None:
            device = self._device()
            readings = self._timed("hardware", lambda: self._guarded("hardware", lambda: self._hardware.read(device)))
            if readings:
                self._queue_readings(k, now, readings)
            if self._hardware.note and "hardware_note" not in self._notes:
                self._notes.add("hardware_note")
                self._event(k, "note", "hardware", self._hardware.note)

    # ------------------------------------------------------------------ inputs

    def _split(self, named: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
        scalars, tensors = {}, {}
        for name, value in named.items():
            if value is None:
                continue
            if isinstance(value, np.ndarray):
                value = torch.from_numpy(value)
            if _is_scalar(value):
                scalars[name] = value
            elif isinstance(value, Tensor) or (
                isinstance(value, (tuple, list)) and value and all(isinstance(v, Tensor) for v in value)
            ):
                tensors[name] = value
            elif f"input/{name}" not in self._disabled:
                self._disable(f"input/{name}", TypeError(f"cannot read a {type(value).__name__}"), self._next_step)
        return scalars, tensors

    def _record_scalars(self, k: int, now: float, scalars: dict[str, Any]) -> None:
        if self.rank != 0:
            return
        for name, value in scalars.items():
            if isinstance(value, Tensor):
                if value.device.type == "cpu":
                    value = value.detach().item()
                else:  # stays on the device until the next flush, which reads all of them at once
                    value = value.detach()
            else:
                value = float(value)
            self._pending.append((k, name, value, now))

    def _read_scaler(self, k: int, now: float, scaler: Any, sampled: bool) -> None:
        """A torch.amp.GradScaler: its scale on sampled steps (a falling scale means overflowing steps)."""
        if not self._amp["grad_scaler"]:
            self._note_amp(grad_scaler=True)
        if not sampled or self.rank != 0 or "amp" in self._disabled:
            return
        scale = getattr(scaler, "_scale", None)  # the device tensor: read at the next flush, no sync now
        if isinstance(scale, Tensor):
            value: Any = scale.detach().reshape(())
        elif getattr(scaler, "is_enabled", lambda: True)():
            value = self._guarded("amp", lambda: float(scaler.get_scale()))
        else:
            return
        if value is not None:
            self._pending.append((k, rn.AMP_LOSS_SCALE, value, now))

    def _record_time(self, k: int, now: float, wall: float, sampled: bool, step_time, data_time) -> None:
        self._interval_calls += 1
        if step_time is not None:
            self._user_step_time[0] += float(step_time)
            self._user_step_time[1] += 1
        if data_time is not None:
            self._user_data_time[0] += float(data_time)
            self._user_data_time[1] += 1
        if not sampled:
            return
        user_total, user_n = self._user_step_time
        if user_n:
            per_step, total = user_total / user_n, user_total
        elif self._interval_start is not None:
            # Wall time from the previous sampled call to this one spans the calls counted since.
            total = wall - self._interval_start
            per_step = total / self._interval_calls
        else:
            per_step = total = math.nan
        if not math.isnan(per_step):
            self._pending.append((k, rn.TIME_STEP_S, per_step, now))
        data_total, data_n = self._user_data_time
        if data_n and total and not math.isnan(total):
            self._pending.append((k, rn.TIME_DATA_WAIT_SHARE, min(data_total / total, 1.0), now))
        self._interval_start = wall
        self._interval_calls = 0
        self._user_step_time = [0.0, 0]
        self._user_data_time = [0.0, 0]

    def _tensor_sources(
        self, tensors: dict[str, Any], codebook_size: int | None, mergeable: bool = False
    ) -> dict[str, _Source]:
        """Statistics of every tensor argument, keyed by source (what a failure disables).

        mergeable: statistics that must add up (across ranks, or across observe() calls).
        """
        additive = self.world_size > 1 or mergeable
        targets = next((tensors[n] for n in _TARGET_NAMES if n in tensors and isinstance(tensors[n], Tensor)), None)
        sources: dict[str, _Source] = {}

        families: dict[str, str] = {}

        def add(key: str, family: str, prefix: str, *args: Any) -> None:
            if family != _NONFINITE_FAMILY:
                families[name] = family
            stats_of = _FAMILIES[family][0]
            stats = self._timed(family, lambda: self._guarded(key, lambda: stats_of(*args)))
            if stats is not None:
                sources[key] = (family, prefix, stats)

        for name, value in tensors.items():
            parts = list(value) if isinstance(value, (tuple, list)) else [value]
            if any(p.is_floating_point() for p in parts):
                add(f"nonfinite/{name}", _NONFINITE_FAMILY, f"nonfinite/{name}", *parts)
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
            if name in self.embedding_names:
                add(name, "representation", name, x, additive)
            elif name == "logits":
                add("logits", "logits", "logits", x, targets)
            elif name in _TARGET_NAMES and "logits" in tensors:
                families[name] = "targets"
                continue
            elif name == "codes":
                add("codes", "codes", "codes", x, codebook_size or self.codebook_size)
            elif name == "attention":
                add("attention", "attention", "attention", x)
            else:
                add(name, "tensor", name, x)
        if self._writer is not None:
            self._note_tensors(families)
        return sources

    # ------------------------------------------------------------------ statistics -> readings -> store

    def _finalize(self, k: int, now: float, sources: dict[str, _Source]) -> None:
        if self.world_size > 1:
            started = time.perf_counter()
            flat = {f"{key}|{stat}": t for key, (_, _, stats) in sources.items() for stat, t in stats.items()}
            reduced, dropped = reduce_stats(flat)
            self._cost("distributed", time.perf_counter() - started)
            regrouped: dict[str, _Source] = {}
            for flat_key, value in reduced.items():
                key, _, stat = flat_key.rpartition("|")
                family, prefix, _ = sources.get(key) or self._source_shape(key)
                regrouped.setdefault(key, (family, prefix, {}))[2][stat] = value
            if self.rank == 0:
                for key in {d.rpartition("|")[0] for d in dropped}:
                    if key not in regrouped and f"dist/{key}" not in self._notes:
                        self._notes.add(f"dist/{key}")
                        self._event(k, "note", key, "not reduced across ranks: the ranks disagree on its shape")
            sources = regrouped
        if self.rank != 0:
            return
        for key, (family, prefix, stats) in sources.items():
            read = _FAMILIES[family][1]
            readings = self._timed(family, lambda: self._guarded(key, lambda: read(stats)))
            if readings:
                self._queue_readings(k, now, {(f"{prefix}/{s}" if s else prefix): v for s, v in readings.items()})

    def _source_shape(self, key: str) -> _Source:
        # Another rank had a source this one lacks: rebuild its family and prefix from the key.
        if key.startswith("act/"):
            return ("activation", key, {})
        if key.startswith("nonfinite/"):
            return (_NONFINITE_FAMILY, key, {})
        family = {"views": "views", "logits": "logits", "codes": "codes", "attention": "attention"}.get(key)
        if family is None:
            family = "representation" if key in self.embedding_names else "tensor"
        return (family, key, {})

    def _queue_readings(self, k: int, now: float, readings: dict[str, Any]) -> None:
        for name, value in readings.items():
            self._pending.append((k, name, value, now))

    def _maybe_flush(self) -> None:
        # Batches, not steps: one host transfer and one transaction per batch keeps every=1 cheap.
        if len(self._pending) >= _MAX_PENDING or time.monotonic() - self._last_flush >= self.flush_seconds:
            self._flush()

    def _flush(self) -> None:
        """Turn queued values into rows (one device-to-host copy per device) and hand them to the writer.

        A queued name may be a tuple of names with a 1-D tensor of one value per name.
        """
        self._last_flush = time.monotonic()
        pending, self._pending = self._pending, []
        if not pending or self._writer is None:
            return
        started = time.perf_counter()
        tensor_at: list[int] = []
        for i, row in enumerate(pending):
            kind = type(row[2])
            if kind is not float and kind is not int:
                if isinstance(row[2], Tensor):
                    tensor_at.append(i)
                else:  # numpy and other numbers: plain floats for SQLite
                    pending[i] = (row[0], row[1], float(row[2]), row[3])
        rows = pending
        if tensor_at:
            by_device: dict[torch.device, list[int]] = {}
            for i in tensor_at:
                by_device.setdefault(pending[i][2].device, []).append(i)
            host: dict[int, list[float]] = {}
            for indices in by_device.values():
                # cat() promotes mixed dtypes; one copy to the host per device.
                flat = torch.cat([pending[i][2].reshape(-1) for i in indices]).double().cpu().tolist()
                offset = 0
                for i in indices:
                    size = pending[i][2].numel()
                    host[i] = flat[offset : offset + size]
                    offset += size
            rows = []
            for i, (k, name, value, t) in enumerate(pending):
                values = host.get(i)
                if values is None:
                    rows.append((k, name, value, t))
                elif isinstance(name, tuple):
                    rows.extend((k, n, v, t) for n, v in zip(name, values))
                else:
                    rows.append((k, name, values[0], t))
        self._cost("transfer", time.perf_counter() - started)
        self._writer.readings(rows)

    # ------------------------------------------------------------------ failure handling and bookkeeping

    def _guarded(self, key: str, fn: Callable[[], Any]) -> Any:
        """fn(), or None once it has failed: a failing reading disables itself and training goes on."""
        if key in self._disabled:
            return None
        try:
            return fn()
        except Exception as exc:
            self._disable(key, exc, self._next_step)
            return None


    def _disable(self, key: str, exc: BaseException, step: int) -> None:
        if key in self._disabled:
            return
        message = f"{type(exc).__name__}: {exc}"
        self._disabled[key] = message
        self._warn(f"reading '{key}' disabled after an error ({message}); training goes on")
        detail = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__, limit=-3))
        self._event(step, "reading_disabled", key, f"{message}\n{detail}")

    def _disable_from_hook(self, key: str, exc: BaseException) -> None:
        self._disable(key, exc, self._next_step)

    def _break(self, exc: BaseException) -> None:
        """An error in the probe's own machinery: stop probing, keep training."""
        self._broken = True
        self._fast = False
        message = f"{type(exc).__name__}: {exc}"
        self._warn(f"probe stopped after an internal error ({message}); training goes on")
        self._event(self._next_step, "probe_disabled", "probe", "".join(traceback.format_exception(exc)))
        try:
            if self._acts is not None:
                self._acts.close()
            if self._params is not None:
                self._params.drop_snapshot()
            self._pending = [p for p in self._pending if not isinstance(p[2], Tensor)]
            self._flush()
        except Exception:
            pass

    def _keep_collectives(self, sampled: bool) -> None:
        """A broken probe on one rank still joins the other ranks' reductions, with nothing to add,
        so that they do not wait for it forever."""
        if sampled and self.world_size > 1:
            try:
                reduce_stats({})
            except Exception:
                pass

    def _warn(self, message: str) -> None:
        if self.rank == 0:
            warnings.warn(f"advisor.probe: {message}", RuntimeWarning, stacklevel=4)

    def _event(self, step: int, kind: str, name: str, message: str) -> None:
        if self._writer is not None:
            self._writer.event(int(step), time.time(), kind, name, message)

    def _cost(self, family: str, seconds: float) -> None:
        self._costs[family] = self._costs.get(family, 0.0) + seconds

    def _timed(self, family: str, fn: Callable[[], Any]) -> Any:
        started = time.perf_counter()
        try:
            return fn()
        finally:
            self._cost(family, time.perf_counter() - started)

    def _device(self) -> torch.device | None:
        if self._root is None:
            return None
        p = first_parameter(self._root)
        return p.device if p is not None else None

    def _write_meta(self, meta: dict[str, Any]) -> None:
        if self._writer is not None:
            self._writer.meta(meta)

    def _distributed_meta(self) -> dict[str, Any]:
        backend = None
        if self.world_size > 1:
            import torch.distributed as dist

            backend = str(dist.get_backend())
        return {"world_size": self.world_size, "backend": backend, "wrapper": self._wrapper}

    def _note_amp(self, autocast_dtype: str | None = None, grad_scaler: bool = False) -> None:
        """Record mixed precision once it is seen (autocast in a forward pass, a GradScaler passed to step)."""
        amp = dict(self._amp)
        if autocast_dtype and not amp["autocast_dtype"]:
            amp["autocast_dtype"] = autocast_dtype
        if grad_scaler:
            amp["grad_scaler"] = True
        if amp != self._amp:
            self._amp = amp
            self._write_meta({rn.META_AMP: amp})

    def _note_tensors(self, families: dict[str, str]) -> None:
        """Record which tensors the run passes and how they were read (embeddings, views, codes...)."""
        if any(self._tensor_families.get(n) != f for n, f in families.items()):
            self._tensor_families.update(families)
            self._write_meta({rn.META_TENSORS: dict(self._tensor_families)})

    def _start_meta(self, compiled: bool, extra: dict[str, Any] | None) -> dict[str, Any]:
        p = first_parameter(self._root) if self._root is not None else None
        meta: dict[str, Any] = {
            "source": "advisor.probe",
            "status": "running",
            "started": time.time(),
            "every": self.every,
            "max_overhead": self.max_overhead,
            "first_step": self._next_step,
            "torch_version": torch.__version__,
            "python_version": platform.python_version(),
            "hostname": socket.gethostname(),
            "device": str(p.device) if p is not None else None,
            "dtype": str(p.dtype).replace("torch.", "") if p is not None else None,
            "cuda_device_name": torch.cuda.get_device_name(p.device)
            if p is not None and p.device.type == "cuda"
            else None,
            "world_size": self.world_size,
            "compiled": compiled,
            "embedding_names": list(self.embedding_names),
            "codebook_size": self.codebook_size,
            "model": model_summary(self.model) if self.model is not None else None,
            "activation_layers": [name for name, *_ in self._acts.layers] if self._acts is not None else [],
            rn.META_ACTIVATION_KINDS: {name: kind for name, _, kind, _ in self._acts.layers} if self._acts is not None else {},
            rn.META_MODULES: module_inventory(self.model) if self.model is not None else None,
            rn.META_DISTRIBUTED: self._distributed_meta(),
            rn.META_AMP: {"autocast_dtype": None, "grad_scaler": False},
            rn.META_TENSORS: {},
        }
        meta.update(extra or {})
        return meta
