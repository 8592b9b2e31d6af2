"""What keeps the probe from ever stopping training, and what it says about itself.

A reading that fails disables itself and says so once (a warning and an event in the store); the
seconds each reading family costs are kept for Probe.costs(); one-time notes go in the events.
"""

from __future__ import annotations

import time
import traceback
import warnings
from typing import Any, Callable

from advisor.probe.writer import StoreWriter


class Guard:
    def __init__(self, writer: StoreWriter | None, rank: int, current_step: Callable[[], int]) -> None:
        self.writer = writer
        self.rank = rank
        self.current_step = current_step  # the step a failure is recorded at
        self.disabled: dict[str, str] = {}  # reading key -> why it switched itself off
        self.costs: dict[str, float] = {}  # family -> seconds
        self._notes: set[str] = set()  # one-time notes already written

    def guarded(self, key: str, fn: Callable[[], Any]) -> Any:
        """fn(), or None once it has failed: a failing reading disables itself and training goes on."""
        if key in self.disabled:
            return None
        try:
            return fn()
        except Exception as exc:
            self.disable(key, exc)
            return None

    def disable(self, key: str, exc: BaseException) -> None:
        if key in self.disabled:
            return
        message = f"{type(exc).__name__}: {exc}"
        self.disabled[key] = message
        self.warn(f"reading '{key}' disabled after an error ({message}); training goes on")
        detail = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__, limit=-3))
        self.event(self.current_step(), "reading_disabled", key, f"{message}\n{detail}")

    def warn(self, message: str) -> None:
        if self.rank == 0:
            warnings.warn(f"advisor.probe: {message}", RuntimeWarning, stacklevel=4)

    def event(self, step: int, kind: str, name: str, message: str) -> None:
        if self.writer is not None:
            self.writer.event(int(step), time.time(), kind, name, message)

    def first(self, key: str) -> bool:
        """True the first time `key` is seen: for what is said or recorded once per run."""
        if key in self._notes:
            return False
        self._notes.add(key)
        return True

    def note_once(self, key: str, step: int, name: str, message: str) -> None:
        if self.first(key):
            self.event(step, "note", name, message)

    def cost(self, family: str, seconds: float) -> None:
        self.costs[family] = self.costs.get(family, 0.0) + seconds

    def timed(self, family: str, fn: Callable[[], Any]) -> Any:
        started = time.perf_counter()
        try:
            return fn()
        finally:
            self.cost(family, time.perf_counter() - started)
