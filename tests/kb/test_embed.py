"""The numpy query encoder gives the vectors sentence-transformers gives, from the same weights."""

from __future__ import annotations

import numpy as np

from kb.embed import NumpyMiniLM, SentenceTransformerEncoder


def test_numpy_encoder_matches_sentence_transformers(kb):
    texts = [e.search_text() for e in list(kb.entries())[::9]] + ["loss is nan", "a", "Ünïcödé → λ ✅ text"]
    fast = NumpyMiniLM().encode(texts)
    reference = SentenceTransformerEncoder().encode(texts)
    cosine = (fast * reference).sum(axis=1)
    assert cosine.min() > 0.99999
    assert np.abs(fast - reference).max() < 1e-4
