"""The knowledge base on disk: SQLite (WAL) with entries, an FTS5 index and float32 embeddings.

Writes (kb.build) hold a writer lock and go through one transaction each, so a failed or killed
build or import leaves the existing KB as it was. Reads (the query path) use plain sqlite3 and the numpy encoder so a cold
`kb query` process starts in a fraction of the time sentence-transformers needs to import.
"""

from __future__ import annotations

import json
import os
import sqlite3
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterator

import numpy as np

from kb import search as ranking
from kb.embed import MODEL_NAME, Encoder
from kb.errors import KBError

if TYPE_CHECKING:  # pydantic loads on first use of a model: a cold `kb query` (KnowledgeBase.results) needs none
    from kb.models import Entry, Hit, SourceInfo
from kb.search import CANDIDATES, fts_query  # noqa: F401  (fts_query re-exported for callers of kb.store)

from kb.files import (  # noqa: F401  (re-exported: callers import these from kb.store)
    SCHEMA_VERSION,
    SHIPPED_SOURCES,
    VIEWS,
    BuildReport,
    _content_hash,
    index_stale,
    read_only_uri,
    shipped_documents,
)

ENV_DB = "TRAIN_ADVISOR_DB"
QUICK_CHECK_MAX_BYTES = 8 * 1024 * 1024  # quick_check reads every page: ~10 ms per MB, so only where cheap
INTERRUPTED = "{path}: the KB build was interrupted; run `kb build`"


def default_db_path() -> Path:
    env = os.environ.get(ENV_DB)
    if env:
        return Path(env).expanduser()
    from platformdirs import user_data_dir

    return Path(user_data_dir("train-advisor", appauthor=False)) / "kb.db"



class KnowledgeBase:
    """A KB file. `KnowledgeBase().search("loss becomes nan")` is the fast path other packages use."""

    def __init__(self, path: str | Path | None = None):
        self.path = Path(path).expanduser() if path else default_db_path()
        self._matrix: np.ndarray | None = None
        self._matrix_ids: list[str] = []
        self._unit_cache: dict[str, np.ndarray] = {}
        self._entry_cache: dict[str, Entry] = {}
        self._con: sqlite3.Connection | None = None
        self._executor = None
        self.on_wait: Callable[[str], None] | None = None  # told once when another process holds the writer lock

    # ---- opening and checking -------------------------------------------------------------
    def check(self, for_write: bool = False) -> str:
        """The file's state: "missing", "incomplete" (a first build was interrupted) or "complete".

        Raises KBError for a directory, a file that is not a KB, another schema version or (when
        reading) a damaged file. `PRAGMA quick_check` runs when reading a file small enough for it
        to be cheap; a write rebuilds what it touches, and `kb build --rebuild` recreates the file.
        """
        p = self.path
        if p.is_dir():
            raise KBError(f"{p}: is a directory, not a KB file")
        if not p.exists() or p.stat().st_size == 0:
            return "missing"
        with open(p, "rb") as fh:
            head = fh.read(16)
        if head != b"SQLite format 3\x00":
            raise KBError(f"{p}: is not a SQLite database (not a train-advisor KB)")
        from kb.errors import sqlite_message

        try:
            con = sqlite3.connect(read_only_uri(p), uri=True)
            try:
                tables = {r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type='table'")}
                if "entries" not in tables or "kb_meta" not in tables:
                    return "incomplete"
                meta = dict(con.execute("SELECT key, value FROM kb_meta").fetchall())
                if not for_write and p.stat().st_size <= QUICK_CHECK_MAX_BYTES:
                    problems = [r[0] for r in con.execute("PRAGMA quick_check(3)")]
                    if problems != ["ok"]:
                        first = next((ln.strip() for ln in problems[0].splitlines() if ln.strip() and not ln.startswith("***")), problems[0])
                        raise KBError(f"{p}: the KB file is damaged ({first}); run `kb build --rebuild` to recreate it")
            finally:
                con.close()
        except sqlite3.Error as exc:
            if for_write:
                raise KBError(f"{p}: {sqlite_message(exc)}") from exc
            raise KBError(sqlite_message(exc, p)) from exc
        version = meta.get("schema_version")
        if version != str(SCHEMA_VERSION):
            raise KBError(
                f"{p}: KB schema version {version if version is not None else 'unknown'} is not {SCHEMA_VERSION}; "
                "run `kb build --rebuild` to recreate it"
            )
        # kb_meta.build_complete is '' from the start of a first build until its commit; older KBs lack the key
        return "incomplete" if meta.get("build_complete", "done") == "" else "complete"

    def _check_file(self) -> None:
        if self.check() == "incomplete":
            raise KBError(INTERRUPTED.format(path=self.path))

    def exists(self) -> bool:
        return self.path.exists() and self.path.stat().st_size > 0

    def _read(self) -> sqlite3.Connection:
        if self._con is None:
            if not self.exists():
                raise KBError(f"no knowledge base at {self.path}; run `kb build` first")
            self._check_file()
            self._con = sqlite3.connect(read_only_uri(self.path), uri=True, check_same_thread=False)
            if index_stale(self._con):  # written under another lexicon or index text: rewrite it (no re-embedding)
                self._con.close()
                self._con = None
                from kb import build

                try:
                    build.refresh_index(self)
                except KBError:
                    pass  # a place we cannot write to: search the index as it is
                self._con = sqlite3.connect(read_only_uri(self.path), uri=True, check_same_thread=False)
        return self._con

    def close(self) -> None:
        if self._executor is not None:
            self._executor.shutdown(wait=True)
            self._executor = None
        if self._con is not None:
            self._con.close()
            self._con = None
        self._matrix = None
        self._unit_cache.clear()
        self._entry_cache.clear()

    def ensure_built(self) -> "KnowledgeBase":
        """Build from the shipped sources when no KB exists yet (first run of `advisor`), or finish an interrupted build."""
        if self.check() != "complete":
            self.build()
        return self

    # ---- writing (kb.build holds the writer lock and the transactions) ---------------------
    def build(self, rebuild: bool = False, encoder: Encoder | None = None) -> BuildReport:
        """(Re)parse the shipped documents and the ones imported before, embed what changed."""
        from kb import build

        return build.build(self, rebuild=rebuild, encoder=encoder)

    def import_paths(self, paths: list[str | Path], encoder: Encoder | None = None) -> BuildReport:
        """Add or update a user's own markdown files and folders (recursive); see `kb.build.import_paths`."""
        from kb import build

        return build.import_paths(self, paths, encoder=encoder)

    def remove(self, source: str) -> dict[str, int]:
        """Remove an imported source, or every source under a folder key, in one transaction."""
        from kb import build

        return build.remove_source(self, source)

    def save_note(self, *, run: str, entry_id: str, title: str, note: str, signal_kinds: list[str], encoder: Encoder | None = None) -> Entry:
        """Store a note the user marked "helped" as an entry of the `notes` source (searchable, linked to signal kinds)."""
        from kb import build

        return build.save_note(self, run=run, entry_id=entry_id, title=title, note=note, signal_kinds=signal_kinds, encoder=encoder)

    def forget_note(self, *, run: str, entry_id: str) -> bool:
        from kb import build

        return build.forget_note(self, run=run, entry_id=entry_id)

    # ---- reading ------------------------------------------------------------------------
    def get(self, entry_id: str) -> Entry:
        if entry_id in self._entry_cache:
            return self._entry_cache[entry_id]
        from kb.models import Entry

        row = self._read().execute("SELECT data FROM entries WHERE id = ?", (entry_id,)).fetchone()
        if row is None:
            raise KBError(f"no entry with id {entry_id!r} (see `kb query` or `kb export` for ids)")
        entry = Entry.model_validate_json(row[0])
        self._entry_cache[entry_id] = entry
        return entry

    def entries(self, source: str | None = None) -> Iterator[Entry]:
        from kb.models import Entry

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

    def sources(self) -> list[SourceInfo]:
        """Every source document with its entry count and, for imports, the file and when it was imported."""
        from kb.models import SourceInfo

        con = self._read()
        counts = dict(con.execute("SELECT source, count(*) FROM entries GROUP BY source").fetchall())
        cols = {r[1] for r in con.execute("PRAGMA table_info(documents)")}
        extra = ", ".join(c if c in cols else "''" for c in ("path", "imported", "skipped"))
        out = []
        for source, file, origin, style, title, path, imported, skipped in con.execute(
            f"SELECT source, file, origin, style, title, {extra} FROM documents ORDER BY origin != 'shipped', source"
        ):
            out.append(
                SourceInfo(
                    source=source, file=path or file or "", origin=origin if origin in ("shipped", "imported", "notes") else "imported",
                    style=style or "", title=title or "", entries=counts.get(source, 0), imported=imported or "",
                    skipped_sections=json.loads(skipped or "[]"),
                )
            )
        return out

    def entries_for_signal_kinds(self, kinds) -> list[Entry]:
        """Entries linked to any of these advisor signal kinds (a user's helped notes), most shared kinds first, newest first."""
        from kb.models import Entry

        wanted = {str(k) for k in kinds}
        if not wanted:
            return []
        rows = self._read().execute(
            "SELECT rowid, data FROM entries WHERE data LIKE '%\"signal_kinds\":[\"%' ORDER BY rowid DESC"
        ).fetchall()
        scored = []
        for rowid, data in rows:
            e = Entry.model_validate_json(data)
            shared = len(wanted & set(e.signal_kinds))
            if shared:
                scored.append((-shared, -rowid, e))
        return [e for _, _, e in sorted(scored, key=lambda t: (t[0], t[1]))]

    def source_text(self, source: str) -> str:
        """The original text of a source document (for showing provenance lines)."""
        if source in SHIPPED_SOURCES:
            return (resources.files("kb") / "sources" / SHIPPED_SOURCES[source]).read_text(encoding="utf-8")
        row = self._read().execute("SELECT text FROM documents WHERE source = ?", (source,)).fetchone()
        if row is None:
            raise KBError(f"no source document {source!r}")
        return row[0]

    # ---- search (ranking lives in kb.search) ----------------------------------------------
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
            self._matrix_row = {eid: i for i, eid in enumerate(self._matrix_ids)}
        return self._matrix_ids, self._matrix

    def _unit_vectors(self, ids) -> dict[str, np.ndarray]:
        """Unit-length summed view vectors of these entries (for near-duplicate checks), normalised once per entry."""
        _, mat = self._load_matrix()
        cache = self._unit_cache
        out = {}
        for eid in ids:
            v = cache.get(eid)
            if v is None:
                row = self._matrix_row.get(eid)
                if row is None:
                    continue
                v = cache[eid] = mat[row] / max(float(np.linalg.norm(mat[row])), 1e-12)
            out[eid] = v
        return out

    def bm25(self, text: str, limit: int = CANDIDATES, source: str | None = None) -> list[tuple[str, float]]:
        return ranking.bm25(self._read(), ranking.prepare_query(text), limit, source)

    def dense(self, text: str, limit: int = CANDIDATES, source: str | None = None, vector: np.ndarray | None = None) -> list[tuple[str, float]]:
        ids, mat = self._load_matrix()
        if not ids or not text.strip():
            return []
        qv = vector if vector is not None else ranking.embed_query(ranking.prepare_query(text))
        return ranking.dense(ids, mat, qv, limit, source)

    def ranked(self, text: str, k: int = 5, source: str | None = None, mode: str = "hybrid"):
        """Ids, scores and per-method ranks, best first (`search` without loading the entries)."""
        if mode not in ("hybrid", "bm25", "dense"):
            raise KBError(f"unknown search mode {mode!r} (hybrid, bm25 or dense)")
        if source and self._read().execute("SELECT 1 FROM entries WHERE source = ? LIMIT 1", (source,)).fetchone() is None:
            # an indexed lookup per query; counting every source (stats) only for the message
            raise KBError(f"no source {source!r} in the KB (have: {', '.join(self.stats())})")
        prepared = ranking.prepare_query(text)
        lexical: list[tuple[str, float]] = []
        semantic: list[tuple[str, float]] = []
        if mode == "bm25":
            lexical = ranking.bm25(self._read(), prepared, CANDIDATES, source)
            return [ranking.Ranked(eid, s, i + 1, None) for i, (eid, s) in enumerate(lexical)][:k]
        ids, mat = self._load_matrix()
        con = self._read()
        if mode == "hybrid":
            # SQLite releases the GIL while it ranks: run BM25 beside the query embedding
            pending = self._pool().submit(ranking.bm25, con, prepared, CANDIDATES, source)
        if ids and text.strip():
            semantic = ranking.dense(ids, mat, ranking.embed_query(prepared), CANDIDATES, source)
        if mode == "dense":
            return [ranking.Ranked(eid, s, None, i + 1) for i, (eid, s) in enumerate(semantic)][:k]
        lexical = pending.result()
        return ranking.hybrid(lexical, semantic, self._unit_vectors, k)

    def search(self, text: str, k: int = 5, source: str | None = None, mode: str = "hybrid") -> list[Hit]:
        """Rank entries for a symptom description. mode: hybrid (default), bm25 or dense."""
        from kb.models import Hit

        return [
            Hit(entry=self.get(r.id), score=r.score, bm25_rank=r.bm25_rank, dense_rank=r.dense_rank)
            for r in self.ranked(text, k, source, mode)
        ]

    def results(self, text: str, k: int = 5, source: str | None = None, mode: str = "hybrid") -> list[dict]:
        """`search` as the `kb query --json` result dicts, read from the stored JSON without building
        pydantic models (the cold CLI path)."""
        ranked = self.ranked(text, k, source, mode)
        if not ranked:
            return []
        marks = ",".join("?" * len(ranked))
        rows = dict(self._read().execute(f"SELECT id, data FROM entries WHERE id IN ({marks})", [r.id for r in ranked]).fetchall())
        return [ranking.result_dict(json.loads(rows[r.id]), r.score) for r in ranked if r.id in rows]


def _build_encoder() -> Encoder:
    from kb.embed import SentenceTransformerEncoder

    return SentenceTransformerEncoder()
