"""A background thread that owns the run store's connection and writes what the probe queues.

Training never waits on SQLite: the probe hands over rows and returns. Every transaction carries a
heartbeat, and an idle writer commits a bare one every runstore.HEARTBEAT_SECONDS, so readers can tell
a live run from one whose process is gone (runstore.run_state). Batches that queue up while
one is being written go into the next transaction together; every transaction is complete on disk
(WAL), so a reader can open the store at any time and a killed process loses only what was queued.
"""

from __future__ import annotations

import queue
import sqlite3
import threading
import time
import warnings
from pathlib import Path
from typing import Any, Callable

import torch
from torch import Tensor

from advisor import runstore

_STOP = object()
MAX_PENDING = 4096  # queued values that trigger a flush before flush_seconds is up


def host_rows(pending: list[tuple[int, Any, Any, float]]) -> list[tuple[int, str, float, float]]:
    """Queued (step, name, value, time) values as rows of plain numbers: one device-to-host copy per device.

    A queued name may be a tuple of names with a 1-D tensor of one value per name.
    """
    tensor_at: list[int] = []
    for i, row in enumerate(pending):
        kind = type(row[2])
        if kind is not float and kind is not int:
            if isinstance(row[2], Tensor):
                tensor_at.append(i)
            else:  # numpy and other numbers: plain floats for SQLite
                pending[i] = (row[0], row[1], float(row[2]), row[3])
    if not tensor_at:
        return pending
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
    return rows


class ReadingQueue:
    """Readings on their way to the store: (step, name, value, time) rows whose value may still be a
    device tensor. Handed to the writer in batches, not steps (every `flush_seconds` or MAX_PENDING
    values): one host transfer and one transaction per batch keeps every=1 cheap."""

    def __init__(self, writer: "StoreWriter | None", flush_seconds: float, cost: Callable[[str, float], None]) -> None:
        self.writer = writer
        self.flush_seconds = flush_seconds
        self.rows: list[tuple[int, Any, Any, float]] = []
        self.last_flush = time.monotonic()
        self._cost = cost

    def add(self, step: int, now: float, readings: dict[str, Any]) -> None:
        for name, value in readings.items():
            self.rows.append((step, name, value, now))

    def maybe_flush(self) -> None:
        if len(self.rows) >= MAX_PENDING or time.monotonic() - self.last_flush >= self.flush_seconds:
            self.flush()

    def flush(self) -> None:
        """Turn queued values into rows (one device-to-host copy per device) and hand them to the writer."""
        self.last_flush = time.monotonic()
        pending, self.rows = self.rows, []
        if not pending or self.writer is None:
            return
        started = time.perf_counter()
        rows = host_rows(pending)
        self._cost("transfer", time.perf_counter() - started)
        self.writer.readings(rows)

    def drop_tensors(self) -> None:
        """Forget queued device values (after an internal error: reading them might fail again)."""
        self.rows = [row for row in self.rows if not isinstance(row[2], Tensor)]


class StoreWriter:
    def __init__(self, run: str | Path) -> None:
        self.path = runstore.store_path(run)
        # Opened here so a bad run directory fails at construction, not silently later.
        self._con: sqlite3.Connection = runstore.open_for_writing(run)
        runstore.begin_writing(self._con)
        self._queue: queue.Queue = queue.Queue()
        self.error: BaseException | None = None
        self._warned = False
        self._thread = threading.Thread(target=self._run, name="advisor-probe-writer", daemon=True)
        self._thread.start()

    def readings(self, rows: list[tuple[int, str, float, float]]) -> None:
        if rows:
            self._put(("readings", rows))

    def meta(self, meta: dict[str, Any]) -> None:
        self._put(("meta", meta))

    def event(self, step: int, time: float, kind: str, name: str, message: str) -> None:
        self._put(("event", (step, time, kind, name, message)))

    def flush(self, timeout: float = 30.0) -> None:
        """Wait until everything queued so far is committed."""
        done = threading.Event()
        self._put(("sync", done))
        done.wait(timeout)

    def close(self, timeout: float = 30.0) -> None:
        if self._thread.is_alive():
            self._queue.put(_STOP)
            self._thread.join(timeout)

    def _put(self, item: tuple) -> None:
        if self.error is not None and not self._warned:
            self._warned = True
            warnings.warn(f"advisor.probe: writing the run store failed: {self.error!r}", RuntimeWarning, stacklevel=3)
        if self._thread.is_alive():
            self._queue.put(item)

    def _run(self) -> None:
        try:
            while True:
                try:
                    item = self._queue.get(timeout=runstore.HEARTBEAT_SECONDS)
                except queue.Empty:  # nothing to write for a while: say that the run is still alive
                    self._heartbeat()
                    continue
                if item is _STOP:
                    return
                batch = [item]
                while True:  # gather whatever else is waiting into the same transaction
                    try:
                        more = self._queue.get_nowait()
                    except queue.Empty:
                        break
                    batch.append(more)
                    if more is _STOP:
                        break
                stop = batch[-1] is _STOP
                self._write([b for b in batch if b is not _STOP])
                if stop:
                    return
        finally:
            try:
                self._con.close()
            except Exception:
                pass

    def _heartbeat(self) -> None:
        try:
            with self._con:
                runstore.write_heartbeat(self._con)
        except Exception as exc:
            self.error = exc

    def _write(self, batch: list[tuple]) -> None:
        rows: list = []
        syncs = []
        try:
            for kind, payload in batch:
                if kind == "readings":
                    rows.extend(payload)
                elif kind == "sync":
                    syncs.append(payload)
                else:
                    if rows:
                        runstore.write_readings(self._con, rows, plain=True)
                        rows = []
                    if kind == "meta":
                        runstore.write_meta(self._con, payload)
                    elif kind == "event":
                        runstore.write_event(self._con, *payload)
            if rows:
                runstore.write_readings(self._con, rows, plain=True)
        except Exception as exc:  # disk full, locked file...: keep the thread alive, report once
            self.error = exc
        finally:
            for done in syncs:
                done.set()
