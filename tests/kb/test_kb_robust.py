"""Nothing lost, nothing crashes (issue 10, the KB's part): one writer at a time, builds that are
complete or say they were interrupted, damaged files and sqlite errors as one line, read-only
places, and any bytes on `kb query -` stdin.

Kills are real `kill -9`s of child processes. The points are drawn from a seeded generator: the child
kills itself after its N-th SQL statement of the write (inside and around the transaction), or at a
time drawn from the build's length.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kb import KBError, KnowledgeBase
from kb.cli import cli

ROOT = Path(__file__).resolve().parents[2]
PLAYBOOK = ROOT / "tests" / "kb" / "data" / "playbook" / "README.md"
SHIPPED = {"audit": 4, "catalog": 100, "guide": 19, "run": 14}

# The child: runs one write and kills itself (SIGKILL) at its N-th SQL statement, or when os.replace
# is reached (N = -1) / has happened (N = -2). The encoder of a first build is a deterministic
# stand-in (what is under test is the storage; real embeddings would make each killed build ~25 s);
# imports embed with the real numpy MiniLM.
CHILD = textwrap.dedent(
    """
    import hashlib, os, signal, sys
    import numpy as np
    from kb import build as b
    from kb.store import KnowledgeBase

    action, db, n, *paths = sys.argv[1:]
    n = int(n)
    count = [0]

    def tick():
        count[0] += 1
        if count[0] == n:
            os.kill(os.getpid(), signal.SIGKILL)

    class Killing:
        def __init__(self, con):
            self.con = con
        def execute(self, *a):
            tick()
            return self.con.execute(*a)
        def executemany(self, *a):
            tick()
            return self.con.executemany(*a)
        def __getattr__(self, name):
            return getattr(self.con, name)

    real_connect, real_replace = b._connect, os.replace
    b._connect = lambda path: Killing(real_connect(path))

    def replace(src, dst):
        if n == -1:
            os.kill(os.getpid(), signal.SIGKILL)
        real_replace(src, dst)
        if n == -2:
            os.kill(os.getpid(), signal.SIGKILL)

    b.os.replace = replace

    class HashEncoder:
        name, dim = "hash", 384
        def encode(self, texts):
            out = np.stack([np.random.default_rng(int(hashlib.md5(t.encode()).hexdigest()[:8], 16)).standard_normal(384) for t in texts])
            return (out / np.linalg.norm(out, axis=1, keepdims=True)).astype("float32")

    if action == "rebuild-slow":  # says when it has read the old file, then takes its time to write the new one
        import time

        real_vectors = b._stored_vectors

        def slow_vectors(path):
            print("read", flush=True)
            time.sleep(4)
            return real_vectors(path)

        b._stored_vectors = slow_vectors
        action = "rebuild"

    kb = KnowledgeBase(db)
    if action == "build":
        kb.build(encoder=HashEncoder())
    elif action == "rebuild":
        kb.build(rebuild=True)
    elif action == "import":
        kb.import_paths(paths)
    print("done", flush=True)
    """
)


@pytest.fixture
def child(tmp_path):
    script = tmp_path / "child.py"
    script.write_text(CHILD)

    def run(action: str, db: Path, n: int, *paths: str, timeout: float = 300) -> int:
        env = dict(os.environ, PYTHONPATH=str(ROOT))
        proc = subprocess.run([sys.executable, str(script), action, str(db), str(n), *paths], env=env,
                              capture_output=True, text=True, timeout=timeout)
        assert proc.returncode in (0, -signal.SIGKILL), proc.stderr
        return proc.returncode

    return run


def state_after(db: Path) -> str:
    """Open the KB the way every command does: complete, or a clear 'interrupted' error."""
    kb = KnowledgeBase(db)
    state = kb.check()
    if state == "incomplete":
        with pytest.raises(KBError, match="the KB build was interrupted; run `kb build`"):
            kb.stats()
    elif state == "complete":
        kb.stats()
    kb.close()
    return state


# ---- kill -9 ------------------------------------------------------------------------------------
@pytest.mark.slow
def test_first_build_killed_anywhere_is_complete_or_says_interrupted(tmp_path, child):
    rng = random.Random(10)
    points = sorted(rng.sample(range(1, 45), 7)) + [10_000]  # 10_000: never killed
    seen = set()
    for n in points:
        db = tmp_path / f"kb-{n}.db"
        killed = child("build", db, n) != 0
        state = state_after(db)
        seen.add(state)
        if state == "complete":
            assert KnowledgeBase(db).stats() == SHIPPED
        else:
            assert killed
        if state == "incomplete":  # the next build finishes it (what ensure_built does)
            res = subprocess.run([sys.executable, str(tmp_path / "child.py"), "build", str(db), "0"],
                                 env=dict(os.environ, PYTHONPATH=str(ROOT)), capture_output=True, text=True, timeout=300)
            assert res.returncode == 0, res.stderr
            assert KnowledgeBase(db).stats() == SHIPPED
    assert "incomplete" in seen and "complete" in seen


@pytest.mark.slow
def test_import_killed_anywhere_is_all_or_nothing(kb_copy, tmp_path, child):
    rng = random.Random(11)
    for n in sorted(rng.sample(range(1, 30), 5)):
        db = tmp_path / f"kb-{n}.db"
        shutil.copy(kb_copy, db)
        child("import", db, n, str(PLAYBOOK))
        assert state_after(db) == "complete"
        stats = KnowledgeBase(db).stats()
        assert {k: stats[k] for k in SHIPPED} == SHIPPED
        assert stats.get("README.md", 0) in (0, 15)  # the whole document or none of it


@pytest.mark.slow
def test_rebuild_killed_anywhere_keeps_imports(kb_copy, tmp_path, child):
    KnowledgeBase(kb_copy).import_paths([PLAYBOOK])
    expected = KnowledgeBase(kb_copy).stats()
    rng = random.Random(12)
    for n in [-1, -2, *sorted(rng.sample(range(1, 40), 4))]:
        db = tmp_path / f"kb-{n}.db"
        shutil.copy(kb_copy, db)
        child("rebuild", db, n)
        assert state_after(db) == "complete"
        assert KnowledgeBase(db).stats() == expected


# ---- one writer at a time ------------------------------------------------------------------------
def _spawn(args: list[str], db: Path) -> subprocess.Popen:
    env = dict(os.environ, TRAIN_ADVISOR_DB=str(db), PYTHONPATH=str(ROOT))
    return subprocess.Popen([sys.executable, "-m", "kb.cli", *args], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


@pytest.mark.slow
def test_import_during_a_rebuild_is_not_dropped(kb_copy, tmp_path):
    """The rebuild has read the old file's imports and is writing the new file when the import runs:
    without one writer at a time, the import commits to the file the rebuild then replaces."""
    team = tmp_path / "team"
    team.mkdir()
    shutil.copy(PLAYBOOK, team / "README.md")
    script = tmp_path / "child.py"
    script.write_text(CHILD)
    rebuild = subprocess.Popen([sys.executable, str(script), "rebuild-slow", str(kb_copy), "0"], env=dict(os.environ, PYTHONPATH=str(ROOT)),
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert rebuild.stdout.readline().strip() == "read"
    imp = _spawn(["import", str(team)], kb_copy)
    out, err = imp.communicate(timeout=300)
    assert imp.returncode == 0, err
    assert "waiting for another" in err  # it queued behind the rebuild
    rebuild.communicate(timeout=300)
    assert rebuild.returncode == 0
    stats = KnowledgeBase(kb_copy).stats()
    assert stats["team/README.md"] == 15 and {k: stats[k] for k in SHIPPED} == SHIPPED


@pytest.mark.slow
def test_concurrent_imports_both_land(kb_copy, tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    for d in (a, b):
        d.mkdir()
        shutil.copy(PLAYBOOK, d / "README.md")
    procs = [_spawn(["import", str(a)], kb_copy), _spawn(["import", str(b)], kb_copy)]
    for p in procs:
        out, err = p.communicate(timeout=300)
        assert p.returncode == 0, err
    stats = KnowledgeBase(kb_copy).stats()
    assert stats["a/README.md"] == 15 and stats["b/README.md"] == 15


# ---- damaged files, sqlite errors, read-only places -----------------------------------------------
def run_kb(*args, db, stdin: bytes | None = None):
    env = dict(os.environ, TRAIN_ADVISOR_DB=str(db))
    return subprocess.run([sys.executable, "-m", "kb.cli", *args], input=stdin, capture_output=True, env=env, timeout=300)


def one_error_line(out) -> str:
    err = out.stderr.decode()
    assert out.returncode == 2, (out.returncode, err)
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err and "internal error" not in err, err
    return err


def test_damaged_file_is_reported_not_served(kb_copy):
    size = kb_copy.stat().st_size
    with open(kb_copy, "r+b") as fh:  # overwrite pages in the middle of the file (entries, index, vectors)
        for offset in range(size // 4, 3 * size // 4, 4096 * 7):
            fh.seek(offset)
            fh.write(os.urandom(2048))
    for args in (("stats",), ("export",), ("query", "loss is nan")):
        err = one_error_line(run_kb(*args, db=kb_copy))
        assert "damaged" in err and "kb build --rebuild" in err
    assert run_kb("build", "--rebuild", db=kb_copy).returncode == 0
    assert KnowledgeBase(kb_copy).stats() == SHIPPED


def test_interrupted_first_build_is_reported_by_stats_and_finished_by_ensure_built(tmp_path, built_kb_path):
    db = tmp_path / "kb.db"
    con = sqlite3.connect(db)  # what a first build killed before its commit leaves: a file, no tables
    con.execute("PRAGMA journal_mode=WAL")
    con.close()
    err = one_error_line(run_kb("stats", db=db))
    assert "the KB build was interrupted; run `kb build`" in err
    shutil.copy(built_kb_path, db)  # its vectors let the build below reuse instead of re-embedding
    con = sqlite3.connect(db)
    con.execute("UPDATE kb_meta SET value = '' WHERE key = 'build_complete'")
    con.commit()
    con.close()
    assert "interrupted" in one_error_line(run_kb("stats", "--json", db=db))
    kb = KnowledgeBase(db).ensure_built()
    assert kb.stats() == SHIPPED and kb.check() == "complete"


@pytest.fixture
def read_only_dir(tmp_path):
    """A real read-only directory: a read-only bind mount (chmod does not stop root)."""
    src, mnt = tmp_path / "src", tmp_path / "ro"
    src.mkdir()
    mnt.mkdir()
    yield src, mnt
    subprocess.run(["umount", str(mnt)], capture_output=True)


def test_build_and_import_in_a_read_only_place_say_so(read_only_dir, built_kb_path, tmp_path):
    src, mnt = read_only_dir
    shutil.copy(built_kb_path, src / "kb.db")
    if os.geteuid() == 0:
        ok = subprocess.run(["mount", "--bind", str(src), str(mnt)], capture_output=True).returncode == 0 and (
            subprocess.run(["mount", "-o", "remount,bind,ro", str(mnt)], capture_output=True).returncode == 0
        )
        if not ok:
            pytest.skip("cannot make a read-only mount here")
    else:
        shutil.copy(built_kb_path, mnt / "kb.db")
        mnt.chmod(0o555)
        (mnt / "kb.db").chmod(0o444)
    doc = tmp_path / "doc.md"
    shutil.copy(PLAYBOOK, doc)
    for args in (("build",), ("build", "--rebuild"), ("import", str(doc)), ("remove", "doc.md")):
        err = one_error_line(run_kb(*args, db=mnt / "kb.db"))
        assert "read-only" in err, err
    assert json.loads(run_kb("stats", "--json", db=mnt / "kb.db").stdout) == SHIPPED  # reading still works
    err = one_error_line(run_kb("build", db=mnt / "sub" / "kb.db"))
    assert "read-only" in err or "cannot create" in err


# ---- stdin of `kb query -` --------------------------------------------------------------------------
def test_binary_stdin_is_one_clear_line(built_kb_path):
    junk = bytes(random.Random(3).randrange(256) for _ in range(4000))
    err = one_error_line(run_kb("query", "-", "--json", db=built_kb_path, stdin=b"\x89PNG\r\n\x1a\n\x00" + junk.replace(b"\n", b"")))
    assert "not UTF-8" in err or "binary" in err
    mixed = run_kb("query", "-", "--json", "-k", "1", db=built_kb_path, stdin=b"loss is nan\n\xff\xfe\x00bad\ngpu out of memory\n")
    assert mixed.returncode == 0
    assert [json.loads(line)["query"] for line in mixed.stdout.decode().splitlines()] == ["loss is nan", "gpu out of memory"]
    assert "line 2" in mixed.stderr.decode() and "skipped" in mixed.stderr.decode()


@pytest.mark.slow
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(st.binary(max_size=300))
def test_any_bytes_on_stdin_never_break_kb_query(built_kb_path, data):
    result = CliRunner().invoke(cli, ["--db", str(built_kb_path), "query", "-", "--json", "-k", "2"], input=data)
    assert result.exit_code in (0, 2), result.output
    if result.exit_code == 2:
        assert "internal error" not in result.output and "binary file" in result.output
    for line in result.stdout.splitlines():
        if line.startswith("{"):
            assert set(json.loads(line)) == {"query", "results"}
