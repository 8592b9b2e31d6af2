"""train-advisor's knowledge base: troubleshooting documents -> entries in SQLite, hybrid search.

Names are loaded on first use so that `import kb` (and a cold `kb query`) pays only for what it touches.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

__all__ = ["Entry", "Hit", "KBError", "KnowledgeBase", "Provenance", "default_db_path"]

_HOME = {"Entry": "kb.models", "Hit": "kb.models", "KBError": "kb.errors", "Provenance": "kb.models",
         "KnowledgeBase": "kb.store", "default_db_path": "kb.store"}

if TYPE_CHECKING:
    from kb.models import Entry, Hit, KBError, Provenance
    from kb.store import KnowledgeBase, default_db_path


def __getattr__(name: str):
    if name in _HOME:
        import importlib

        return getattr(importlib.import_module(_HOME[name]), name)
    raise AttributeError(f"module 'kb' has no attribute {name!r}")
