"""The numpy query encoder gives the vectors sentence-transformers gives, from the same weights; its
in-place GELU and layer norm compute what their textbook formulas compute; it leaves BLAS threading as it was."""

from __future__ import annotations

import math

import numpy as np

from kb.embed import NumpyMiniLM, SentenceTransformerEncoder, _gelu_, _layer_norm_


def test_numpy_encoder_matches_sentence_transformers(kb):
    texts = [e.search_text() for e in list(kb.entries())[::9]] + ["loss is nan", "a", "Ünïcödé → λ ✅ text"]
    fast = NumpyMiniLM().encode(texts)
    reference = SentenceTransformerEncoder().encode(texts)
    assert fast.dtype == np.float32
    cosine = (fast * reference).sum(axis=1)
    assert cosine.min() > 0.99999
    assert np.abs(fast - reference).max() < 1e-4


def test_gelu_is_the_erf_gelu_in_float32():
    x = np.concatenate([np.linspace(-12, 12, 4801), [0.0, -0.0, 1e-30, -1e-30]]).astype(np.float32).reshape(5, -1)
    exact = np.array([0.5 * v * (1 + math.erf(v / math.sqrt(2))) for v in x.ravel().tolist()]).reshape(x.shape)
    out = _gelu_(x.copy())
    assert out.dtype == np.float32
    # A&S 7.1.26 is within 1.5e-7 of erf, so GELU within 0.75e-7 |x|, plus float32 rounding of the terms
    assert np.all(np.abs(out - exact) <= 1e-7 * np.abs(exact) + 2.5e-7 * np.abs(x) + 1e-12)
    assert np.abs(out - exact).max() > 0  # float32 against float64: the comparison is not vacuous


def test_layer_norm_in_place_matches_the_formula():
    rng = np.random.default_rng(0)
    x = (rng.standard_normal((7, 384)) * 3 + 5).astype(np.float32)
    gamma, beta = rng.standard_normal(384).astype(np.float32), rng.standard_normal(384).astype(np.float32)
    x64 = x.astype(np.float64)
    expected = (x64 - x64.mean(-1, keepdims=True)) / np.sqrt(x64.var(-1, keepdims=True) + 1e-12) * gamma + beta
    out = _layer_norm_(x.copy(), gamma, beta, 1e-12)
    assert out.dtype == np.float32
    assert np.abs(out - expected).max() < 1e-5


def test_encode_restores_the_callers_blas_threads():
    from threadpoolctl import threadpool_info, threadpool_limits

    encoder = NumpyMiniLM()
    with threadpool_limits(limits=2):
        before = [p["num_threads"] for p in threadpool_info()]
        encoder.encode(["loss becomes nan"])
        assert [p["num_threads"] for p in threadpool_info()] == before
