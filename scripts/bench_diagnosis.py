#!/usr/bin/env python
"""Diagnosis quality on the corpus: recall (right entry in the top 3), loud signals on healthy runs, misfits.

Three parts, each split into a tuning half and a held-out half by a hash of the case name:
- generated: tiny real CPU runs wired with the Probe API (benchmarks/diagnosis/corpus.py), faults and
  healthy variants, cached under benchmarks/diagnosis/runs/ (--regenerate trains them again);
- original: the fault-injected scenarios of tests/fault_runs.py;
- real: the 25 public logs in ../shared/real-logs, labelled in benchmarks/diagnosis/real_logs.toml.
Misfit: a top-5 suggestion about a setting the run does not have (the case's labelled settings).
Targets: recall >= 0.95, 0 medium/high signals on healthy runs, 0 misfits.
Usage: scripts/bench_diagnosis.py [--json] [--part generated real original] [--only NAME ...] [--regenerate] [--cold]
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
sys.path.insert(0, str(ROOT / "benchmarks" / "diagnosis"))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import corpus  # noqa: E402
import scoring  # noqa: E402
from advisor.diagnose import diagnose  # noqa: E402
from kb import KnowledgeBase  # noqa: E402

PARTS = ("generated", "original", "real")


def _short(entry_id: str) -> str:
    source, _, rest = entry_id.partition("/")
    return f"{source[0]}/{rest[:24]}"


def run_cases(kb, parts, only, regenerate, log) -> dict[str, dict]:
    rows: dict[str, dict] = {}
    generated = [c for c in corpus.FAULTS + corpus.HEALTHY if "generated" in parts]
    generated += [c for c in corpus.ORIGINAL if "original" in parts]
    generated = [c for c in generated if not only or c.name in only]
    dirs = corpus.build([c.name for c in generated], force=regenerate, log=log) if generated else {}
    for case in generated:
        part = "original" if case in corpus.ORIGINAL else "generated"
        row = scoring.score(diagnose(dirs[case.name], kb=kb), case.expected, case.settings, kb)
        rows[case.name] = {"part": part, "half": corpus.half(case.name), "note": case.note, **row}
    if "real" in parts:
        for item in scoring.real_logs():
            if only and item.name not in only:
                continue
            if not item.path.exists():
                log(f"skipped {item.name}: {item.path} is not here")
                continue
            row = scoring.score(diagnose(item.path, kb=kb), item.expected, item.settings, kb)
            rows[item.name] = {"part": "real", "half": corpus.half(item.name), "note": item.evidence[:60], **row}
    return rows


def cold_diagnose_s(db: Path, target: Path, tmp: str) -> float:
    env = dict(os.environ, TRAIN_ADVISOR_DB=str(db), TRAIN_ADVISOR_NOTES=str(Path(tmp) / "notes.db"))
    cmd = [str(Path(sys.executable).with_name("advisor")), "diagnose", str(target), "--json"]
    subprocess.run(cmd, capture_output=True, env=env)  # page cache
    times = []
    for _ in range(3):
        t0 = time.perf_counter()
        subprocess.run(cmd, capture_output=True, env=env, check=True)
        times.append(time.perf_counter() - t0)
    return round(statistics.median(times), 3)


def print_table(rows: dict[str, dict], result: dict) -> None:
    for part in PARTS:
        part_rows = {n: r for n, r in rows.items() if r["part"] == part}
        if not part_rows:
            continue
        print(f"\n== {part} ({len(part_rows)} cases)")
        print(f"{'case':<38} {'half':<8} {'kind':<7} {'top3':>4} {'rank':>4} {'loud':>4} {'misfit':>6}  top-3 suggestions | signals")
        for name, r in sorted(part_rows.items(), key=lambda kv: (kv[1]["healthy"], kv[1]["half"], kv[0])):
            kind = "healthy" if r["healthy"] else "fault"
            hit = "-" if r["healthy"] else ("yes" if r["hit"] else "NO")
            print(
                f"{name[:38]:<38} {r['half']:<8} {kind:<7} {hit:>4} {str(r['rank'] or '-'):>4} {len(r['loud']):>4} {len(r['misfits']):>6}  "
                f"{', '.join(_short(i) for i in r['top'][:3])} | {', '.join(r['signals'][:6])}"
            )
            if r["loud"] and r["healthy"]:
                print(f"{'':<40}loud: {', '.join(r['loud'][:4])}")
            if r["misfits"]:
                print(f"{'':<40}misfits: {', '.join(r['misfits'])}")
    print(f"\n{'part':<10} {'half':<9} {'cases':>5} {'faults':>6} {'recall@3':>8} {'loud/healthy':>12} {'misfits':>7}")
    for key, s in result["summary"].items():
        part, half = key.split(":")
        recall = "-" if s["recall_top3"] is None else f"{s['recall_top3']:.2f}"
        loud = "-" if s["loud_per_healthy_run"] is None else f"{s['loud_per_healthy_run']:.2f}"
        print(f"{part:<10} {half:<9} {s['cases']:>5} {s['faults']:>6} {recall:>8} {loud:>12} {s['misfits']:>7}")
    print("targets: recall@3 >= 0.95, 0 medium/high signals per healthy run, 0 misfits")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--part", nargs="*", choices=PARTS, default=list(PARTS))
    ap.add_argument("--only", nargs="*", help="case names (generated cases or real log file names)")
    ap.add_argument("--regenerate", action="store_true", help="train the generated runs again")
    ap.add_argument("--cold", action="store_true", help="also time a cold `advisor diagnose` process")
    ap.add_argument("--db", help="an existing KB (default: build one in a temp dir)")
    args = ap.parse_args()
    log = (lambda m: print(m, file=sys.stderr)) if args.json else print
    with tempfile.TemporaryDirectory() as tmp:
        db = Path(args.db) if args.db else Path(tmp) / "kb.db"
        kb = KnowledgeBase(db)
        if not args.db:
            kb.build()
        t0 = time.perf_counter()
        rows = run_cases(kb, args.part, args.only, args.regenerate, log)
        result: dict = {"rows": rows, "seconds": round(time.perf_counter() - t0, 1), "summary": {}}
        for part in PARTS:
            for half in ("tune", "held-out", "all"):
                sel = {n: r for n, r in rows.items() if r["part"] == part and half in ("all", r["half"])}
                if sel:
                    result["summary"][f"{part}:{half}"] = scoring.summary(sel)
        if args.cold:
            target = next((corpus.CACHE / n for n in rows if (corpus.CACHE / n).exists()), None)
            if target is not None:
                result["cold_diagnose_s"] = cold_diagnose_s(db, target, tmp)
        kb.close()
    if args.json:
        print(json.dumps(result))
        return 0
    print_table(rows, result)
    if "cold_diagnose_s" in result:
        print(f"cold `advisor diagnose` on a probe run: {result['cold_diagnose_s']:.2f} s (target <= 1.5 s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
