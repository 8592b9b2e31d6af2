"""The run store: a SQLite file (WAL) in a run directory, written by the probe, read by the advisor and TUI.

Schema (the contract between the probe, the log readers and the TUI):

- ``readings(step INTEGER, name TEXT, value REAL, time REAL)`` — one row per (step, reading).
  A NaN reading is stored as NULL (SQLite has no NaN); +/-Inf are stored as they are.
- ``meta(key TEXT PRIMARY KEY, value TEXT)`` — run metadata, values JSON-encoded
  (model summary, torch version, device, every, started/finished times, codebook_size...). Keys the
  advisor relies on are named in `advisor.reading_names` (META_*): `run_id` (a uuid made with the
  store; notes are keyed by it), the writer's `pid`, `hostname` and `pid_start`, and `heartbeat`
  (time of its last transaction), from which `run_state` tells a live run from a stopped one.
- ``events(step INTEGER, time REAL, kind TEXT, name TEXT, message TEXT)`` — e.g. a reading that
  disabled itself and why.

Readers open the file read-only while training writes; every batch is one transaction, so a
killed writer leaves a readable store.
"""

from __future__ import annotations

import json
import math
import os
import socket
import sqlite3
import time
import uuid
from pathlib import Path
from typing import Any, Iterable, Literal

import numpy as np

from advisor import reading_names as rn

STORE_NAME = "run.db"
# The writer commits at least this often while it lives (an idle probe writes a bare heartbeat), so a
# store whose last write is STALE_SECONDS old, on a host where its process cannot be checked, is stopped.
HEARTBEAT_SECONDS = 10.0
STALE_SECONDS = 6 * HEARTBEAT_SECONDS
RunState = Literal["live", "stopped", "finished"]

SCHEMA = """
CREATE TABLE IF NOT EXISTS readings (step INTEGER NOT NULL, name TEXT NOT NULL, value REAL, time REAL);
CREATE INDEX IF NOT EXISTS readings_name_step ON readings(name, step);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT);
CREATE TABLE IF NOT EXISTS events (step INTEGER, time REAL, kind TEXT, name TEXT, message TEXT);
"""


def store_path(run: str | Path) -> Path:
    """The store file for a run directory (or the file itself when given one)."""
    p = Path(run)
    return p if p.suffix == ".db" else p / STORE_NAME


def is_run_store(path: str | Path) -> bool:
    p = store_path(path)
    if not p.is_file():
        return False
    with open(p, "rb") as fh:
        if fh.read(16) != b"SQLite format 3\x00":
            return False
    try:
        con = sqlite3.connect(f"file:{p}?mode=ro", uri=True)
        try:
            names = {r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        finally:
            con.close()
    except sqlite3.Error:
        return False
    return {"readings", "meta"} <= names


def open_for_writing(path: str | Path) -> sqlite3.Connection:
    p = store_path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    con = sqlite3.connect(p, check_same_thread=False, timeout=30)
    con.execute("PRAGMA journal_mode=WAL")
    con.execute("PRAGMA synchronous=NORMAL")
    con.executescript(SCHEMA)
    with con:  # a store keeps the id it was created with when a run is resumed into it
        con.execute("INSERT OR IGNORE INTO meta(key, value) VALUES (?, ?)", (rn.META_RUN_ID, json.dumps(uuid.uuid4().hex)))
    return con


def begin_writing(con: sqlite3.Connection) -> None:
    """Mark the store as written by this process, on this host, from now (a resumed run is live again)."""
    with con:
        con.execute("DELETE FROM meta WHERE key = ?", (rn.META_FINISHED,))
    write_meta(
        con,
        {
            rn.META_PID: os.getpid(),
            rn.META_HOST: socket.gethostname(),
            "pid_start": _process_start(os.getpid()),  # a pid reused later is not this run
            rn.META_HEARTBEAT: time.time(),
        },
    )


def write_heartbeat(con: sqlite3.Connection, now: float | None = None) -> None:
    """Record the time of the latest write; called inside the writer's transactions."""
    con.execute(
        "INSERT OR REPLACE INTO meta(key, value) VALUES (?, ?)", (rn.META_HEARTBEAT, json.dumps(now or time.time()))
    )


def _sql_value(v: float) -> float | None:
    return None if isinstance(v, float) and math.isnan(v) else v


def write_readings(con: sqlite3.Connection, rows: Iterable[tuple[int, str, float, float]], plain: bool = False) -> None:
    """Append (step, name, value, time) rows in one transaction (with the heartbeat).

    plain=True: a list whose steps are Python ints and values Python floats or ints (the probe's
    rows), bound as they are, in C (SQLite stores NaN as NULL). Anything else is converted row by
    row: a numpy number would otherwise be stored as a blob.
    """
    sql = "INSERT INTO readings(step, name, value, time) VALUES (?, ?, ?, ?)"
    with con:
        if plain:
            con.executemany(sql, rows)
        else:
            con.executemany(sql, ((int(s), n, _sql_value(float(v)), t) for s, n, v, t in rows))
        write_heartbeat(con)


def write_meta(con: sqlite3.Connection, meta: dict[str, Any]) -> None:
    with con:
        con.executemany(
            "INSERT OR REPLACE INTO meta(key, value) VALUES (?, ?)",
            ((k, json.dumps(v, default=str)) for k, v in meta.items()),
        )


def write_event(con: sqlite3.Connection, step: int, time: float, kind: str, name: str, message: str) -> None:
    with con:
        con.execute(
            "INSERT INTO events(step, time, kind, name, message) VALUES (?, ?, ?, ?, ?)",
            (step, time, kind, name, message),
        )


def _connect_ro(path: str | Path) -> sqlite3.Connection:
    return sqlite3.connect(f"file:{store_path(path)}?mode=ro", uri=True, timeout=30)


def read_meta(path: str | Path) -> dict[str, Any]:
    con = _connect_ro(path)
    try:
        return {k: json.loads(v) for k, v in con.execute("SELECT key, value FROM meta")}
    finally:
        con.close()


def read_events(path: str | Path) -> list[dict[str, Any]]:
    con = _connect_ro(path)
    try:
        cur = con.execute("SELECT step, time, kind, name, message FROM events ORDER BY rowid")
        return [dict(zip(("step", "time", "kind", "name", "message"), r)) for r in cur]
    finally:
        con.close()


def read_readings(path: str | Path, since_step: int | None = None) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """All readings as {name: (steps, values)}, steps ascending, NULL read back as NaN."""
    con = _connect_ro(path)
    try:
        if since_step is None:
            cur = con.execute("SELECT name, step, value FROM readings ORDER BY name, step, rowid")
        else:
            cur = con.execute(
                "SELECT name, step, value FROM readings WHERE step > ? ORDER BY name, step, rowid", (since_step,)
            )
        rows = cur.fetchall()
    finally:
        con.close()
    out: dict[str, tuple[list, list]] = {}
    for name, step, value in rows:
        steps, values = out.setdefault(name, ([], []))
        steps.append(step)
        values.append(math.nan if value is None else value)
    return {n: (np.asarray(s, dtype=np.int64), np.asarray(v, dtype=np.float64)) for n, (s, v) in out.items()}


def _process_start(pid: int) -> int | None:
    """The process's start time in clock ticks since boot (Linux /proc), None where unknown."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            stat = fh.read().decode("ascii", "replace")
        return int(stat.rpartition(")")[2].split()[19])  # field 22; the name in parentheses may hold spaces
    except (OSError, ValueError, IndexError):
        return None


def _pid_alive(pid: int, started: int | None) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: it exists
        pass
    except OSError:
        return False
    if started is not None:
        now_start = _process_start(pid)
        if now_start is not None and now_start != started:
            return False  # the pid was reused by another process
    return True


def run_state(path: str | Path, now: float | None = None) -> RunState:
    """"finished" (the probe closed the store), "live" (still being written) or "stopped".

    Live: not finished and either the writer's process is alive on this host or, where it cannot be
    checked (another host, an older store without a pid), the last write is under STALE_SECONDS old.
    A writer process known to be gone on this host means stopped at once (kill -9, a crash).
    """
    meta = read_meta(path)
    if rn.META_FINISHED in meta:
        return "finished"
    pid, host = meta.get(rn.META_PID), meta.get(rn.META_HOST)
    if isinstance(pid, int) and host == socket.gethostname():
        return "live" if _pid_alive(pid, meta.get("pid_start")) else "stopped"
    last = meta.get(rn.META_HEARTBEAT)
    if not isinstance(last, (int, float)):
        last = _last_reading_time(path)
    if last is None:
        return "stopped"
    return "live" if (now or time.time()) - float(last) < STALE_SECONDS else "stopped"


def _last_reading_time(path: str | Path) -> float | None:
    con = _connect_ro(path)
    try:
        row = con.execute("SELECT max(time) FROM readings").fetchone()
    finally:
        con.close()
    return float(row[0]) if row and row[0] is not None else None
