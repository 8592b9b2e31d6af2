"""The `kb` command as a user runs it: JSON shapes, stdin batch mode, errors as one line and exit 2."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest


def run_kb(*args, db, stdin=None):
    env = dict(os.environ, TRAIN_ADVISOR_DB=str(db))
    return subprocess.run([sys.executable, "-m", "kb.cli", *args], input=stdin, capture_output=True, text=True, env=env, timeout=120)


def test_stats_json(built_kb_path):
    out = run_kb("stats", "--json", db=built_kb_path)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout) == {"audit": 4, "catalog": 100, "guide": 19, "run": 14}


def test_query_json_shape(built_kb_path):
    out = run_kb("query", "my loss turns into nan after a few hundred steps", "--json", "-k", "3", db=built_kb_path)
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    assert data["query"].startswith("my loss")
    first = data["results"][0]
    assert first["id"] == "guide/001-loss-becomes-nan"
    assert set(first) == {"id", "source", "title", "score", "symptoms", "steps", "provenance"}
    assert set(first["provenance"]) == {"file", "start_line", "end_line"}
    assert len(data["results"]) == 3


def test_query_stdin_one_json_line_per_query(built_kb_path):
    out = run_kb("query", "-", "--json", "-k", "2", db=built_kb_path, stdin="gpu out of memory\n\nloss oscillates wildly\n")
    assert out.returncode == 0, out.stderr
    lines = [json.loads(line) for line in out.stdout.splitlines()]
    assert [line["query"] for line in lines] == ["gpu out of memory", "loss oscillates wildly"]
    assert all(len(line["results"]) == 2 for line in lines)


def test_show_export_and_source_filter(built_kb_path):
    shown = json.loads(run_kb("show", "audit/002-gradient-explosion", "--json", db=built_kb_path).stdout)
    assert shown["status"] == "PARTIALLY FIXED"
    human = run_kb("show", "audit/002-gradient-explosion", db=built_kb_path).stdout
    assert "Gradient Explosion" in human and "max_norm=0.5" in human
    export = run_kb("export", db=built_kb_path).stdout.splitlines()
    assert len(export) == 137 and json.loads(export[0])["id"]
    filtered = json.loads(run_kb("query", "training is slow", "--source", "run", "--json", db=built_kb_path).stdout)
    assert all(r["source"] == "run" for r in filtered["results"])


@pytest.mark.parametrize(
    "args, message",
    [
        (("show", "nope/000"), "no entry with id"),
        (("import", "/definitely/missing.md"), "no such file"),
        (("query", "x", "--source", "nope"), "no source"),
    ],
)
def test_errors_are_one_line_exit_2(built_kb_path, tmp_path, args, message):
    import shutil

    db = tmp_path / "kb.db"
    shutil.copy(built_kb_path, db)
    out = run_kb(*args, db=db)
    assert out.returncode == 2
    assert out.stdout == ""
    assert len(out.stderr.strip().splitlines()) == 1 and message in out.stderr and "Traceback" not in out.stderr


def test_not_a_database(tmp_path):
    junk = tmp_path / "junk.db"
    junk.write_bytes(b"\x00" * 100)
    out = run_kb("stats", db=junk)
    assert out.returncode == 2 and "not a SQLite database" in out.stderr
    missing = run_kb("query", "x", db=tmp_path / "none.db")
    assert missing.returncode == 2 and "kb build" in missing.stderr
