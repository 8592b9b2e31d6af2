"""Writing the KB: build, rebuild, import, remove, and a user's helped note becoming an entry.

Every writer holds the KB's writer lock (kb.lock) from its first read to its last write, so a rebuild
never drops what an import committed. Every write is one SQLite transaction that creates the schema
(if needed), writes entries, FTS rows and embeddings, and sets the completion marker, so a killed
process leaves the KB as it was, or — only for a first build killed before its commit — a file that
says "the KB build was interrupted". Embedding happens before the transaction; what is already in
the KB (or in the file being rebuilt) is reused by content hash, so a renamed or moved entry is not
embedded again.

Imported sources are keyed by their path relative to the import root (`docs/team/README.md`); the
key is looked up by the file's absolute path first, so re-importing a file or folder updates the
same sources, and a second `README.md` from elsewhere gets a longer key instead of replacing the
first one's entries.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import sqlite3
import time
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterator, Protocol

import numpy as np

from kb.embed import MODEL_NAME, Encoder
from kb.errors import sqlite_message
from kb.lexicon import expand_text  # BM25 indexes each entry with the lexicon words its terms map to
from kb.lock import writer_lock
from kb.models import Entry, KBError, Provenance
from kb.files import (
    INDEX_KEY, SCHEMA_VERSION, SHIPPED_SOURCES, VIEWS, BuildReport, _content_hash, index_stale, index_version, read_only_uri,
    shipped_documents,
)

if TYPE_CHECKING:
    from kb.parse import ParsedDocument



class KBFile(Protocol):
    """What the writers use of a kb.store.KnowledgeBase (kb.store calls into this module, so this
    module does not import it)."""

    path: Path
    on_wait: Callable[[str], None] | None

    def close(self) -> None: ...

    def check(self, for_write: bool = False) -> str: ...

    def exists(self) -> bool: ...

MARKDOWN_SUFFIXES = (".md", ".markdown", ".mdown", ".mkd")
NOTES_SOURCE = "notes"
COMPLETE_KEY = "build_complete"  # kb_meta: '' while a first build is under way, its finish time after
SMALL_BATCH = 64  # up to this many texts, the numpy encoder (no torch import) embeds faster than loading torch

SCHEMA = [
    "CREATE TABLE IF NOT EXISTS kb_meta ([key] TEXT PRIMARY KEY, [value] TEXT)",
    "CREATE TABLE IF NOT EXISTS documents ([source] TEXT PRIMARY KEY, [file] TEXT, [style] TEXT, [title] TEXT, [origin] TEXT, "
    "[checklist] TEXT, [text] TEXT, [sha256] TEXT, [path] TEXT, [imported] TEXT, [skipped] TEXT)",
    "CREATE TABLE IF NOT EXISTS entries ([id] TEXT PRIMARY KEY, [source] TEXT, [kind] TEXT, [title] TEXT, [section] TEXT, "
    "[search_text] TEXT, [data] TEXT)",
    "CREATE INDEX IF NOT EXISTS idx_entries_source ON entries (source)",
    "CREATE TABLE IF NOT EXISTS embeddings ([id] TEXT PRIMARY KEY, [model] TEXT, [content_hash] TEXT, [vector] BLOB)",
    # the same FTS5 table and triggers sqlite-utils' enable_fts makes, written here so that they are
    # created inside the build's transaction (enable_fts runs executescript, which commits first)
    "CREATE VIRTUAL TABLE IF NOT EXISTS entries_fts USING FTS5 (title, search_text, content=[entries], tokenize='porter')",
    "CREATE TRIGGER IF NOT EXISTS entries_ai AFTER INSERT ON entries BEGIN "
    "INSERT INTO entries_fts (rowid, title, search_text) VALUES (new.rowid, new.title, new.search_text); END",
    "CREATE TRIGGER IF NOT EXISTS entries_ad AFTER DELETE ON entries BEGIN "
    "INSERT INTO entries_fts (entries_fts, rowid, title, search_text) VALUES('delete', old.rowid, old.title, old.search_text); END",
    "CREATE TRIGGER IF NOT EXISTS entries_au AFTER UPDATE ON entries BEGIN "
    "INSERT INTO entries_fts (entries_fts, rowid, title, search_text) VALUES('delete', old.rowid, old.title, old.search_text); "
    "INSERT INTO entries_fts (rowid, title, search_text) VALUES (new.rowid, new.title, new.search_text); END",
]


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _connect(path: Path) -> sqlite3.Connection:
    """A writer connection in autocommit mode: transactions are opened with BEGIN IMMEDIATE by hand."""
    try:
        con = sqlite3.connect(path, isolation_level=None, timeout=30)
        con.execute("PRAGMA journal_mode=WAL")
    except sqlite3.Error as exc:
        raise KBError(sqlite_message(exc, path)) from exc
    return con


@contextmanager
def _transaction(path: Path) -> Iterator[sqlite3.Connection]:
    """One write transaction on its own connection: BEGIN IMMEDIATE ... COMMIT, rolled back on any
    error (a kill mid-way leaves the last committed state); sqlite errors become one KBError line."""
    con = _connect(path)
    try:
        con.execute("BEGIN IMMEDIATE")
        yield con
        con.execute("COMMIT")
    except BaseException as exc:
        if con.in_transaction:
            con.execute("ROLLBACK")
        if isinstance(exc, sqlite3.Error):
            raise KBError(sqlite_message(exc, path)) from exc
        raise
    finally:
        con.close()


def _migrate(con: sqlite3.Connection) -> None:
    """Columns added since schema 1 (a KB from an older version keeps working)."""
    cols = {r[1] for r in con.execute("PRAGMA table_info(documents)")}
    for col in ("path", "imported", "skipped"):
        if cols and col not in cols:
            con.execute(f"ALTER TABLE documents ADD COLUMN [{col}] TEXT")


@dataclass
class Document:
    """A parsed document and where it came from, ready to be written."""

    parsed: "ParsedDocument"
    origin: str  # shipped | imported | notes
    text: str = ""  # the raw text of an imported document (kept so rebuilds can re-parse it)
    path: str = ""  # absolute path of an imported file
    imported: str = ""


def _embed(texts: list[str], encoder: Encoder | None) -> np.ndarray:
    if encoder is None:
        if len(texts) <= SMALL_BATCH:
            from kb.embed import query_encoder

            encoder = query_encoder()
        else:
            from kb.embed import SentenceTransformerEncoder

            encoder = SentenceTransformerEncoder()
    return encoder.encode(texts)


def write_documents(
    path: Path,
    docs: list[Document],
    *,
    encoder: Encoder | None,
    replace_all: bool,
    reuse: dict[str, bytes] | None = None,
    report: BuildReport | None = None,
) -> BuildReport:
    """Write documents in one transaction (the caller holds the writer lock).

    replace_all: entries of shipped sources not among `docs` are dropped (a build); imported and
    notes sources are kept. `reuse`: content hash -> vector blob from another file (a rebuild).
    """
    started = time.perf_counter()
    report = report or BuildReport(db=str(path))
    path.parent.mkdir(parents=True, exist_ok=True)
    entries = [e for d in docs for e in d.parsed.entries]
    texts = {e.id: e.search_text() for e in entries}
    symptom_texts = {e.id: e.symptom_text() for e in entries}
    hashes = {eid: _content_hash(MODEL_NAME, t + "\x00" + symptom_texts[eid]) for eid, t in texts.items()}
    con = _connect(path)
    try:
        known: dict[str, str] = {}  # id -> hash already stored for that id
        by_hash: dict[str, bytes] = dict(reuse or {})
        if "embeddings" in {r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type='table'")}:
            for eid, h, blob in con.execute("SELECT id, content_hash, vector FROM embeddings WHERE model = ?", (MODEL_NAME,)):
                known[eid] = h
                if isinstance(blob, bytes) and len(blob) == 4 * VIEWS * 384:
                    by_hash.setdefault(h, blob)
        changed = [eid for eid in texts if known.get(eid) != hashes[eid]]
        vectors = {eid: by_hash[hashes[eid]] for eid in changed if hashes[eid] in by_hash}
        todo = [eid for eid in changed if eid not in vectors]
        if todo:  # embed outside the transaction; nothing is written if it fails
            # two views per entry, stored side by side in one blob: the full text and the symptom view
            full = _embed([texts[eid] for eid in todo], encoder)
            focused = _embed([symptom_texts[eid] for eid in todo], encoder)
            vectors.update((eid, np.concatenate([f, s]).astype("<f4").tobytes()) for eid, f, s in zip(todo, full, focused))
        report.embedded += len(todo)
        report.reused += len(texts) - len(todo)
        try:
            con.execute("BEGIN IMMEDIATE")
            for stmt in SCHEMA:
                con.execute(stmt)
            _migrate(con)
            first = con.execute("SELECT count(*) FROM kb_meta WHERE key = ?", (COMPLETE_KEY,)).fetchone()[0] == 0 and (
                con.execute("SELECT count(*) FROM entries").fetchone()[0] == 0
            )
            if first:
                con.execute("INSERT OR REPLACE INTO kb_meta VALUES (?, '')", (COMPLETE_KEY,))
            stale = not first and index_stale(con)  # entries this write does not touch need the new index text too
            sources = [d.parsed.source for d in docs]
            if replace_all:
                marks = ",".join("?" * len(sources))
                con.execute(
                    f"DELETE FROM entries WHERE source NOT IN ({marks}) "
                    "AND source NOT IN (SELECT source FROM documents WHERE origin IN ('imported', 'notes'))",
                    sources,
                )
                con.execute(
                    f"DELETE FROM documents WHERE source NOT IN ({marks}) AND origin NOT IN ('imported', 'notes')", sources
                )
            for d in docs:
                p = d.parsed
                ids = [e.id for e in p.entries]
                cur = con.execute(
                    f"DELETE FROM entries WHERE source = ? AND id NOT IN ({','.join('?' * len(ids))})", [p.source, *ids]
                )
                report.removed += max(cur.rowcount, 0)
                con.execute(
                    "INSERT OR REPLACE INTO documents (source, file, style, title, origin, checklist, text, sha256, path, imported, skipped) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        p.source, p.file, p.style, p.title, d.origin, json.dumps(p.checklist), d.text,
                        hashlib.sha256(d.text.encode()).hexdigest() if d.text else "", d.path, d.imported,
                        json.dumps(getattr(p, "skipped", [])),
                    ),
                )
                con.executemany(
                    "INSERT INTO entries (id, source, kind, title, section, search_text, data) VALUES (?, ?, ?, ?, ?, ?, ?) "
                    "ON CONFLICT(id) DO UPDATE SET source=excluded.source, kind=excluded.kind, title=excluded.title, "
                    "section=excluded.section, search_text=excluded.search_text, data=excluded.data",
                    [(e.id, e.source, e.kind, e.title, e.section, expand_text(texts[e.id]), e.model_dump_json()) for e in p.entries],
                )
                report.sources[p.source] = len(p.entries)
            con.executemany(
                "INSERT OR REPLACE INTO embeddings (id, model, content_hash, vector) VALUES (?, ?, ?, ?)",
                [(eid, MODEL_NAME, hashes[eid], blob) for eid, blob in vectors.items()],
            )
            con.execute("DELETE FROM embeddings WHERE id NOT IN (SELECT id FROM entries)")
            if stale:
                _rewrite_index_text(con)
            con.execute("INSERT OR REPLACE INTO kb_meta VALUES (?, ?)", (INDEX_KEY, index_version()))
            con.execute("INSERT OR REPLACE INTO kb_meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))
            con.execute("INSERT OR REPLACE INTO kb_meta VALUES ('model', ?)", (MODEL_NAME,))
            con.execute("INSERT OR REPLACE INTO kb_meta VALUES (?, ?)", (COMPLETE_KEY, _now()))
            con.execute("COMMIT")
        except BaseException:
            if con.in_transaction:
                con.execute("ROLLBACK")
            raise
    except sqlite3.Error as exc:
        raise KBError(sqlite_message(exc, path)) from exc
    finally:
        con.close()
    report.seconds = round(report.seconds + time.perf_counter() - started, 3)
    return report


def _rewrite_index_text(con: sqlite3.Connection) -> int:
    """Every entry's FTS text from its stored entry, as this install writes it (the update trigger
    re-indexes the rows that change) -> rows changed. Embeddings are untouched: they see the plain text."""
    rows = con.execute("SELECT id, data, search_text FROM entries").fetchall()
    changed = []
    for eid, data, old in rows:
        new = expand_text(Entry.model_validate_json(data).search_text())
        if new != old:
            changed.append((new, eid))
    con.executemany("UPDATE entries SET search_text = ? WHERE id = ?", changed)
    return len(changed)


def refresh_index(kb: KBFile) -> int:
    """Rewrite a complete KB's FTS text when it was written under another index_version() (an
    upgraded lexicon or index text), under the writer lock, in one transaction -> rows changed."""
    path = kb.path
    kb.close()
    with writer_lock(path, on_wait=kb.on_wait):
        with _transaction(path) as con:
            changed = _rewrite_index_text(con) if index_stale(con) else 0  # another process may have done it
            con.execute("INSERT OR REPLACE INTO kb_meta VALUES (?, ?)", (INDEX_KEY, index_version()))
    return changed


# ---- reading what a file holds (for rebuilds and imports) ---------------------------------------
def _stored_documents(path: Path, report: BuildReport | None = None) -> tuple[list[dict], list[Entry]]:
    """Imported documents (rows) and note entries of an existing KB file; ([], []) when it cannot be read."""
    if not (path.exists() and path.stat().st_size > 0):
        return [], []
    try:
        con = sqlite3.connect(read_only_uri(path), uri=True)
        try:
            con.row_factory = sqlite3.Row
            cols = {r[1] for r in con.execute("PRAGMA table_info(documents)")}
            if not cols:
                return [], []
            rows = [dict(r) for r in con.execute("SELECT * FROM documents WHERE origin IN ('imported', 'notes')")]
            notes = [Entry.model_validate_json(r[0]) for r in con.execute("SELECT data FROM entries WHERE source = ?", (NOTES_SOURCE,))]
        finally:
            con.close()
    except (sqlite3.Error, ValueError) as exc:
        if report is not None:
            report.warnings.append(f"could not read the imported documents and notes of {path} ({exc}); they are not in the rebuilt KB")
        return [], []
    return [r for r in rows if r.get("origin") == "imported"], notes


def _stored_vectors(path: Path) -> dict[str, bytes]:
    try:
        con = sqlite3.connect(read_only_uri(path), uri=True)
        try:
            rows = con.execute("SELECT content_hash, vector FROM embeddings WHERE model = ?", (MODEL_NAME,)).fetchall()
        finally:
            con.close()
    except sqlite3.Error:
        return {}
    return {h: blob for h, blob in rows if isinstance(blob, bytes) and len(blob) == 4 * VIEWS * 384}


def _reparse(rows: list[dict]) -> list[Document]:
    from kb.parse import parse_text

    return [
        Document(parse_text(r["text"], source=r["source"], file=r["file"]), "imported", r["text"], r.get("path") or "", r.get("imported") or "")
        for r in rows
    ]


def _shipped() -> list[Document]:
    from kb.parse import parse_text

    return [Document(parse_text(text, source=k, file=name), "shipped") for k, name, text in shipped_documents()]


def _notes_document(entries: list[Entry]) -> Document:
    """The notes source as one markdown text (what `o` in the TUI and provenance lines show): a section
    per note, each entry's provenance pointing at its lines."""
    from kb.parse import ParsedDocument

    lines = ["# Your notes", ""]
    for e in entries:
        start = len(lines) + 1
        lines += [f"## {e.title}", "", *e.body.split("\n"), ""]
        e.provenance = Provenance(file=NOTES_SOURCE, start_line=start, end_line=len(lines) - 1)
    parsed = ParsedDocument(source=NOTES_SOURCE, file=NOTES_SOURCE, style="notes", title="Your notes", entries=entries)
    return Document(parsed, "notes", text="\n".join(lines))


# ---- build ------------------------------------------------------------------------------------
def build(kb: KBFile, rebuild: bool = False, encoder: Encoder | None = None) -> BuildReport:
    """Parse the shipped documents and the imported ones again; embed what changed.

    rebuild: write a new file next to the KB and rename it over the old one (recreates a damaged
    file or one of an older schema; imported documents and notes are carried over when readable).
    """
    path = kb.path
    kb.close()
    with writer_lock(path, on_wait=kb.on_wait):
        if rebuild and path.exists():
            report = BuildReport(db=str(path))
            _checkpoint(path)
            rows, notes = _stored_documents(path, report)
            docs = _shipped() + _reparse(rows) + ([_notes_document(notes)] if notes else [])
            tmp = path.with_name(path.name + ".rebuild")
            for suffix in ("", "-wal", "-shm"):
                Path(str(tmp) + suffix).unlink(missing_ok=True)
            write_documents(tmp, docs, encoder=encoder, replace_all=True, reuse=_stored_vectors(path), report=report)
            # the old file's WAL was checkpointed and emptied above: removing it cannot lose a commit
            for suffix in ("-wal", "-shm"):
                Path(str(path) + suffix).unlink(missing_ok=True)
            os.replace(tmp, path)
            report.db = str(path)
            return report
        state = kb.check(for_write=True)
        rows, _ = _stored_documents(path) if state != "missing" else ([], [])
        return write_documents(path, _shipped() + _reparse(rows), encoder=encoder, replace_all=True)


def _checkpoint(path: Path) -> None:
    """Move committed WAL frames into the main file, so the WAL can be dropped with the old file."""
    try:
        con = sqlite3.connect(path, timeout=30)
        try:
            con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        finally:
            con.close()
    except sqlite3.Error:
        pass  # a damaged file: the rebuild replaces it anyway


# ---- import -----------------------------------------------------------------------------------
@dataclass
class Candidate:
    path: Path  # absolute
    key: str  # relative to the import root, as the user sees it
    explicit: bool  # named on the command line (errors abort) or found in a folder (errors skip it)
    root: Path | None = None  # the folder it was found in


def _safe_segment(segment: str) -> str:
    return re.sub(r"[^\w.\-]+", "-", segment, flags=re.ASCII).strip("-") or "doc"


def _key(parts: list[str]) -> str:
    return "/".join(_safe_segment(p) for p in parts)


def collect_markdown(paths: list[str | Path], report: BuildReport) -> list[Candidate]:
    """Files named and markdown files found (recursively) in folders named; what else was there is reported."""
    found: list[Candidate] = []
    for raw in paths:
        p = Path(raw).expanduser()
        if not p.exists():
            raise KBError(f"{p}: no such file or directory")
        p = p.resolve()
        if p.is_file():
            found.append(Candidate(p, _key([p.name]), True))
            continue
        if not p.is_dir():
            raise KBError(f"{p}: not a regular file or directory")
        for dirpath, dirnames, filenames in os.walk(p):
            dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
            for name in sorted(filenames):
                f = Path(dirpath) / name
                rel = f.relative_to(p)
                if name.startswith("."):
                    continue
                if f.suffix.lower() not in MARKDOWN_SUFFIXES:
                    report.skipped.append(f"{p.name}/{rel.as_posix()}: not markdown")
                    continue
                found.append(Candidate(f, _key([p.name, *rel.parts]), False, root=p))
    if not found and not report.skipped:
        raise KBError("no markdown files to import")
    unique: dict[Path, Candidate] = {}
    for c in found:  # a file named alone and inside a folder named too: the folder's key wins
        if c.path not in unique or (unique[c.path].root is None and c.root is not None):
            unique[c.path] = c
    return list(unique.values())


def _assign_keys(cands: list[Candidate], existing: dict[str, str]) -> None:
    """Keys stay what they were for a file imported before; a new key that is taken grows its parent folders."""
    by_path = {p: k for k, p in existing.items() if p}
    taken = set(existing) | set(SHIPPED_SOURCES) | {NOTES_SOURCE}
    for c in cands:
        if str(c.path) in by_path:
            c.key = by_path[str(c.path)]
            continue
        key = c.key
        parents = list(c.path.parts[:-1])
        extra = len(key.split("/")) - 1  # folders already in the key
        while key in taken and extra < len(parents) - 1:
            extra += 1
            key = _key([*parents[len(parents) - extra :], c.path.name])
        n = 2
        base = key
        while key in taken:
            key = f"{base}~{n}"
            n += 1
        c.key = key
        taken.add(key)


def import_paths(kb: KBFile, paths: list[str | Path], encoder: Encoder | None = None) -> BuildReport:
    """Import markdown files and folders; re-importing updates only what changed."""
    from kb.parse import parse_text, read_document

    if not paths:
        raise KBError("give at least one markdown file or folder to import")
    report = BuildReport(db=str(kb.path))
    cands = collect_markdown(paths, report)
    texts: dict[str, str] = {}
    for c in cands:
        try:
            texts[str(c.path)] = read_document(c.path)
        except KBError as exc:
            if c.explicit:
                raise
            report.skipped.append(f"{c.key}: {str(exc).split(': ', 1)[-1]}")
    kb.close()
    with writer_lock(kb.path, on_wait=kb.on_wait):
        state = kb.check(for_write=True)
        rows = _document_rows(kb.path) if state != "missing" else []
        existing = {r["source"]: r.get("path") or "" for r in rows}
        sha = {r["source"]: r.get("sha256") or "" for r in rows}
        _assign_keys(cands, existing)
        docs: list[Document] = []
        for c in cands:
            text = texts.get(str(c.path))
            if text is None:
                continue
            if sha.get(c.key) == hashlib.sha256(text.encode()).hexdigest() and state == "complete":
                report.unchanged.append(c.key)
                report.paths[c.key] = str(c.path)
                continue
            try:
                parsed = parse_text(text, source=c.key, file=c.path.name)
            except KBError as exc:
                if c.explicit:
                    raise
                report.skipped.append(f"{c.key}: {str(exc).split(': ', 1)[-1]}")
                continue
            docs.append(Document(parsed, "imported", text, str(c.path), _now()))
            report.paths[c.key] = str(c.path)
            if parsed.skipped:
                report.skipped_sections[c.key] = list(parsed.skipped)
        # a folder imported again: files that are gone from it leave the KB too
        roots = {c.root for c in cands if c.root is not None}
        gone = [
            k for k, p in existing.items()
            if p and any(Path(p).is_relative_to(r) for r in roots) and not Path(p).exists()
        ]
        if state != "complete":
            docs = _shipped() + docs
        if docs:
            write_documents(kb.path, docs, encoder=encoder, replace_all=False, report=report)
        if gone:
            _delete_sources(kb.path, gone)
            report.removed_sources.extend(gone)
    return report


def _document_rows(path: Path) -> list[dict]:
    con = sqlite3.connect(read_only_uri(path), uri=True)
    try:
        con.row_factory = sqlite3.Row
        return [dict(r) for r in con.execute("SELECT * FROM documents")]
    except sqlite3.Error as exc:
        raise KBError(sqlite_message(exc, path)) from exc
    finally:
        con.close()


# ---- remove -----------------------------------------------------------------------------------
def _delete_sources(path: Path, sources: list[str]) -> dict[str, int]:
    counts: dict[str, int] = {}
    with _transaction(path) as con:
        for s in sources:
            con.execute("DELETE FROM embeddings WHERE id IN (SELECT id FROM entries WHERE source = ?)", (s,))
            counts[s] = con.execute("DELETE FROM entries WHERE source = ?", (s,)).rowcount
            con.execute("DELETE FROM documents WHERE source = ?", (s,))
    return counts


def remove_source(kb: KBFile, source: str) -> dict[str, int]:
    """Remove an imported source (or every source under a folder key) in one transaction -> entries removed per source."""
    key = source.strip().rstrip("/")
    if key in SHIPPED_SOURCES:
        raise KBError(f"{key!r} is a shipped source: it comes back with every build, so it cannot be removed")
    kb.close()
    with writer_lock(kb.path, on_wait=kb.on_wait):
        if kb.check(for_write=True) == "missing":
            raise KBError(f"no knowledge base at {kb.path}; run `kb build` first")
        con = sqlite3.connect(read_only_uri(kb.path), uri=True)
        try:
            have = [r[0] for r in con.execute("SELECT DISTINCT source FROM entries UNION SELECT source FROM documents")]
        finally:
            con.close()
        targets = [s for s in have if s == key or s.startswith(key + "/")] if key else []
        if not targets:
            mine = sorted(s for s in have if s not in SHIPPED_SOURCES)
            raise KBError(f"no source {key!r} in the KB (imported: {', '.join(mine) or 'none'}; see `kb sources`)")
        return _delete_sources(kb.path, targets)


# ---- helped notes -----------------------------------------------------------------------------
def note_entry_id(run: str, entry_id: str) -> str:
    """One note entry per (run, suggestion): marking it again replaces it."""
    from kb.text import slugify

    digest = hashlib.sha1(f"{run}\x00{entry_id}".encode()).hexdigest()[:8]
    return f"{NOTES_SOURCE}/{slugify(entry_id.rsplit('/', 1)[-1], 50)}-{digest}"


def save_note(
    kb: KBFile, *, run: str, entry_id: str, title: str, note: str, signal_kinds: list[str], encoder: Encoder | None = None
) -> Entry:
    """A note the user marked "helped" -> an entry of the `notes` source, linked to the run's signal kinds."""
    note = note.strip()
    if not note:
        raise KBError("an empty note is not knowledge")
    eid = note_entry_id(run, entry_id)
    lines = note.count("\n") + 1
    entry = Entry(
        id=eid,
        source=NOTES_SOURCE,
        kind="fix",
        title=f"{title} (your note)",
        section="Your notes",
        steps=[line.strip() for line in note.splitlines() if line.strip()],
        signal_kinds=sorted({str(k) for k in signal_kinds}),
        see_also=[entry_id],
        rationale=f"Marked helped on {Path(run).name or 'a described run'}",
        body=note,
        provenance=Provenance(file=NOTES_SOURCE, start_line=1, end_line=lines),
    )
    kb.close()
    with writer_lock(kb.path, on_wait=kb.on_wait):
        state = kb.check(for_write=True)
        if state == "missing":
            raise KBError(f"no knowledge base at {kb.path}; run `kb build` first")
        _, notes = _stored_documents(kb.path)
        kept = [e for e in notes if e.id != eid] + [entry]
        write_documents(kb.path, [_notes_document(kept)], encoder=encoder, replace_all=False)
    return entry


def forget_note(kb: KBFile, *, run: str, entry_id: str) -> bool:
    """Drop the note entry of (run, entry) when its mark is no longer "helped"; True when one was removed."""
    eid = note_entry_id(run, entry_id)
    if kb.check() != "complete":
        return False
    con = sqlite3.connect(read_only_uri(kb.path), uri=True)
    try:  # most marks never had a note entry: no write (and no writer lock) for them
        if con.execute("SELECT 1 FROM entries WHERE id = ?", (eid,)).fetchone() is None:
            return False
    finally:
        con.close()
    kb.close()
    with writer_lock(kb.path, on_wait=kb.on_wait):
        _, notes = _stored_documents(kb.path)
        kept = [e for e in notes if e.id != eid]
        if len(kept) == len(notes):
            return False
        write_documents(kb.path, [_notes_document(kept)], encoder=None, replace_all=False)
    return True
