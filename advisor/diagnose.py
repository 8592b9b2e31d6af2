"""`diagnose`: a run or log (or only a description) -> ranked, evidence-linked suggestions."""

from __future__ import annotations

from pathlib import Path

from advisor.analysis import MIN_POINTS, analyse, open_kb  # noqa: F401  (re-exported: the API users import)
from advisor.models import Diagnosis, Run
from kb import KnowledgeBase


def diagnose_run(
    run: Run | None,
    describe: str | None = None,
    kb: KnowledgeBase | str | Path | None = None,
    history: dict[str, float] | None = None,
    dismissed: set[str] | frozenset[str] = frozenset(),
    top: int = 10,
    notes=None,
) -> Diagnosis:
    """Detect signals in an already-read run and rank entries for them (see `advisor.analysis.analyse`).

    `notes` (an advisor.notes.NotesStore) adds what the user marked before: entries dismissed on this
    run drop out, "did not help" ones are lowered, entries that helped on earlier runs with the same
    signals rank higher.
    """
    return analyse(run, describe=describe, kb=kb, notes=notes, history=history, dismissed=dismissed, top=top)


def diagnose(
    target: str | Path | None,
    describe: str | None = None,
    kb: KnowledgeBase | str | Path | None = None,
    history: dict[str, float] | None = None,
    dismissed: set[str] | frozenset[str] = frozenset(),
    roles_file: str | Path | None = None,
    top: int = 10,
    notes=None,
    run: str | None = None,
) -> Diagnosis:
    """Read a log or probe run (or nothing, with `describe`) and rank fixes for it; `run` picks one run of a multi-run source."""
    read = None
    if target is not None:
        from advisor.readers import read_log

        read = read_log(target, roles_file=roles_file, run=run)
    return diagnose_run(read, describe=describe, kb=kb, history=history, dismissed=dismissed, top=top, notes=notes)
