"""Users' own documents, measured: entries per document, sections skipped, and our own questions
(tests/kb/data/questions.jsonl, a dozen per document, split tune/heldout) answered in the top 3 of a
KB holding the shipped sources plus the three documents.

    .venv/bin/python tests/kb/measure_docs.py [--db kb.db] [--json]

The documents are real: an excerpt of the Deep Learning Tuning Playbook (a playbook), MLflow's
agent-evaluation troubleshooting guide (a framework's troubleshooting page) and MMDetection's FAQ
(an FAQ written as lists); see tests/kb/data/NOTICE.md. Nothing in the parser was tuned on these
questions; both halves are reported anyway.
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
from pathlib import Path

from kb import KnowledgeBase

DATA = Path(__file__).resolve().parent / "data"
DOCS = [DATA / "playbook" / "README.md", DATA / "mlflow" / "troubleshooting.md", DATA / "mmdet" / "faq.md"]


def measure(db: Path) -> dict:
    kb = KnowledgeBase(db)
    if kb.check() != "complete":
        kb.build()
    report = kb.import_paths(DOCS)
    sources = {s.source: s for s in kb.sources()}
    questions = [json.loads(line) for line in (DATA / "questions.jsonl").read_text(encoding="utf-8").splitlines() if line.strip()]
    out: dict = {"documents": {}, "questions": []}
    for doc in DOCS:
        key = report.paths and next(k for k, p in report.paths.items() if p == str(doc.resolve()))
        info = sources[key]
        out["documents"][key] = {"entries": info.entries, "skipped_sections": info.skipped_sections, "tune": [0, 0], "heldout": [0, 0]}
    for q in questions:
        ids = [h.entry.id for h in kb.search(q["query"], k=3)]
        hit = any(i == f"{q['doc']}/{r}" for i in ids for r in q["relevant"])
        counts = out["documents"][q["doc"]][q["half"]]
        counts[0] += int(hit)
        counts[1] += 1
        out["questions"].append({**q, "top3": ids, "hit": hit})
    kb.close()
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--db", help="a built KB to copy (default: build one in a temp dir)")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        db = Path(tmp) / "kb.db"
        if args.db:
            shutil.copy(args.db, db)
        result = measure(db)
    if args.json:
        print(json.dumps(result, indent=1))
        return
    for key, d in result["documents"].items():
        t, h = d["tune"], d["heldout"]
        print(f"{key:<20} entries {d['entries']:>3}  skipped {len(d['skipped_sections'])} {d['skipped_sections']}  "
              f"top-3: tune {t[0]}/{t[1]}, held-out {h[0]}/{h[1]}")
    for q in result["questions"]:
        if not q["hit"]:
            print(f"  miss [{q['half']}] {q['query']!r}: {q['top3']}")


if __name__ == "__main__":
    main()
