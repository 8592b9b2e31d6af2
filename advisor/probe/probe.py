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
import functools
import math
import time
import traceback
import weakref
from pathlib import Path
from typing import Any, Iterable

from torch import Tensor, nn

from advisor import reading_names as rn
from advisor.probe import arguments, metrics
from advisor.probe.arguments import CONTROL, Source, is_scalar
from advisor.probe.distributed import rank_and_world, reduce_stats
from advisor.probe.guard import Guard
from advisor.probe.hardware import HardwareReader
from advisor.probe.hooks import ActivationRecorder
from advisor.probe.modules import is_compiled, unwrap, wrapper_kind
from advisor.probe.parameters import ParameterReader
from advisor.probe.profile import RunProfile, start_meta
from advisor.probe.sampled import SampledReader, plain_math
from advisor.probe.timing import OverheadBudget, StepTimes
from advisor.probe.writer import MAX_PENDING, ReadingQueue, StoreWriter


# Default cadence of the representation readings, in steps (see Probe's representation_every).
# 5 keeps runs sampled every 5 steps or less often exactly as they were.
REPRESENTATION_EVERY = 5


def _close_at_exit(ref: "weakref.ref[Probe]") -> None:
    probe = ref()
    if probe is not None:
        probe.close()


class Probe:
    """Reads a training run while it happens and writes the readings to a run store.

    Arguments:
        model: the model being trained (plain, torch.compile'd or DDP-wrapped), or None for
            readings from probe.step() arguments only.
        run: the run directory; the store is `run/run.db` (advisor.runstore).
        every: sample every `every`-th step for the expensive readings; scalars go in every step.
        representation_every: steps between representation readings of `embeddings`/`views` (D x D
            covariance pieces and two eigen-decompositions: the costliest family on a small model, a
            third of a sampled step on the benchmark MLP), rounded up to a multiple of `every`. Default
            max(every, REPRESENTATION_EVERY = 5): every sampled step when every >= 5; with every=1 all
            other readings still come every step and these every 5th. representation_every=1 reads
            them on every sampled step; forced samples (sample_next()) read them; the value is in the meta.
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
        representation_every: int | None = None,
    ) -> None:
        if every < 1:
            raise ValueError("every must be >= 1")
        if max_overhead is not None and not max_overhead > 0:
            raise ValueError("max_overhead must be > 0 (or None)")
        self.every = int(every)
        if representation_every is not None and representation_every < 1:
            raise ValueError("representation_every must be >= 1 (or None)")
        wanted = REPRESENTATION_EVERY if representation_every is None else int(representation_every)
        self.representation_every = self.every * math.ceil(wanted / self.every)
        self._last_representations: int | None = None  # the last step whose representations were read
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
        self._staged: dict[str, Source] = {}
        self._staged_scalars: dict[str, Any] = {}
        self._steps = 0
        self._sampled_steps = 0
        self._times = StepTimes()
        self._writer = StoreWriter(self.run) if self.rank == 0 else None
        self._guard = Guard(self._writer, self.rank, lambda: self._next_step)
        self._profile = RunProfile(self._writer)
        self._queue = ReadingQueue(self._writer, flush_seconds, self._guard.cost)
        compiled = model is not None and is_compiled(model)
        self._params = ParameterReader(model) if model is not None and (gradients or weights) else None
        self._acts = (
            ActivationRecorder(model, self._guard.disable, activation_layers, permanent=compiled)
            if model is not None and activations
            else None
        )
        self._hardware = HardwareReader() if hardware and self.rank == 0 else None
        self._reader = SampledReader(
            self._guard, self._queue, self._profile, params=self._params, acts=self._acts, hardware=self._hardware,
            gradients=gradients, weights=weights, root=self._root, embedding_names=self.embedding_names,
            codebook_size=codebook_size, rank=self.rank, world_size=self.world_size)
        # The cost budget (max_overhead): credit earned by training time, spent by the probe's own.
        self.max_overhead = max_overhead if self.world_size == 1 else None
        self._budget = OverheadBudget(self.max_overhead) if self.max_overhead is not None else None
        self._skipped = 0  # grid steps skipped to stay within the budget
        self._planned = self._on_grid(self._next_step)  # whether step number _next_step is sampled
        if self._acts is not None:
            self._acts.set_armed(self._planned)
        # Whether the next unsampled step may take the short path (nothing staged, no update to read).
        self._fast = True
        layers = self._acts.layers if self._acts is not None else None
        self._profile.write({**start_meta(
            model, self._root, layers, every=self.every, max_overhead=self.max_overhead, first_step=self._next_step,
            world_size=self.world_size, wrapper=wrapper_kind(model) if model is not None else None, compiled=compiled,
            embedding_names=self.embedding_names, codebook_size=self.codebook_size),
            "representation_every": self.representation_every, **(meta or {})})
        if self._budget is not None:
            self._budget.last_exit = time.perf_counter()  # the first step's forward and backward earn credit too
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
            named = {n: v for n, v in named.items() if n not in CONTROL}
            scalars, tensors = self._split(named)
            self._record_scalars(k, now, scalars)
            if tensors and (self._is_sampled(k) or k == self._last_sampled):
                with plain_math():
                    representations = k % self.representation_every == 0 or k == self._last_representations
                    sources = self._reader.tensor_sources(tensors, None, representations=representations)
                    self._reader.read(k, now, sources, model_readings=False)
            self._queue.maybe_flush()
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
            named = {n: v for n, v in named.items() if n not in CONTROL}
            scalars, tensors = self._split(named)
            self._staged_scalars.update(scalars)
            self._fast = False
            if tensors and self.will_sample:
                with plain_math():
                    representations = self._force_next or self._next_step % self.representation_every == 0
                    sources = self._reader.tensor_sources(tensors, None, mergeable=True, representations=representations)
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
        out = dict(self._guard.costs)
        if self._acts is not None:  # time inside the forward hooks belongs to the activation family
            out["activation"] = out.get("activation", 0.0) + self._acts.seconds
        out["steps"] = float(self._steps)
        out["sampled_steps"] = float(self._sampled_steps)
        out["skipped_for_budget"] = float(self._skipped)
        return out

    @property
    def disabled(self) -> dict[str, str]:
        """Readings that switched themselves off, and why."""
        return dict(self._guard.disabled)

    def flush(self) -> None:
        """Write everything recorded so far and wait until it is in the store."""
        if self._closed:
            return
        try:
            self._queue.flush()
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
                self._queue.flush()
            if self._hardware is not None:
                self._hardware.close()
        except Exception as exc:
            self._guard.warn(f"closing failed: {exc!r}")
        if self._writer is not None:
            self._writer.meta(
                {
                    "finished": time.time(),
                    "status": "failed" if self._broken else "closed",
                    "last_step": self._last_step,
                    "disabled_readings": self._guard.disabled,
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
        return self._budget is None or self._budget.affordable()

    def _account(self, entered: float, sampled: bool) -> None:
        """Settle the budget for the step just taken and plan the next one (called last in a step)."""
        next_on_grid = self._on_grid(self._next_step)
        if self._budget is None:
            self._planned = next_on_grid
            return
        spent = self._budget.settle(entered, sampled, self._acts.seconds if self._acts is not None else 0.0)
        self._planned = next_on_grid and self._budget.affordable()
        if next_on_grid and not self._planned:
            self._skipped += 1
            if self._skipped == 1:
                self._guard.event(self._next_step, "note", "sampling", (
                    f"sampled steps spaced out to keep the probe under {self.max_overhead:.0%} of the training time "
                    f"(a sampled step costs {1e3 * spent:.2f} ms here); Probe(max_overhead=None) reads every grid step"))

    def _step(self, step: int | None, named: dict[str, Any], wall: float) -> None:
        now = time.time()
        k = self._next_step if step is None else int(step)
        forced = self._force_next
        sampled = forced or self._is_sampled(k)
        self._force_next = False
        step_time, data_time = named.pop("step_time", None), named.pop("data_time", None)
        codebook_size = named.pop("codebook_size", None)
        scaler = named.pop("scaler", None)
        if scaler is not None:
            self._read_scaler(k, now, scaler, sampled)
        if codebook_size is not None and self._guard.first(f"codebook_size={codebook_size}"):
            self._profile.write({"codebook_size": int(codebook_size)})
        if self._staged_scalars:
            named = {**self._staged_scalars, **named}
            self._staged_scalars = {}

        # The optimizer has stepped since the last sampled step's snapshot: read that update first.
        if self._params is not None and self._params.has_snapshot():
            self._reader.update(sampled, now)

        scalars, tensors = self._split(named)
        if self.rank == 0:
            self._guard.timed("scalars", lambda: self._record_scalars(k, now, scalars))
            self._guard.guarded("time", lambda: self._queue.add(k, now, self._times.readings(wall, sampled, step_time, data_time)))

        self._steps += 1
        if sampled:
            self._sampled_steps += 1
            self._last_sampled = k
            sources = dict(self._staged)
            self._staged = {}
            representations = forced or k % self.representation_every == 0
            if representations:
                self._last_representations = k
            with plain_math():  # only sampled steps pay for entering it
                sources.update(self._reader.tensor_sources(tensors, codebook_size, representations=representations))
                self._reader.read(k, now, sources, model_readings=True)
        else:
            self._staged = {}
            if self._acts is not None and self._acts.armed:
                self._acts.take()  # armed for a step that turned out not to be sampled

        self._last_step = k
        self._next_step = k + 1
        self._queue.maybe_flush()
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
            pending = self._queue.rows
            start = len(pending)
            for name, value in named.items():
                cls = type(value)
                if cls is float or cls is int:
                    pending.append((k, name, value, now))
                elif isinstance(value, Tensor) and name not in CONTROL:
                    if value.numel() == 1:
                        # A CPU number is read now; a device one is kept until the flush (no sync).
                        pending.append((k, name, value.item() if value.is_cpu else value.detach(), now))
                    # other tensors are only read on sampled steps
                elif name in CONTROL or not (value is None or isinstance(value, (tuple, list)) or is_scalar(value)):
                    if name != "scaler" or not self._profile.amp["grad_scaler"]:  # step/data times, codebook: full path
                        del pending[start:]
                        return False
                elif is_scalar(value):
                    pending.append((k, name, float(value), now))
                # None, and lists of tensors (read on sampled steps only), are skipped
        elif "codebook_size" in named or "scaler" in named:
            return False
        self._times.calls += 1
        self._steps += 1
        self._last_step = k
        self._next_step = k = k + 1
        if self.max_overhead is None:
            self._planned = k % self.every == 0
        else:
            self._account(entered, False)
        if self._planned and self._acts is not None:
            self._acts.set_armed(True)
        queue = self._queue
        if len(queue.rows) >= MAX_PENDING or time.monotonic() - queue.last_flush >= queue.flush_seconds:
            queue.flush()
        return True

    # ------------------------------------------------------------------ inputs

    def _split(self, named: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
        scalars, tensors, unreadable = arguments.split(named)
        for name, kind in unreadable.items():
            self._guard.disable(f"input/{name}", TypeError(f"cannot read a {kind}"))
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
            self._queue.rows.append((k, name, value, now))

    def _read_scaler(self, k: int, now: float, scaler: Any, sampled: bool) -> None:
        """A torch.amp.GradScaler: its scale on sampled steps (a falling scale means overflowing steps)."""
        if not self._profile.amp["grad_scaler"]:
            self._profile.note_amp(grad_scaler=True)
        if not sampled or self.rank != 0 or "amp" in self._guard.disabled:
            return
        value = self._guard.guarded("amp", lambda: arguments.scaler_scale(scaler))
        if value is not None:
            self._queue.rows.append((k, rn.AMP_LOSS_SCALE, value, now))

    # ------------------------------------------------------------------ failure handling and bookkeeping

    def _break(self, exc: BaseException) -> None:
        """An error in the probe's own machinery: stop probing, keep training."""
        self._broken = True
        self._fast = False
        message = f"{type(exc).__name__}: {exc}"
        self._guard.warn(f"probe stopped after an internal error ({message}); training goes on")
        self._guard.event(self._next_step, "probe_disabled", "probe", "".join(traceback.format_exception(exc)))
        try:
            if self._acts is not None:
                self._acts.close()
            if self._params is not None:
                self._params.drop_snapshot()
            self._queue.drop_tensors()
            self._queue.flush()
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
