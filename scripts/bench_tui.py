"""How fast the TUI feels: first paint after launch, and re-ranking after new evidence.

    .venv/bin/python scripts/bench_tui.py [--db KB] [--runs 5]

1. First paint: a fresh `python` process starts the app (headless) on the bundled demo run; the time
   from spawning the process to Textual's Ready event (the first screen composed and painted) is
   reported, and the time until the ranked suggestions are on screen. Target: first paint <= 1.5 s.
   With tmux installed, the same is measured in a real 80x24 terminal (until the screen shows the
   run bar, and until it shows ranked suggestions).
2. Re-ranking after new evidence (what a live update does once readings arrive): detect + rank on a
   run that gained a NaN stretch, with a warm KB; also a re-rank for a new description. Target:
   <= 100 ms. Medians over --runs repetitions.

Not a timed test: numbers depend on the machine and on what else runs on it.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

CHILD = r"""
import sys, time
t_spawn = float(sys.argv[1])
from tui.app import AdvisorApp

class Bench(AdvisorApp):
    first = None
    def on_ready(self):
        self.first = time.time() - t_spawn
        self.set_interval(0.01, self.check)
    def check(self):
        m = self.main
        if m.generation >= 1 or m.error is not None:
            loaded = time.time() - t_spawn
            self.exit((self.first, loaded, m.error))

result = Bench(kb_path=sys.argv[2] or None, notes_path=sys.argv[3]).run(headless=True, size=(80, 24))
first, loaded, error = result
print(f"{first:.4f} {loaded:.4f} {error or ''}")
"""


def first_paint(db: str | None, notes: str) -> tuple[float, float]:
    t0 = time.time()
    out = subprocess.run(
        [sys.executable, "-c", CHILD, repr(t0), db or "", notes],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
    )
    if out.returncode != 0:
        raise SystemExit(f"the app failed:\n{out.stderr[-3000:]}")
    first, loaded, *err = out.stdout.split()
    if err:
        print(f"  (the run did not load: {' '.join(err)})")
    return float(first), float(loaded)


def tmux_paint(db: str | None, notes: str) -> tuple[float, float] | None:
    tmux = shutil.which("tmux")
    if tmux is None:
        return None
    name = f"bench-tui-{os.getpid()}"
    env = ["env", f"TRAIN_ADVISOR_NOTES={notes}", "HF_HUB_OFFLINE=1", "TERM=xterm-256color"]
    if db:
        env.append(f"TRAIN_ADVISOR_DB={db}")
    cmd = " ".join([*env, sys.executable, "-m", "tui"])
    sock = ["-L", name]
    t0 = time.perf_counter()
    subprocess.run([tmux, *sock, "new-session", "-d", "-s", name, "-x", "80", "-y", "24", "-c", str(ROOT), cmd], check=True)
    painted = loaded = None
    try:
        deadline = t0 + 60
        while time.perf_counter() < deadline:
            screen = subprocess.run([tmux, *sock, "capture-pane", "-p", "-t", name], capture_output=True, text=True).stdout
            now = time.perf_counter() - t0
            if painted is None and "train-advisor" in screen:
                painted = now
            if " 1 " in screen and "signal" in screen and "Suggestions" in screen:
                loaded = now
                break
            time.sleep(0.01)
    finally:
        subprocess.run([tmux, *sock, "kill-server"], capture_output=True)
    return (painted or float("nan"), loaded or float("nan"))


def rerank_times(db: str | None, runs: int) -> dict[str, float]:
    import numpy as np

    from advisor.models import Series
    from tui.session import Pipeline, Session, demo_run_path, open_kb

    kb = open_kb(db)
    pipeline = Pipeline()
    session = Session(demo_run_path(), kb, notes=None, pipeline=pipeline)
    session.load()  # warm: KB open, model loaded, first ranking done
    base = {k: (s.steps.copy(), s.values.copy()) for k, s in session.run.series.items()}
    loss_name = next((n for n, s in session.run.series.items() if s.role == "loss"), next(iter(session.run.series)))
    out: dict[str, list[float]] = {"detect+rank (new evidence)": [], "rank only (new evidence)": [], "rank (new description)": []}
    for i in range(runs):
        # restore, then add a NaN stretch to the loss: new evidence, a new signal
        for k, (st, va) in base.items():
            session.run.series[k].steps, session.run.series[k].values = st.copy(), va.copy()
        s: Series = session.run.series[loss_name]
        step = float(s.steps[-1]) if len(s.steps) else 0.0
        extra = np.arange(1, 11, dtype=float) * 10 + step
        s.steps = np.concatenate([s.steps, extra.astype(s.steps.dtype)])
        s.values = np.concatenate([s.values, np.full(10, np.nan)])
        if s.epochs is not None:
            s.epochs = np.concatenate([s.epochs, np.full(10, s.epochs[-1] if len(s.epochs) else 0.0)])
        session.kb._cache.clear() if i == 0 else None  # the first repetition searches for the new signal for real
        t = time.perf_counter()
        session.signals = session._detect()
        t_rank = time.perf_counter()
        session.rerank()
        done = time.perf_counter()
        out["detect+rank (new evidence)"].append(done - t)
        out["rank only (new evidence)"].append(done - t_rank)
        t = time.perf_counter()
        session.rerank(describe=f"val loss goes up after epoch {20 + i}")
        out["rank (new description)"].append(time.perf_counter() - t)
        session.describe = None
    first = {f"{k}, first (cold cache)": v[0] for k, v in out.items()}
    result = {**first, **{f"{k}, median": statistics.median(v) for k, v in out.items()}}
    result.update(live_poll_times(kb, session.run, runs))
    return result


def live_poll_times(kb, demo_run, runs: int) -> dict[str, float]:
    """A live probe store holding the demo's readings; each repetition appends a few steps (the
    last ones NaN) and times Session.poll(): read the new rows, detect, re-rank."""
    import math

    from advisor import runstore
    from tui.session import Pipeline, Session

    times = []
    with tempfile.TemporaryDirectory() as tmp:
        con = runstore.open_for_writing(tmp)
        runstore.write_meta(con, {"started": time.time()})
        rows = [(int(st), name, float(v), 0.0) for name, s in demo_run.series.items() for st, v in zip(s.steps, s.values)]
        runstore.write_readings(con, rows)
        session = Session(tmp, kb, notes=None, pipeline=Pipeline())
        session.load()
        loss = next((n for n, s in session.run.series.items() if s.role == "loss"), next(iter(session.run.series)))
        step = int(max(s.steps[-1] for s in session.run.series.values()))
        for i in range(runs):
            new = [(step + j, loss, math.nan if i == runs - 1 else float(demo_run.series[loss].values[-1]), 0.0) for j in range(1, 6)]
            runstore.write_readings(con, new)
            step += 5
            t = time.perf_counter()
            session.poll()
            times.append(time.perf_counter() - t)
        con.close()
    return {"live poll (read new readings + detect + rank), median": statistics.median(times),
            "live poll, the one where a NaN signal appears": times[-1]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--db", default=os.environ.get("TRAIN_ADVISOR_DB"), help="KB file (default: $TRAIN_ADVISOR_DB or the user data dir)")
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--no-tmux", action="store_true")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        notes = str(Path(tmp) / "notes.db")
        firsts, loads = [], []
        for _ in range(max(1, args.runs)):
            f, l = first_paint(args.db, notes)
            firsts.append(f)
            loads.append(l)
        print(f"first paint after launch (headless, process spawn -> Ready): median {statistics.median(firsts) * 1000:.0f} ms "
              f"(min {min(firsts) * 1000:.0f}, max {max(firsts) * 1000:.0f}); target <= 1500 ms")
        print(f"ranked suggestions on screen after launch:                     median {statistics.median(loads) * 1000:.0f} ms")
        if not args.no_tmux:
            t = tmux_paint(args.db, notes)
            if t is None:
                print("real terminal: tmux not installed, skipped")
            else:
                print(f"real terminal (tmux 80x24): first paint {t[0] * 1000:.0f} ms, ranked suggestions {t[1] * 1000:.0f} ms")
    for name, seconds in rerank_times(args.db, args.runs).items():
        print(f"re-rank {name}: {seconds * 1000:.1f} ms")
    print("target for re-ranking after new evidence: <= 100 ms")


if __name__ == "__main__":
    main()
