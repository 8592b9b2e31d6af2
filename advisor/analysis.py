"""The one analysis pipeline: a Run (or only a description) -> signals -> ranked suggestions.

`diagnose`, `annotate`, `explain` and the TUI all call these functions, so the minimum-points rule,
the remarks a person reads, and what the user's marks do to the ranking are written once:
- `detect_signals(run)`: detectors with the minimum-points rule and remarks;
- `rank_signals(...)`: the matcher, with history ("helped" on earlier runs with the same signals),
  dismissals (gone) and "did not help" on this run (lowered) read from the notes store;
- `analyse(...)`: both, as a `Diagnosis`.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterable

from advisor.models import AdvisorError, Diagnosis, Run, Signal, Suggestion
from kb import KnowledgeBase

if TYPE_CHECKING:  # pragma: no cover
    from advisor.notes import NotesStore

MIN_POINTS = 3  # fewer points than this in every series: not enough data to judge a curve
NOT_HELPED_FACTOR = 0.4  # an entry marked "did not help" on this run keeps this share of its score
NOT_ENOUGH_DATA = "not enough data"  # every remark of that kind starts with these words
NO_SYMPTOMS = "no symptoms found: the curves look healthy to the detectors"
TOP = 10


def open_kb(kb: KnowledgeBase | str | Path | None = None) -> KnowledgeBase:
    """The KB to match against: the one given, else the default location (built on first use)."""
    if isinstance(kb, KnowledgeBase):
        return kb
    return KnowledgeBase(kb).ensure_built()


def notes_key(run: Run | None) -> str:
    """The key a run's notes are stored under: its stable identity when the reader gave one
    (the probe's run id, a log's content hash), else its resolved path."""
    from advisor.notes import run_key

    if run is None:
        return ""
    return str(run.meta.get("run_id") or run_key(run.path))


def detect_signals(run: Run | None, detect: Callable[[Run], list[Signal]] | None = None) -> tuple[list[Signal], list[str]]:
    """Signals in a run, and remarks for a person (what was skipped, not enough data, healthy).

    `detect` replaces the detector registry (the TUI's tests swap in fixed detectors).
    """
    if run is None:
        return [], []
    if detect is None:
        from advisor.detectors import detect

    remarks = list(run.skipped)
    longest = max((len(s) for s in run.series.values()), default=0)
    if longest < MIN_POINTS:
        remarks.append(f"{NOT_ENOUGH_DATA}: the longest series has {longest} point(s); curves need at least {MIN_POINTS}")
        return [], remarks
    signals = list(detect(run))
    # detectors may add notes to run.skipped while they run
    remarks = list(dict.fromkeys(remarks + list(run.skipped)))
    if not signals:
        remarks.append(NO_SYMPTOMS)
    return signals, remarks


def rank_signals(
    signals: Iterable[Signal],
    kb: KnowledgeBase,
    run: Run | None = None,
    describe: str | None = None,
    notes: "NotesStore | None" = None,
    key: str | None = None,
    history: dict[str, float] | None = None,
    dismissed: Iterable[str] = (),
    top: int = TOP,
    rank: Callable[..., list[Suggestion]] | None = None,
) -> list[Suggestion]:
    """Ranked suggestions for signals (and a description), with the user's marks applied.

    `key` is the run's notes key (default: `notes_key(run)`). Marks on this run: dismissed entries
    drop out, "did not help" ones are lowered. Marks on earlier runs with the same signal kinds:
    "helped" raises an entry, "did not help" lowers it (`NotesStore.history`). `rank` replaces the
    matcher (the TUI's tests swap in a fixed ranking).
    """
    if rank is None:
        from advisor.matcher import rank

    signals = list(signals)
    dismissed = set(dismissed)
    demoted: dict[str, float] = {}
    if notes is not None and (run is not None or key):
        key = key if key is not None else notes_key(run)
        if history is None and signals:
            history = notes.history(sorted({s.kind for s in signals}), exclude_run=key)
        dismissed |= notes.dismissed(key)
        demoted = {entry_id: NOT_HELPED_FACTOR for entry_id in notes.not_helped(key)}
    if not signals and not (describe and describe.strip()):
        return []
    return rank(signals, kb, describe=describe, history=history or None, dismissed=dismissed, top=top, run=run, demoted=demoted)


def analyse(
    run: Run | None,
    describe: str | None = None,
    kb: KnowledgeBase | str | Path | None = None,
    notes: "NotesStore | None" = None,
    history: dict[str, float] | None = None,
    dismissed: Iterable[str] = (),
    top: int = TOP,
) -> Diagnosis:
    """Detect signals in a run and rank entries for them (or for a description alone)."""
    if run is None and not (describe and describe.strip()):
        raise AdvisorError("nothing to diagnose: give a run or log, or --describe what you see")
    signals, remarks = detect_signals(run)
    store = open_kb(kb)
    suggestions = rank_signals(signals, store, run=run, describe=describe, notes=notes, history=history, dismissed=dismissed, top=top)
    return Diagnosis(
        path=run.path if run is not None else None,
        describe=describe,
        suggestions=suggestions,
        signals=signals,
        notes=remarks,
    )
