"""What helped before becomes knowledge (issue 14): a "helped" mark with a note on one run comes back
as a suggestion, labelled as the user's own experience, on a later run with the same signals."""

from __future__ import annotations

from pathlib import Path

from advisor import demo_run_path
from advisor.analysis import notes_key
from advisor.diagnose import diagnose
from advisor.explain import explain
from advisor.notes import NotesStore
from advisor.readers import read_log

NOTE = "Cut the relational loss weight to 0.05 and it stopped growing; the total fell again."


def later_run(tmp_path: Path) -> Path:
    """The demo run again, as a new run (another file, another content hash), with the same symptoms."""
    lines = Path(demo_run_path()).read_text(encoding="utf-8").splitlines()
    path = tmp_path / "second_run.jsonl"
    path.write_text("\n".join(lines[:-1]) + "\n", encoding="utf-8")
    return path


def test_a_helped_note_is_suggested_again_on_a_later_run_with_the_same_signals(kb_copy, tmp_path):
    from kb import KnowledgeBase

    kb = KnowledgeBase(kb_copy)
    notes = NotesStore(tmp_path / "notes.db")
    first = diagnose(demo_run_path(), kb=kb, notes=notes)
    helped = first.suggestions[0]
    kinds = sorted({e.signal for e in helped.evidence})
    notes.set(notes_key(read_log(demo_run_path())), helped.id, "helped", note=NOTE, signal_kinds=kinds, kb=kb_copy)

    second_path = later_run(tmp_path)
    assert notes_key(read_log(second_path)) != notes_key(read_log(demo_run_path()))
    kb = KnowledgeBase(kb_copy)  # a fresh reader sees the note the writer committed
    second = diagnose(second_path, kb=kb, notes=notes)
    mine = [s for s in second.suggestions if s.source == "notes"]
    assert mine, [(s.id, s.source) for s in second.suggestions]
    assert "notes" in mine[0].matched_by and mine[0].evidence
    assert {e.signal for e in mine[0].evidence} & set(kinds)
    assert second.suggestions.index(mine[0]) < 5
    text = explain(second).text
    assert "your" in text.lower() and NOTE.split(";")[0][:30] in text

    # a mark that takes the help back removes the knowledge too
    notes.set(notes_key(read_log(demo_run_path())), helped.id, "did not help", signal_kinds=kinds, kb=kb_copy)
    third = diagnose(second_path, kb=KnowledgeBase(kb_copy), notes=notes)
    assert not [s for s in third.suggestions if s.source == "notes"]
