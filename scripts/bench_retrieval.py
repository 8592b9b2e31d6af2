#!/usr/bin/env python
"""Retrieval quality: recall@1/3/5 and MRR per query style for BM25, dense and hybrid, side by side.

Sets: the dev queries (../shared/eval/queries_dev.jsonl, gold `source::Title`) and the project's own
queries (benchmarks/queries/queries.jsonl, gold entry ids), reported per half: `tune` (constants are
chosen on it) and `heldout` (never used to choose anything).

Usage: scripts/bench_retrieval.py [--db PATH] [--json] [--tune] [--misses heldout]
--tune: 5-fold cross-validation of the fusion constants on the tune half (prints the CV estimate
and the constants the whole tune half prefers; copy those to kb/search.py by hand).
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import random
import statistics
import sys
import tempfile
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from kb import KnowledgeBase  # noqa: E402
from kb import search as ranking  # noqa: E402

DEV_QUERIES = ROOT.parent / "shared" / "eval" / "queries_dev.jsonl"
OWN_QUERIES = ROOT / "benchmarks" / "queries" / "queries.jsonl"
KS = (1, 3, 5)
GRID = {  # what kb/search.py's comment lists as tried was searched here too and dropped
    "bm25_weight": [0.3, 0.5, 0.7, 0.9, 1.1],
    "duplicate": [0.9, 0.95, 1.01],
    "title_weight": [2.0, 3.0],
    "z_depth": [20, 50],
}


def load_sets(kb: KnowledgeBase) -> dict[str, list[dict]]:
    """name -> [{q, style, expected ids}] for dev, tune and heldout."""
    sets: dict[str, list[dict]] = {}
    if DEV_QUERIES.exists():
        by_title = defaultdict(list)
        for e in kb.entries():
            by_title[f"{e.source}::{e.title}"].append(e.id)
        dev = []
        for line in DEV_QUERIES.read_text().splitlines():
            if line.strip():
                q = json.loads(line)
                dev.append({"q": q["q"], "style": q.get("style", "dev"), "expected": [i for g in q["gold"] for i in by_title[g]]})
        sets["dev"] = dev
    own = [json.loads(line) for line in OWN_QUERIES.read_text().splitlines() if line.strip()]
    for half in ("tune", "heldout"):
        sets[half] = [q for q in own if q["half"] == half]
    return sets


class Runner:
    """Both retrievers' candidate lists per query, computed once; rankings re-fused for any constants."""

    def __init__(self, kb: KnowledgeBase):
        self.kb = kb
        self.cache: dict[str, tuple[str, list]] = {}
        self.lexical: dict[tuple, list] = {}

    def lists(self, q: str):
        if q not in self.cache:
            prepared = ranking.prepare_query(q)
            ids, mat = self.kb._load_matrix()
            self.cache[q] = (prepared, ranking.dense(ids, mat, ranking.embed_query(prepared), ranking.CANDIDATES))
        prepared, sem = self.cache[q]
        key = (q, ranking.BM25_WEIGHTS)
        if key not in self.lexical:
            self.lexical[key] = ranking.bm25(self.kb._read(), prepared, ranking.CANDIDATES)
        return self.lexical[key], sem

    def ranked_ids(self, q: str, mode: str, k: int = 20) -> list[str]:
        lex, sem = self.lists(q)
        if mode == "bm25":
            return [i for i, _ in lex[:k]]
        if mode == "dense":
            return [i for i, _ in sem[:k]]
        return [r.id for r in ranking.hybrid(lex, sem, self.kb._unit_vectors, k)]


def first_rank(ranked: list[str], expected: list[str]) -> int | None:
    return next((i + 1 for i, eid in enumerate(ranked) if eid in expected), None)


def score(ranks: list[int | None]) -> dict:
    n = max(len(ranks), 1)
    out = {f"recall@{k}": sum(1 for r in ranks if r and r <= k) / n for k in KS}
    out["mrr"] = sum(1.0 / r for r in ranks if r) / n
    out["n"] = len(ranks)
    return out


def evaluate(runner: Runner, queries: list[dict], mode: str) -> dict:
    ranks = [first_rank(runner.ranked_ids(q["q"], mode), q["expected"]) for q in queries]
    by_style = defaultdict(list)
    for q, r in zip(queries, ranks):
        by_style[q["style"]].append(r)
    return {"all": score(ranks), "styles": {s: score(rs) for s, rs in sorted(by_style.items())}}


def set_constants(bm25_weight: float, duplicate: float, title_weight: float, z_depth: int) -> None:
    ranking.FUSION_WEIGHTS["bm25"] = bm25_weight
    ranking.DUPLICATE_COSINE = duplicate
    ranking.BM25_WEIGHTS = (title_weight, 1.0)
    ranking.Z_DEPTH = z_depth


def mrr(runner: Runner, queries: list[dict]) -> float:
    return statistics.fmean(1.0 / r if (r := first_rank(runner.ranked_ids(q["q"], "hybrid"), q["expected"])) else 0.0 for q in queries)


def tune(runner: Runner, queries: list[dict]) -> dict:
    combos = [dict(zip(GRID, values)) for values in itertools.product(*GRID.values())]
    rng = random.Random(17)
    order = queries[:]
    rng.shuffle(order)
    folds = [order[i::5] for i in range(5)]
    held_scores = []
    for i, fold in enumerate(folds):
        train = [q for j, f in enumerate(folds) if j != i for q in f]
        best = max(combos, key=lambda c: (set_constants(**c), mrr(runner, train))[1])
        set_constants(**best)
        held_scores.append(mrr(runner, fold))
    best_all = max(combos, key=lambda c: (set_constants(**c), mrr(runner, queries))[1])
    set_constants(**best_all)
    return {"cv_mrr": statistics.fmean(held_scores), "fold_mrr": held_scores, "best": best_all, "tune_mrr": mrr(runner, queries)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--db", help="an existing KB (default: build a fresh one in a temp dir)")
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--tune", action="store_true", help="cross-validate the fusion constants on the tune half")
    ap.add_argument("--misses", choices=["dev", "tune", "heldout"], help="list the hybrid's misses at 3 on this set")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        kb = KnowledgeBase(args.db or Path(tmp) / "kb.db")
        if not args.db:
            kb.build()
        sets = load_sets(kb)
        runner = Runner(kb)
        out: dict = {}
        if args.tune:
            out["tuning"] = tune(runner, sets["tune"])
        out["sets"] = {name: {mode: evaluate(runner, qs, mode) for mode in ("bm25", "dense", "hybrid")} for name, qs in sets.items()}
        misses = []
        if args.misses:
            for q in sets[args.misses]:
                ranked = runner.ranked_ids(q["q"], "hybrid", 5)
                r = first_rank(ranked, q["expected"])
                if not r or r > 3:
                    misses.append({"q": q["q"], "style": q["style"], "expected": q["expected"], "got": ranked[:3], "rank": r,
                                   "bm25": first_rank(runner.ranked_ids(q["q"], "bm25"), q["expected"]),
                                   "dense": first_rank(runner.ranked_ids(q["q"], "dense"), q["expected"])})
        kb.close()
    if args.json:
        print(json.dumps(out | {"misses": misses}))
        return 0
    if "tuning" in out:
        t = out["tuning"]
        print(f"5-fold CV on tune: MRR {t['cv_mrr']:.3f} (folds {', '.join(f'{x:.3f}' for x in t['fold_mrr'])}); best on all of tune: {t['best']} (MRR {t['tune_mrr']:.3f})")
    for name, modes in out["sets"].items():
        n = modes["hybrid"]["all"]["n"]
        print(f"\n== {name} ({n} queries)")
        print(f"{'style':<10} {'method':<7} {'n':>4} {'R@1':>6} {'R@3':>6} {'R@5':>6} {'MRR':>6}")
        styles = ["all"] + sorted(modes["hybrid"]["styles"])
        for style in styles:
            for mode in ("bm25", "dense", "hybrid"):
                r = modes[mode]["all"] if style == "all" else modes[mode]["styles"][style]
                print(f"{style:<10} {mode:<7} {r['n']:>4} {r['recall@1']:6.3f} {r['recall@3']:6.3f} {r['recall@5']:6.3f} {r['mrr']:6.3f}")
        worse = []  # the fusion's never-worse property, per style: where the hybrid trails the better single method
        for style in styles:
            got = {mode: modes[mode]["all"] if style == "all" else modes[mode]["styles"][style] for mode in ("bm25", "dense", "hybrid")}
            for metric in ("recall@3", "mrr"):
                best = max(got["bm25"][metric], got["dense"][metric])
                if got["hybrid"][metric] < best - 1e-9:
                    worse.append(f"{style} {metric} {got['hybrid'][metric]:.3f} < {best:.3f}")
        print("hybrid below the better single method: " + ("; ".join(worse) or "nowhere"))
    for m in misses:
        print(f"MISS [{m['style']}] {m['q']!r}: rank {m['rank']} (bm25 {m['bm25']}, dense {m['dense']}); want {m['expected'][0]}; got {m['got']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
