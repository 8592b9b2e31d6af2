#!/usr/bin/env python
"""Diagnosis quality on fault-injected runs: top-1 / top-3 accuracy and false alarms on the healthy run.

Trains each scenario of tests/fault_runs.py on CPU with the live probe, diagnoses its run store and
scores the ranking. Also times a cold `advisor diagnose` process on one probe run (target <= 1.5 s).
Usage: scripts/bench_diagnosis.py [--json] [--only NAME ...]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import fault_runs  # noqa: E402
from advisor.diagnose import diagnose  # noqa: E402
from kb import KnowledgeBase  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--only", nargs="*")
    ap.add_argument("--db", help="an existing KB (default: build one in a temp dir)")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        db = Path(args.db) if args.db else Path(tmp) / "kb.db"
        kb = KnowledgeBase(db)
        if not args.db:
            kb.build()
        t0 = time.perf_counter()
        dirs = fault_runs.run_all(Path(tmp) / "runs", args.only)
        train_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        diagnoses = {name: diagnose(path, kb=kb) for name, path in dirs.items()}
        diagnose_s = time.perf_counter() - t0
        result = fault_runs.score(diagnoses)
        result["train_s"] = round(train_s, 1)
        result["diagnose_all_s"] = round(diagnose_s, 2)
        target = next(iter(dirs.values()))
        env = dict(os.environ, TRAIN_ADVISOR_DB=str(db), TRAIN_ADVISOR_NOTES=str(Path(tmp) / "notes.db"))
        cmd = [str(Path(sys.executable).with_name("advisor")), "diagnose", str(target), "--json"]
        subprocess.run(cmd, capture_output=True, env=env)  # page cache
        cold = []
        for _ in range(3):
            t0 = time.perf_counter()
            subprocess.run(cmd, capture_output=True, env=env, check=True)
            cold.append(time.perf_counter() - t0)
        result["cold_diagnose_s"] = round(statistics.median(cold), 3)
        kb.close()
    if args.json:
        print(json.dumps(result))
        return 0
    print(f"{'run':<22} {'top1':>5} {'top3':>5}  top-3 suggestions / signals")
    for name, row in result["runs"].items():
        print(f"{name:<22} {str(row['top1']):>5} {str(row['top3']):>5}  {', '.join(row['top3_ids'])}")
        print(f"{'':<34} {', '.join(row['signals'])}")
    print(f"\ntop-1 {result['top1']:.2f}   top-3 {result['top3']:.2f}   false alarms on the healthy run {result['false_alarms']}")
    print(f"cold `advisor diagnose` on a probe run: {result['cold_diagnose_s']:.2f} s (target <= 1.5 s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
