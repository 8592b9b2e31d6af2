"""The FTS index text carries the version of what shaped it (lexicon, its code, Entry.search_text):
a KB written by another install has it rewritten on open or on its next write, without re-embedding."""

from __future__ import annotations

import sqlite3

from kb import KnowledgeBase
from kb.files import INDEX_KEY, index_version
from kb.lexicon import expand_text, expansions
from kb.models import Entry


def _stale(path, drop_key: bool = False) -> tuple[str, str]:
    """Make the KB look written before the lexicon existed: plain index text, an old (or no) version.
    -> (entry id, a lexicon word only its expansion holds: not in the stale index's row for it)."""
    import re

    con = sqlite3.connect(path)
    candidates = []
    for eid, data in con.execute("SELECT id, data FROM entries ORDER BY rowid").fetchall():
        text = Entry.model_validate_json(data).search_text()
        plain = set(re.findall(r"[a-z0-9]+", text.lower()))
        candidates += [(eid, w) for m in expansions(text) for w in re.findall(r"[a-z]{5,}", m.lower()) if w not in plain]
        con.execute("UPDATE entries SET search_text = ? WHERE id = ?", (text, eid))
    if drop_key:
        con.execute("DELETE FROM kb_meta WHERE key = ?", (INDEX_KEY,))
    else:
        con.execute("UPDATE kb_meta SET value = 'an-older-lexicon' WHERE key = ?", (INDEX_KEY,))
    con.commit()
    con.close()
    pick = next(((eid, w) for eid, w in candidates if eid not in _fts_ids(path, w)), None)
    assert pick is not None, "no shipped entry gains a word from the lexicon"
    return pick


def _fts_ids(path, word: str) -> set[str]:
    con = sqlite3.connect(path)
    try:
        rows = con.execute(
            "SELECT e.id FROM entries_fts JOIN entries e ON e.rowid = entries_fts.rowid WHERE entries_fts MATCH ?",
            (f'"{word}"',),
        ).fetchall()
    finally:
        con.close()
    return {r[0] for r in rows}


def _meta(path) -> str | None:
    con = sqlite3.connect(path)
    try:
        row = con.execute("SELECT value FROM kb_meta WHERE key = ?", (INDEX_KEY,)).fetchone()
    finally:
        con.close()
    return row[0] if row else None


def _embeddings(path) -> list[tuple]:
    con = sqlite3.connect(path)
    try:
        return con.execute("SELECT id, content_hash, vector FROM embeddings ORDER BY id").fetchall()
    finally:
        con.close()


def test_a_build_stores_the_index_version(built_kb_path):
    assert _meta(built_kb_path) == index_version()


def test_opening_a_stale_kb_rewrites_its_index_text_without_reembedding(kb_copy):
    eid, word = _stale(kb_copy)
    vectors = _embeddings(kb_copy)
    kb = KnowledgeBase(kb_copy)
    try:
        assert kb.stats()  # any read opens the file
        assert _meta(kb_copy) == index_version()
        assert eid in _fts_ids(kb_copy, word)
        hits = [r.id for r in kb.ranked(word, k=100, mode="bm25")]
        assert eid in hits
    finally:
        kb.close()
    assert _embeddings(kb_copy) == vectors
    con = sqlite3.connect(kb_copy)
    for data, text in con.execute("SELECT data, search_text FROM entries"):
        assert text == expand_text(Entry.model_validate_json(data).search_text())
    con.close()


def test_an_import_into_a_kb_without_a_version_refreshes_every_entry(kb_copy, tmp_path):
    eid, word = _stale(kb_copy, drop_key=True)
    doc = tmp_path / "team.md"
    doc.write_text("# Team notes\n\n## Loader stalls\n\nSymptoms: the data loader waits on disk.\n", encoding="utf-8")
    from kb import build

    build.import_paths(KnowledgeBase(kb_copy), [doc])  # the write path alone: no read opens the file first
    assert _meta(kb_copy) == index_version()
    assert eid in _fts_ids(kb_copy, word)  # a shipped entry the import did not touch
