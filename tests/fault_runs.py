"""Fault-injected training runs: small real models trained on CPU with the live probe.

Each scenario trains on scikit-learn's digits (or generated data), injects one well-known fault, and
leaves a probe run store behind. `EXPECTED` names the KB entries a practitioner would point to; the
diagnosis suite (tests/advisor/test_diagnosis_faults.py, scripts/bench_diagnosis.py) checks they rank in the
top 3 and that the healthy run raises no medium or high signal.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch import nn

EVERY = 5


def digits(n: int | None = None, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    from sklearn.datasets import load_digits

    x, y = load_digits(return_X_y=True)
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(x))[: n or len(x)]
    return torch.tensor(x[order] / 16.0, dtype=torch.float32), torch.tensor(y[order], dtype=torch.long)


def batches(x: torch.Tensor, y: torch.Tensor, batch: int, steps: int, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        idx = torch.randint(0, len(x), (batch,), generator=g)
        yield x[idx], y[idx]


def _mlp(widths: list[int], act: type[nn.Module] = nn.ReLU) -> nn.Sequential:
    layers: list[nn.Module] = []
    for i in range(len(widths) - 1):
        layers.append(nn.Linear(widths[i], widths[i + 1]))
        if i < len(widths) - 2:
            layers.append(act())
    return nn.Sequential(*layers)


def _classify(run: Path, model: nn.Module, opt, x, y, steps: int, *, batch: int = 64, val=None, val_every: int = 10, clip=None, probe_kwargs=None) -> Path:
    from advisor import Probe

    loss_fn = nn.CrossEntropyLoss()
    with Probe(model, run=run, every=EVERY, **(probe_kwargs or {})) as probe:
        for step, (xb, yb) in enumerate(batches(x, y, batch, steps)):
            logits = model(xb)
            loss = loss_fn(logits, yb)
            opt.zero_grad()
            loss.backward()
            if clip:
                nn.utils.clip_grad_norm_(model.parameters(), clip)
            probe.step(step=step, loss=loss, logits=logits, targets=yb)
            opt.step()
            if val is not None and step % val_every == 0:
                with torch.no_grad():
                    probe.log(step=step, val_loss=loss_fn(model(val[0]), val[1]).item())
    return run


def healthy(run: Path) -> Path:
    torch.manual_seed(0)
    x, y = digits()
    model = _mlp([64, 64, 32, 10])
    opt = torch.optim.Adam(model.parameters(), lr=2e-3)
    return _classify(run, model, opt, x[:1400], y[:1400], 240, val=(x[1400:], y[1400:]))


def exploding_nan(run: Path) -> Path:
    """Regression on unscaled targets with a momentum step far too large: the loss overflows to inf/NaN."""
    from advisor import Probe

    torch.manual_seed(0)
    x, _ = digits()
    target = x.sum(1, keepdim=True) * 10
    model = _mlp([64, 64, 64, 1])
    opt = torch.optim.SGD(model.parameters(), lr=0.02, momentum=0.9)
    with Probe(model, run=run, every=EVERY) as probe:
        for step, (xb, yb) in enumerate(batches(x, target, 64, 80)):
            loss = nn.functional.mse_loss(model(xb), yb)
            opt.zero_grad()
            loss.backward()
            probe.step(step=step, loss=loss)
            opt.step()
    return run


def vanishing_sigmoid(run: Path) -> Path:
    torch.manual_seed(0)
    x, y = digits()
    model = _mlp([64] + [32] * 14 + [10], act=nn.Sigmoid)  # deep sigmoid stack, default init
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    return _classify(run, model, opt, x, y, 120)


def dead_relu(run: Path) -> Path:
    torch.manual_seed(0)
    x, y = digits()
    model = _mlp([64, 128, 128, 10])
    with torch.no_grad():
        for layer in (model[0], model[2]):
            layer.bias.fill_(-6.0)  # every pre-activation negative: the ReLUs start (and stay) dead
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    return _classify(run, model, opt, x, y, 120)


def saturated_tanh(run: Path) -> Path:
    torch.manual_seed(0)
    x, y = digits()
    model = _mlp([64, 128, 128, 10], act=nn.Tanh)
    with torch.no_grad():
        for layer in (model[0], model[2]):
            layer.weight.mul_(25.0)  # huge pre-activations: tanh pinned at +/-1
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    return _classify(run, model, opt, x, y, 120)


def frozen_layer(run: Path) -> Path:
    torch.manual_seed(0)
    x, y = digits()
    model = _mlp([64, 64, 64, 10])
    # the first layer's parameters were left out of the optimizer: gradients flow, nothing changes
    trained = [p for name, p in model.named_parameters() if not name.startswith("0.")]
    opt = torch.optim.Adam(trained, lr=1e-3)
    return _classify(run, model, opt, x, y, 120)


def class_collapse(run: Path) -> Path:
    torch.manual_seed(0)
    x, y = digits()
    keep = torch.cat([torch.nonzero(y == 0).flatten(), torch.nonzero(y != 0).flatten()[:40]])
    x, y = x[keep], y[keep]  # ~180 zeros against 40 samples of the nine other classes
    model = _mlp([64, 32, 10])
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    return _classify(run, model, opt, x, y, 150)


def overfit_tiny(run: Path) -> Path:
    torch.manual_seed(0)
    x, y = digits()
    model = _mlp([64, 512, 512, 10])
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    noisy = y[:40].clone()
    noisy[::3] = (noisy[::3] + 3) % 10  # a tiny, partly mislabelled train set: memorised, val gets worse
    return _classify(run, model, opt, x[:40], noisy, 300, batch=40, val=(x[1000:1500], y[1000:1500]), val_every=5)


def weight_growth(run: Path) -> Path:
    torch.manual_seed(0)
    x, y = digits()
    model = _mlp([64, 10])
    # separable data, no weight decay, a large constant lr: the logits' scale (and the weights) grow without bound
    opt = torch.optim.SGD(model.parameters(), lr=5.0)
    return _classify(run, model, opt, x[:200], y[:200], 240, batch=200)


class _Encoder(nn.Module):
    def __init__(self, dim: int = 64, bottleneck: int | None = None):
        super().__init__()
        hidden = bottleneck or 128
        self.body = nn.Sequential(nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, hidden))
        self.head = nn.Linear(hidden, dim)

    def forward(self, x):
        return self.head(self.body(x))


def _augment(x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    return (x + 0.1 * torch.randn(x.shape, generator=g)) * (torch.rand(x.shape, generator=g) > 0.15)


def ssl_collapse(run: Path) -> Path:
    """SimSiam-style cosine loss between two views with no predictor and no stop-gradient: collapses."""
    from advisor import Probe

    torch.manual_seed(0)
    x, _ = digits()
    enc = _Encoder()
    opt = torch.optim.SGD(enc.parameters(), lr=0.1, momentum=0.9)
    g = torch.Generator().manual_seed(1)
    with Probe(enc, run=run, every=EVERY) as probe:
        for step, (xb, _) in enumerate(batches(x, x[:, 0], 128, 150)):
            z1, z2 = enc(_augment(xb, g)), enc(_augment(xb, g))
            loss = -nn.functional.cosine_similarity(z1, z2, dim=-1).mean()
            opt.zero_grad()
            loss.backward()
            probe.step(step=step, loss=loss, embeddings=z1, views=(z1, z2))
            opt.step()
    return run


def low_rank_bottleneck(run: Path) -> Path:
    """A 2-unit bottleneck before a 64-d embedding: a healthy-looking loss, a rank-2 representation."""
    from advisor import Probe

    torch.manual_seed(0)
    x, y = digits()
    enc = _Encoder(dim=64, bottleneck=2)
    head = nn.Linear(64, 10)
    model = nn.Sequential(enc, head)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    with Probe(model, run=run, every=EVERY) as probe:
        for step, (xb, yb) in enumerate(batches(x, y, 128, 150)):
            z = enc(xb)
            logits = head(z)
            loss = nn.functional.cross_entropy(logits, yb)
            opt.zero_grad()
            loss.backward()
            probe.step(step=step, loss=loss, embeddings=z, logits=logits, targets=yb)
            opt.step()
    return run


Scenario = Callable[[Path], Path]

# scenario -> (the function, KB entries a practitioner would point to: any of them in the top 3 passes)
SCENARIOS: dict[str, tuple[Scenario, list[str]]] = {
    "exploding_nan": (exploding_nan, ["guide/001-loss-becomes-nan", "guide/008-exploding-gradients", "catalog/010-gradient-norms-are-exploding-or-vanishing"]),
    "vanishing_sigmoid": (vanishing_sigmoid, ["guide/007-vanishing-gradients", "catalog/010-gradient-norms-are-exploding-or-vanishing", "catalog/080-first-few-layers-are-frozen-in-learning", "catalog/094-per-layer-gradient-norms-are-inverted-later-layers-have-larg"]),
    "dead_relu": (dead_relu, ["catalog/021-feature-activations-are-sparse-or-mostly-zero", "guide/006-gradients-are-all-zero"]),
    "ssl_collapse": (ssl_collapse, ["catalog/003-embeddings-collapse-or-are-too-similar", "catalog/035-cosine-similarities-between-embeddings-are-all-1", "catalog/071-symmetric-architectures-cause-collapse", "catalog/012-very-low-output-variance"]),
    "saturated_tanh": (saturated_tanh, ["catalog/028-final-layer-activations-are-saturated", "catalog/093-outputs-saturate-at-specific-values-e-g-0-or-1", "guide/007-vanishing-gradients"]),
    "frozen_layer": (frozen_layer, ["catalog/090-gradients-are-nonzero-but-do-not-change-parameters", "catalog/080-first-few-layers-are-frozen-in-learning"]),
    "low_rank_bottleneck": (low_rank_bottleneck, ["catalog/001-representation-rank-is-low", "catalog/007-eigenvalues-decay-too-quickly", "catalog/065-projection-head-is-bottlenecking-learning"]),
    "overfit_tiny": (overfit_tiny, ["guide/012-validation-loss-increasing-while-training-loss-decreases", "catalog/004-early-overfitting-or-poor-generalization", "catalog/061-model-quickly-memorizes-training-set"]),
    "class_collapse": (class_collapse, ["audit/003-model-collapsing-to-few-classes", "catalog/024-model-predicts-only-the-majority-class-or-background", "catalog/062-model-fails-to-learn-from-rare-examples"]),
    "weight_growth": (weight_growth, ["catalog/097-weight-norms-grow-without-bound", "catalog/053-final-layer-has-very-high-or-low-weight-norm", "catalog/031-feature-norms-grow-over-time"]),
    "healthy": (healthy, []),
}


def run_all(base: Path, names: list[str] | None = None) -> dict[str, Path]:
    base.mkdir(parents=True, exist_ok=True)
    out = {}
    for name, (fn, _) in SCENARIOS.items():
        if names and name not in names:
            continue
        out[name] = fn(base / name)
    return out


def score(diagnoses: dict[str, object]) -> dict:
    """top-1 / top-3 accuracy over the faulty runs and the false alarms on the healthy one."""
    rows = {}
    for name, diagnosis in diagnoses.items():
        expected = SCENARIOS[name][1]
        ids = [s.id for s in diagnosis.suggestions]
        strong = [s for s in diagnosis.signals if s.severity in ("high", "medium")]
        rows[name] = {
            "top1": bool(expected) and bool(ids) and ids[0] in expected,
            "top3": bool(expected) and any(i in expected for i in ids[:3]),
            "top3_ids": ids[:3],
            "signals": sorted({f"{s.kind}:{s.severity}" for s in diagnosis.signals}),
            "false_alarms": len(strong) if not expected else 0,
        }
    faulty = [r for n, r in rows.items() if SCENARIOS[n][1]]
    return {
        "top1": sum(r["top1"] for r in faulty) / max(len(faulty), 1),
        "top3": sum(r["top3"] for r in faulty) / max(len(faulty), 1),
        "false_alarms": sum(r["false_alarms"] for r in rows.values()),
        "runs": rows,
    }
