"""The notes store: marks per run and entry, survive reopening, export, dismissed, history, recent runs."""

from __future__ import annotations

import json
import sqlite3
import threading

import pytest

from advisor.models import AdvisorError
from advisor.notes import STATUSES, Note, NotesStore, default_notes_path, normalize_status, run_key


@pytest.fixture
def store(tmp_path) -> NotesStore:
    return NotesStore(tmp_path / "notes.db")


def test_set_get_and_reopen(store, tmp_path):
    store.set("/runs/a", "guide/001-loss-becomes-nan", "tried", note="lowered lr to 1e-4", signal_kinds=["nan_inf"])
    store.set("/runs/a", "catalog/044-x", "helped", signal_kinds=["spike", "nan_inf", "spike"])
    again = NotesStore(tmp_path / "notes.db")  # a new process would see the same
    notes = again.get("/runs/a")
    assert [n.entry_id for n in notes] == ["guide/001-loss-becomes-nan", "catalog/044-x"]
    assert isinstance(notes[0], Note)
    assert notes[0].status == "tried" and notes[0].note == "lowered lr to 1e-4"
    assert notes[1].signal_kinds == ["nan_inf", "spike"]
    assert again.get("/runs/other") == []


def test_set_replaces_and_clear(store):
    store.set("r", "e", "tried", note="first")
    store.set("r", "e", "did not help", note="second")
    (n,) = store.get("r")
    assert (n.status, n.note) == ("did not help", "second")
    assert store.get_one("r", "e").note == "second"
    store.clear("r", "e")
    assert store.get("r") == [] and store.get_one("r", "e") is None


def test_status_names_are_checked_and_normalised(store):
    assert normalize_status("did_not_help") == "did not help"
    assert normalize_status("Did-Not-Help") == "did not help"
    assert normalize_status("HELPED") == "helped"
    assert set(STATUSES) == {"tried", "helped", "did not help", "dismissed"}
    with pytest.raises(AdvisorError, match="unknown status"):
        store.set("r", "e", "fixed it")


def test_export_is_json_ready(store):
    store.set("r", "e1", "helped", note="[red]literal[/red] text", signal_kinds=["spike"])
    rows = store.export("r")
    text = json.dumps(rows)
    assert json.loads(text)[0] == {
        "run": "r",
        "entry_id": "e1",
        "status": "helped",
        "note": "[red]literal[/red] text",
        "signal_kinds": ["spike"],
        "updated": rows[0]["updated"],
    }
    assert isinstance(rows[0]["updated"], str)


def test_dismissed(store):
    store.set("r", "a", "dismissed")
    store.set("r", "b", "tried")
    store.set("other", "c", "dismissed")
    assert store.dismissed("r") == {"a"}


def test_history_boosts_helped_on_shared_signal_kinds(store):
    store.set("run1", "fix/a", "helped", signal_kinds=["spike", "grad_spike"])
    store.set("run2", "fix/a", "helped", signal_kinds=["spike"])
    store.set("run1", "fix/b", "did not help", signal_kinds=["spike"])
    store.set("run1", "fix/c", "helped", signal_kinds=["overfitting"])
    store.set("run1", "fix/d", "tried", signal_kinds=["spike"])
    h = store.history(["spike", "nan_inf"])
    assert h["fix/a"] == pytest.approx(1.25)
    assert h["fix/b"] < 0
    assert "fix/c" not in h and "fix/d" not in h
    assert store.history([]) == {}
    # the run being ranked can leave its own marks out
    assert store.history(["spike"], exclude_run="run2")["fix/a"] == pytest.approx(1.0)


def test_run_key_is_absolute_and_resolved(tmp_path, monkeypatch):
    log = tmp_path / "logs" / "train.csv"
    log.parent.mkdir()
    log.write_text("step,loss\n")
    monkeypatch.chdir(tmp_path)
    assert run_key("logs/../logs/train.csv") == str(log.resolve())
    run_dir = tmp_path / "run1"
    run_dir.mkdir()
    assert run_key(run_dir / "run.db") == run_key(run_dir) == str(run_dir.resolve())
    assert run_key(None) == ""


def test_default_path_env_override(tmp_path, monkeypatch):
    monkeypatch.setenv("TRAIN_ADVISOR_NOTES", str(tmp_path / "mine.db"))
    assert default_notes_path() == tmp_path / "mine.db"
    NotesStore().set("r", "e", "tried")
    assert (tmp_path / "mine.db").exists()
    monkeypatch.delenv("TRAIN_ADVISOR_NOTES")
    assert default_notes_path().name == "notes.db"
    assert "train-advisor" in str(default_notes_path())


def test_wal_and_threads(store):
    store.set("r", "e0", "tried")
    con = sqlite3.connect(store.path)
    assert con.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    con.close()

    errors = []

    def worker(i):
        try:
            for j in range(10):
                store.set("r", f"e{i}-{j}", "tried")
                store.history(["spike"])
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert len(store.get("r")) == 41


def test_not_a_notes_file(tmp_path):
    bad = tmp_path / "bad.db"
    bad.write_bytes(b"this is not sqlite at all, not even close" * 10)
    with pytest.raises(AdvisorError):
        NotesStore(bad).get("r")
    with pytest.raises(AdvisorError, match="directory"):
        NotesStore(tmp_path).get("r")


def test_recent_runs(store):
    store.add_recent("/runs/a", label="a", format="csv")
    store.add_recent("/runs/b", format="probe")
    store.add_recent("/runs/a", label="a", format="csv")  # reopened: moves to the top
    store.add_recent("")  # describe-only sessions are not runs
    recent = store.recent()
    assert [r.run for r in recent] == ["/runs/a", "/runs/b"]
    assert recent[1].label == "b" and recent[1].format == "probe"
    store.forget_recent("/runs/b")
    assert [r.run for r in store.recent()] == ["/runs/a"]


def test_a_damaged_notes_file_is_one_clear_error(tmp_path):
    """Bytes overwritten in the middle of a real notes file: the store says it is damaged (AdvisorError,
    one line for the CLI) instead of answering from half a file."""
    from advisor.models import AdvisorError
    from advisor.notes import NotesStore

    path = tmp_path / "notes.db"
    store = NotesStore(path)
    for i in range(400):
        store.set(f"run-{i}", f"guide/{i:03d}-entry", "tried", note="x" * 200, signal_kinds=["spike"])
    import sqlite3

    con = sqlite3.connect(path)
    con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    con.close()
    data = bytearray(path.read_bytes())
    assert len(data) > 8 * 4096
    data[3 * 4096 : 5 * 4096] = b"\xa5" * (2 * 4096)  # pages in the middle of the notes table
    path.write_bytes(bytes(data))
    with pytest.raises(AdvisorError) as err:
        NotesStore(path).get("run-1")
    assert str(path) in str(err.value) and "\n" not in str(err.value)
