"""Signals (+ what the user describes) -> ranked KB entries, each with the evidence that triggered it.

For each signal, candidate entries come from three places:
- explicit links (advisor/links.toml): entries that clearly describe that signal kind, best first;
- the user's own notes linked to that signal kind (`KnowledgeBase.entries_for_signal_kinds`);
- the KB's hybrid search over the signal's symptom text (its `query`, else its summary).
An entry found both ways scores higher than one found either way. Across signals, an entry's score is
its best per-signal score plus a share of the others (agreement between signals), weighted by
severity. Run-analysis problems pass part of their score to the fixes they link to.

With the run at hand, only entries that fit it are suggested (advisor/applicability.py): an entry
about a setting the run does not have (a codebook, a contrastive loss, attention...) is left out,
whether a link, the search, the user's notes or a linked problem brought it.
"""

from __future__ import annotations

import tomllib
import weakref
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources
from typing import Callable, Iterable

from advisor.applicability import Applicability, RunProfile, run_profile
from advisor.models import SEVERITY_ORDER, SEVERITY_WEIGHT, Evidence, Run, Signal, Suggestion
from kb import KBError, KnowledgeBase
from kb.models import Entry

SEARCH_K = 8  # search hits kept per signal
SEARCH_POOL = 24  # hits fetched per signal, so that SEARCH_K remain after leaving out what does not fit
NOTES_SCORE = 1.0  # the user's own note for this kind of signal counts like the first explicit link
LINK_DECAY = 0.12  # the i-th linked entry scores 1 / (1 + LINK_DECAY * i)
SEARCH_WEIGHT = 0.7  # a search hit alone is weaker evidence than an explicit link
BOTH_BONUS = 0.15  # linked and found by search
AGREEMENT_SHARE = 0.5  # each further signal adds this share of its score
LINKED_FIX_SHARE = 0.6  # a run-analysis problem passes this share to the fixes that address it
DESCRIBE_WEIGHT = 0.8  # the user's own description counts like a medium-high signal
HISTORY_WEIGHT = 0.5  # `helped` on an earlier run with the same signals


@lru_cache(maxsize=1)
def signal_links() -> dict[str, list[str]]:
    data = tomllib.loads((resources.files("advisor") / "links.toml").read_text(encoding="utf-8"))
    return {kind: list(ids) for kind, ids in data.get("links", {}).items()}


@dataclass
class _Candidate:
    entry_id: str
    per_signal: list[tuple[float, Signal | None, str]] = field(default_factory=list)  # (score, signal, how)

    def total(self) -> float:
        # agreement is between different symptoms: a signal kind counts once (dead units in three
        # layers are one symptom), with its best score here
        best: dict[str, float] = {}
        for score, sig, how in self.per_signal:
            key = sig.kind if sig is not None else how
            best[key] = max(best.get(key, 0.0), score)
        scores = sorted(best.values(), reverse=True)
        return scores[0] + AGREEMENT_SHARE * sum(scores[1:]) if scores else 0.0


_APPLICABILITY: "weakref.WeakKeyDictionary[KnowledgeBase, Applicability]" = weakref.WeakKeyDictionary()


def applicability(kb: KnowledgeBase) -> Applicability:
    """Entry profiles of one KB, kept as long as the KB object lives."""
    if kb not in _APPLICABILITY:
        _APPLICABILITY[kb] = Applicability(kb)
    return _APPLICABILITY[kb]


def fit_filter(kb: KnowledgeBase, profile: RunProfile | None) -> Callable[[Entry], bool]:
    """entry -> whether it may be suggested for a run with this profile (None: any entry may)."""
    if profile is None:
        return lambda entry: True
    table = applicability(kb)
    return lambda entry: table.fits(entry, profile)


def signal_query(signal: Signal) -> str:
    return signal.query or signal.summary or signal.kind.replace("_", " ")


def _notes_entries(kb: KnowledgeBase, kind: str) -> list[Entry]:
    # the user's notes linked to signal kinds (a KB that has them offers entries_for_signal_kinds)
    lookup = getattr(kb, "entries_for_signal_kinds", None)
    return list(lookup([kind])) if lookup is not None else []


def entries_for_signal(
    signal: Signal, kb: KnowledgeBase, fits: Callable[[Entry], bool] | None = None
) -> dict[str, tuple[float, str]]:
    """entry id -> (score in 0..1.15, how it was found) for one signal, only entries that `fits` keeps."""
    fits = fits or (lambda entry: True)
    found: dict[str, tuple[float, str]] = {}
    links = signal_links()
    role = signal.numbers.get("role")
    i = 0
    for entry_id in links.get(f"{signal.kind}.{role}", links.get(signal.kind, [])):
        try:
            entry = kb.get(entry_id)
        except KBError:
            continue  # a link into a document this KB does not have
        if not fits(entry):
            continue
        found[entry_id] = (1.0 / (1.0 + LINK_DECAY * i), "link")
        i += 1
    for entry in _notes_entries(kb, signal.kind):
        if fits(entry) and entry.id not in found:
            found[entry.id] = (NOTES_SCORE, "notes")
    hits = [h for h in kb.search(signal_query(signal), k=SEARCH_POOL) if fits(h.entry)][:SEARCH_K]
    if hits:
        top = hits[0].score or 1.0
        for h in hits:
            s = SEARCH_WEIGHT * max(h.score, 0.0) / top
            if h.entry.id in found:
                score, how = found[h.entry.id]
                found[h.entry.id] = (score + BOTH_BONUS * s / SEARCH_WEIGHT, "notes" if how == "notes" else "link+search")
            else:
                found[h.entry.id] = (s, "search")
    return found


def rank(
    signals: Iterable[Signal],
    kb: KnowledgeBase,
    describe: str | None = None,
    history: dict[str, float] | None = None,
    dismissed: Iterable[str] = (),
    top: int = 10,
    run: Run | None = None,
    demoted: dict[str, float] | None = None,
) -> list[Suggestion]:
    """Rank KB entries for a run's signals and an optional description of what the user sees.

    `run` (the Run the signals came from) keeps the ranking to entries that fit the settings the run
    (and the description) shows; None ranks every entry (a description-only search).
    `demoted` maps entry ids to a factor < 1 (the user marked them "did not help" on this run).
    """
    fits = fit_filter(kb, run_profile(run, describe) if run is not None else None)
    candidates: dict[str, _Candidate] = {}
    signals = list(signals)
    for sig in signals:
        weight = SEVERITY_WEIGHT[sig.severity]
        for entry_id, (score, how) in entries_for_signal(sig, kb, fits).items():
            candidates.setdefault(entry_id, _Candidate(entry_id)).per_signal.append((weight * score, sig, how))
    if describe and describe.strip():
        hits = [h for h in kb.search(describe, k=SEARCH_POOL) if fits(h.entry)][:SEARCH_K]
        if hits:
            top_score = hits[0].score or 1.0
            for h in hits:
                candidates.setdefault(h.entry.id, _Candidate(h.entry.id)).per_signal.append(
                    (DESCRIBE_WEIGHT * h.score / top_score, None, "describe")
                )
    # run-analysis problems point at the fixes that address them
    for cand in list(candidates.values()):
        entry = kb.get(cand.entry_id)
        if entry.kind != "problem" or not entry.links:
            continue
        share = LINKED_FIX_SHARE * max(s for s, _, _ in cand.per_signal)
        for fix_id in entry.links:
            try:
                fix = kb.get(fix_id)
            except KBError:
                continue
            if not fits(fix):
                continue
            target = candidates.setdefault(fix_id, _Candidate(fix_id))
            for _, sig, _ in cand.per_signal:
                target.per_signal.append((share, sig, "linked-fix"))
                break
    dismissed = set(dismissed)
    scored: list[tuple[float, _Candidate]] = []
    for cand in candidates.values():
        if cand.entry_id in dismissed:
            continue
        score = cand.total() + HISTORY_WEIGHT * (history or {}).get(cand.entry_id, 0.0)
        score *= (demoted or {}).get(cand.entry_id, 1.0)
        if history and cand.entry_id in history and history[cand.entry_id] > 0:
            cand.per_signal.append((0.0, None, "history"))
        scored.append((score, cand))
    scored.sort(key=lambda sc: (-sc[0], sc[1].entry_id))
    return [_suggestion(kb.get(c.entry_id), s, c) for s, c in scored[:top] if s > 0]


def _suggestion(entry: Entry, score: float, cand: _Candidate) -> Suggestion:
    signals: dict[tuple[str, str, float], Signal] = {}
    for _, sig, _ in sorted(cand.per_signal, key=lambda x: -x[0]):
        if sig is not None:
            signals.setdefault((sig.kind, sig.metric, sig.start), sig)
    evidence = [Evidence.from_signal(s) for s in signals.values()]
    severity = max((s.severity for s in signals.values()), key=SEVERITY_ORDER.__getitem__, default="low")
    return Suggestion(
        id=entry.id,
        source=entry.source,
        title=entry.title,
        score=round(score, 4),
        severity=severity,
        evidence=evidence,
        steps=entry.steps,
        symptoms=entry.symptoms,
        provenance=entry.provenance,
        expected_outcome=entry.expected_outcome,
        matched_by=sorted({how for _, _, how in cand.per_signal}),
    )


def suggestions_for_signal(
    signal: Signal, kb: KnowledgeBase, k: int = 3, run: Run | None = None
) -> list[tuple[Entry, float]]:
    """The top entries for one signal alone (used to annotate a log window), fitting `run` when given."""
    found = entries_for_signal(signal, kb, fit_filter(kb, run_profile(run) if run is not None else None))
    ranked = sorted(found.items(), key=lambda kv: (-kv[1][0], kv[0]))[:k]
    return [(kb.get(entry_id), score) for entry_id, (score, _) in ranked]
