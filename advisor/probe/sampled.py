"""What a sampled step reads, once the probe has decided to read it: statistics of the tensors passed
and of the activations the hooks caught, reduced over the ranks and turned into readings; the model's
gradients, weights and updates; the hardware. Every reading goes through the guard (a failure disables
that reading alone) and into the reading queue."""

from __future__ import annotations

import contextlib
from typing import Any, Iterator

import torch

from advisor.probe import arguments
from advisor.probe.arguments import Source
from advisor.probe.distributed import reduce_sources
from advisor.probe.guard import Guard
from advisor.probe.hardware import HardwareReader
from advisor.probe.hooks import ActivationRecorder
from advisor.probe.modules import first_parameter
from advisor.probe.parameters import ParameterReader
from advisor.probe.profile import RunProfile
from advisor.probe.writer import ReadingQueue

# Families with their own default cadence (Probe's representation_every): D x D covariance pieces and
# two eigen-decompositions per step cost more than every other reading of a small model together.
REPRESENTATION_FAMILIES = frozenset({"representation", "views"})


@contextlib.contextmanager
def plain_math() -> Iterator[None]:
    """No autograd, no autocast: step() may be called inside an autocast region, the maths stays float32/64."""
    with torch.no_grad(), torch.autocast("cpu", enabled=False):
        if torch.cuda.is_available():
            with torch.autocast("cuda", enabled=False):
                yield
        else:
            yield


class SampledReader:
    def __init__(
        self,
        guard: Guard,
        queue: ReadingQueue,
        profile: RunProfile,
        *,
        params: ParameterReader | None,
        acts: ActivationRecorder | None,
        hardware: HardwareReader | None,
        gradients: bool,
        weights: bool,
        root: torch.nn.Module | None,
        embedding_names: tuple[str, ...],
        codebook_size: int | None,
        rank: int,
        world_size: int,
    ) -> None:
        self.guard, self.queue, self.profile = guard, queue, profile
        self.params, self.acts, self.hardware = params, acts, hardware
        self.gradients, self.weights = gradients, weights
        self.root = root
        self.embedding_names = embedding_names
        self.codebook_size = codebook_size
        self.rank, self.world_size = rank, world_size

    def _read(self, family: str, key: str, fn: Any) -> Any:
        return self.guard.timed(family, lambda: self.guard.guarded(key, fn))

    def tensor_sources(
        self, tensors: dict[str, Any], codebook_size: int | None, mergeable: bool = False, representations: bool = True
    ) -> dict[str, Source]:
        """Statistics of every tensor argument, keyed by source (what a failure disables).

        mergeable: statistics that must add up (across ranks, or across observe() calls).
        representations: read the representation families too (Probe's representation_every cadence).
        """
        additive = self.world_size > 1 or mergeable
        planned, families = arguments.plan_sources(tensors, self.embedding_names, codebook_size or self.codebook_size, additive)
        sources: dict[str, Source] = {}
        for key, family, prefix, args in planned:
            if not representations and family in REPRESENTATION_FAMILIES:
                continue
            stats_of = arguments.FAMILIES[family][0]
            stats = self._read(family, key, lambda: stats_of(*args))
            if stats is not None:
                sources[key] = (family, prefix, stats)
        self.profile.note_tensors(families)
        return sources

    def update(self, sampled: bool, now: float) -> None:
        """The optimizer has stepped since the last sampled step's snapshot: read that update."""
        params = self.params
        result = self._read("updates", "updates", lambda: params.update_readings(sampled))
        if result is not None:
            snap_step, readings = result
            self.queue.add(snap_step, now, readings)

    def read(self, k: int, now: float, sources: dict[str, Source], model_readings: bool) -> None:
        acts = self.acts
        if model_readings and acts is not None:
            fired = acts.calls
            captured = acts.take()
            if acts.autocast_dtype and not self.profile.amp["autocast_dtype"]:
                self.profile.note_amp(autocast_dtype=acts.autocast_dtype)
            for layer, stats in captured.items():
                sources[f"act/{layer}"] = ("activation", f"act/{layer}", stats)
            if not fired and acts.armed and acts.layers:
                self.guard.note_once("no_activations", k, "activations", "activation hooks saw no training forward pass since the "
                                     "last step (a model compiled before the probe was attached, or a forward without grad)")
        self.finalize(k, now, sources)
        # FSDP2 shards: every rank reads its part and the sums meet in a collective (rank 0 writes).
        if model_readings and (self.rank == 0 or (self.params is not None and self.params.sharded)):
            self.model_readings(k, now)

    def finalize(self, k: int, now: float, sources: dict[str, Source]) -> None:
        """Statistics -> readings -> queue (reduced over the ranks first; rank 0 writes)."""
        if self.world_size > 1:
            regrouped, dropped = self.guard.timed("distributed", lambda: reduce_sources(sources, self.embedding_names))
            if self.rank == 0:
                for key in dropped:
                    if key not in regrouped:
                        self.guard.note_once(f"dist/{key}", k, key, "not reduced across ranks: the ranks disagree on its shape")
            sources = regrouped
        if self.rank != 0:
            return
        for key, (family, prefix, stats) in sources.items():
            read = arguments.FAMILIES[family][1]
            readings = self._read(family, key, lambda: read(stats))
            if readings:
                self.queue.add(k, now, {(f"{prefix}/{s}" if s else prefix): v for s, v in readings.items()})

    def model_readings(self, k: int, now: float) -> None:
        params = self.params
        grad_norms = None
        if params is not None:
            params.refresh()
        if params is not None and self.gradients:
            result = self._read("gradients", "gradients", params.gradient_readings)
            if result is not None:
                readings, grad_norms = result
                self.queue.add(k, now, readings)
        if params is not None and self.weights:
            readings = self._read("weights", "weights", params.weight_readings)
            if readings:
                self.queue.add(k, now, readings)
            if "updates" not in self.guard.disabled:
                self._read("updates", "updates", lambda: params.take_snapshot(k, grad_norms))
        if self.hardware is not None:
            hardware, device = self.hardware, self._device()
            readings = self._read("hardware", "hardware", lambda: hardware.read(device))
            if readings:
                self.queue.add(k, now, readings)
            if hardware.note:
                self.guard.note_once("hardware_note", k, "hardware", hardware.note)

    def _device(self) -> torch.device | None:
        if self.root is None:
            return None
        p = first_parameter(self.root)
        return p.device if p is not None else None
