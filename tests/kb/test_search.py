"""Hybrid search on real queries: never worse than the better single method, README examples first, scoped threads."""

from __future__ import annotations

import json
from pathlib import Path

from threadpoolctl import threadpool_info

from kb import search as ranking

QUERIES = Path(__file__).resolve().parents[2] / "benchmarks" / "queries" / "queries.jsonl"


def _first(ids: list[str], expected: list[str]) -> int | None:
    return next((i + 1 for i, e in enumerate(ids) if e in expected), None)


def test_hybrid_is_never_worse_than_the_better_single_method(kb):
    """On a sample of the tune half (every third query), fused recall@5 and MRR are at least the better method's."""
    rows = [json.loads(line) for line in QUERIES.read_text().splitlines() if line.strip()]
    sample = [r for r in rows if r["half"] == "tune"][::3]
    assert len(sample) >= 40
    found = {"bm25": [], "dense": [], "hybrid": []}
    for r in sample:
        for mode in found:
            found[mode].append(_first([h.entry.id for h in kb.search(r["q"], k=5, mode=mode)], r["expected"]))
    recall = {m: sum(1 for x in v if x) / len(v) for m, v in found.items()}
    mrr = {m: sum(1 / x for x in v if x) / len(v) for m, v in found.items()}
    assert recall["hybrid"] >= max(recall["bm25"], recall["dense"])
    assert mrr["hybrid"] >= max(mrr["bm25"], mrr["dense"])


def test_readme_examples_rank_their_entry_first(kb):
    assert kb.search("my loss turns into nan after a few hundred steps", k=1)[0].entry.id == "guide/001-loss-becomes-nan"
    top = kb.search("val loss goes up after epoch 20", k=1)[0].entry.id
    assert top == "guide/012-validation-loss-increasing-while-training-loss-decreases"


def test_a_confident_single_method_is_not_outvoted():
    """A hit far above the rest of one list stays first even when the other list ranks it low."""
    lexical = [(f"e{i}", 10.0 - i * 0.1) for i in range(20)]  # flat: BM25 is guessing
    semantic = [("target", 1.5)] + [(f"e{i}", 0.6 - i * 0.01) for i in range(19)]  # one clear winner
    assert ranking.fuse(lexical, semantic)[0].id == "target"


def test_near_duplicates_do_not_crowd_the_top():
    import numpy as np

    a = np.array([1.0, 0.0]); b = np.array([0.999, 0.045]); c = np.array([0.0, 1.0])
    ranked = [ranking.Ranked("a", 3, 1, 1), ranking.Ranked("a-twin", 2, 2, 2), ranking.Ranked("c", 1, 3, 3)]
    vectors = {"a": a, "a-twin": b / np.linalg.norm(b), "c": c}
    assert [r.id for r in ranking.diversify(ranked, vectors, keep=3)] == ["a", "c", "a-twin"]


def test_query_thread_limit_is_scoped(kb):
    """The query path runs BLAS on one thread and gives the user's thread count back afterwards."""
    before = {(i["internal_api"], i["filepath"]): i["num_threads"] for i in threadpool_info()}
    with ranking.small_matrix_threads():
        inside = {(i["internal_api"], i["filepath"]): i["num_threads"] for i in threadpool_info()}
    kb.search("gradient norm explodes", k=3)
    after = {(i["internal_api"], i["filepath"]): i["num_threads"] for i in threadpool_info()}
    assert before and all(n == 1 for n in inside.values())
    assert after == before
