"""Shared fixtures: one real KB (shipped documents, real embeddings) built once per test session."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"


LLM_ENV_NAMES = ("OPENAI_API_KEY", "OPENAI_BASE_URL", "TRAIN_ADVISOR_LLM_MODEL", "TRAIN_ADVISOR_LLM_MODEL_PATH", "TRAIN_ADVISOR_LLM_BACKEND")


@pytest.fixture(autouse=True)
def isolated_llm_config(monkeypatch, tmp_path):
    """No test sees the developer's own LLM endpoint, key or config file."""
    for name in LLM_ENV_NAMES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("TRAIN_ADVISOR_CONFIG", str(tmp_path / "no-config.toml"))


@pytest.fixture(scope="session")
def built_kb_path(tmp_path_factory) -> Path:
    """A KB built from the shipped sources with the real model (read-only for tests: copy to modify)."""
    from kb import KnowledgeBase

    path = tmp_path_factory.mktemp("kb") / "kb.db"
    KnowledgeBase(path).build()
    return path


@pytest.fixture
def kb_copy(built_kb_path, tmp_path) -> Path:
    """A private copy of the built KB that a test may change."""
    dst = tmp_path / "kb.db"
    from kb import KnowledgeBase

    KnowledgeBase(built_kb_path).close()
    import sqlite3

    src = sqlite3.connect(built_kb_path)
    out = sqlite3.connect(dst)
    src.backup(out)
    src.close()
    out.close()
    return dst


@pytest.fixture(scope="session")
def kb(built_kb_path):
    from kb import KnowledgeBase

    store = KnowledgeBase(built_kb_path)
    yield store
    store.close()


def shared_path(*parts: str) -> Path:
    path = SHARED.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"shared material {path} is not here")
    return path
