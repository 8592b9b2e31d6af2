"""The run store: a SQLite file (WAL) in a run directory, written by the probe, read by the advisor and TUI.

Schema (the contract between the probe, the log readers and the TUI):

- ``readings(step INTEGER, name TEXT, value REAL, time REAL)`` — one row per (step, reading).
  A NaN reading is stored as NULL (SQLite has no NaN); +/-Inf are stored as they are.
- ``meta(key TEXT PRIMARY KEY, value TEXT)`` — run metadata, values JSON-encoded
  (model summary, torch version, device, every, started/finished times, codebook_size...).
- ``events(step INTEGER, time REAL, kind TEXT, name TEXT, message TEXT)`` — e.g. a reading that
  disabled itself and why.

Readers open the file read-only while training writes; every batch is one transaction, so a
killed writer leaves a readable store.
"""

from __future__ import annotations

import json
import math
import sqlite3
from pathlib import Path
from typing import Any, Iterable

import numpy as np

STORE_NAME = "run.db"

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
    return con


def _sql_value(v: float) -> float | None:
    return None if isinstance(v, float) and math.isnan(v) else v


def write_readings(con: sqlite3.Connection, rows: Iterable[tuple[int, str, float, float]]) -> None:
    """Append (step, name, value, time) rows in one transaction."""
    with con:
        con.executemany(
            "INSERT INTO readings(step, name, value, time) VALUES (?, ?, ?, ?)",
            ((int(s), n, _sql_value(float(v)), t) for s, n, v, t in rows),
        )


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
