#!/usr/bin/env python
"""Retrieval quality on the dev queries: recall@1/3/5 and MRR for BM25, dense and hybrid, side by side.

Usage: scripts/bench_retrieval.py [--queries ../shared/eval/queries_dev.jsonl] [--db PATH] [--json]
Gold labels are `source::Title`; an entry matches when its source and title agree.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from kb import KnowledgeBase  # noqa: E402

DEFAULT_QUERIES = ROOT.parent / "shared" / "eval" / "queries_dev.jsonl"


def evaluate(kb: KnowledgeBase, queries: list[dict], mode: str) -> dict:
    hits_at = {1: 0, 3: 0, 5: 0}
    rr = 0.0
    for q in queries:
        gold = set(q["gold"])
        ranked = [f"{h.entry.source}::{h.entry.title}" for h in kb.search(q["q"], k=20, mode=mode)]
        first = next((i + 1 for i, key in enumerate(ranked) if key in gold), None)
        for k in hits_at:
            hits_at[k] += bool(first and first <= k)
        rr += 1.0 / first if first else 0.0
    n = len(queries)
    return {"recall@1": hits_at[1] / n, "recall@3": hits_at[3] / n, "recall@5": hits_at[5] / n, "mrr": rr / n}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--queries", default=str(DEFAULT_QUERIES))
    ap.add_argument("--db", help="an existing KB (default: build a fresh one in a temp dir)")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    queries = [json.loads(line) for line in Path(args.queries).read_text().splitlines() if line.strip()]
    with tempfile.TemporaryDirectory() as tmp:
        kb = KnowledgeBase(args.db or Path(tmp) / "kb.db")
        if not args.db:
            kb.build()
        results = {mode: evaluate(kb, queries, mode) for mode in ("bm25", "dense", "hybrid")}
        kb.close()
    if args.json:
        print(json.dumps({"queries": len(queries), "results": results}))
        return 0
    print(f"{len(queries)} queries from {args.queries}")
    print(f"{'method':<8} {'R@1':>6} {'R@3':>6} {'R@5':>6} {'MRR':>6}")
    for mode, r in results.items():
        print(f"{mode:<8} {r['recall@1']:6.3f} {r['recall@3']:6.3f} {r['recall@5']:6.3f} {r['mrr']:6.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
