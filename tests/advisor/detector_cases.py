"""Shared material for the detector tests: runs built from arrays, real logs, probe run stores written
through the run store, and tiny real training runs on CPU (written by the real Probe)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
from conftest import shared_path

from advisor import runstore
from advisor.detectors import detect
from advisor.logs import read_log
from advisor.models import Run, Series, Signal


# ---- helpers -------------------------------------------------------------------------------------------


def make_run(series: dict[str, tuple], axis: str = "step", epochs_per_step: float | None = None, meta: dict | None = None) -> Run:
    """series: name -> (role, steps, values[, higher_is_better[, component_of]])."""
    run = Run(path="synthetic", format="csv", axis=axis, meta=dict(meta or {}))
    for name, spec in series.items():
        role, steps, values = spec[:3]
        hib = spec[3] if len(spec) > 3 else False
        comp = spec[4] if len(spec) > 4 else None
        steps = np.asarray(steps, dtype=float)
        epochs = steps * epochs_per_step if epochs_per_step else None
        run.series[name] = Series(name, role, steps, np.asarray(values, dtype=float), epochs=epochs, higher_is_better=hib, component_of=comp)
    return run


def of_kind(signals: list[Signal], kind: str, metric: str | None = None) -> list[Signal]:
    return [s for s in signals if s.kind == kind and (metric is None or s.metric == metric)]


def loud(signals: list[Signal]) -> list[tuple]:
    return [(s.kind, s.metric, s.severity, s.summary) for s in signals if s.severity in ("medium", "high")]


def only(signals: list[Signal], kind: str, metric: str | None = None) -> Signal:
    found = of_kind(signals, kind, metric)
    assert found, f"no {kind} on {metric}: {[(s.kind, s.metric, s.severity) for s in signals]}"
    return found[0]


def real(name: str) -> list[Signal]:
    return detect(read_log(shared_path("real-logs", name)))


N = 1000
STEPS = np.arange(N, dtype=float)
T = STEPS / N


def noisy(base: np.ndarray, rel: float, seed: int = 0) -> np.ndarray:
    return base * (1 + rel * np.random.default_rng(seed).standard_normal(len(base)))


def healthy_loss(seed: int = 0, rel: float = 0.05) -> np.ndarray:
    return noisy(0.4 + 2.0 * np.exp(-T / 0.2), rel, seed)


def healthy_run(seed: int, n: int, shape: str, noise: float) -> Run:
    rng = np.random.default_rng(seed)
    steps = np.arange(n, dtype=float)
    t = steps / n
    base = {"power": 1.5 + 3.0 * (1 + steps / 20) ** -0.6, "exp": 0.3 + 2.0 * np.exp(-t / 0.2),
            "fast": 0.1 + 2.0 * np.exp(-t / 0.05)}[shape]
    every = max(1, n // 40)
    vs = steps[::every]
    return make_run({
        "loss": ("loss", steps, base * (1 + noise * rng.standard_normal(n))),
        "val_loss": ("val_loss", vs, base[::every] * 1.08 * (1 + 0.01 * rng.standard_normal(len(vs)))),
        "grad_norm": ("grad_norm", steps, (0.5 + 2 * np.exp(-t / 0.1)) * rng.lognormal(0, 0.2, n)),
        "lr": ("lr", steps, 1e-3 * np.minimum(1, t / 0.03) * 0.5 * (1 + np.cos(np.pi * t))),
        "val_acc": ("val_metric", vs, np.clip(1 - 0.9 * np.exp(-t[::every] / 0.2) + 0.005 * rng.standard_normal(len(vs)), 0, 1), True),
    }, epochs_per_step=10 / n)


# ---- probe run stores ----------------------------------------------------------------------------------------

PROBE_STEPS = np.arange(0, 400, 5)


def _noisy_reading(level: float, rel: float = 0.05):
    rng = np.random.default_rng(int(level * 1000) % 2**31)
    return lambda i, n: level * (1 + rel * rng.standard_normal())


def _decay(a: float, b: float, rel: float = 0.03):
    rng = np.random.default_rng(7)
    return lambda i, n: (b + (a - b) * math.exp(-3 * i / n)) * (1 + rel * rng.standard_normal())


HEALTHY_READINGS = {
    "loss": _decay(2.3, 0.3, 0.08), "val_loss": _decay(2.3, 0.35, 0.01), "lr": 1e-3,
    "act/encoder.0/zero_fraction": _noisy_reading(0.5), "act/encoder.0/dead_unit_share": _noisy_reading(0.02, 0.5),
    "act/encoder.0/std": _noisy_reading(1.0), "act/encoder.0/sample_similarity": _noisy_reading(0.4),
    "act/head.0/saturation_fraction": _noisy_reading(0.05, 0.3),
    "grad/global_norm": _decay(3.0, 1.0, 0.2), "grad/first_last_ratio": _noisy_reading(0.8, 0.3), "grad/nonfinite_count": 0.0,
    "grad/zero_share": _noisy_reading(0.02, 0.3), "grad/min_layer_norm": _noisy_reading(0.1, 0.3),
    "weight/global_norm": lambda i, n: 10 + 2 * i / n, "weight/encoder.0/norm_growth": lambda i, n: 1 + 0.2 * i / n,
    "update/max_ratio": _noisy_reading(3e-3, 0.3), "update/encoder.0/ratio": _noisy_reading(2e-3, 0.3),
    "update/frozen_share": 0.0, "update/frozen_params": 0.0,
    "embeddings/effective_rank": lambda i, n: 20 + 20 * i / n, "embeddings/effective_rank_ratio": lambda i, n: (20 + 20 * i / n) / 64,
    "embeddings/top1_variance_share": _noisy_reading(0.1), "embeddings/offdiag_cov_energy": _noisy_reading(0.3),
    "embeddings/dead_dim_share": 0.0, "embeddings/l2norm_std": _noisy_reading(0.11), "embeddings/l2norm_std_ref": 0.125,
    "embeddings/mean_pairwise_cosine": _noisy_reading(0.05, 0.5), "embeddings/norm_cv": _noisy_reading(0.2), "embeddings/dim": 64.0,
    "logits/entropy": _noisy_reading(1.0), "logits/entropy_ratio": _noisy_reading(0.4), "logits/top_class_share": _noisy_reading(0.15, 0.2),
    "logits/confidence": _noisy_reading(0.7), "logits/accuracy": _noisy_reading(0.68), "logits/num_classes": 10.0,
    "codes/usage_share": _noisy_reading(0.7), "codes/perplexity_ratio": _noisy_reading(0.5),
    "attention/entropy": _noisy_reading(2.0), "attention/entropy_ratio": _noisy_reading(0.6),
    "gpu/mem_reserved_gb": _noisy_reading(30, 0.01), "gpu/mem_total_gb": 80.0, "gpu/mem_peak_gb": _noisy_reading(28, 0.01),
    "gpu/utilization": _noisy_reading(95, 0.02), "time/step_s": _noisy_reading(0.2), "time/data_wait_share": _noisy_reading(0.05, 0.3),
}


def probe_store(path: Path, readings: dict, meta: dict | None = None) -> Path:
    con = runstore.open_for_writing(path)
    rows = []
    n = len(PROBE_STEPS)
    for name, fn in readings.items():
        for i, step in enumerate(PROBE_STEPS):
            rows.append((int(step), name, float(fn(i, n) if callable(fn) else fn), 0.0))
    runstore.write_readings(con, rows)
    runstore.write_meta(con, {"started": 0.0, "finished": 1.0, "every": 5, **(meta or {})})
    con.close()
    return path


def after(step: float, value, before=None):
    """A reading that changes to `value` from `step` on (before: the healthy reading, or a constant)."""
    def fn(i, n):
        if PROBE_STEPS[i] >= step:
            return value(i, n) if callable(value) else value
        return before(i, n) if callable(before) else (before if before is not None else value)
    return fn


# ---- tiny real training runs on CPU, written by the real Probe ------------------------------------------------


def digits(seed: int = 0):
    import torch
    from sklearn.datasets import load_digits

    x, y = load_digits(return_X_y=True)
    order = np.random.default_rng(seed).permutation(len(x))
    return torch.tensor(x[order] / 16.0, dtype=torch.float32), torch.tensor(y[order], dtype=torch.long)


def mlp(widths: list[int], act=None, bias: float | None = None):
    import torch
    from torch import nn

    act = act or nn.ReLU
    layers = []
    for i in range(len(widths) - 1):
        lin = nn.Linear(widths[i], widths[i + 1])
        if bias is not None and i < len(widths) - 2:
            with torch.no_grad():
                lin.bias.fill_(bias)
        layers.append(lin)
        if i < len(widths) - 2:
            layers.append(act())
    return nn.Sequential(*layers)


def train_classifier(run: Path, model, *, steps: int = 150, batch: int = 64, lr: float = 2e-3, opt: str = "adam",
                     zero_grad: bool = True, random_labels: bool = False, lr_at=None, every: int = 5, seed: int = 0,
                     input_scale: float = 1.0) -> Path:
    """A plain supervised loop on digits, the way the README tells users to wire the Probe.
    input_scale: what the pixels are multiplied by (255: a pipeline that never divides raw 0-255 values)."""
    import torch
    from torch import nn

    from advisor import Probe

    torch.manual_seed(seed)
    x, y = digits(seed)
    x = x * input_scale
    g = torch.Generator().manual_seed(seed)
    optimizer = (torch.optim.Adam(model.parameters(), lr=lr) if opt == "adam"
                 else torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9))
    sched = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_at or (lambda step: 1.0))
    loss_fn = nn.CrossEntropyLoss()
    with Probe(model, run=run, every=every) as probe:
        for step in range(steps):
            idx = torch.randint(0, len(x), (batch,), generator=g)
            xb, yb = x[idx], y[idx]
            if random_labels:
                yb = torch.randint(0, 10, (batch,), generator=g)
            logits = model(xb if not isinstance(model[0], nn.Conv2d) else xb.view(-1, 1, 8, 8))
            loss = loss_fn(logits, yb)
            if zero_grad:
                optimizer.zero_grad()
            loss.backward()
            probe.step(step=step, loss=loss, lr=sched.get_last_lr()[0], logits=logits, targets=yb)
            optimizer.step()
            sched.step()
    return run


def small_cnn():
    from torch import nn

    return nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 16, 3, padding=1), nn.ReLU(),
                         nn.AdaptiveAvgPool2d(2), nn.Flatten(), nn.Linear(64, 10))


def train_simsiam(run: Path, *, stop_grad: bool, steps: int = 150, batch: int = 128, lr: float = 0.05, seed: int = 0) -> Path:
    """SimSiam (Chen & He 2021) on digits with noise-and-dropout views; without the stop-gradient it collapses."""
    import torch
    import torch.nn.functional as F
    from torch import nn

    from advisor import Probe

    torch.manual_seed(seed)
    x, _ = digits(seed)
    encoder = nn.Sequential(nn.Linear(64, 128), nn.BatchNorm1d(128), nn.ReLU(), nn.Linear(128, 64))
    predictor = nn.Sequential(nn.Linear(64, 32), nn.BatchNorm1d(32), nn.ReLU(), nn.Linear(32, 64))
    model = nn.ModuleDict({"encoder": encoder, "predictor": predictor})
    optimizer = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9, weight_decay=1e-4)
    g = torch.Generator().manual_seed(seed)

    def view(xb):
        return F.dropout(xb + 0.1 * torch.randn(xb.shape, generator=g), 0.2)

    def d(p, z):
        return -F.cosine_similarity(p, z.detach() if stop_grad else z, dim=-1).mean()

    with Probe(model, run=run, every=5) as probe:
        for step in range(steps):
            xb = x[torch.randint(0, len(x), (batch,), generator=g)]
            z1, z2 = encoder(view(xb)), encoder(view(xb))
            p1, p2 = predictor(z1), predictor(z2)
            loss = d(p1, z2) / 2 + d(p2, z1) / 2
            optimizer.zero_grad()
            loss.backward()
            probe.step(step=step, loss=loss, embeddings=z1)
            optimizer.step()
    return run


def train_byol(run: Path, *, predictor: bool, steps: int = 150, batch: int = 128, lr: float = 0.05, seed: int = 0) -> Path:
    """BYOL (Grill et al. 2020) on digits: an EMA target encoder, and an online predictor unless `predictor`
    is False — without it the two branches are nearly symmetric and the embeddings slowly fold together."""
    import copy

    import torch
    import torch.nn.functional as F
    from torch import nn

    from advisor import Probe

    torch.manual_seed(seed)
    x, _ = digits(seed)
    encoder = nn.Sequential(nn.Linear(64, 128), nn.BatchNorm1d(128), nn.ReLU(), nn.Linear(128, 32))
    head = nn.Sequential(nn.Linear(32, 64), nn.ReLU(), nn.Linear(64, 32)) if predictor else nn.Identity()
    target = copy.deepcopy(encoder).requires_grad_(False)
    model = nn.ModuleDict({"encoder": encoder, "predictor": head})
    optimizer = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9, weight_decay=1e-4)
    g = torch.Generator().manual_seed(seed + 1)

    def view(xb):
        return (xb + 0.1 * torch.randn(xb.shape, generator=g)) * (torch.rand(xb.shape, generator=g) > 0.15)

    with Probe(model, run=run, every=5) as probe:
        for step in range(steps):
            xb = x[torch.randint(0, len(x), (batch,), generator=g)]
            v1, v2 = view(xb), view(xb)
            z1, z2 = encoder(v1), encoder(v2)
            with torch.no_grad():
                t1, t2 = target(v1), target(v2)
            loss = -(F.cosine_similarity(head(z1), t2, dim=-1).mean() + F.cosine_similarity(head(z2), t1, dim=-1).mean()) / 2
            optimizer.zero_grad()
            loss.backward()
            probe.step(step=step, loss=loss, embeddings=z1)
            optimizer.step()
            with torch.no_grad():
                for pt, po in zip(target.parameters(), encoder.parameters()):
                    pt.mul_(0.99).add_(po, alpha=0.01)
    return run


def train_bandit(run: Path, *, sign: float = 1.0, lr: float = 0.1, steps: int = 200, group: int = 16, seed: int = 0) -> Path:
    """Group-relative REINFORCE (GRPO-style advantages) on a 10-armed bandit; reward 1 for arm 3.

    sign=-1 is a sign bug in the policy-gradient loss: the policy learns to avoid the rewarded arm.
    """
    import torch

    from advisor import Probe

    torch.manual_seed(seed)
    logits = torch.nn.Parameter(torch.zeros(10))
    optimizer = torch.optim.SGD([logits], lr=lr)
    with Probe(None, run=run, every=5) as probe:
        for step in range(steps):
            dist = torch.distributions.Categorical(logits=logits)
            arms = dist.sample((group,))
            reward = (arms == 3).float()
            adv = reward - reward.mean()
            loss = -sign * (adv * dist.log_prob(arms)).mean()
            optimizer.zero_grad()
            loss.backward()
            probe.step(step=step, loss=loss, reward=float(reward.mean()), reward_std=float(reward.std()))
            optimizer.step()
    return run


def train_causal_attention(run: Path, *, uniform: bool, steps: int = 60, seed: int = 0) -> Path:
    """One causal self-attention layer over random token embeddings; uniform: the queries are zero, so each
    position weighs every key it may see alike."""
    import torch
    from torch import nn

    from advisor import Probe

    torch.manual_seed(seed)
    emb, q, k, head = nn.Embedding(16, 32), nn.Linear(32, 32), nn.Linear(32, 32), nn.Linear(32, 16)
    model = nn.ModuleDict({"emb": emb, "q": q, "k": k, "head": head})
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    length = 12
    mask = torch.triu(torch.ones(length, length, dtype=torch.bool), 1)
    with Probe(model, run=run, every=5) as probe:
        for step in range(steps):
            tokens = torch.randint(0, 16, (32, length))
            h = emb(tokens)
            scores = (q(h) * (0.0 if uniform else 1.0)) @ k(h).transpose(1, 2) / 32 ** 0.5
            weights = scores.masked_fill(mask, float("-inf")).softmax(-1)
            out = head(weights @ h)
            loss = nn.functional.cross_entropy(out[:, :-1].reshape(-1, 16), tokens[:, 1:].reshape(-1))
            optimizer.zero_grad()
            loss.backward()
            probe.step(step=step, loss=loss, attention=weights)
            optimizer.step()
    return run
