"""Signals (+ what the user describes) -> ranked KB entries, each with the evidence that triggered it.

For each signal, candidate entries come from two places:
- explicit links (advisor/links.toml): entries that clearly describe that signal kind, best first;
- the KB's hybrid search over the signal's symptom text (its `query`, else its summary).
An entry found both ways scores higher than one found either way. Across signals, an entry's score is
its best per-signal score plus a share of the others (agreement between signals), weighted by
severity. Run-analysis problems pass part of their score to the fixes they link to.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources
from typing import Iterable

from advisor.models import SEVERITY_ORDER, SEVERITY_WEIGHT, Evidence, Signal, Suggestion
from kb import KBError, KnowledgeBase
from kb.models import Entry

SEARCH_K = 8  # search hits considered per signal
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


def signal_query(signal: Signal) -> str:
    return signal.query or signal.summary or signal.kind.replace("_", " ")


def entries_for_signal(signal: Signal, kb: KnowledgeBase) -> dict[str, tuple[float, str]]:
    """entry id -> (score in 0..1.15, how it was found) for one signal."""
    found: dict[str, tuple[float, str]] = {}
    links = signal_links()
    role = signal.numbers.get("role")
    for i, entry_id in enumerate(links.get(f"{signal.kind}.{role}", links.get(signal.kind, []))):
        try:
            kb.get(entry_id)
        except KBError:
            continue  # a link into a document this KB does not have
        found[entry_id] = (1.0 / (1.0 + LINK_DECAY * i), "link")
    hits = kb.search(signal_query(signal), k=SEARCH_K)
    if hits:
        top = hits[0].score or 1.0
        for h in hits:
            s = SEARCH_WEIGHT * h.score / top
            if h.entry.id in found:
                found[h.entry.id] = (found[h.entry.id][0] + BOTH_BONUS * s / SEARCH_WEIGHT, "link+search")
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
) -> list[Suggestion]:
    """Rank KB entries for a run's signals and an optional description of what the user sees."""
    candidates: dict[str, _Candidate] = {}
    signals = list(signals)
    for sig in signals:
        weight = SEVERITY_WEIGHT[sig.severity]
        for entry_id, (score, how) in entries_for_signal(sig, kb).items():
            candidates.setdefault(entry_id, _Candidate(entry_id)).per_signal.append((weight * score, sig, how))
    if describe and describe.strip():
        hits = kb.search(describe, k=SEARCH_K)
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
                kb.get(fix_id)
            except KBError:
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


def suggestions_for_signal(signal: Signal, kb: KnowledgeBase, k: int = 3) -> list[tuple[Entry, float]]:
    """The top entries for one signal alone (used to annotate a log window)."""
    found = entries_for_signal(signal, kb)
    ranked = sorted(found.items(), key=lambda kv: (-kv[1][0], kv[0]))[:k]
    return [(kb.get(entry_id), score) for entry_id, (score, _) in ranked]
