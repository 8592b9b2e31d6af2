"""The knowledge base on disk: SQLite (WAL) with entries, an FTS5 index and float32 embeddings.

Writes go through sqlite-utils inside one transaction, so a failed build or import leaves the
existing KB as it was. Reads (the query path) use plain sqlite3 and the numpy encoder so a cold
`kb query` process starts in a fraction of the time sentence-transformers needs to import.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import sqlite3
import time
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Iterator

import numpy as np

from kb.embed import MODEL_NAME, Encoder, query_encoder
from kb.models import Entry, Hit, KBError
from kb.parse import ParsedDocument, parse_text, read_document
from kb.query import expand_query
from kb.text import slugify

SCHEMA_VERSION = 1
VIEWS = 2  # embeddings per entry: full text, symptom view
ENV_DB = "TRAIN_ADVISOR_DB"

# The documents shipped in the package: source key -> file under kb/sources/.
SHIPPED_SOURCES: dict[str, str] = {
    "catalog": "catalog-ssl-1000-fixes.md",
    "run": "run-jepa-production-analysis.md",
    "guide": "guide-troubleshooting.md",
    "audit": "audit-final-summary.md",
}

# Hybrid retrieval: weighted reciprocal rank fusion (score = sum w / (k + rank)), candidates from each
# retriever. Tuned once on the dev set with scripts/bench_retrieval.py; A small k trusts the top of
# each list; on the 60 dev queries k=5 beat 10-60 and both retrievers alone (see the closing note).
RRF_K = 5
RRF_WEIGHTS = {"bm25": 0.7, "dense": 1.0}
CANDIDATES = 50
# BM25 column weights: a word in the title counts more than one in the body text.
BM25_WEIGHTS = (3.0, 1.0)

_STOPWORDS = frozenset(
    """a an and are as at be but by can do does did for from had has have how i if in into is it its
    my me of on or our so that the their them then there these this to was we were what when where
    which while who why will with would you your after before about keeps keep get gets got very just""".split()
)


def default_db_path() -> Path:
    env = os.environ.get(ENV_DB)
    if env:
        return Path(env).expanduser()
    from platformdirs import user_data_dir

    return Path(user_data_dir("train-advisor", appauthor=False)) / "kb.db"


def _content_hash(model: str, text: str) -> str:
    return hashlib.md5(f"{model}\n{text}".encode("utf-8")).hexdigest()


def fts_query(text: str) -> str:
    """User text -> a safe FTS5 MATCH expression: quoted content words joined with OR."""
    words = [w for w in re.findall(r"[A-Za-z0-9]+", text.lower()) if w not in _STOPWORDS]
    seen: list[str] = []
    for w in words:
        if w not in seen:
            seen.append(w)
    return " OR ".join(f'"{w}"' for w in seen)


@dataclass
class BuildReport:
    db: str
    sources: dict[str, int] = field(default_factory=dict)
    embedded: int = 0
    reused: int = 0
    removed: int = 0
    seconds: float = 0.0

    def as_dict(self) -> dict:
        return self.__dict__.copy()


def shipped_documents() -> list[tuple[str, str, str]]:
    """(source key, file name, text) of each document in kb/sources/."""
    base = resources.files("kb") / "sources"
    return [(key, name, (base / name).read_text(encoding="utf-8")) for key, name in SHIPPED_SOURCES.items()]


class KnowledgeBase:
    """A KB file. `KnowledgeBase().search("loss becomes nan")` is the fast path other packages use."""

    def __init__(self, path: str | Path | None = None):
        self.path = Path(path).expanduser() if path else default_db_path()
        self._matrix: np.ndarray | None = None
        self._matrix_ids: list[str] = []
        self._entry_cache: dict[str, Entry] = {}
        self._con: sqlite3.Connection | None = None
        self._executor = None

    # ---- opening and checking -------------------------------------------------------------
    def _check_file(self) -> None:
        p = self.path
        if p.is_dir():
            raise KBError(f"{p}: is a directory, not a KB file")
        if not p.exists() or p.stat().st_size == 0:
            return
        with open(p, "rb") as fh:
            if fh.read(16) != b"SQLite format 3\x00":
                raise KBError(f"{p}: is not a SQLite database (not a train-advisor KB)")
        try:
            con = sqlite3.connect(f"file:{p}?mode=ro", uri=True)
            try:
                tables = {r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type='table'")}
                version = None
                if "kb_meta" in tables:
                    row = con.execute("SELECT value FROM kb_meta WHERE key='schema_version'").fetchone()
                    version = int(row[0]) if row else None
            finally:
                con.close()
        except sqlite3.DatabaseError as exc:
            raise KBError(f"{p}: is not a readable SQLite database ({exc})") from exc
        if version != SCHEMA_VERSION:
            raise KBError(
                f"{p}: KB schema version {version if version is not None else 'unknown'} is not {SCHEMA_VERSION}; "
                "run `kb build --rebuild` to recreate it"
            )

    def exists(self) -> bool:
        return self.path.exists() and self.path.stat().st_size > 0

    def _read(self) -> sqlite3.Connection:
        if self._con is None:
            if not self.exists():
                raise KBError(f"no knowledge base at {self.path}; run `kb build` first")
            self._check_file()
            self._con = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True, check_same_thread=False)
        return self._con

    def close(self) -> None:
        if self._executor is not None:
            self._executor.shutdown(wait=True)
            self._executor = None
        if self._con is not None:
            self._con.close()
            self._con = None
        self._matrix = None
        self._entry_cache.clear()

    def ensure_built(self) -> "KnowledgeBase":
        """Build from the shipped sources when no KB exists yet (first run of `advisor`)."""
        if not self.exists():
            self.build()
        return self

    # ---- building -----------------------------------------------------------------------
    def build(self, rebuild: bool = False, encoder: Encoder | None = None) -> BuildReport:
        """(Re)parse the shipped documents and the ones imported before, embed what changed."""
        if rebuild and self.path.exists():
            tmp = self.path.with_name(self.path.name + ".rebuild")
            for suffix in ("", "-wal", "-shm"):
                Path(str(tmp) + suffix).unlink(missing_ok=True)
            imported = self._imported_documents_if_readable()
            fresh = KnowledgeBase(tmp)
            report = fresh._write(
                [parse_text(text, source=k, file=name) for k, name, text in shipped_documents()]
                + [parse_text(text, source=k, file=name) for k, name, text in imported],
                encoder=encoder,
                replace_all=True,
                imported={k: (name, text) for k, name, text in imported},
                reuse=self._vectors_if_readable(),
            )
            fresh.close()
            self.close()
            for suffix in ("-wal", "-shm"):
                Path(str(self.path) + suffix).unlink(missing_ok=True)
            os.replace(tmp, self.path)
            report.db = str(self.path)
            return report
        self._check_file()
        imported = self._imported_documents_if_readable() if self.exists() else []
        docs = [parse_text(text, source=k, file=name) for k, name, text in shipped_documents()]
        docs += [parse_text(text, source=k, file=name) for k, name, text in imported]
        return self._write(docs, encoder=encoder, replace_all=True, imported={k: (n, t) for k, n, t in imported})

    def import_paths(self, paths: list[str | Path], encoder: Encoder | None = None) -> BuildReport:
        """Add a user's own markdown documents (styles detected like the shipped ones)."""
        if not paths:
            raise KBError("give at least one markdown file to import")
        self._check_file()
        docs: list[ParsedDocument] = []
        imported: dict[str, tuple[str, str]] = {}
        for path in paths:
            p = Path(path)
            text = read_document(p)
            source = slugify(p.stem, 40)
            if source in SHIPPED_SOURCES:
                source = f"user-{source}"
            docs.append(parse_text(text, source=source, file=p.name))
            imported[source] = (p.name, text)
        if not self.exists():
            docs = [parse_text(t, source=k, file=n) for k, n, t in shipped_documents()] + docs
        return self._write(docs, encoder=encoder, replace_all=False, imported=imported)

    def _imported_documents_if_readable(self) -> list[tuple[str, str, str]]:
        try:
            con = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True)
            try:
                rows = con.execute("SELECT source, file, text FROM documents WHERE origin = 'imported'").fetchall()
            finally:
                con.close()
        except sqlite3.DatabaseError:
            return []
        return [(s, f, t) for s, f, t in rows]

    def _vectors_if_readable(self) -> dict[str, tuple[str, bytes]]:
        """Embeddings of the file being rebuilt (id -> (content hash, blob)), so unchanged entries are not re-embedded."""
        try:
            con = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True)
            try:
                rows = con.execute("SELECT id, content_hash, vector FROM embeddings WHERE model = ?", (MODEL_NAME,)).fetchall()
            finally:
                con.close()
        except sqlite3.DatabaseError:
            return {}
        return {eid: (h, blob) for eid, h, blob in rows if isinstance(blob, bytes) and len(blob) == 4 * VIEWS * 384}

    def _write(
        self,
        docs: list[ParsedDocument],
        *,
        encoder: Encoder | None,
        replace_all: bool,
        imported: dict[str, tuple[str, str]],
        reuse: dict[str, tuple[str, bytes]] | None = None,
    ) -> BuildReport:
        import sqlite_utils

        started = time.perf_counter()
        self.close()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        report = BuildReport(db=str(self.path))
        db = sqlite_utils.Database(self.path)
        try:
            db.enable_wal()
            self._create_schema(db)
            entries = [e for d in docs for e in d.entries]
            texts = {e.id: e.search_text() for e in entries}
            symptom_texts = {e.id: e.symptom_text() for e in entries}
            hashes = {eid: _content_hash(MODEL_NAME, t + "\x00" + symptom_texts[eid]) for eid, t in texts.items()}
            known = {
                r["id"]: r["content_hash"]
                for r in db.query("SELECT id, content_hash FROM embeddings WHERE model = ?", [MODEL_NAME])
            }
            changed = [eid for eid in texts if known.get(eid) != hashes[eid]]
            reuse = reuse or {}
            vectors = {eid: reuse[eid][1] for eid in changed if eid in reuse and reuse[eid][0] == hashes[eid]}
            todo = [eid for eid in changed if eid not in vectors]
            report.reused = len(texts) - len(todo)
            if todo:  # embed outside the transaction; nothing is written if it fails
                enc = encoder or _build_encoder()
                # two views per entry, stored side by side in one blob: the symptom view and the full text
                full = enc.encode([texts[eid] for eid in todo])
                focused = enc.encode([symptom_texts[eid] for eid in todo])
                vectors.update(
                    (eid, np.concatenate([f, s]).astype("<f4").tobytes()) for eid, f, s in zip(todo, full, focused)
                )
            report.embedded = len(todo)
            sources = [d.source for d in docs]
            with db.conn:
                if replace_all:
                    stale = db.execute(
                        f"SELECT id FROM entries WHERE source NOT IN ({','.join('?' * len(sources))}) "
                        "AND source NOT IN (SELECT source FROM documents WHERE origin = 'imported')",
                        sources,
                    ).fetchall()
                    for (eid,) in stale:
                        db["entries"].delete(eid)
                for d in docs:
                    ids = [e.id for e in d.entries]
                    old = db.execute(
                        f"SELECT id FROM entries WHERE source = ? AND id NOT IN ({','.join('?' * len(ids))})",
                        [d.source, *ids],
                    ).fetchall()
                    for (eid,) in old:
                        db["entries"].delete(eid)
                        report.removed += 1
                    origin = "imported" if d.source in imported else "shipped"
                    raw = imported[d.source][1] if d.source in imported else ""
                    db["documents"].upsert(
                        {
                            "source": d.source,
                            "file": d.file,
                            "style": d.style,
                            "title": d.title,
                            "origin": origin,
                            "checklist": json.dumps(d.checklist),
                            "text": raw,
                            "sha256": hashlib.sha256(raw.encode()).hexdigest() if raw else "",
                        },
                        pk="source",
                    )
                    db["entries"].upsert_all(
                        [
                            {
                                "id": e.id,
                                "source": e.source,
                                "kind": e.kind,
                                "title": e.title,
                                "section": e.section,
                                "search_text": texts[e.id],
                                "data": e.model_dump_json(),
                            }
                            for e in d.entries
                        ],
                        pk="id",
                    )
                    report.sources[d.source] = len(d.entries)
                if vectors:
                    db["embeddings"].upsert_all(
                        [
                            {"id": eid, "model": MODEL_NAME, "content_hash": hashes[eid], "vector": blob}
                            for eid, blob in vectors.items()
                        ],
                        pk="id",
                    )
                db.execute("DELETE FROM embeddings WHERE id NOT IN (SELECT id FROM entries)")
                db["kb_meta"].upsert({"key": "schema_version", "value": str(SCHEMA_VERSION)}, pk="key")
                db["kb_meta"].upsert({"key": "model", "value": MODEL_NAME}, pk="key")
        finally:
            db.close()
        report.seconds = round(time.perf_counter() - started, 3)
        return report

    @staticmethod
    def _create_schema(db) -> None:
        if "entries" in db.table_names():
            return
        with db.conn:
            db["kb_meta"].create({"key": str, "value": str}, pk="key")
            db["documents"].create(
                {"source": str, "file": str, "style": str, "title": str, "origin": str, "checklist": str, "text": str, "sha256": str},
                pk="source",
            )
            db["entries"].create(
                {"id": str, "source": str, "kind": str, "title": str, "section": str, "search_text": str, "data": str},
                pk="id",
            )
            db["entries"].create_index(["source"])
            db["embeddings"].create({"id": str, "model": str, "content_hash": str, "vector": bytes}, pk="id")
            db["entries"].enable_fts(["title", "search_text"], create_triggers=True, tokenize="porter")
            db["kb_meta"].insert({"key": "schema_version", "value": str(SCHEMA_VERSION)})

    # ---- reading ------------------------------------------------------------------------
    def get(self, entry_id: str) -> Entry:
        if entry_id in self._entry_cache:
            return self._entry_cache[entry_id]
        row = self._read().execute("SELECT data FROM entries WHERE id = ?", (entry_id,)).fetchone()
        if row is None:
            raise KBError(f"no entry with id {entry_id!r} (see `kb query` or `kb export` for ids)")
        entry = Entry.model_validate_json(row[0])
        self._entry_cache[entry_id] = entry
        return entry

    def entries(self, source: str | None = None) -> Iterator[Entry]:
        sql = "SELECT data FROM entries" + (" WHERE source = ?" if source else "") + " ORDER BY source, rowid"
        for (data,) in self._read().execute(sql, (source,) if source else ()):
            yield Entry.model_validate_json(data)

    def stats(self) -> dict[str, int]:
        rows = self._read().execute("SELECT source, count(*) FROM entries GROUP BY source ORDER BY source")
        return {s: n for s, n in rows}

    def documents(self) -> list[dict]:
        cur = self._read().execute("SELECT source, file, style, title, origin, checklist FROM documents ORDER BY source")
        return [
            {"source": s, "file": f, "style": st, "title": t, "origin": o, "checklist": json.loads(c or "[]")}
            for s, f, st, t, o, c in cur
        ]

    def source_text(self, source: str) -> str:
        """The original text of a source document (for showing provenance lines)."""
        if source in SHIPPED_SOURCES:
            return (resources.files("kb") / "sources" / SHIPPED_SOURCES[source]).read_text(encoding="utf-8")
        row = self._read().execute("SELECT text FROM documents WHERE source = ?", (source,)).fetchone()
        if row is None:
            raise KBError(f"no source document {source!r}")
        return row[0]

    # ---- search -------------------------------------------------------------------------
    def _pool(self):
        if self._executor is None:
            from concurrent.futures import ThreadPoolExecutor

            self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="kb-bm25")
        return self._executor

    def _load_matrix(self) -> tuple[list[str], np.ndarray]:
        if self._matrix is None:
            rows = self._read().execute("SELECT id, vector FROM embeddings WHERE model = ? ORDER BY rowid", (MODEL_NAME,)).fetchall()
            self._matrix_ids = [r[0] for r in rows]
            blob = b"".join(r[1] for r in rows)
            # each row holds VIEWS vectors side by side; the sum of their cosines with a query is the
            # cosine with their sum, so one (n, dim) matrix scores both views in one pass
            views = np.frombuffer(blob, dtype="<f4").reshape(len(rows), VIEWS, -1) if rows else np.zeros((0, VIEWS, 384), "<f4")
            self._matrix = np.ascontiguousarray(views.sum(axis=1, dtype=np.float32))
        return self._matrix_ids, self._matrix

    def bm25(self, text: str, limit: int = CANDIDATES, source: str | None = None) -> list[tuple[str, float]]:
        q = fts_query(expand_query(text))
        if not q:
            return []
        weights = f"{BM25_WEIGHTS[0]}, {BM25_WEIGHTS[1]}"
        if source:
            sql = (
                f"SELECT e.id, bm25(entries_fts, {weights}) AS r FROM entries_fts "
                "JOIN entries e ON e.rowid = entries_fts.rowid WHERE entries_fts MATCH ? AND e.source = ? ORDER BY r LIMIT ?"
            )
        else:  # rank inside the FTS table first, then look up ids for the few rows kept (2x faster)
            sql = (
                f"SELECT e.id, f.r FROM (SELECT rowid, bm25(entries_fts, {weights}) AS r FROM entries_fts "
                "WHERE entries_fts MATCH ? ORDER BY r LIMIT ?) f JOIN entries e ON e.rowid = f.rowid ORDER BY f.r"
            )
        params = [q, source, limit] if source else [q, limit]
        try:
            return [(eid, -float(r)) for eid, r in self._read().execute(sql, params)]
        except sqlite3.OperationalError as exc:
            raise KBError(f"full-text search failed: {exc}") from exc

    def dense(self, text: str, limit: int = CANDIDATES, source: str | None = None, vector: np.ndarray | None = None) -> list[tuple[str, float]]:
        ids, mat = self._load_matrix()
        if not ids or not text.strip():
            return []
        qv = vector if vector is not None else query_encoder().encode([expand_query(text)])[0]
        sims = mat @ qv
        if source:
            mask = np.fromiter((i.startswith(source + "/") for i in ids), dtype=bool, count=len(ids))
            sims = np.where(mask, sims, -np.inf)
        n = min(limit, len(ids))
        top = np.argpartition(-sims, n - 1)[:n]
        top = top[np.argsort(-sims[top])]
        return [(ids[i], float(sims[i])) for i in top if np.isfinite(sims[i])]

    def search(self, text: str, k: int = 5, source: str | None = None, mode: str = "hybrid") -> list[Hit]:
        """Rank entries for a symptom description. mode: hybrid (default), bm25 or dense."""
        if mode not in ("hybrid", "bm25", "dense"):
            raise KBError(f"unknown search mode {mode!r} (hybrid, bm25 or dense)")
        if source:
            sources = self.stats()
            if source not in sources:
                raise KBError(f"no source {source!r} in the KB (have: {', '.join(sources)})")
        if mode == "hybrid":
            # SQLite releases the GIL while it ranks: run BM25 beside the query embedding
            pending = self._pool().submit(self.bm25, text, CANDIDATES, source)
            semantic = self.dense(text, source=source)
            lexical = pending.result()
        else:
            lexical = self.bm25(text, source=source) if mode == "bm25" else []
            semantic = self.dense(text, source=source) if mode == "dense" else []
        if mode == "bm25":
            ranked = [(eid, s, i + 1, None) for i, (eid, s) in enumerate(lexical)]
        elif mode == "dense":
            ranked = [(eid, s, None, i + 1) for i, (eid, s) in enumerate(semantic)]
        else:
            ranked = fuse(lexical, semantic)
        return [Hit(entry=self.get(eid), score=score, bm25_rank=br, dense_rank=dr) for eid, score, br, dr in ranked[:k]]


def fuse(lexical: list[tuple[str, float]], semantic: list[tuple[str, float]]) -> list[tuple[str, float, int | None, int | None]]:
    """Weighted reciprocal rank fusion of two ranked lists -> (id, score, bm25 rank, dense rank)."""
    brank = {eid: i + 1 for i, (eid, _) in enumerate(lexical)}
    drank = {eid: i + 1 for i, (eid, _) in enumerate(semantic)}
    scores: dict[str, float] = {}
    for eid in set(brank) | set(drank):
        s = 0.0
        if eid in brank:
            s += RRF_WEIGHTS["bm25"] / (RRF_K + brank[eid])
        if eid in drank:
            s += RRF_WEIGHTS["dense"] / (RRF_K + drank[eid])
        scores[eid] = s
    order = sorted(scores, key=lambda e: (-scores[e], drank.get(e, math.inf), brank.get(e, math.inf)))
    return [(eid, scores[eid], brank.get(eid), drank.get(eid)) for eid in order]


def _build_encoder() -> Encoder:
    from kb.embed import SentenceTransformerEncoder

    return SentenceTransformerEncoder()
