"""Ranking entries for a query: BM25 over FTS5, cosine over the stored embeddings, and their fusion.

The query first goes through `kb.evidence` (numbers, log lines and tracebacks judged into signal
words) and `kb.lexicon` (logger keys, abbreviations, method names -> the words entries use); both
retrievers see the same expanded text. Fusion adds each method's z-scores over its own candidates:
a hit far above the rest of its list (a confident method) keeps its lead, where rank fusion would
let a method that is guessing outvote it.
"""

from __future__ import annotations

import re
import sqlite3
from dataclasses import dataclass

import numpy as np

from kb.embed import query_encoder, small_matrix_threads
from kb.errors import KBError

CANDIDATES = 50
# BM25 column weights: a word in the title counts more than one in the body text.
BM25_WEIGHTS = (2.0, 1.0)

# Fusion: each method's scores become z-scores over its first Z_DEPTH candidates (a hit far above
# the rest of its own list is a confident one), weighted and added; an entry missing from a list counts
# as that list's lowest. Constants chosen by 5-fold cross-validation on the tune half of
# benchmarks/queries (scripts/bench_retrieval.py --tune). Tried there and dropped: min-max scores
# weighted by each list's top gap, extra weight for a large z-gap, damping BM25 when its top score
# is low, title weight 5, z over 10 or 50 candidates; and (5-fold CV MRR on tune, against 0.923 for
# these constants): each method weighted by its own top-1/top-2 z-gap (0.903 with the view and raw-query
# options below), the symptom view weighted 0.5-2x against the full text, the raw query's embedding
# added to the expanded one's, scores scaled by a global per-method spread instead of the query's own
# z (confidence kept in the raw spread; lost in every fold). Also tried on tune and dev with no gain on
# either (issue 17, second round): rank fusion (k 5-60), exp-sharpened z, each candidate's score
# smoothed by its similarity to the fused top 1-5 (pseudo-relevance feedback without a second encoder
# pass), a Rocchio dense query from the fused top 1-5, z over log BM25, z capped at 2-3, separate z
# depths per method, BM25 damped when the two lists' top 3-10 disagree, and BM25 index text as symptoms
# only / symptoms twice / without code comments / with the body; entry embeddings of lexicon-expanded
# text (dense alone +0.016 MRR on tune, the hybrid -0.013: the two lists agree more and fuse worse);
# the dense query without lexicon words or without signal words (both lower); NLTK's English stopword
# list for the BM25 query (bench --tune CV 0.940 against 0.941).
FUSION_WEIGHTS = {"bm25": 0.9, "dense": 1.0}
Z_DEPTH = 20
# Near-duplicate entries (cosine of their stored vectors above this) are not shown twice in the
# top ranks: the lower one moves below the next distinct entry. On the shipped KB no pair reaches it
# (closest: 0.83); 0.7-0.85 moved no query up on tune or dev, so it guards imported near-copies only.
DUPLICATE_COSINE = 0.9

_STOPWORDS = frozenset(
    """a an and are as at be but by can do does did for from had has have how i if in into is it its
    my me of on or our so that the their them then there these this to was we were what when where
    which while who why will with would you your after before about keeps keep get gets got very just""".split()
)


@dataclass(frozen=True)
class Ranked:
    """One fused result before it is turned into a `Hit`: the id, fused score and per-method ranks."""

    id: str
    score: float
    bm25_rank: int | None
    dense_rank: int | None


def result_dict(entry: dict, score: float) -> dict:
    """The JSON shape of one search result (`kb query --json`) from an entry's stored fields: the CLI
    builds it from the stored JSON without loading pydantic models."""
    return {
        "id": entry["id"],
        "source": entry["source"],
        "title": entry["title"],
        "score": round(float(score), 6),
        "symptoms": list(entry.get("symptoms") or []),
        "steps": list(entry.get("steps") or []),
        "provenance": dict(entry["provenance"]),
    }


def fts_query(text: str) -> str:
    """User text -> a safe FTS5 MATCH expression: quoted content words joined with OR."""
    words = [w for w in re.findall(r"[A-Za-z0-9]+", text.lower()) if w not in _STOPWORDS]
    return " OR ".join(f'"{w}"' for w in dict.fromkeys(words))


def prepare_query(text: str) -> str:
    """The text both retrievers see: what the user wrote, the signals its evidence shows, lexicon words."""
    from kb.evidence import signal_words
    from kb.lexicon import expand_text

    signals = signal_words(text)
    expanded = expand_text(text)
    if signals:
        expanded = expanded + "\n" + " ".join(signals)
    return expanded


def bm25(con: sqlite3.Connection, prepared: str, limit: int = CANDIDATES, source: str | None = None) -> list[tuple[str, float]]:
    """(id, score) best first; score is -bm25, larger is better."""
    q = fts_query(prepared)
    if not q:
        return []
    weights = f"{BM25_WEIGHTS[0]}, {BM25_WEIGHTS[1]}"
    if source:
        sql = (
            f"SELECT e.id, bm25(entries_fts, {weights}) AS r FROM entries_fts "
            "JOIN entries e ON e.rowid = entries_fts.rowid WHERE entries_fts MATCH ? AND e.source = ? ORDER BY r LIMIT ?"
        )
    else:  # rank inside the FTS table first, then look up ids for the few rows kept (2x faster)
        sql = (
            f"SELECT e.id, f.r FROM (SELECT rowid, bm25(entries_fts, {weights}) AS r FROM entries_fts "
            "WHERE entries_fts MATCH ? ORDER BY r LIMIT ?) f JOIN entries e ON e.rowid = f.rowid ORDER BY f.r"
        )
    params = [q, source, limit] if source else [q, limit]
    try:
        return [(eid, -float(r)) for eid, r in con.execute(sql, params)]
    except sqlite3.OperationalError as exc:
        raise KBError(f"full-text search failed: {exc}") from exc


def embed_query(prepared: str) -> np.ndarray:
    return query_encoder().encode([prepared])[0]


def dense(ids: list[str], mat: np.ndarray, qv: np.ndarray, limit: int = CANDIDATES, source: str | None = None) -> list[tuple[str, float]]:
    """(id, summed cosine over the entry's views) best first."""
    if not ids:
        return []
    with small_matrix_threads():
        sims = mat @ qv
    if source:
        mask = np.fromiter((i.startswith(source + "/") for i in ids), dtype=bool, count=len(ids))
        sims = np.where(mask, sims, -np.inf)
    n = min(limit, len(ids))
    top = np.argpartition(-sims, n - 1)[:n]
    top = top[np.argsort(-sims[top])]
    return [(ids[i], float(sims[i])) for i in top if np.isfinite(sims[i])]


def _z(results: list[tuple[str, float]]) -> dict[str, float]:
    if len(results) < 2:
        return {eid: 1.0 for eid, _ in results}
    scores = np.array([s for _, s in results], dtype=np.float64)
    sd = float(scores.std()) or 1.0
    mean = float(scores.mean())
    return {eid: (s - mean) / sd for eid, s in results}


def fuse(lexical: list[tuple[str, float]], semantic: list[tuple[str, float]]) -> list[Ranked]:
    """Z-score fusion of the two candidate lists -> Ranked, best first (ties: dense rank, then BM25 rank)."""
    brank = {eid: i + 1 for i, (eid, _) in enumerate(lexical)}
    drank = {eid: i + 1 for i, (eid, _) in enumerate(semantic)}
    bz, dz = _z(lexical[:Z_DEPTH]), _z(semantic[:Z_DEPTH])
    bmin, dmin = min(bz.values(), default=0.0), min(dz.values(), default=0.0)
    wb, wd = FUSION_WEIGHTS["bm25"], FUSION_WEIGHTS["dense"]
    scores = {eid: wb * bz.get(eid, bmin) + wd * dz.get(eid, dmin) for eid in brank.keys() | drank.keys()}
    order = sorted(scores, key=lambda e: (-scores[e], drank.get(e, 10**9), brank.get(e, 10**9)))
    return [Ranked(eid, scores[eid], brank.get(eid), drank.get(eid)) for eid in order]


def hybrid(lexical: list[tuple[str, float]], semantic: list[tuple[str, float]], unit_vectors, k: int) -> list[Ranked]:
    """The hybrid ranking: fusion, then near-duplicates moved down. unit_vectors(ids) -> {id: vector}."""
    head = fuse(lexical, semantic)[: k + 10]
    return diversify(head, unit_vectors([r.id for r in head]), keep=k)[:k]


def diversify(ranked: list[Ranked], vectors: dict[str, np.ndarray], keep: int) -> list[Ranked]:
    """Move an entry that nearly duplicates a higher-ranked one below the next distinct entry.

    Several catalog entries say almost the same thing (collapse, transfer); without this they fill
    the top ranks and push out the entry the query's symptom names.
    """
    if len(ranked) < 2:
        return ranked
    out: list[Ranked] = []
    deferred: list[Ranked] = []
    for r in ranked:
        v = vectors.get(r.id)
        dup = v is not None and any(
            (w := vectors.get(o.id)) is not None and float(v @ w) > DUPLICATE_COSINE for o in out
        )
        if dup and len(out) < keep:
            deferred.append(r)
            continue
        out.append(r)
        out.extend(deferred)  # a deferred near-duplicate goes right after the next distinct entry
        deferred = []
    return out + deferred
