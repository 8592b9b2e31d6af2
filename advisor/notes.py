"""What the user marked on a run: tried / helped / did not help / dismissed, with a free-text note.

One SQLite file (WAL), by default in the user data dir next to the KB (`train-advisor/notes.db`;
env TRAIN_ADVISOR_NOTES overrides). Notes are keyed by run and KB entry id, so they survive restarts
and can be exported. The run's key is its stable identity (`advisor.analysis.notes_key`: the probe's
run id, a log's content hash), so moving a run directory keeps its notes; `run_key` (the resolved
path) is the key of runs without one.

Marks feed back into the ranking:
- `dismissed(run)`: entries the user dismissed on this run drop out of its ranking;
- `history(signal_kinds)`: entries marked `helped` on runs that showed any of the same signal kinds
  get a boost on later runs; `did not help` gets a small penalty (the matcher takes it as `history=`).

The store also keeps a short list of the runs and logs the user opened (the TUI's Runs screen), with
the path to reopen each one kept apart from its notes key. `resolve_target` turns what a person
types (a path, `demo`, the name of a run they opened) into a path, for every command.
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
    opened TEXT NOT NULL,
    path TEXT NOT NULL DEFAULT ''
);
"""
DEMO_NAME = "demo"  # what `advisor <command> demo` opens: the bundled demo run


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

    run: str  # its notes key
    label: str = ""
    format: str = ""
    opened: datetime
    path: str = ""  # where it was last opened from (reopen it from here)


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


def resolve_target(target: str | Path | None, notes: "NotesStore | None" = None) -> str | None:
    """What a person typed -> the path to read: an existing path (relative or ~) as given; `demo` for
    the bundled demo run; else the label, key or path of a run they opened before (most recent first).
    Anything else is returned as typed, so the reader says it does not exist."""
    if target is None or str(target) == "":
        return None
    text = str(target)
    path = Path(text).expanduser()
    if path.exists():
        return str(path)
    if text == DEMO_NAME:
        from advisor import demo_run_path

        return demo_run_path()
    try:
        store = notes if notes is not None else NotesStore()
        recent = store.recent(limit=RECENT_KEEP) if store.path.exists() else []
    except AdvisorError:
        recent = []
    for r in recent:
        if text in (r.label, r.run, r.path) and r.path and Path(r.path).exists():
            return r.path
    return text


def notes_key_of(target: str | Path, notes: "NotesStore | None" = None) -> str:
    """The notes key of what a person typed (`advisor notes TARGET`): the run's stable identity when it
    can be read (marks kept under its path before are moved there), else its path key, else the text
    itself (a key as `advisor notes --json` printed it)."""
    path = resolve_target(target, notes)
    if path is None:
        return ""
    if not Path(path).exists():
        return str(target)
    try:
        from advisor.analysis import notes_key
        from advisor.logs import read_log

        key = notes_key(read_log(path))
    except Exception:  # unreadable: its marks can only be under its path
        return run_key(path)
    if notes is not None:
        notes.adopt(run_key(path), key)
    return key


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
                    columns = {r[1] for r in con.execute("PRAGMA table_info(recent)")}
                    if "path" not in columns:  # a notes file from before paths were kept apart from keys
                        con.execute("ALTER TABLE recent ADD COLUMN path TEXT NOT NULL DEFAULT ''")
                    # a notes file is small: checking it once per process is cheap, and a damaged one
                    # must say so rather than lose marks silently
                    verdict = con.execute("PRAGMA quick_check").fetchone()[0]
                except sqlite3.DatabaseError as exc:
                    raise AdvisorError(f"{self.path}: is not a notes database ({exc})") from exc
                if verdict != "ok":
                    raise AdvisorError(f"{self.path}: the notes file is damaged ({verdict}); move it away to start a new one")
                self._ready = True
            yield con
        except sqlite3.Error as exc:
            raise AdvisorError(f"{self.path}: the notes file cannot be used ({exc})") from exc
        finally:
            con.close()

    # ---- marks --------------------------------------------------------------------------------
    def set(self, run_key: str, entry_id: str, status: str, note: str = "", signal_kinds: Iterable[str] = (), kb=None) -> Note:
        """Mark an entry on a run (replaces the earlier mark and note for that pair).

        `kb` (a kb.KnowledgeBase or its path): a "helped" mark with a note also becomes knowledge, an
        entry of the KB's `notes` source linked to the run's signal kinds (see `remember_in_kb`).
        """
        status = normalize_status(status)
        kinds = sorted({str(k) for k in signal_kinds})
        updated = _now()
        with self._connect() as con, con:
            con.execute(
                "INSERT OR REPLACE INTO notes(run, entry_id, status, note, signal_kinds, updated) VALUES (?, ?, ?, ?, ?, ?)",
                (run_key, entry_id, status, note or "", json.dumps(kinds), updated),
            )
        saved = Note(run=run_key, entry_id=entry_id, status=status, note=note or "", signal_kinds=kinds, updated=updated)
        if kb is not None:
            remember_in_kb(kb, saved)
        return saved

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

    def adopt(self, old_key: str, new_key: str) -> int:
        """Move the marks kept under `old_key` (a run's path, from before it had a stable identity)
        to `new_key`, where `new_key` has no mark on the same entry. Returns how many moved."""
        if not old_key or not new_key or old_key == new_key:
            return 0
        with self._connect() as con, con:
            cur = con.execute(
                "UPDATE notes SET run = ? WHERE run = ? AND entry_id NOT IN (SELECT entry_id FROM notes WHERE run = ?)",
                (new_key, old_key, new_key),
            )
            return cur.rowcount

    # ---- recent runs --------------------------------------------------------------------------
    def add_recent(self, run_key: str, label: str = "", format: str = "", path: str | Path | None = None) -> None:
        """Remember that a run or log was opened (most recent first in `recent`): `run_key` is its
        notes key, `path` where it was opened from (default: the key, for runs keyed by path)."""
        if not run_key:
            return
        where = str(Path(path).expanduser().resolve()) if path else run_key
        with self._connect() as con, con:
            # the same file opened under another key before (its content changed): one row, the new key
            con.execute("DELETE FROM recent WHERE path = ? AND run != ?", (where, run_key))
            con.execute(
                "INSERT OR REPLACE INTO recent(run, label, format, opened, path) VALUES (?, ?, ?, ?, ?)",
                (run_key, label or Path(where).name, format or "", _now(), where),
            )
            con.execute(
                "DELETE FROM recent WHERE run NOT IN (SELECT run FROM recent ORDER BY opened DESC LIMIT ?)",
                (RECENT_KEEP,),
            )

    def recent(self, limit: int = 20) -> list[RecentRun]:
        with self._connect() as con:
            rows = con.execute("SELECT run, label, format, opened, path FROM recent ORDER BY opened DESC LIMIT ?", (limit,)).fetchall()
        return [RecentRun(run=r, label=lb, format=f, opened=o, path=p or r) for r, lb, f, o, p in rows]

    def forget_recent(self, run_key: str) -> None:
        with self._connect() as con, con:
            con.execute("DELETE FROM recent WHERE run = ?", (run_key,))


def remember_in_kb(kb, note: Note) -> None:
    """What helped before becomes knowledge: a "helped" mark with a note is stored in the KB as an entry
    of the user's own `notes` source (title: the suggestion's title + "(your note)", body: the note,
    linked to the run's signal kinds), searchable and suggested when those signals come back. Any other
    mark, or an emptied note, takes that entry back out. The write goes through its own KnowledgeBase
    object, so a reader sharing `kb` (the TUI's) is not closed under its feet.
    """
    from kb import KBError, KnowledgeBase

    writer = KnowledgeBase(kb.path if isinstance(kb, KnowledgeBase) else kb)
    try:
        if note.status == "helped" and note.note.strip():
            try:
                title = writer.get(note.entry_id).title
            except KBError:
                title = note.entry_id.rsplit("/", 1)[-1].replace("-", " ")
            writer.save_note(run=note.run, entry_id=note.entry_id, title=title, note=note.note, signal_kinds=note.signal_kinds)
        else:
            writer.forget_note(run=note.run, entry_id=note.entry_id)
    except KBError as exc:
        raise AdvisorError(f"the mark is saved, but the KB could not keep the note: {exc}") from exc
    finally:
        writer.close()


def _note(row: tuple) -> Note:
    run, entry_id, status, note, kinds, updated = row
    try:
        signal_kinds = list(json.loads(kinds or "[]"))
    except ValueError:
        signal_kinds = []
    return Note(run=run, entry_id=entry_id, status=status, note=note or "", signal_kinds=signal_kinds, updated=updated)
