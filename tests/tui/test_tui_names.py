"""Names and run identity (issue 11): `demo`, a relative path, or the name of a run opened before work
in every command through one resolver (advisor.notes.resolve_target); notes are kept under the run's
stable identity, so moving a run directory keeps them; the recent-runs list keeps the path to reopen
apart from the notes key."""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from advisor import demo_run_path, runstore
from advisor.analysis import notes_key
from advisor.cli import cli
from advisor.logs import read_log
from advisor.notes import NotesStore, notes_key_of, resolve_target, run_key


@pytest.fixture
def notes_file(tmp_path, monkeypatch) -> Path:
    path = tmp_path / "notes.db"
    monkeypatch.setenv("TRAIN_ADVISOR_NOTES", str(path))
    monkeypatch.setenv("TRAIN_ADVISOR_LLM_BACKEND", "none")
    return path


def _probe_run(run_dir: Path) -> Path:
    con = runstore.open_for_writing(run_dir)
    now = time.time()
    runstore.write_readings(con, [(s, "train/loss", 5.0 - 0.01 * s, now) for s in range(50)])
    runstore.write_meta(con, {"finished": now})
    con.close()
    return run_dir


def test_resolve_target(tmp_path, monkeypatch, notes_file):
    monkeypatch.chdir(tmp_path)
    assert resolve_target("demo") == demo_run_path()
    assert resolve_target(None) is None
    (tmp_path / "logs").mkdir()
    log = tmp_path / "logs" / "train.csv"
    log.write_text("step,loss\n0,1\n1,0.5\n2,0.25\n")
    assert Path(resolve_target("logs/train.csv")).resolve() == log.resolve()  # relative paths as given
    assert resolve_target("train.csv") == "train.csv"  # not a path here, not a run opened before
    store = NotesStore(notes_file)
    store.add_recent("some-run-id", label="train.csv", format="csv", path=log)
    assert resolve_target("train.csv", store) == str(log.resolve())  # the name of a run opened before
    assert resolve_target("some-run-id", store) == str(log.resolve())
    (tmp_path / "demo").mkdir()  # a path named like a name wins
    assert resolve_target("demo") == "demo"


def test_recent_runs_keep_the_path_apart_from_the_key(tmp_path, notes_file):
    store = NotesStore(notes_file)
    first, moved = tmp_path / "a" / "run", tmp_path / "b" / "run"
    store.add_recent("run-123", label="run", format="probe", path=first)
    store.add_recent("run-123", label="run", format="probe", path=moved)  # the same run, moved
    recent = store.recent()
    assert [(r.run, r.path) for r in recent] == [("run-123", str(moved.resolve()))]
    store.add_recent("/old/path/log.csv", label="log.csv")  # keyed by path: the path is the key
    assert store.recent()[0].path == "/old/path/log.csv"


def test_notes_follow_a_moved_run_directory(tmp_path, notes_file, monkeypatch):
    run_dir = _probe_run(tmp_path / "runs" / "exp1")
    key = notes_key(read_log(run_dir))
    assert key and key != run_key(run_dir)  # the run's own id, not its path
    NotesStore(notes_file).set(key, "guide/001-loss-becomes-nan", "did not help", note="lr was already low")
    moved = tmp_path / "archive" / "exp1-final"
    moved.parent.mkdir()
    shutil.move(str(run_dir), moved)
    monkeypatch.chdir(tmp_path / "archive")
    runner = CliRunner()
    result = runner.invoke(cli, ["notes", "exp1-final", "--json"])  # a relative path, after the move
    assert result.exit_code == 0, result.output
    rows = json.loads(result.output)
    assert [(r["entry_id"], r["status"], r["note"]) for r in rows] == [("guide/001-loss-becomes-nan", "did not help", "lr was already low")]
    assert notes_key_of(str(moved)) == key


def test_marks_under_an_old_path_key_are_adopted(tmp_path, notes_file):
    log = tmp_path / "train.csv"
    log.write_text("step,loss\n" + "".join(f"{s},{1.0 / (s + 1)}\n" for s in range(20)))
    store = NotesStore(notes_file)
    store.set(run_key(log), "guide/004-loss-decreases-very-slowly", "helped")  # from before logs had an identity
    key = notes_key_of(str(log), store)
    assert key != run_key(log)
    assert [n.entry_id for n in store.get(key)] == ["guide/004-loss-decreases-very-slowly"]
    assert store.get(run_key(log)) == []


def test_demo_works_in_every_command(built_kb_path, notes_file):
    runner = CliRunner()
    db = ["--db", str(built_kb_path)]
    diagnosed = runner.invoke(cli, [*db, "diagnose", "demo", "--json"])
    assert diagnosed.exit_code == 0, diagnosed.output
    data = json.loads(diagnosed.output)
    assert data["path"] and Path(data["path"]).name == Path(demo_run_path()).name and data["suggestions"]
    annotated = runner.invoke(cli, [*db, "annotate", "demo", "--json"])
    assert annotated.exit_code == 0, annotated.output
    explained = runner.invoke(cli, [*db, "explain", "demo"])
    assert explained.exit_code == 0, explained.output
    assert data["suggestions"][0]["id"] in explained.output
    noted = runner.invoke(cli, ["notes", "demo", "--json"])
    assert noted.exit_code == 0 and json.loads(noted.output) == []
    missing = runner.invoke(cli, [*db, "diagnose", "no-such-run"])
    assert missing.exit_code == 2 and "does not exist" in missing.output
