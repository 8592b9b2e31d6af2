"""What the user marked on a run: tried / helped / did not help / dismissed, with a free-text note.

One SQLite file (WAL), by default in the user data dir next to the KB (`train-advisor/notes.db`;
env TRAIN_ADVISOR_NOTES overrides). Notes are keyed by run (`run_key`: the absolute resolved path of
the log or run directory) and KB entry id, so they survive restarts and can be exported.

Marks feed back into the ranking:
- `dismissed(run)`: entries the user dismissed on this run drop out of its ranking;
- `history(signal_kinds)`: entries marked `helped` on runs that showed any of the same signal kinds
  get a boost on later runs; `did not help` gets a small penalty (the matcher takes it as `history=`).

The store also keeps a short list of the runs and logs the user opened (the TUI's Runs screen).
"""

from __future__ import annotations

import json
import os
import sqlite3
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterable, Iterator

from pydantic import BaseModel, Field

from advisor.models import AdvisorError

ENV_NOTES = "TRAIN_ADVISOR_NOTES"
STATUSES = ("tried", "helped", "did not help", "dismissed")
HELPED_BOOST = 1.0  # first `helped` on an earlier run with a shared signal kind
HELPED_MORE = 0.25  # each further one
HELPED_CAP = 1.5
NOT_HELPED_PENALTY = -0.25  # each `did not help`
NOT_HELPED_FLOOR = -0.5
RECENT_KEEP = 50

_ALIASES = {
    "did not help": "did not help",
    "didnt help": "did not help",
    "not helped": "did not help",
    "no help": "did not help",
    "unhelpful": "did not help",
    "dismiss": "dismissed",
    "try": "tried",
    "help": "helped",
}

SCHEMA = """
CREATE TABLE IF NOT EXISTS notes (
    run TEXT NOT NULL,
    entry_id TEXT NOT NULL,
    status TEXT NOT NULL,
    note TEXT NOT NULL DEFAULT '',
    signal_kinds TEXT NOT NULL DEFAULT '[]',
    updated TEXT NOT NULL,
    PRIMARY KEY (run, entry_id)
);
CREATE INDEX IF NOT EXISTS notes_status ON notes(status);
CREATE TABLE IF NOT EXISTS recent (
    run TEXT PRIMARY KEY,
    label TEXT NOT NULL DEFAULT '',
    format TEXT NOT NULL DEFAULT '',
    opened TEXT NOT NULL
);
"""


class Note(BaseModel):
    """One mark: what the user did with one suggestion on one run."""

    run: str
    entry_id: str
    status: str
    note: str = ""
    signal_kinds: list[str] = Field(default_factory=list)
    updated: datetime


class RecentRun(BaseModel):
    """A run or log the user opened (the TUI's Runs screen)."""

    run: str
    label: str = ""
    format: str = ""
    opened: datetime


def default_notes_path() -> Path:
    env = os.environ.get(ENV_NOTES)
    if env:
        return Path(env).expanduser()
    from platformdirs import user_data_dir

    return Path(user_data_dir("train-advisor", appauthor=False)) / "notes.db"


def run_key(target: str | Path | None) -> str:
    """The key notes are stored under: the absolute resolved path of the log or run directory.

    A probe store file (`.../run.db`) and its run directory give the same key. None (a describe-only
    session) gives "".
    """
    if target is None or str(target) == "":
        return ""
    p = Path(target).expanduser().resolve()
    if p.suffix == ".db" and p.name == "run.db":
        p = p.parent
    return str(p)


def normalize_status(status: str) -> str:
    s = " ".join(str(status).strip().lower().replace("_", " ").replace("-", " ").replace("'", "").split())
    s = _ALIASES.get(s, s)
    if s not in STATUSES:
        raise AdvisorError(f"unknown status {status!r}: use one of {', '.join(STATUSES)}")
    return s


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="microseconds")


class NotesStore:
    """The notes file. Every call opens its own short connection, so any thread may use it."""

    def __init__(self, path: str | Path | None = None):
        self.path = Path(path).expanduser() if path else default_notes_path()
        self._ready = False

    @contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        if not self._ready:
            if self.path.is_dir():
                raise AdvisorError(f"{self.path}: is a directory, not a notes file")
            self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            con = sqlite3.connect(self.path, timeout=10)
        except sqlite3.Error as exc:
            raise AdvisorError(f"{self.path}: cannot open the notes file ({exc})") from exc
        try:
            if not self._ready:
                try:
                    con.execute("PRAGMA journal_mode=WAL")
                    con.executescript(SCHEMA)
                except sqlite3.DatabaseError as exc:
                    raise AdvisorError(f"{self.path}: is not a notes database ({exc})") from exc
                self._ready = True
            yield con
        finally:
            con.close()

    # ---- marks --------------------------------------------------------------------------------
    def set(self, run_key: str, entry_id: str, status: str, note: str = "", signal_kinds: Iterable[str] = ()) -> Note:
        """Mark an entry on a run (replaces the earlier mark and note for that pair)."""
        status = normalize_status(status)
        kinds = sorted({str(k) for k in signal_kinds})
        updated = _now()
        with self._connect() as con, con:
            con.execute(
                "INSERT OR REPLACE INTO notes(run, entry_id, status, note, signal_kinds, updated) VALUES (?, ?, ?, ?, ?, ?)",
                (run_key, entry_id, status, note or "", json.dumps(kinds), updated),
            )
        return Note(run=run_key, entry_id=entry_id, status=status, note=note or "", signal_kinds=kinds, updated=updated)

    def clear(self, run_key: str, entry_id: str) -> None:
        """Forget the mark on one entry (e.g. un-dismiss it)."""
        with self._connect() as con, con:
            con.execute("DELETE FROM notes WHERE run = ? AND entry_id = ?", (run_key, entry_id))

    def get(self, run_key: str) -> list[Note]:
        """Every mark on a run, oldest first."""
        with self._connect() as con:
            rows = con.execute(
                "SELECT run, entry_id, status, note, signal_kinds, updated FROM notes WHERE run = ? ORDER BY updated, entry_id",
                (run_key,),
            ).fetchall()
        return [_note(r) for r in rows]

    def get_one(self, run_key: str, entry_id: str) -> Note | None:
        with self._connect() as con:
            row = con.execute(
                "SELECT run, entry_id, status, note, signal_kinds, updated FROM notes WHERE run = ? AND entry_id = ?",
                (run_key, entry_id),
            ).fetchone()
        return _note(row) if row else None

    def export(self, run_key: str) -> list[dict]:
        """The marks on a run as JSON-ready dicts (`advisor notes RUN --json`)."""
        return [n.model_dump(mode="json") for n in self.get(run_key)]

    def dismissed(self, run_key: str) -> set[str]:
        with self._connect() as con:
            rows = con.execute("SELECT entry_id FROM notes WHERE run = ? AND status = 'dismissed'", (run_key,)).fetchall()
        return {r[0] for r in rows}

    def not_helped(self, run_key: str) -> set[str]:
        """Entries the user marked "did not help" on this run."""
        with self._connect() as con:
            rows = con.execute("SELECT entry_id FROM notes WHERE run = ? AND status = 'did not help'", (run_key,)).fetchall()
        return {r[0] for r in rows}

    def history(self, signal_kinds: Iterable[str], exclude_run: str | None = None) -> dict[str, float]:
        """entry id -> boost from marks on runs that showed any of these signal kinds.

        `helped` counts +1.0 (+0.25 for each further run, at most 1.5); `did not help` -0.25 each (at
        least -0.5). `exclude_run` leaves one run's own marks out (the run being ranked).
        """
        kinds = {str(k) for k in signal_kinds}
        if not kinds:
            return {}
        with self._connect() as con:
            rows = con.execute(
                "SELECT run, entry_id, status, signal_kinds FROM notes WHERE status IN ('helped', 'did not help')"
            ).fetchall()
        helped: dict[str, int] = {}
        not_helped: dict[str, int] = {}
        for run, entry_id, status, raw in rows:
            if exclude_run is not None and run == exclude_run:
                continue
            try:
                noted = set(json.loads(raw or "[]"))
            except ValueError:
                continue
            if not noted & kinds:
                continue
            bucket = helped if status == "helped" else not_helped
            bucket[entry_id] = bucket.get(entry_id, 0) + 1
        out: dict[str, float] = {}
        for entry_id in set(helped) | set(not_helped):
            h, d = helped.get(entry_id, 0), not_helped.get(entry_id, 0)
            boost = min(HELPED_CAP, HELPED_BOOST + HELPED_MORE * (h - 1)) if h else 0.0
            penalty = max(NOT_HELPED_FLOOR, NOT_HELPED_PENALTY * d) if d else 0.0
            out[entry_id] = round(boost + penalty, 4)
        return out

    # ---- recent runs --------------------------------------------------------------------------
    def add_recent(self, run_key: str, label: str = "", format: str = "") -> None:
        """Remember that a run or log was opened (most recent first in `recent`)."""
        if not run_key:
            return
        with self._connect() as con, con:
            con.execute(
                "INSERT OR REPLACE INTO recent(run, label, format, opened) VALUES (?, ?, ?, ?)",
                (run_key, label or Path(run_key).name, format or "", _now()),
            )
            con.execute(
                "DELETE FROM recent WHERE run NOT IN (SELECT run FROM recent ORDER BY opened DESC LIMIT ?)",
                (RECENT_KEEP,),
            )

    def recent(self, limit: int = 20) -> list[RecentRun]:
        with self._connect() as con:
            rows = con.execute("SELECT run, label, format, opened FROM recent ORDER BY opened DESC LIMIT ?", (limit,)).fetchall()
        return [RecentRun(run=r, label=lb, format=f, opened=o) for r, lb, f, o in rows]

    def forget_recent(self, run_key: str) -> None:
        with self._connect() as con, con:
            con.execute("DELETE FROM recent WHERE run = ?", (run_key,))


def _note(row: tuple) -> Note:
    run, entry_id, status, note, kinds, updated = row
    try:
        signal_kinds = list(json.loads(kinds or "[]"))
    except ValueError:
        signal_kinds = []
    return Note(run=run, entry_id=entry_id, status=status, note=note or "", signal_kinds=signal_kinds, updated=updated)
