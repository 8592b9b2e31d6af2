"""The SQLite KB: build, incremental rebuild, import, search, and safety on bad input."""

from __future__ import annotations

import hashlib
import sqlite3

import numpy as np
import pytest

from kb import KBError, KnowledgeBase
from kb.embed import NumpyMiniLM
from kb.store import SCHEMA_VERSION


def file_digest(path) -> str:
    con = sqlite3.connect(path)
    rows = con.execute("SELECT id, data FROM entries ORDER BY id").fetchall() + con.execute("SELECT source, text FROM documents ORDER BY source").fetchall()
    con.close()
    return hashlib.sha256(repr(rows).encode()).hexdigest()


def test_stats_and_schema(kb, built_kb_path):
    assert kb.stats() == {"audit": 4, "catalog": 100, "guide": 19, "run": 14}
    con = sqlite3.connect(built_kb_path)
    assert con.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    tables = {r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert {"entries", "entries_fts", "embeddings", "documents", "kb_meta"} <= tables
    model, blob = con.execute("SELECT model, vector FROM embeddings LIMIT 1").fetchone()
    assert model == "sentence-transformers/all-MiniLM-L6-v2"
    vec = np.frombuffer(blob, dtype="<f4").reshape(2, 384)
    assert np.allclose(np.linalg.norm(vec, axis=1), 1.0, atol=1e-4)
    con.close()


def test_nan_query_ranks_the_guide_entry_first(kb):
    hits = kb.search("my loss turns into nan after a few hundred steps", k=5)
    assert hits[0].entry.id == "guide/001-loss-becomes-nan"
    assert hits[0].score >= hits[1].score


def test_search_modes_and_source_filter(kb):
    for mode in ("bm25", "dense", "hybrid"):
        hits = kb.search("out of memory when increasing batch size", k=3, mode=mode)
        assert hits[0].entry.title == "Out of memory (OOM)", mode
    only_catalog = kb.search("embeddings collapse to a single point", k=5, source="catalog")
    assert only_catalog and all(h.entry.source == "catalog" for h in only_catalog)
    with pytest.raises(KBError, match="no source"):
        kb.search("x", source="nope")
    assert kb.search("the of and", k=3, mode="bm25") == []


def test_no_change_rebuild_does_no_embedding_work(kb_copy):
    class Refuse:
        name = "refuse"
        dim = 384

        def encode(self, texts):
            raise AssertionError("nothing should be embedded")

    report = KnowledgeBase(kb_copy).build(encoder=Refuse())
    assert report.embedded == 0 and report.reused == 137


def test_import_user_document_and_rebuild_keeps_it(kb_copy, tmp_path):
    doc = tmp_path / "codebook-notes.md"
    doc.write_text("# Codebook notes\n\n## Codebook usage collapses\n\n**Symptoms**: only 3% of codes used after warmup\n\n**Fixes**:\n- reinitialise dead codes from encoder outputs\n- lower the commitment loss weight\n")
    store = KnowledgeBase(kb_copy)
    ids_before = [e.id for e in store.entries("catalog")]
    report = store.import_paths([doc], encoder=NumpyMiniLM())
    assert report.sources == {"codebook-notes.md": 1} and report.embedded == 1
    assert store.stats()["codebook-notes.md"] == 1
    hit = store.search("only a few percent of the codebook entries are used", k=3)
    assert "codebook-notes.md/codebook-usage-collapses" in [h.entry.id for h in hit]
    rebuilt = store.build(rebuild=True, encoder=NumpyMiniLM())
    assert rebuilt.embedded == 0 and rebuilt.reused == 138
    assert store.stats()["codebook-notes.md"] == 1
    assert [e.id for e in store.entries("catalog")] == ids_before


def test_failed_import_leaves_the_kb_untouched(kb_copy, tmp_path):
    good = tmp_path / "good.md"
    good.write_text("# T\n\n## A problem\n\n**Symptoms**: something\n")
    bad = tmp_path / "bad.md"
    bad.write_bytes(b"\xff\xfe# not utf8 \x81")
    before = file_digest(kb_copy)
    with pytest.raises(KBError, match="not UTF-8"):
        KnowledgeBase(kb_copy).import_paths([good, bad], encoder=NumpyMiniLM())
    with pytest.raises(KBError, match="no markdown headings"):
        empty = tmp_path / "empty.md"
        empty.write_text("")
        KnowledgeBase(kb_copy).import_paths([empty], encoder=NumpyMiniLM())
    assert file_digest(kb_copy) == before


def test_failed_embedding_rolls_back(kb_copy, tmp_path):
    class Broken:
        name = "broken"
        dim = 384

        def encode(self, texts):
            raise RuntimeError("encoder crashed")

    doc = tmp_path / "x.md"
    doc.write_text("# X\n\n## New thing\n\n**Symptoms**: new\n")
    before = file_digest(kb_copy)
    with pytest.raises(RuntimeError):
        KnowledgeBase(kb_copy).import_paths([doc], encoder=Broken())
    assert file_digest(kb_copy) == before


def test_not_sqlite_and_old_schema(tmp_path, kb_copy):
    junk = tmp_path / "junk.db"
    junk.write_text("hello")
    with pytest.raises(KBError, match="not a SQLite database"):
        KnowledgeBase(junk).stats()
    with pytest.raises(KBError, match="not a SQLite database"):
        KnowledgeBase(junk).build()
    assert junk.read_text() == "hello"
    con = sqlite3.connect(kb_copy)
    con.execute("UPDATE kb_meta SET value = '0' WHERE key = 'schema_version'")
    con.commit()
    con.close()
    with pytest.raises(KBError, match=f"schema version 0 is not {SCHEMA_VERSION}"):
        KnowledgeBase(kb_copy).stats()
    report = KnowledgeBase(kb_copy).build(rebuild=True, encoder=NumpyMiniLM())
    assert report.sources["catalog"] == 100
    assert report.embedded == 0  # the old file's vectors still match their entries' content
    assert KnowledgeBase(kb_copy).stats()["guide"] == 19


def test_missing_kb_says_to_build(tmp_path):
    with pytest.raises(KBError, match="kb build"):
        KnowledgeBase(tmp_path / "none.db").search("x")


def test_env_var_overrides_default_location(monkeypatch, tmp_path):
    from kb import default_db_path

    monkeypatch.setenv("TRAIN_ADVISOR_DB", str(tmp_path / "custom.db"))
    assert default_db_path() == tmp_path / "custom.db"
