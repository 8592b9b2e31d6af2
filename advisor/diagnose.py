"""`diagnose`: a run or log (or only a description) -> ranked, evidence-linked suggestions."""

from __future__ import annotations

from pathlib import Path

from advisor.models import AdvisorError, Diagnosis, Run
from kb import KnowledgeBase

MIN_POINTS = 3  # fewer points than this in every series: not enough data to judge a curve


def open_kb(kb: KnowledgeBase | str | Path | None = None) -> KnowledgeBase:
    """The KB to match against: the one given, else the default location (built on first use)."""
    if isinstance(kb, KnowledgeBase):
        return kb
    return KnowledgeBase(kb).ensure_built()


def diagnose_run(
    run: Run | None,
    describe: str | None = None,
    kb: KnowledgeBase | str | Path | None = None,
    history: dict[str, float] | None = None,
    dismissed: set[str] | frozenset[str] = frozenset(),
    top: int = 10,
    notes=None,
) -> Diagnosis:
    """Detect signals in an already-read run and rank entries for them.

    `notes` (an advisor.notes.NotesStore) adds what the user marked before: entries dismissed on this
    run drop out, entries that helped on earlier runs with the same signals rank higher.
    """
    from advisor.detectors import detect
    from advisor.matcher import rank

    store = open_kb(kb)
    signals = []
    remarks: list[str] = []
    if run is not None:
        remarks.extend(run.skipped)
        longest = max((len(s) for s in run.series.values()), default=0)
        if longest < MIN_POINTS:
            remarks.append(f"not enough data: the longest series has {longest} point(s); curves need at least {MIN_POINTS}")
        else:
            signals = detect(run)
            if not signals:
                remarks.append("no symptoms found: the curves look healthy to the detectors")
    if run is None and not (describe and describe.strip()):
        raise AdvisorError("nothing to diagnose: give a run or log, or --describe what you see")
    if notes is not None and run is not None:
        from advisor.notes import run_key

        key = run_key(run.path)
        if history is None and signals:
            # `helped` is evidence for later runs: this run's own marks do not move its ranking (as in the TUI)
            history = notes.history(sorted({s.kind for s in signals}), exclude_run=key)
        dismissed = frozenset(dismissed) | frozenset(notes.dismissed(key))
    suggestions = rank(signals, store, describe=describe, history=history, dismissed=dismissed, top=top)
    return Diagnosis(
        path=run.path if run is not None else None,
        describe=describe,
        suggestions=suggestions,
        signals=signals,
        notes=remarks,
    )


def diagnose(
    target: str | Path | None,
    describe: str | None = None,
    kb: KnowledgeBase | str | Path | None = None,
    history: dict[str, float] | None = None,
    dismissed: set[str] | frozenset[str] = frozenset(),
    roles_file: str | Path | None = None,
    top: int = 10,
    notes=None,
) -> Diagnosis:
    """Read a log or probe run (or nothing, with `describe`) and rank fixes for it."""
    run = None
    if target is not None:
        from advisor.logs import read_log

        run = read_log(target, roles_file=roles_file)
    return diagnose_run(run, describe=describe, kb=kb, history=history, dismissed=dismissed, top=top, notes=notes)
