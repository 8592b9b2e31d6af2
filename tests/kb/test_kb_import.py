"""Users' own knowledge (issue 14): a docs folder imported, kept current, listed and removed; generic
documents cut where a reader would; helped notes becoming entries. Real documents: an excerpt of the
Deep Learning Tuning Playbook and MLflow's troubleshooting guide (tests/kb/data, NOTICE.md)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from kb import KBError, KnowledgeBase
from kb.parse import parse_file, parse_text

DATA = Path(__file__).resolve().parent / "data"
PLAYBOOK = DATA / "playbook" / "README.md"
MLFLOW = DATA / "mlflow" / "troubleshooting.md"
MMDET_FAQ = DATA / "mmdet" / "faq.md"
SHIPPED = {"audit": 4, "catalog": 100, "guide": 19, "run": 14}


@pytest.fixture
def docs(tmp_path) -> Path:
    """A team's docs folder: two README.md files at different depths, a text file, a hidden folder, an empty page."""
    root = tmp_path / "docs"
    (root / "team").mkdir(parents=True)
    (root / ".git").mkdir()
    shutil.copy(PLAYBOOK, root / "README.md")
    shutil.copy(MLFLOW, root / "team" / "README.md")
    (root / "notes.txt").write_text("loose notes, not markdown\n")
    (root / ".git" / "HEAD.md").write_text("# not a doc\n\n## x\n\ntext\n")
    (root / "team" / "empty.md").write_text("nothing here but a line\n")
    return root


def run_kb(*args, db):
    env = dict(os.environ, TRAIN_ADVISOR_DB=str(db))
    return subprocess.run([sys.executable, "-m", "kb.cli", *args], capture_output=True, text=True, env=env, timeout=300)


# ---- cutting generic documents ---------------------------------------------------------------------
def test_playbook_is_cut_at_its_sub_headings_and_skips_boilerplate():
    doc = parse_file(PLAYBOOK, "pb")
    assert doc.style == "generic"
    assert doc.skipped == ["Table of Contents", "Acknowledgments", "Citing", "Contributing"]
    titles = [e.title for e in doc.entries]
    for boilerplate in ("Contributor License Agreement", "Code Reviews", "Community Guidelines", "Citing", "Table of Contents"):
        assert boilerplate not in titles
    # the 185-line FAQ answer is no longer one entry: its sub-sections are, each with its parents as context
    warmup = next(e for e in doc.entries if e.title == "How to apply learning rate warmup")
    assert warmup.section == "FAQs > How can optimization failures be debugged and mitigated? > Learning rate warmup"
    assert warmup.provenance.end_line - warmup.provenance.start_line < 60
    assert any("warmup_steps" in s for s in warmup.steps)
    lines = PLAYBOOK.read_text(encoding="utf-8").split("\n")
    for e in doc.entries:
        assert lines[e.provenance.start_line - 1].startswith("#")
        assert e.provenance.end_line - e.provenance.start_line < 120


def test_troubleshooting_guide_fields_and_prose_cues():
    doc = parse_file(MLFLOW, "mf")
    assert doc.style == "generic" and doc.skipped == ["Table of Contents"]
    found = {e.title: e for e in doc.entries}
    nf = found["MLflow Not Found"]
    assert nf.section == "Environment Setup Issues"
    assert nf.symptoms and "command not found" in nf.symptoms[0]
    assert nf.causes == ["MLflow is not installed or not in PATH"] and len(nf.steps) == 4
    assert sum(1 for e in doc.entries if e.symptoms) >= len(doc.entries) * 3 // 4
    prose = parse_text(
        "# Notes\n\n## Loss spikes\n\nIf you see the loss jump by 10x after a restart, reload the optimizer state too.\n\n"
        "Things to try:\n\n- lower the learning rate\n- clip gradients\n\nCommon causes:\n\n- a stale optimizer state\n",
        source="n", file="n.md",
    )
    e = prose.entries[0]
    assert e.symptoms == ["the loss jump by 10x after a restart"]
    assert e.steps == ["reload the optimizer state too.", "lower the learning rate", "clip gradients"]
    assert e.causes == ["a stale optimizer state"]


def test_faq_written_as_a_list_is_cut_at_its_questions():
    doc = parse_file(MMDET_FAQ, "faq")
    by_title = {e.title: e for e in doc.entries}
    nan = by_title["Loss goes Nan"]
    assert nan.section == "Training" and nan.symptoms[0] == '"Loss goes Nan"'
    assert len(nan.steps) == 4 and nan.steps[2].startswith("Extend the warmup iterations")
    lines = MMDET_FAQ.read_text(encoding="utf-8").split("\n")
    assert lines[nan.provenance.start_line - 1].startswith('- "Loss goes Nan"')
    assert "GPU out of memory" in by_title and "Segmentation fault" in by_title
    # a short section stays whole; a list of advice sentences (the playbook) is not taken for questions
    assert "Coding" in by_title
    assert not any(e.title.startswith("It’s not uncommon") for e in parse_file(PLAYBOOK, "pb").entries)


# ---- a docs folder ------------------------------------------------------------------------------------
@pytest.mark.slow
def test_docs_folder_imports_updates_lists_and_removes(kb_copy, docs, tmp_path):
    kb = KnowledgeBase(kb_copy)
    report = kb.import_paths([docs])
    assert set(report.sources) == {"docs/README.md", "docs/team/README.md"}  # no collision between the READMEs
    assert report.paths["docs/team/README.md"] == str(docs / "team" / "README.md")
    assert any(s.startswith("docs/notes.txt") and "not markdown" in s for s in report.skipped)
    assert any(s.startswith("docs/team/empty.md") for s in report.skipped)
    assert not any(".git" in s for s in [*report.sources, *report.skipped])
    assert report.skipped_sections["docs/README.md"][0] == "Table of Contents"
    stats = kb.stats()
    assert stats["docs/README.md"] == 15 and stats["docs/team/README.md"] == 37
    ids = [e.id for e in kb.entries()]
    assert len(ids) == len(set(ids))

    # kb sources: key, file, entries, when
    listed = json.loads(run_kb("sources", "--json", db=kb_copy).stdout)
    mine = {s["source"]: s for s in listed if s["origin"] == "imported"}
    assert set(mine) == {"docs/README.md", "docs/team/README.md"}
    assert mine["docs/README.md"]["file"] == str(docs / "README.md") and mine["docs/README.md"]["entries"] == 15
    assert mine["docs/README.md"]["imported"] and mine["docs/README.md"]["skipped_sections"]
    assert {s["source"] for s in listed if s["origin"] == "shipped"} == set(SHIPPED)

    # the same file named alone keeps its key; nothing changed, nothing written
    again = kb.import_paths([docs / "team" / "README.md"])
    assert again.unchanged == ["docs/team/README.md"] and again.sources == {} and again.embedded == 0

    # another README.md from elsewhere gets a longer key instead of replacing one
    other = tmp_path / "other" / "docs"
    other.mkdir(parents=True)
    shutil.copy(PLAYBOOK, other / "README.md")
    grown = kb.import_paths([other])
    assert list(grown.sources) == ["other/docs/README.md"]
    assert kb.stats()["docs/README.md"] == 15

    # an edited file: only it is re-parsed, and only its new entry is embedded
    team = docs / "team" / "README.md"
    team.write_text(team.read_text(encoding="utf-8") + "\n## Runs Vanish From The UI\n\n**Error**: the run list is empty\n\n**Solutions**:\n\n1. Point the UI at the same tracking URI as the script\n")
    update = kb.import_paths([docs])
    assert update.unchanged == ["docs/README.md"] and list(update.sources) == ["docs/team/README.md"]
    assert update.embedded == 1 and update.reused == 37
    assert kb.stats()["docs/team/README.md"] == 38

    # a file gone from a re-imported folder leaves the KB
    team.unlink()
    gone = kb.import_paths([docs])
    assert gone.removed_sources == ["docs/team/README.md"]
    assert "docs/team/README.md" not in kb.stats()

    # kb remove: one source, a whole folder key, never a shipped source
    out = run_kb("remove", "docs", db=kb_copy)
    assert out.returncode == 0 and "removed docs/README.md: 15 entries" in out.stdout
    assert run_kb("remove", "catalog", db=kb_copy).returncode == 2
    missing = run_kb("remove", "nope.md", db=kb_copy)
    assert missing.returncode == 2 and "other/docs/README.md" in missing.stderr
    assert kb.remove("other/docs/README.md") == {"other/docs/README.md": 15}
    assert kb.stats() == SHIPPED
    con_rows = kb._read().execute("SELECT count(*) FROM embeddings").fetchone()[0]
    assert con_rows == sum(SHIPPED.values())


@pytest.mark.slow
def test_playbook_warmup_advice_is_found_for_loss_spikes_during_warmup(kb_copy):
    kb = KnowledgeBase(kb_copy)
    kb.import_paths([PLAYBOOK])
    top = [h.entry.id for h in kb.search("loss spikes during warmup", k=3)]
    assert any(i.startswith("README.md/") and "warmup" in i for i in top), top


def test_keys_are_unique_within_one_import_and_a_file_named_twice_is_one_source(tmp_path):
    from kb.build import _assign_keys, collect_markdown
    from kb.store import BuildReport

    for d in ("a", "b", "c/docs"):
        (tmp_path / d).mkdir(parents=True)
        shutil.copy(MMDET_FAQ, tmp_path / d / "README.md")
    report = BuildReport(db="")
    cands = collect_markdown([tmp_path / "a" / "README.md", tmp_path / "b" / "README.md", tmp_path / "c", tmp_path / "c" / "docs" / "README.md"], report)
    _assign_keys(cands, existing={"README.md": "/elsewhere/README.md"})
    assert [c.key for c in cands] == ["a/README.md", "b/README.md", "c/docs/README.md"]


def test_import_errors_are_one_line(kb_copy, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "a.txt").write_text("x")
    out = run_kb("import", str(empty), db=kb_copy)
    assert out.returncode == 0 and "skipped empty/a.txt: not markdown" in out.stdout
    out = run_kb("import", str(tmp_path / "missing"), db=kb_copy)
    assert out.returncode == 2 and "no such file or directory" in out.stderr and len(out.stderr.splitlines()) == 1


# ---- helped notes become knowledge ---------------------------------------------------------------------
@pytest.mark.slow
def test_helped_note_becomes_a_searchable_entry_linked_to_signal_kinds(kb_copy, tmp_path):
    from advisor.notes import NotesStore

    notes = NotesStore(tmp_path / "notes.db")
    run = str(tmp_path / "run-1")
    kinds = ["loss_spike", "grad_norm_spike"]
    notes.set(run, "guide/001-loss-becomes-nan", "helped", note="Halving the peak LR and 2k warmup steps stopped the spikes.",
              signal_kinds=kinds, kb=kb_copy)
    kb = KnowledgeBase(kb_copy)
    found = kb.entries_for_signal_kinds(["grad_norm_spike", "other"])
    assert len(found) == 1
    e = found[0]
    assert e.source == "notes" and e.title == "Loss becomes NaN (your note)"
    assert e.body.startswith("Halving the peak LR") and e.signal_kinds == sorted(kinds)
    assert kb.entries_for_signal_kinds(["dead_units"]) == []
    shown = kb.source_text("notes").split("\n")  # what `o` opens: the note at its provenance lines
    assert shown[e.provenance.start_line - 1] == "## Loss becomes NaN (your note)"
    assert shown[e.provenance.end_line - 1].startswith("Halving the peak LR")
    assert e.id in [h.entry.id for h in kb.search("halving the peak learning rate with warmup stopped the spikes", k=5)]
    # a rebuild keeps the user's notes
    kb.build(rebuild=True)
    assert [x.id for x in kb.entries_for_signal_kinds(kinds)] == [e.id]
    # marked otherwise later: the note is no longer knowledge
    notes.set(run, "guide/001-loss-becomes-nan", "did not help", note="spikes came back", signal_kinds=kinds, kb=kb_copy)
    assert kb.entries_for_signal_kinds(kinds) == []
    with pytest.raises(KBError, match="shipped source"):
        kb.remove("guide")
