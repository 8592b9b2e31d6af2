"""kill -9 while the probe writes: the run store always opens and reads, and the run reads as stopped."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from advisor import runstore
from advisor.readers import read_log

# A real training loop: every step sampled, flushed every 20 ms, so a kill lands mid-write often.
_CHILD = textwrap.dedent(
    """
    import sys, torch, torch.nn as nn, torch.nn.functional as F
    from advisor import Probe

    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(16, 64), nn.ReLU(), nn.Linear(64, 8), nn.Tanh(), nn.Linear(8, 4))
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    probe = Probe(model, run=sys.argv[1], every=1, flush_seconds=0.02)
    step = 0
    while True:
        x, y = torch.randn(32, 16), torch.randint(0, 4, (32,))
        out = model(x)
        loss = F.cross_entropy(out, y)
        opt.zero_grad()
        loss.backward()
        probe.step(loss=loss, lr=0.05, logits=out, targets=y, embeddings=model[:3](x))
        opt.step()
        step += 1
        if step == 3:
            print("ready", flush=True)
    """
)


def _start(run: Path) -> subprocess.Popen:
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[2]))
    return subprocess.Popen([sys.executable, "-c", _CHILD, str(run)], stdout=subprocess.PIPE, env=env, text=True)


@pytest.mark.slow
def test_kill_9_at_random_points_leaves_a_readable_stopped_store(tmp_path: Path):
    rng = random.Random(20261201)
    delays = [rng.uniform(0.0, 0.6) for _ in range(3)]
    for i, delay in enumerate(delays):
        run = tmp_path / f"run{i}"
        child = _start(run)
        try:
            assert child.stdout.readline().strip() == "ready", "the training child did not start"
            assert runstore.run_state(run) == "live"
            time.sleep(delay)
            os.kill(child.pid, signal.SIGKILL)
        finally:
            child.kill()
            child.wait(30)
        # The store opens and reads, and whatever was committed is whole.
        assert runstore.is_run_store(run), f"delay {delay:.3f}s"
        meta = runstore.read_meta(run)
        readings = runstore.read_readings(run)
        runstore.read_events(run)
        assert meta["pid"] == child.pid and "run_id" in meta and "finished" not in meta
        steps, values = readings["loss"]
        assert len(steps) >= 3 and np.all(np.diff(steps) == 1) and np.all(np.isfinite(values))
        assert runstore.run_state(run) == "stopped"
        assert not read_log(run).live


def test_run_state_live_finished_and_stale(tmp_path: Path):
    import torch

    from advisor import Probe

    probe = Probe(None, run=tmp_path / "run", every=1)
    probe.step(loss=torch.tensor(1.0))
    probe.flush()
    assert runstore.run_state(tmp_path / "run") == "live"
    run_id = runstore.read_meta(tmp_path / "run")["run_id"]
    probe.close()
    assert runstore.run_state(tmp_path / "run") == "finished"

    # Resumed into the same store: same run id, live again until closed.
    probe = Probe(None, run=tmp_path / "run", every=1)
    probe.flush()
    assert runstore.read_meta(tmp_path / "run")["run_id"] == run_id
    probe.close()

    # Written on another host: only the heartbeat can tell.
    con = runstore.open_for_writing(tmp_path / "other")
    runstore.write_meta(con, {"pid": 1, "hostname": "elsewhere", "heartbeat": time.time()})
    con.close()
    assert runstore.run_state(tmp_path / "other") == "live"
    assert runstore.run_state(tmp_path / "other", now=time.time() + runstore.STALE_SECONDS + 1) == "stopped"

    # This host, a pid that no longer exists.
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    con = runstore.open_for_writing(tmp_path / "gone")
    runstore.write_meta(con, {"pid": dead.pid, "hostname": runstore.socket.gethostname(), "heartbeat": time.time()})
    con.close()
    assert runstore.run_state(tmp_path / "gone") == "stopped"


def test_the_reader_calls_a_run_live_only_while_its_writer_lives(tmp_path: Path):
    """A store left unfinished by a process that is gone (kill -9, a crash) reads as not live."""
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    host = runstore.socket.gethostname()
    for name, pid in (("alive", os.getpid()), ("killed", dead.pid)):
        con = runstore.open_for_writing(tmp_path / name)
        runstore.write_readings(con, [(step, "loss", 1.0 / (step + 1), time.time()) for step in range(5)])
        runstore.write_meta(con, {"pid": pid, "hostname": host, "heartbeat": time.time()})
        con.close()
    assert read_log(tmp_path / "alive").live
    assert not read_log(tmp_path / "killed").live  # fresh heartbeat, but its process is gone

    con = runstore.open_for_writing(tmp_path / "alive")
    runstore.write_meta(con, {"finished": time.time()})
    con.close()
    assert not read_log(tmp_path / "alive").live
