"""train-advisor's knowledge base: troubleshooting documents -> entries in SQLite, hybrid search."""

from kb.models import Entry, Hit, KBError, Provenance
from kb.store import KnowledgeBase, default_db_path

__all__ = ["Entry", "Hit", "KBError", "KnowledgeBase", "Provenance", "default_db_path"]
