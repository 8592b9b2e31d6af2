"""The TUI's model of one opened run: the Run, its signals, the ranked suggestions, and live updates.

No Textual here: the screens call these methods from worker threads and render the results.
The advisor's pieces (`advisor.logs.read_log`, `advisor.detectors.detect`, `advisor.matcher.rank`)
are imported on first use through `Pipeline`, so the first screen paints before any of them (or the
embedding model) loads; tests swap in a `Pipeline` of their own.
"""

from __future__ import annotations

import math
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterable

from advisor import demo_run_path  # noqa: F401  (cheap: the package imports nothing heavy)

if TYPE_CHECKING:  # pragma: no cover
    from advisor.models import Run, Signal, Suggestion
    from advisor.notes import NotesStore
    from kb import KnowledgeBase
    from kb.models import Entry, Hit

TOP = 10
WAITING = "waiting for the probe's first readings…"
KB_EMPTY = "the knowledge base has no entries: run `kb build` (and `kb import` your own documents)"
_KEEP: Any = object()  # rerank(): keep the current description


class Pipeline:
    """The advisor functions the TUI calls; each imports its module on first use.

    `run`: the run to read from the first target when it holds several (`advisor tui --run NAME`).
    """

    def __init__(self, run: str | None = None):
        self.run_name = run
        self._run_target: str | None = None

    def read_log(self, target: str) -> "Run":
        from advisor.readers import read_log

        if self.run_name and self._run_target in (None, target):
            self._run_target = target
            return read_log(target, run=self.run_name)
        return read_log(target)

    def detect(self, run: "Run") -> list["Signal"]:
        from advisor.detectors import detect

        return detect(run)

    def rank(self, signals, kb, describe=None, history=None, dismissed=(), top: int = TOP, run=None, demoted=None) -> list["Suggestion"]:
        from advisor.matcher import rank

        return rank(signals, kb, describe=describe, history=history, dismissed=dismissed, top=top, run=run, demoted=demoted)

    def run_state(self, target: str, run: "Run | None" = None) -> str | None:
        """A probe run store's state: "live" (being written), "stopped" (no writes for a while and
        its process gone), "finished"; None for a log file."""
        from advisor import runstore

        try:
            if runstore.is_run_store(target):
                return runstore.run_state(target)
        except Exception:
            return None
        return "live" if run is not None and getattr(run, "live", False) else None

    def is_live(self, target: str, run: "Run | None" = None) -> bool:
        return self.run_state(target, run) == "live"

    def read_readings(self, target: str, since_step: int | None):
        from advisor import runstore

        return runstore.read_readings(target, since_step=since_step)


class LockedKB:
    """The KB as the matcher and the screens see it: one lock around it (workers share it) and a
    small cache of searches, so re-ranking after new evidence only searches for what is new."""

    def __init__(self, kb: "KnowledgeBase", cache_size: int = 256):
        self.kb = kb
        self.lock = threading.RLock()
        self._cache: OrderedDict[tuple, list] = OrderedDict()
        self._cache_size = cache_size

    def search(self, text: str, k: int = 5, source: str | None = None, mode: str = "hybrid") -> list["Hit"]:
        key = (text, k, source, mode)
        with self.lock:
            if key in self._cache:
                self._cache.move_to_end(key)
                return self._cache[key]
            hits = self.kb.search(text, k=k, source=source, mode=mode)
            self._cache[key] = hits
            if len(self._cache) > self._cache_size:
                self._cache.popitem(last=False)
            return hits

    def get(self, entry_id: str) -> "Entry":
        with self.lock:
            return self.kb.get(entry_id)

    def source_text(self, source: str) -> str:
        with self.lock:
            return self.kb.source_text(source)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.kb, name)


def open_kb(path: str | Path | None, progress: Callable[[str], None] = lambda s: None) -> LockedKB:
    """The KB, built on the very first run and finished when a build was interrupted."""
    from kb import KnowledgeBase

    kb = KnowledgeBase(path)
    state = kb.check()
    if state == "missing":
        progress("building the knowledge base (first run, about 15 s; q quits)…")
    elif state == "incomplete":
        progress("the last knowledge-base build was interrupted: finishing it (q quits)…")
    if state != "complete":
        kb.ensure_built()
    return LockedKB(kb)


def evidence_key(kind: str, metric: str) -> tuple[str, str]:
    return (kind, metric)


@dataclass
class Session:
    """One opened run (or log) and what the advisor made of it."""

    target: str
    kb: LockedKB
    notes: "NotesStore | None" = None
    pipeline: Pipeline = field(default_factory=Pipeline)
    run: "Run | None" = None
    signals: list = field(default_factory=list)
    suggestions: list = field(default_factory=list)
    describe: str | None = None
    state: str | None = None  # a probe run store's "live" / "stopped" / "finished"; None for a log
    notes_text: list[str] = field(default_factory=list)  # what was skipped, "not enough data"...
    new_ids: set = field(default_factory=set)  # suggestions that appeared while following, not yet viewed
    new_evidence: set = field(default_factory=set)  # (signal kind, metric) that appeared, not yet viewed
    known: set = field(default_factory=set)  # every suggestion shown so far (what reappears is not new)
    last_rank_s: float = 0.0
    last_new: set = field(default_factory=set)  # suggestions that appeared in the last poll
    _last_step: int | None = None

    @property
    def key(self) -> str:
        """The notes key: the run's stable identity once it is read (moving it keeps its notes)."""
        from advisor.analysis import notes_key
        from advisor.notes import run_key

        return notes_key(self.run) if self.run is not None else run_key(self.target)

    @property
    def live(self) -> bool:
        return self.state == "live"

    @property
    def finished(self) -> bool:
        return self.state == "finished"

    @property
    def following(self) -> bool:
        """Poll for new readings: a run store still live, or stopped (its writer may be on another host)."""
        return self.state in ("live", "stopped")

    # ---- loading ------------------------------------------------------------------------------
    def load(self, progress: Callable[[str], None] = lambda s: None) -> None:
        """Read the run, detect signals and rank (blocking: call from a worker thread)."""
        progress(f"reading {Path(self.target).name}…")
        try:
            self.run = self.pipeline.read_log(self.target)
            self.notes_text = list(getattr(self.run, "skipped", []) or [])
        except Exception:
            if not self.pipeline.is_live(self.target):
                raise
            # a probe run that has not written its first readings yet: wait for them
            from advisor.models import Run

            self.run = Run(path=self.target, format="probe", axis="step", live=True)
            self.notes_text = [WAITING]
        self.state = self.pipeline.run_state(self.target, self.run)
        self._last_step = self._max_step()
        if self.notes is not None:
            from advisor.notes import run_key

            try:  # marks kept under the run's path before it had a stable identity
                self.notes.adopt(run_key(self.target), self.key)
            except Exception:
                pass
        progress("looking for symptoms…")
        self.signals = self._detect()
        if self._kb_is_empty():
            self.suggestions = []  # nothing to rank against; the detail pane says why
        else:
            progress("ranking fixes (loading the embedding model)…")
            self.rerank()
        self.known = {s.id for s in self.suggestions}
        if self.notes is not None:
            try:
                self.notes.add_recent(self.key, label=Path(self.target).name, format=getattr(self.run, "format", ""), path=self.target)
            except Exception:
                pass

    def _kb_is_empty(self) -> bool:
        """An empty KB ranks nothing: say why instead of showing "0 suggestions"."""
        try:
            empty = not sum(self.kb.stats().values())
        except Exception:
            return False
        if empty and KB_EMPTY not in self.notes_text:
            self.notes_text.append(KB_EMPTY)
        return empty

    def _detect(self) -> list:
        from advisor.analysis import NOT_ENOUGH_DATA, NO_SYMPTOMS, detect_signals

        signals, remarks = detect_signals(self.run, detect=self.pipeline.detect)
        # remarks about the data replace the earlier ones; what the reader skipped stays
        kept = [n for n in self.notes_text if not n.startswith(NOT_ENOUGH_DATA) and n != NO_SYMPTOMS]
        self.notes_text = list(dict.fromkeys(kept + remarks))
        return signals

    def signal_kinds(self) -> list[str]:
        return sorted({s.kind for s in self.signals})

    def rerank(self, describe: Any = _KEEP) -> list:
        """Rank again (new signals, a new description, a changed mark). Returns the suggestions."""
        if describe is not _KEEP:
            self.describe = describe.strip() if describe and describe.strip() else None
        started = time.perf_counter()
        from advisor.analysis import rank_signals

        self.suggestions = rank_signals(
            self.signals, self.kb, run=self.run, describe=self.describe, notes=self.notes, key=self.key, top=TOP, rank=self.pipeline.rank
        )
        self.last_rank_s = time.perf_counter() - started
        return self.suggestions

    # ---- live ---------------------------------------------------------------------------------
    def _max_step(self) -> int | None:
        if self.run is None:
            return None
        best = None
        for s in self.run.series.values():
            if len(s.steps):
                last = int(s.steps[-1])
                best = last if best is None else max(best, last)
        return best

    def poll(self) -> bool:
        """Read what the probe wrote since the last poll; re-detect and re-rank when anything came.

        Returns True when the suggestions or their evidence may have changed."""
        import numpy as np

        if self.run is None or not self.following:
            return False
        before_state = self.state
        try:
            self.state = self.pipeline.run_state(self.target, None) or self.state
        except Exception:
            pass
        finished = self.state == "finished"
        since = None if self._last_step is None else self._last_step - 1
        fresh = self.pipeline.read_readings(self.target, since)
        appended = 0
        unknown = False
        for name, (steps, values) in fresh.items():
            series = self.run.series.get(name)
            if series is None:
                unknown = True
                continue
            last = series.steps[-1] if len(series.steps) else -math.inf
            keep = steps > last
            if not keep.any():
                continue
            if series.epochs is not None:
                unknown = True  # cannot extend the epoch column from readings alone: read it all again
                continue
            series.steps = np.concatenate([series.steps, steps[keep].astype(series.steps.dtype, copy=False)])
            series.values = np.concatenate([series.values, values[keep].astype(np.float64, copy=False)])
            appended += int(keep.sum())
        if unknown:
            self.run = self.pipeline.read_log(self.target)
            self.notes_text = [n for n in self.notes_text if n != WAITING]
            appended += 1
        if not appended:
            return self.state != before_state
        self._last_step = self._max_step()
        before_ev = {evidence_key(e.signal, e.metric) for s in self.suggestions for e in s.evidence}
        before_ev |= {evidence_key(s.kind, s.metric) for s in self.signals}
        self.signals = self._detect()
        self.rerank()
        current = {s.id for s in self.suggestions}
        self.last_new = current - self.known
        self.known |= current
        self.new_ids = (self.new_ids | self.last_new) & current
        self.new_evidence |= {evidence_key(s.kind, s.metric) for s in self.signals} - before_ev
        return True

    def viewed(self, entry_id: str) -> None:
        """The user looked at a suggestion: it, and the evidence it shows, are no longer new."""
        self.new_ids.discard(entry_id)
        sug = self.suggestion(entry_id)
        if sug is not None:
            self.new_evidence -= {evidence_key(e.signal, e.metric) for e in sug.evidence}

    def clear_new(self) -> None:
        self.new_ids = set()
        self.new_evidence = set()
        self.last_new = set()

    # ---- marks --------------------------------------------------------------------------------
    def suggestion(self, entry_id: str):
        return next((s for s in self.suggestions if s.id == entry_id), None)

    def mark(self, entry_id: str, status: str, note: str | None = None):
        """Mark a suggestion; keeps the earlier note unless a new one is given. Quick (one SQLite
        write), so marks keep the order of the keys; `remember` does the slower KB part."""
        if self.notes is None:
            return None
        sug = self.suggestion(entry_id)
        kinds: Iterable[str] = sorted({e.signal for e in sug.evidence}) if sug is not None and sug.evidence else self.signal_kinds()
        if note is None:
            old = self.notes.get_one(self.key, entry_id)
            note = old.note if old else ""
        return self.notes.set(self.key, entry_id, status, note=note, signal_kinds=kinds)

    def remember(self, note) -> None:
        """A "helped" mark with a note becomes an entry of the KB's notes source (any other mark takes
        it back out): advisor.notes.remember_in_kb, on the KB file this session reads. Blocking."""
        from advisor.notes import remember_in_kb

        path = getattr(self.kb.kb, "path", None)
        if note is not None and path is not None:
            remember_in_kb(path, note)

    def dismissed(self) -> list:
        """The suggestions the user dismissed on this run (from their KB entries), to show and restore."""
        from advisor.models import Suggestion

        if self.notes is None:
            return []
        try:
            ids = sorted(self.notes.dismissed(self.key))
        except Exception:
            return []
        out = []
        for entry_id in ids:
            try:
                e = self.kb.get(entry_id)
            except Exception:
                continue
            out.append(
                Suggestion(id=e.id, source=e.source, title=e.title, score=0.0, severity="low", steps=e.steps,
                           symptoms=e.symptoms, provenance=e.provenance, expected_outcome=e.expected_outcome)
            )
        return out

    def marks(self) -> dict[str, Any]:
        if self.notes is None:
            return {}
        try:
            return {n.entry_id: n for n in self.notes.get(self.key)}
        except Exception:
            return {}
