#!/usr/bin/env python
"""Time reading and judging a large log: a 1,000,000-row, 10-metric CSV (and a JSON Lines variant).

    .venv/bin/python scripts/bench_annotate.py [--rows 1000000] [--jsonl] [--keep DIR]

Times `advisor.annotate.annotate(path)` when it exists (read + detect + KB matching), otherwise
`advisor.logs.read_log` + `advisor.detectors.detect`. Target: <= 10 s for the CSV on this machine.
The generated log is a realistic one: a noisy decaying loss with a resumed segment, two loss terms,
a validation loss every 1,000 steps, gradient norms with a burst, a learning-rate schedule,
accuracy, and `NA` cells, so every detector has something to chew on.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

TARGET_S = 10.0


def make_frame(rows: int, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    row = np.arange(rows, dtype=np.int64)
    t = row / rows
    # a resume from a checkpoint 1% of the run back, at 70%: the step column goes back once
    step = np.where(row < int(0.7 * rows), row, row - rows // 100)
    loss = 0.4 + 2.0 * np.exp(-t / 0.15) + 0.05 * rng.standard_normal(rows)
    recon = 0.6 * loss + 0.02 * rng.standard_normal(rows)
    kl = 0.05 + 0.1 * t + 0.005 * rng.standard_normal(rows)
    grad = 1.0 + 0.5 * np.exp(-t / 0.2) + 0.1 * np.abs(rng.standard_normal(rows))
    burst = (t > 0.6) & (t < 0.602)
    grad[burst] *= 8
    lr = 3e-4 * np.minimum(1.0, t / 0.02) * 0.5 * (1 + np.cos(np.pi * t))
    acc = 1 - 0.8 * np.exp(-t / 0.2) + 0.01 * rng.standard_normal(rows)
    val = np.full(rows, np.nan)
    every = max(1, rows // 1000)
    val[::every] = (0.45 + 2.0 * np.exp(-t / 0.15) + 0.01 * rng.standard_normal(rows))[::every]
    val_acc = np.full(rows, np.nan)
    val_acc[::every] = (1 - 0.8 * np.exp(-t / 0.2))[::every]
    epoch = (row // max(1, rows // 20)).astype(np.float64)
    return {"step": step, "epoch": epoch, "loss": loss, "loss_recon": recon, "loss_kl": kl, "grad_norm": grad,
            "lr": lr, "accuracy": acc, "val_loss": val, "val_accuracy": val_acc, "throughput": 1000 + rng.standard_normal(rows)}


def write_csv(path: Path, cols: dict[str, np.ndarray]) -> None:
    import pandas as pd

    frame = pd.DataFrame(cols)
    frame.to_csv(path, index=False, na_rep="NA", float_format="%.6g")


def write_jsonl(path: Path, cols: dict[str, np.ndarray]) -> None:
    names = list(cols)
    arrays = [cols[n].tolist() for n in names]
    with open(path, "w") as fh:
        for row in zip(*arrays):
            fh.write(json.dumps({k: v for k, v in zip(names, row) if not (isinstance(v, float) and v != v)}) + "\n")


def _annotate():
    try:
        from advisor.annotate import annotate  # the full pipeline, when the lead's module is present
    except ImportError:
        return None
    return annotate


def warm_up(out: Path) -> None:
    """One small annotate call first, so that loading the KB and the embedding model is timed apart."""
    annotate = _annotate()
    if annotate is None:
        return
    small = out / "warmup.csv"
    write_csv(small, make_frame(200, seed=1))
    t0 = time.perf_counter()
    annotate(small)
    print(f"annotate start-up (KB and model loading, on a 200-row log): {time.perf_counter() - t0:.2f} s")


def judge(path: Path) -> tuple[str, int]:
    annotate = _annotate()
    if annotate is not None:
        result = annotate(path)
        return "annotate", len(result.get("annotations", []))
    from advisor.detectors import detect
    from advisor.logs import read_log

    return "read_log+detect", len(detect(read_log(path)))


def bench(path: Path, rows: int) -> float:
    t0 = time.perf_counter()
    what, n_signals = judge(path)
    dt = time.perf_counter() - t0
    size = path.stat().st_size / 2**20
    print(f"{path.name}: {rows:,} rows, {size:.0f} MiB, {what}: {dt:.2f} s ({rows / dt:,.0f} rows/s), {n_signals} signal(s)"
          f" — {'OK' if dt <= TARGET_S else 'SLOWER THAN'} target {TARGET_S:.0f} s")
    return dt


def split_timing(path: Path) -> None:
    from advisor.detectors import detect
    from advisor.logs import read_log

    t0 = time.perf_counter()
    run = read_log(path)
    t1 = time.perf_counter()
    signals = detect(run)
    t2 = time.perf_counter()
    print(f"  read_log {t1 - t0:.2f} s, detect {t2 - t1:.2f} s; signals: " + ", ".join(sorted({f'{s.kind}:{s.severity}' for s in signals})))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--jsonl", action="store_true", help="also time the JSON Lines variant")
    ap.add_argument("--keep", type=Path, help="write the logs here instead of a temporary directory")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        out = args.keep or Path(tmp)
        out.mkdir(parents=True, exist_ok=True)
        warm_up(out)
        cols = make_frame(args.rows)
        csv_path = out / "bench_metrics.csv"
        write_csv(csv_path, cols)
        worst = bench(csv_path, args.rows)
        split_timing(csv_path)
        if args.jsonl:
            jsonl_path = out / "bench_history.jsonl"
            write_jsonl(jsonl_path, cols)
            bench(jsonl_path, args.rows)
            split_timing(jsonl_path)
    return 0 if worst <= TARGET_S else 1


if __name__ == "__main__":
    raise SystemExit(main())
