"""What the KB's reader (kb.store) and writer (kb.build) share: the schema version, the shipped
sources, the content hash that decides re-embedding, how a reader opens the file, the build report."""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources
from pathlib import Path

SCHEMA_VERSION = 1
VIEWS = 2  # embeddings per entry: full text, symptom view

# The documents shipped in the package: source key -> file under kb/sources/.
SHIPPED_SOURCES: dict[str, str] = {
    "catalog": "catalog-ssl-1000-fixes.md",
    "run": "run-jepa-production-analysis.md",
    "guide": "guide-troubleshooting.md",
    "audit": "audit-final-summary.md",
}


def read_only_uri(path: Path) -> str:
    """The URI a reader opens the KB with. In a directory nobody can write to (read-only media or
    mount), a WAL database cannot create its -shm file; nothing can change it there either, so it is
    opened as immutable."""
    from urllib.parse import quote

    uri = f"file:{quote(str(path))}?mode=ro"
    if not os.access(path.parent, os.W_OK) and not Path(str(path) + "-wal").exists():
        uri += "&immutable=1"
    return uri


INDEX_KEY = "index_version"  # kb_meta: the index_version() the entries' full-text index was written under


@lru_cache(maxsize=1)  # once per process: the version of the lexicon and code this process loaded
def index_version() -> str:
    """A hash of what shapes each entry's full-text index text: the lexicon, the code that applies it
    and Entry.search_text. A KB written under another version has its FTS text rewritten (no
    re-embedding), so an upgraded install never searches a stale index."""
    base = Path(__file__).parent
    h = hashlib.md5()
    for name in ("lexicon.toml", "lexicon.py", "models.py"):
        h.update((base / name).read_bytes())
    return h.hexdigest()[:16]


def index_stale(con) -> bool:
    """Whether a complete KB's FTS text was written under another index_version() (or before it was stored)."""
    try:
        row = con.execute("SELECT value FROM kb_meta WHERE key = ?", (INDEX_KEY,)).fetchone()
    except Exception:  # no kb_meta: not a KB this check applies to
        return False
    return row is None or row[0] != index_version()


def _content_hash(model: str, text: str) -> str:
    return hashlib.md5(f"{model}\n{text}".encode("utf-8")).hexdigest()


@dataclass
class BuildReport:
    db: str
    sources: dict[str, int] = field(default_factory=dict)  # source key -> entries written
    embedded: int = 0
    reused: int = 0
    removed: int = 0
    seconds: float = 0.0
    paths: dict[str, str] = field(default_factory=dict)  # imported source key -> the file it came from
    unchanged: list[str] = field(default_factory=list)  # imported sources whose file did not change
    skipped: list[str] = field(default_factory=list)  # "file: why" for files an import left out
    skipped_sections: dict[str, list[str]] = field(default_factory=dict)  # boilerplate sections left out
    removed_sources: list[str] = field(default_factory=list)  # sources whose file is gone from a re-imported folder
    warnings: list[str] = field(default_factory=list)

    def as_dict(self) -> dict:
        return self.__dict__.copy()


def shipped_documents() -> list[tuple[str, str, str]]:
    """(source key, file name, text) of each document in kb/sources/."""
    base = resources.files("kb") / "sources"
    return [(key, name, (base / name).read_text(encoding="utf-8")) for key, name in SHIPPED_SOURCES.items()]
