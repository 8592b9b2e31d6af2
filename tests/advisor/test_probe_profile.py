"""What the probe records about the run itself (issue 9's run profile): modules, activation kinds,
the tensors passed, mixed precision, distribution, and a stable run id."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from advisor import Probe
from advisor import reading_names as rn
from advisor.runstore import read_meta, read_readings


class VectorQuantizer(nn.Module):
    """Nearest-codeword quantisation with a straight-through gradient."""

    def __init__(self, size: int, dim: int) -> None:
        super().__init__()
        self.codebook = nn.Embedding(size, dim)

    def forward(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        codes = torch.cdist(z.float(), self.codebook.weight.float()).argmin(-1)
        q = self.codebook(codes).to(z.dtype)
        return z + (q - z).detach(), codes


class TinyVQTransformer(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Linear(8, 32)
        self.block = nn.TransformerEncoderLayer(32, 4, 64, dropout=0.0, batch_first=True, activation="gelu")
        self.mlp = nn.Sequential(nn.Linear(32, 32), nn.ReLU(), nn.Linear(32, 32), nn.SiLU(), nn.Linear(32, 16), nn.Tanh())
        self.quantizer = VectorQuantizer(16, 16)
        self.head = nn.Linear(16, 5)

    def forward(self, x):
        h = self.block(self.embed(x))
        z = self.mlp(h)
        q, codes = self.quantizer(z)
        return z, codes, self.head(q).mean(1)


def test_run_profile_in_the_store_meta(tmp_path):
    torch.manual_seed(0)
    model = TinyVQTransformer()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    scaler = torch.amp.GradScaler("cpu", init_scale=1024.0)
    with Probe(model, run=tmp_path / "run", every=2) as probe:
        for _ in range(4):
            x, y = torch.randn(6, 10, 8), torch.randint(0, 5, (6,))
            with torch.autocast("cpu", dtype=torch.bfloat16):
                z, codes, logits = model(x)
                loss = F.cross_entropy(logits.float(), y)
            opt.zero_grad()
            scaler.scale(loss).backward()
            causal = torch.tril(torch.ones(10, 10))
            probe.step(loss=loss, scaler=scaler, embeddings=z, views=(z, z + 0.1), codes=codes, logits=logits,
                       targets=y, attention=causal / causal.sum(-1, keepdim=True), hidden=z)
            scaler.step(opt)
            scaler.update()
        assert probe.disabled == {}
    meta = read_meta(tmp_path / "run")
    assert len(meta[rn.META_RUN_ID]) == 32 and int(meta[rn.META_RUN_ID], 16) >= 0
    modules = meta[rn.META_MODULES]
    assert modules["attention"] == ["block.self_attn"]
    assert modules["vq"] == ["quantizer"]
    assert modules["norm"] == {"layer_norm": 2} and modules["norm_placement"] == "post"
    assert meta[rn.META_ACTIVATION_KINDS] == {"mlp.1": "relu", "mlp.3": "silu", "mlp.5": "tanh"}
    assert meta[rn.META_TENSORS] == {
        "embeddings": "representation", "views": "views", "codes": "codes", "logits": "logits",
        "targets": "targets", "attention": "attention", "hidden": "tensor",
    }  # fmt: skip
    assert meta[rn.META_AMP] == {"autocast_dtype": "bfloat16", "grad_scaler": True}
    assert meta[rn.META_DISTRIBUTED] == {"world_size": 1, "backend": None, "wrapper": None}

    r = read_readings(tmp_path / "run")
    # Dead-unit readings for the ReLU layer only; saturation for the tanh; spread for all.
    assert rn.act("mlp.1", rn.DEAD_UNIT_SHARE) in r and rn.act("mlp.1", rn.ZERO_FRACTION) in r
    assert not [n for n in r if n.startswith("act/mlp.3/") and n.endswith(("zero_fraction", "dead_unit_share"))]
    assert rn.act("mlp.5", rn.SATURATION_FRACTION) in r and rn.act("mlp.3", rn.STD) in r
    assert r[rn.AMP_LOSS_SCALE][0].tolist() == [0, 2] and r[rn.AMP_LOSS_SCALE][1][0] == 1024.0
    # Exactly uniform causal attention reads as fully spread.
    np.testing.assert_allclose(r[rn.of(rn.ATTENTION, rn.ENTROPY_RATIO)][1], 1.0, rtol=1e-6)  # float32 entropies
    assert r[rn.of(rn.ATTENTION, rn.CAUSAL_SHARE)][1].tolist() == [1.0, 1.0]


def test_every_reading_name_the_probe_writes_is_declared(tmp_path):
    """The vocabulary in advisor.reading_names covers what a training run actually writes."""
    torch.manual_seed(0)
    model = TinyVQTransformer()
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    with Probe(model, run=tmp_path / "run", every=1) as probe:
        for _ in range(3):
            z, codes, logits = model(torch.randn(6, 10, 8))
            loss = F.cross_entropy(logits, torch.randint(0, 5, (6,)))
            opt.zero_grad()
            loss.backward()
            probe.step(loss=loss, embeddings=z, views=(z, z), codes=codes, logits=logits, targets=torch.zeros(6, dtype=torch.long),
                       attention=torch.softmax(torch.randn(2, 10, 10), -1), step_time=0.01, data_time=0.001)
            opt.step()
    undeclared = sorted(n for n in read_readings(tmp_path / "run") if n != "loss" and not rn.is_probe_reading(n))
    assert undeclared == []


@pytest.mark.parametrize("kind,module", [("relu", nn.ReLU()), ("gelu", nn.GELU()), ("silu", nn.SiLU()),
                                         ("leaky_relu", nn.LeakyReLU()), ("tanh", nn.Tanh()), ("sigmoid", nn.Sigmoid()),
                                         ("tanh", nn.Hardtanh(-2.0, 2.0)), ("relu", nn.ReLU6())])  # fmt: skip
def test_activation_kinds(kind, module):
    from advisor.probe.hooks import classify

    got, bounds = classify(module)
    assert got == kind
    assert (bounds is not None) == (kind in rn.SATURATING_KINDS)
    if isinstance(module, nn.Hardtanh) and not isinstance(module, nn.ReLU6):
        assert bounds == (-2.0, 2.0)


def test_causal_attention_entropy_is_normalised_per_row():
    from advisor.probe import metrics as M

    L = 7
    mask = torch.tril(torch.ones(L, L))
    uniform_causal = (mask / mask.sum(-1, keepdim=True)).expand(3, 2, L, L)
    got = M.attention_readings(M.attention_stats(uniform_causal))
    assert float(got["entropy_ratio"]) == pytest.approx(1.0) and float(got["causal_share"]) == 1.0
    # Masked scores (-inf above the diagonal) are softmaxed, and each row i is normalised by log(i+1).
    scores = torch.randn(4, L, L, generator=torch.Generator().manual_seed(3)).masked_fill(mask == 0, -math.inf)
    p = torch.softmax(scores.double(), -1)
    h = -(torch.special.xlogy(p, p)).sum(-1)  # (4, L)
    ref = float((h[:, 1:] / torch.log(torch.arange(2, L + 1, dtype=torch.float64))).mean())
    assert float(M.attention_readings(M.attention_stats(scores))["entropy_ratio"]) == pytest.approx(ref, rel=1e-6)
    # A KV cache: 3 new queries over 7 keys, causal relative to the end of the keys.
    cached = mask[-3:] / mask[-3:].sum(-1, keepdim=True)
    assert float(M.attention_readings(M.attention_stats(cached))["entropy_ratio"]) == pytest.approx(1.0)
    # Full (non-causal) attention keeps log L.
    full = torch.softmax(torch.randn(2, L, L), -1)
    assert float(M.attention_readings(M.attention_stats(full))["causal_share"]) == 0.0
