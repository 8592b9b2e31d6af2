"""Generated diagnosis corpus: tiny real CPU training runs wired with the documented Probe API.

Each case trains a small model (digits, generated sequences, two-view SSL, a bandit), the way users
write training loops, and leaves a probe run store behind. A fault case names the KB entries a
practitioner would point to (any of them in the top 3 passes); a healthy case names none and must
raise no medium or high signal. Every case names the settings the run really has (the names of
advisor/applicability.toml): a top-5 suggestion about a setting the run lacks is a misfit.

Runs are cached under benchmarks/diagnosis/runs/ (gitignored); `build(names, force=True)` regenerates.
"""

from __future__ import annotations

import hashlib
import importlib.util
import math
import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch
from torch import nn

ROOT = Path(__file__).resolve().parents[2]


def _fault_runs():
    # tests/fault_runs.py by its path: putting tests/ on sys.path would shadow the packages with tests/advisor
    if "fault_runs" not in sys.modules:
        spec = importlib.util.spec_from_file_location("fault_runs", ROOT / "tests" / "fault_runs.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules["fault_runs"] = module
        spec.loader.exec_module(module)
    return sys.modules["fault_runs"]


fault_runs = _fault_runs()
EVERY, _augment, _mlp, batches, digits = fault_runs.EVERY, fault_runs._augment, fault_runs._mlp, fault_runs.batches, fault_runs.digits

CACHE = Path(__file__).resolve().parent / "runs"


@dataclass
class Case:
    name: str
    fn: Callable[[Path], Path]
    expected: list[str]  # empty: a healthy run
    settings: list[str]
    note: str = ""
    tags: list[str] = field(default_factory=list)

    @property
    def healthy(self) -> bool:
        return not self.expected


def half(name: str) -> str:
    """'tune' or 'held-out', fixed by a hash of the case name (never by what the case scores)."""
    return "tune" if hashlib.sha256(name.encode()).digest()[0] % 2 == 0 else "held-out"


# ----------------------------------------------------------------------------------- helpers


def _optimizer(kind: str, params, lr: float):
    if kind == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=0.9)
    if kind == "adamw":
        return torch.optim.AdamW(params, lr=lr, weight_decay=0.05)
    return torch.optim.Adam(params, lr=lr)


def _schedule(opt, kind: str, steps: int):
    if kind == "warmup_cosine":
        warm = max(steps // 10, 1)
        return torch.optim.lr_scheduler.LambdaLR(
            opt, lambda s: (s + 1) / warm if s < warm else 0.5 * (1 + math.cos(math.pi * (s - warm) / max(steps - warm, 1)))
        )
    if kind == "step":
        return torch.optim.lr_scheduler.StepLR(opt, step_size=max(steps // 3, 1), gamma=0.3)
    return None


def classify(run: Path, model: nn.Module, x, y, *, steps=150, batch=64, opt="adam", lr=2e-3, schedule="const",
             val=None, val_every=10, seed=0, label_noise=False, input_fn=None, zero_grad=True, probe_meta=None) -> Path:
    """A plain supervised loop: loss, lr and logits to the probe, a validation loss now and then."""
    from advisor import Probe

    optim = _optimizer(opt, model.parameters(), lr)
    sched = _schedule(optim, schedule, steps)
    loss_fn = nn.CrossEntropyLoss()
    g = torch.Generator().manual_seed(seed + 7)
    with Probe(model, run=run, every=EVERY, meta=probe_meta) as probe:
        for step, (xb, yb) in enumerate(batches(x, y, batch, steps, seed=seed)):
            if input_fn is not None:
                xb = input_fn(step, xb)
            if label_noise:
                yb = yb[torch.randperm(len(yb), generator=g)]  # labels shuffled apart from their inputs
            logits = model(xb)
            loss = loss_fn(logits, yb)
            if zero_grad:
                optim.zero_grad()
            loss.backward()
            probe.step(step=step, loss=loss, lr=optim.param_groups[0]["lr"], logits=logits, targets=yb)
            optim.step()
            if sched is not None:
                sched.step()
            if val is not None and step % val_every == 0:
                with torch.no_grad():
                    probe.log(step=step, val_loss=loss_fn(model(val[0]), val[1]).item())
    return run


class SmallCNN(nn.Module):
    def __init__(self, width: int = 16):
        super().__init__()
        self.conv1 = nn.Conv2d(1, width, 3, padding=1)
        self.conv2 = nn.Conv2d(width, width, 3, padding=1)
        self.fc = nn.Linear(width * 16, 10)

    def forward(self, x):
        x = x.view(-1, 1, 8, 8)
        x = nn.functional.max_pool2d(torch.relu(self.conv1(x)), 2)
        x = torch.relu(self.conv2(x))
        return self.fc(x.flatten(1))


# ------------------------------------------------------------------ tiny transformers on sequences


def sequences(n: int = 2048, length: int = 12, vocab: int = 16, seed: int = 0):
    """Token sequences whose label is the most frequent token of the first half (needs attention)."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randint(0, vocab, (n, length), generator=g)
    y = torch.mode(x[:, : length // 2], dim=1).values
    return x, y


def progressions(n: int = 2048, length: int = 12, vocab: int = 16, seed: int = 0) -> torch.Tensor:
    """Token sequences start, start + stride, ... (mod vocab): a next-token task a causal model can learn
    (random tokens would leave nothing to learn, and a high plateau would be the right diagnosis)."""
    g = torch.Generator().manual_seed(seed)
    start = torch.randint(0, vocab, (n, 1), generator=g)
    stride = torch.randint(1, 4, (n, 1), generator=g)
    return (start + stride * torch.arange(length)) % vocab


class TinyTransformer(nn.Module):
    def __init__(self, vocab=16, dim=32, heads=4, layers=2, length=12, norm_first=True, classes=16):
        super().__init__()
        self.tok = nn.Embedding(vocab, dim)
        self.pos = nn.Parameter(torch.randn(length, dim) * 0.02)
        self.blocks = nn.ModuleList(
            nn.TransformerEncoderLayer(dim, heads, dim * 2, dropout=0.0, batch_first=True, norm_first=norm_first) for _ in range(layers)
        )
        self.head = nn.Linear(dim, classes)

    def forward(self, x, causal=False):
        h = self.tok(x) + self.pos[: x.shape[1]]
        mask = nn.Transformer.generate_square_subsequent_mask(x.shape[1]) if causal else None
        for block in self.blocks:
            h = block(h, src_mask=mask, is_causal=causal)
        return h


def attention_weights(q_proj: nn.Linear, k_proj: nn.Linear, h: torch.Tensor, heads: int, causal: bool) -> torch.Tensor:
    b, length, d = h.shape
    q = q_proj(h).view(b, length, heads, d // heads).transpose(1, 2)
    k = k_proj(h).view(b, length, heads, d // heads).transpose(1, 2)
    scores = q @ k.transpose(-1, -2) / math.sqrt(d // heads)
    if causal:
        scores = scores.masked_fill(torch.ones(length, length, dtype=torch.bool).triu(1), float("-inf"))
    return scores.softmax(-1)


class AttnClassifier(nn.Module):
    """One explicit attention layer (so its weights can go to the probe) over token embeddings."""

    def __init__(self, vocab=16, dim=32, heads=4, length=12, classes=16, causal=False, scale_qk=1.0):
        super().__init__()
        self.heads, self.causal = heads, causal
        self.tok = nn.Embedding(vocab, dim)
        self.pos = nn.Parameter(torch.randn(length, dim) * 0.5)
        self.q, self.k, self.v = nn.Linear(dim, dim), nn.Linear(dim, dim), nn.Linear(dim, dim)
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, classes)
        if scale_qk == 0.0:  # a broken init: queries are constant, every key scores the same
            for p in (self.q.weight, self.q.bias):
                p.data.zero_()
                p.requires_grad_(False)
        self.last_attention: torch.Tensor | None = None

    def forward(self, x):
        h = self.tok(x) + self.pos[: x.shape[1]]
        att = attention_weights(self.q, self.k, h, self.heads, self.causal)
        self.last_attention = att
        b, length, d = h.shape
        v = self.v(h).view(b, length, self.heads, d // self.heads).transpose(1, 2)
        out = (att @ v).transpose(1, 2).reshape(b, length, d)
        return self.head(self.norm(h + out)[:, -1 if self.causal else 0])


def attn_run(run: Path, *, causal=False, broken=False, steps=150, seed=0, lr=3e-3) -> Path:
    from advisor import Probe

    torch.manual_seed(seed)
    x, y = sequences(seed=seed)
    model = AttnClassifier(causal=causal, scale_qk=0.0 if broken else 1.0)
    opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=lr)
    with Probe(model, run=run, every=EVERY) as probe:
        for step, (xb, yb) in enumerate(batches(x, y, 64, steps, seed=seed)):
            logits = model(xb)
            loss = nn.functional.cross_entropy(logits, yb)
            opt.zero_grad()
            loss.backward()
            probe.step(step=step, loss=loss, logits=logits, targets=yb, attention=model.last_attention)
            opt.step()
    return run


def transformer_run(run: Path, *, norm_first=True, warmup=True, lr=1e-3, steps=150, seed=0, causal_lm=False) -> Path:
    """A tiny nn.TransformerEncoder: sequence classification, or next-token prediction (causal)."""
    from advisor import Probe

    torch.manual_seed(seed)
    x, y = sequences(seed=seed)
    if causal_lm:
        x = progressions(seed=seed)
    model = TinyTransformer(norm_first=norm_first)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.01)
    warm = 15 if warmup else 0
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / warm) if warm else 1.0)
    with Probe(model, run=run, every=EVERY) as probe:
        for step, (xb, yb) in enumerate(batches(x, y, 64, steps, seed=seed)):
            h = model(xb, causal=causal_lm)
            if causal_lm:
                logits = model.head(h[:, :-1]).reshape(-1, 16)
                targets = xb[:, 1:].reshape(-1)
            else:
                logits, targets = model.head(h.mean(1)), yb
            loss = nn.functional.cross_entropy(logits, targets)
            opt.zero_grad()
            loss.backward()
            nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            probe.step(step=step, loss=loss, lr=opt.param_groups[0]["lr"], logits=logits, targets=targets)
            opt.step()
            sched.step()
    return run


# ---------------------------------------------------------------------------- two-view SSL


class SSLNet(nn.Module):
    def __init__(self, dim=32, predictor=True, bottleneck=128, batch_norm=True):
        super().__init__()
        norm = nn.BatchNorm1d(bottleneck) if batch_norm else nn.Identity()
        self.encoder = nn.Sequential(nn.Linear(64, bottleneck), norm, nn.ReLU(), nn.Linear(bottleneck, dim))
        self.predictor = nn.Sequential(nn.Linear(dim, 64), nn.ReLU(), nn.Linear(64, dim)) if predictor else nn.Identity()

    def forward(self, x):
        return self.encoder(x)


def _neg_cos(p, z):
    return -nn.functional.cosine_similarity(p, z, dim=-1).mean()


def ssl_run(run: Path, method: str, *, stop_grad=True, steps=150, batch=128, seed=0, lr=0.05, batch_norm=True,
            predictor: bool | None = None, bottleneck=128, variance_weight=25.0, covariance_weight=1.0, x=None) -> Path:
    """SimSiam / BYOL (EMA target) / VICReg / SimCLR on digits with noise-and-dropout views.

    predictor: None = the method's own (SimSiam and BYOL have one); bottleneck: the encoder's hidden width;
    variance_weight, covariance_weight: VICReg's coefficients on its variance and covariance terms."""
    import copy

    from advisor import Probe

    torch.manual_seed(seed)
    if x is None:
        x, _ = digits()
    net = SSLNet(predictor=method in ("simsiam", "byol") if predictor is None else predictor, batch_norm=batch_norm, bottleneck=bottleneck)
    target = copy.deepcopy(net.encoder) if method == "byol" else None
    if target is not None:
        for p in target.parameters():
            p.requires_grad_(False)
    opt = torch.optim.SGD(net.parameters(), lr=lr, momentum=0.9, weight_decay=1e-4)
    g = torch.Generator().manual_seed(seed + 1)
    with Probe(net, run=run, every=EVERY) as probe:
        for step, (xb, _) in enumerate(batches(x, x[:, 0], batch, steps, seed=seed)):
            v1, v2 = _augment(xb, g), _augment(xb, g)
            z1, z2 = net(v1), net(v2)
            terms = {}
            if method == "simsiam":
                p1, p2 = net.predictor(z1), net.predictor(z2)
                t1, t2 = (z1.detach(), z2.detach()) if stop_grad else (z1, z2)
                loss = 0.5 * (_neg_cos(p1, t2) + _neg_cos(p2, t1))
            elif method == "byol":
                with torch.no_grad():
                    t1, t2 = target(v1), target(v2)
                loss = 0.5 * (_neg_cos(net.predictor(z1), t2) + _neg_cos(net.predictor(z2), t1))
            elif method == "vicreg":
                inv = nn.functional.mse_loss(z1, z2)
                std = lambda z: torch.relu(1 - torch.sqrt(z.var(0) + 1e-4)).mean()  # noqa: E731
                cov = lambda z: ((z - z.mean(0)).T @ (z - z.mean(0)) / (len(z) - 1)).fill_diagonal_(0).pow(2).sum() / z.shape[1]  # noqa: E731
                terms = {"loss_invariance": 25 * inv, "loss_variance": variance_weight * (std(z1) + std(z2)),
                         "loss_covariance": covariance_weight * (cov(z1) + cov(z2))}
                loss = sum(terms.values())
            elif method == "invariance_only":  # VICReg without its variance and covariance terms
                loss = nn.functional.mse_loss(z1, z2)
            else:  # simclr: NT-Xent over the 2N views
                z = nn.functional.normalize(torch.cat([z1, z2]), dim=1)
                sim = z @ z.T / 0.2
                sim.fill_diagonal_(float("-inf"))
                n = len(z1)
                labels = torch.cat([torch.arange(n, 2 * n), torch.arange(0, n)])
                loss = nn.functional.cross_entropy(sim, labels)
            opt.zero_grad()
            loss.backward()
            probe.step(step=step, loss=loss, embeddings=z1, views=(z1, z2), **{k: v.item() for k, v in terms.items()})
            opt.step()
            if target is not None:
                with torch.no_grad():
                    for pt, po in zip(target.parameters(), net.encoder.parameters()):
                        pt.mul_(0.99).add_(po, alpha=0.01)
    return run


def vq_run(run: Path, *, broken=False, steps=150, seed=0) -> Path:
    """A two-view predictive model with a VQ bottleneck and a variance term that keeps the embeddings
    spread (VICReg-style). Broken: the codebook starts far from the encoder outputs and only a handful
    of codes ever win (dead codes, usage collapse). The unbroken variant (codebook from encoder outputs)
    is not in the healthy set: its usage still falls from 0.73 to ~0.2 as the variance term grows the
    embeddings away from the codebook, which the detectors rightly flag."""
    from advisor import Probe

    torch.manual_seed(seed)
    x, _ = digits()
    dim, size = 16, 64
    enc = nn.Sequential(nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, dim))
    codebook = nn.Parameter(torch.randn(size, dim) * (0.5 if not broken else 0.02) + (6.0 if broken else 0.0))
    if broken:
        with torch.no_grad():
            codebook[:3] = torch.randn(3, dim) * 0.3  # three codes near the data, the rest unreachable
    predictor = nn.Linear(dim, dim)
    model = nn.ModuleDict({"enc": enc, "predictor": predictor})
    model.register_parameter("codebook", codebook)
    if not broken:
        with torch.no_grad():
            codebook.copy_(enc(x[torch.randperm(len(x))[:size]]))
    opt = torch.optim.Adam(model.parameters(), lr=2e-3)
    g = torch.Generator().manual_seed(seed + 3)
    spread = lambda z: torch.relu(1 - torch.sqrt(z.var(0) + 1e-4)).mean()  # noqa: E731
    with Probe(model, run=run, every=EVERY, codebook_size=size) as probe:
        for step, (xb, _) in enumerate(batches(x, x[:, 0], 128, steps, seed=seed)):
            z1, z2 = enc(_augment(xb, g)), enc(_augment(xb, g))
            d = torch.cdist(z2, codebook)
            codes = d.argmin(1)
            q = codebook[codes]
            commit = nn.functional.mse_loss(z2, q.detach())
            cb = nn.functional.mse_loss(q, z2.detach())
            pred = nn.functional.mse_loss(predictor(z1), (z2 + (q - z2).detach()).detach())
            var = 5.0 * (spread(z1) + spread(z2))
            loss = pred + cb + 0.25 * commit + var
            opt.zero_grad()
            loss.backward()
            probe.step(step=step, loss=loss, loss_pred=pred.item(), loss_codebook=cb.item(), loss_variance=var.item(),
                       embeddings=z1, views=(z1, z2), codes=codes)
            opt.step()
    return run


# ------------------------------------------------------------------------- RL-style rewards


def bandit_run(run: Path, *, bug: str | None = None, steps=200, seed=0) -> Path:
    """REINFORCE on a 10-armed contextual bandit (digit -> arm); reward 1 for the right arm.

    bug="detached": the log-probabilities are detached, the policy never learns (reward flat);
    bug="sign": the policy-gradient sign is flipped, the reward falls.
    """
    from advisor import Probe

    torch.manual_seed(seed)
    x, y = digits()
    policy = _mlp([64, 64, 10])
    opt = torch.optim.Adam(policy.parameters(), lr=3e-3)
    baseline = 0.0
    with Probe(policy, run=run, every=EVERY) as probe:
        for step, (xb, yb) in enumerate(batches(x, y, 64, steps, seed=seed)):
            logp = torch.log_softmax(policy(xb), -1)
            actions = torch.multinomial(logp.exp().detach(), 1).squeeze(1)
            reward = (actions == yb).float()
            chosen = logp.gather(1, actions[:, None]).squeeze(1)
            if bug == "detached":
                chosen = chosen.detach().requires_grad_()
            adv = reward - baseline
            sign = -1.0 if bug == "sign" else 1.0
            loss = -(sign * adv * chosen).mean()
            baseline = 0.9 * baseline + 0.1 * reward.mean().item()
            opt.zero_grad()
            loss.backward()
            probe.step(step=step, loss=loss, reward=reward.mean().item(), reward_std=reward.std().item())
            opt.step()
    return run


# ------------------------------------------------------------------------------ fault cases

X_TRAIN = slice(0, 1400)
X_VAL = slice(1400, None)


def _data():
    x, y = digits()
    return x[X_TRAIN], y[X_TRAIN], (x[X_VAL], y[X_VAL])


def f_simsiam_no_stopgrad(run):
    return ssl_run(run, "simsiam", stop_grad=False)


def f_invariance_only(run):
    return ssl_run(run, "invariance_only", batch_norm=False, lr=0.1)


def f_vq_codebook_collapse(run):
    return vq_run(run, broken=True)


def f_attention_uniform(run):
    return attn_run(run, broken=True)


def f_causal_attention_uniform(run):
    return attn_run(run, broken=True, causal=True)


def f_amp_overflow(run):
    """float16 autocast with a GradScaler on activations far outside fp16's range: the scale keeps halving."""
    from advisor import Probe

    torch.manual_seed(0)
    x, y, _ = _data()
    model = _mlp([64, 128, 128, 10])
    with torch.no_grad():
        model[0].weight.mul_(400.0)  # pre-activations of ~1e4, products beyond 65504
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0**16)
    with Probe(model, run=run, every=EVERY) as probe:
        for step, (xb, yb) in enumerate(batches(x * 50, y, 64, 120)):
            with torch.autocast("cpu", dtype=torch.float16):
                logits = model(xb)
                loss = nn.functional.cross_entropy(logits.float(), yb)
            opt.zero_grad()
            scaler.scale(loss).backward()
            probe.step(step=step, loss=loss, logits=logits, targets=yb, scaler=scaler)
            scaler.step(opt)
            scaler.update()
    return run


def f_missing_zero_grad(run):
    torch.manual_seed(0)
    x, y, val = _data()
    return classify(run, _mlp([64, 64, 10]), x, y, opt="sgd", lr=0.01, zero_grad=False, val=val)


def f_label_shuffle(run):
    torch.manual_seed(0)
    x, y, val = _data()
    return classify(run, _mlp([64, 64, 10]), x, y, label_noise=True, val=val)


def f_lr_too_high(run):
    torch.manual_seed(0)
    x, y, val = _data()
    return classify(run, _mlp([64, 128, 10]), x, y, opt="adam", lr=0.3, val=val)


def f_lr_too_low(run):
    torch.manual_seed(0)
    x, y, val = _data()
    return classify(run, _mlp([64, 64, 10]), x, y, opt="sgd", lr=1e-5, val=val)


def f_unnormalised_inputs(run):
    torch.manual_seed(0)
    x, y, val = _data()
    scale = lambda step, xb: xb * 16 * 20  # noqa: E731  raw pixel counts, never divided back
    return classify(run, _mlp([64, 64, 10]), x, y, opt="sgd", lr=0.05, input_fn=scale)


def f_reward_flat(run):
    return bandit_run(run, bug="detached")


def f_reward_decline(run):
    return bandit_run(run, bug="sign")


def f_post_ln_no_warmup(run):
    return transformer_run(run, norm_first=False, warmup=False, lr=0.05)


def f_dying_relu_lr(run):
    torch.manual_seed(0)
    x, y, _ = _data()
    return classify(run, _mlp([64, 128, 128, 10]), x, y, opt="sgd", lr=3.0)


def f_outlier_targets(run):
    """Regression where a pipeline bug scales 0.5% of the targets by 1000: rare batches carry huge
    gradients (no clipping), the loss and the gradient norm jump when one comes by."""
    from advisor import Probe

    torch.manual_seed(0)
    x, _ = digits()
    target = (x.sum(1, keepdim=True) - 20) / 10
    g = torch.Generator().manual_seed(5)
    bad = torch.rand(len(target), generator=g) < 0.005
    target[bad] *= 1000.0
    model = _mlp([64, 64, 1])
    opt = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)
    with Probe(model, run=run, every=EVERY) as probe:
        for step, (xb, yb) in enumerate(batches(x, target, 64, 200)):
            loss = nn.functional.mse_loss(model(xb), yb)
            opt.zero_grad()
            loss.backward()
            probe.step(step=step, loss=loss)
            opt.step()
    return run


def f_vanishing_deep_tanh(run):
    torch.manual_seed(0)
    x, y, _ = _data()
    model = _mlp([64] + [64] * 16 + [10], act=nn.Tanh)
    with torch.no_grad():
        for m in model:
            if isinstance(m, nn.Linear):
                m.weight.mul_(0.3)  # too small an init: the signal and the gradient shrink layer by layer
    return classify(run, model, x, y, opt="sgd", lr=0.05, steps=120)


def f_background_collapse(run):
    """Per-pixel classification where 95% of the pixels are background: the model predicts background."""
    from advisor import Probe

    torch.manual_seed(0)
    g = torch.Generator().manual_seed(0)
    n, size = 512, 8
    img = torch.rand(n, 1, size, size, generator=g)
    mask = torch.zeros(n, size, size, dtype=torch.long)
    mask[:, 3:4, 3:5] = (torch.rand(n, 1, 2, generator=g) < 0.8).long() * torch.randint(1, 4, (n, 1, 2), generator=g)
    img = img + 0.05 * mask[:, None].float()  # the foreground is barely visible
    model = nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 4, 1))
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    with Probe(model, run=run, every=EVERY) as probe:
        for step in range(150):
            idx = torch.randint(0, n, (32,), generator=g)
            logits = model(img[idx])
            loss = nn.functional.cross_entropy(logits, mask[idx])
            opt.zero_grad()
            loss.backward()
            pred = logits.argmax(1)
            fg = mask[idx] > 0
            iou = ((pred == mask[idx]) & fg).sum() / (fg | (pred > 0)).sum().clamp(min=1)
            flat = logits.permute(0, 2, 3, 1).reshape(-1, 4)
            probe.step(step=step, loss=loss, foreground_iou=iou.item(), logits=flat, targets=mask[idx].reshape(-1))
            opt.step()
    return run


def f_nan_in_inputs(run):
    torch.manual_seed(0)
    x, y, _ = _data()

    def corrupt(step, xb):
        if step == 70:
            xb = xb.clone()
            xb[0, 5] = float("nan")  # one corrupted sample from the input pipeline
        return xb

    return classify(run, _mlp([64, 64, 10]), x, y, input_fn=corrupt)


def f_lr_decay_to_zero(run):
    """A scheduler bug: the LR is cut 1000x at step 15, long before the loss has come down."""
    from advisor import Probe

    torch.manual_seed(0)
    x, y, _ = _data()
    model = _mlp([64, 64, 10])
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=15, gamma=0.001)
    loss_fn = nn.CrossEntropyLoss()
    with Probe(model, run=run, every=EVERY) as probe:
        for step, (xb, yb) in enumerate(batches(x, y, 64, 200)):
            logits = model(xb)
            loss = loss_fn(logits, yb)
            opt.zero_grad()
            loss.backward()
            probe.step(step=step, loss=loss, lr=sched.get_last_lr()[0], logits=logits, targets=yb)
            opt.step()
            sched.step()
    return run


def f_embedding_dead_dims(run):
    """An encoder whose embedding passes through a ReLU with very negative biases: most dimensions are dead."""
    from advisor import Probe

    torch.manual_seed(0)
    x, y, _ = _data()
    enc = nn.Sequential(nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 64), nn.ReLU())
    with torch.no_grad():
        enc[2].bias[:48].fill_(-20.0)
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


def f_overfit_small_cnn(run):
    torch.manual_seed(0)
    x, y = digits()
    noisy = y[:32].clone()
    noisy[::4] = (noisy[::4] + 5) % 10
    return classify(run, SmallCNN(32), x[:32], noisy, batch=32, steps=300, lr=3e-3, val=(x[1000:1400], y[1000:1400]), val_every=5)


def f_weight_decay_huge(run):
    torch.manual_seed(0)
    x, y, val = _data()
    model = _mlp([64, 64, 10])
    from advisor import Probe

    opt = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=50.0)
    loss_fn = nn.CrossEntropyLoss()
    with Probe(model, run=run, every=EVERY) as probe:
        for step, (xb, yb) in enumerate(batches(x, y, 64, 200)):
            logits = model(xb)
            loss = loss_fn(logits, yb)
            opt.zero_grad()
            loss.backward()
            probe.step(step=step, loss=loss, lr=3e-3, logits=logits, targets=yb)
            opt.step()
    return run


NAN = ["guide/001-loss-becomes-nan", "catalog/010-gradient-norms-are-exploding-or-vanishing", "guide/008-exploding-gradients"]
EXPLODE = ["guide/008-exploding-gradients", "catalog/010-gradient-norms-are-exploding-or-vanishing", "guide/001-loss-becomes-nan", "guide/005-finding-the-right-learning-rate"]
COLLAPSE_SG = ["catalog/071-symmetric-architectures-cause-collapse", "catalog/003-embeddings-collapse-or-are-too-similar", "catalog/035-cosine-similarities-between-embeddings-are-all-1", "catalog/049-feature-collapse-only-happens-in-one-branch"]
ATTENTION = ["guide/016-attention-weights-are-uniform", "catalog/077-attention-maps-are-uniform-or-random"]
PLATEAU = ["guide/002-loss-stops-decreasing", "catalog/011-loss-plateaus-early", "guide/004-loss-decreases-very-slowly", "guide/005-finding-the-right-learning-rate"]
REWARD = ["guide/019-dpo-loss-not-decreasing", "guide/018-reward-increases-but-quality-decreases", "guide/002-loss-stops-decreasing", "guide/005-finding-the-right-learning-rate"]

CLS = ["classification"]
SSL = ["ssl", "joint_embedding", "representation"]
SEQ = ["attention", "sequence", "classification", "normalization_layers"]

FAULTS: list[Case] = [
    Case("simsiam_no_stopgrad", f_simsiam_no_stopgrad, COLLAPSE_SG + ["catalog/001-representation-rank-is-low"], SSL + ["normalization_layers"], "SimSiam with predictor, no stop-gradient: partial collapse"),
    Case("invariance_only", f_invariance_only, COLLAPSE_SG + ["catalog/012-very-low-output-variance"], SSL + ["normalization_layers"], "VICReg without variance/covariance terms: complete collapse"),
    Case("vq_codebook_collapse", f_vq_codebook_collapse, ["run/fix-3-4-hybrid-vq-vae-strategy", "run/problem-2-vq-refresh-introduces-discontinuity", "catalog/081-embeddings-are-nearly-binary-hard-clustering"], SSL + ["vq", "multi_term_loss"], "3 of 64 codes reachable"),
    Case("attention_uniform", f_attention_uniform, ATTENTION, ["attention", "sequence", "classification", "normalization_layers"], "queries zeroed and frozen"),
    Case("causal_attention_uniform", f_causal_attention_uniform, ATTENTION, ["attention", "sequence", "classification", "normalization_layers"], "causal mask, queries zeroed"),
    Case("amp_overflow", f_amp_overflow, ["catalog/092-model-fails-after-moving-to-mixed-precision", "guide/001-loss-becomes-nan"], CLS + ["mixed_precision"], "fp16 autocast, activations beyond 65504"),
    Case("missing_zero_grad", f_missing_zero_grad, ["guide/006-gradients-are-all-zero", "guide/008-exploding-gradients", "catalog/010-gradient-norms-are-exploding-or-vanishing"], CLS, "optimizer.zero_grad() never called"),
    Case("label_shuffle", f_label_shuffle, PLATEAU + ["catalog/059-loss-improves-but-evaluation-metric-stalls"], CLS, "labels permuted within each batch"),
    Case("lr_too_high", f_lr_too_high, EXPLODE + ["guide/003-loss-oscillates-wildly", "catalog/043-early-epochs-improve-then-suddenly-diverge", "catalog/074-loss-gradually-increases-instead-of-decreasing", "catalog/021-feature-activations-are-sparse-or-mostly-zero"], CLS, "Adam at lr 0.3"),
    Case("lr_too_low", f_lr_too_low, PLATEAU, CLS, "SGD at lr 1e-5"),
    Case("unnormalised_inputs", f_unnormalised_inputs, EXPLODE + ["guide/003-loss-oscillates-wildly"], CLS, "raw pixel counts x20 into SGD"),
    Case("reward_flat", f_reward_flat, REWARD, ["rl_preference"], "REINFORCE with detached log-probs"),
    Case("reward_decline", f_reward_decline, REWARD + ["catalog/074-loss-gradually-increases-instead-of-decreasing"], ["rl_preference"], "policy-gradient sign flipped"),
    Case("post_ln_no_warmup", f_post_ln_no_warmup, PLATEAU, SEQ, "post-LN transformer, lr 0.05, no warmup"),
    Case("dying_relu_lr", f_dying_relu_lr, ["catalog/021-feature-activations-are-sparse-or-mostly-zero", "guide/006-gradients-are-all-zero", "guide/005-finding-the-right-learning-rate"] + EXPLODE, CLS, "SGD at lr 3 kills the ReLUs"),
    Case("outlier_targets", f_outlier_targets, EXPLODE + ["catalog/044-loss-curve-shows-sudden-jumps-or-drops", "catalog/033-loss-has-high-variance-across-batches"], [], "0.5% of regression targets x1000"),
    Case("vanishing_deep_tanh", f_vanishing_deep_tanh, ["guide/007-vanishing-gradients", "catalog/010-gradient-norms-are-exploding-or-vanishing", "catalog/080-first-few-layers-are-frozen-in-learning", "catalog/094-per-layer-gradient-norms-are-inverted-later-layers-have-larg"], CLS, "18 tanh layers, init x0.3"),
    Case("background_collapse", f_background_collapse, ["catalog/024-model-predicts-only-the-majority-class-or-background", "catalog/062-model-fails-to-learn-from-rare-examples", "audit/003-model-collapsing-to-few-classes"], ["segmentation", "classification", "convolution"], "95% background pixels"),
    Case("nan_in_inputs", f_nan_in_inputs, NAN, CLS, "one NaN pixel at step 70"),
    Case("lr_decay_to_zero", f_lr_decay_to_zero, PLATEAU, CLS, "StepLR gamma 0.001 at step 15"),
    Case("embedding_dead_dims", f_embedding_dead_dims, ["catalog/018-embedding-dimensions-used-unevenly", "catalog/099-feature-channels-are-imbalanced", "catalog/012-very-low-output-variance", "catalog/001-representation-rank-is-low", "catalog/021-feature-activations-are-sparse-or-mostly-zero"], CLS + ["representation"], "48 of 64 embedding dims behind a dead ReLU"),
    Case("overfit_small_cnn", f_overfit_small_cnn, ["guide/012-validation-loss-increasing-while-training-loss-decreases", "catalog/004-early-overfitting-or-poor-generalization", "catalog/061-model-quickly-memorizes-training-set"], CLS + ["convolution"], "32 noisy samples, CNN"),
    Case("weight_decay_huge", f_weight_decay_huge, PLATEAU + ["catalog/067-kernel-weights-are-all-small-in-magnitude"], CLS, "AdamW weight decay 50"),
]


def _load_sibling(name: str):
    """A module of this folder by its path (the folder is not a package, and tests load corpus by path)."""
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, Path(__file__).resolve().parent / f"{name}.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


# the same mechanisms as simsiam/invariance collapse and unnormalised inputs, in other settings
FAULTS += _load_sibling("more_faults").faults(sys.modules[__name__])


# --------------------------------------------------------------------------- healthy cases


def _healthy_classifier(opt: str, batch: int, schedule: str, seed: int):
    lr = {"sgd": 0.05, "adam": 2e-3, "adamw": 2e-3}[opt]

    def fn(run: Path) -> Path:
        torch.manual_seed(seed)
        x, y, val = _data()
        return classify(run, _mlp([64, 64, 32, 10]), x, y, batch=batch, opt=opt, lr=lr, schedule=schedule, seed=seed, val=val, steps=150)

    return fn


def _healthy_cnn(batch: int, seed: int):
    def fn(run: Path) -> Path:
        torch.manual_seed(seed)
        x, y, val = _data()
        return classify(run, SmallCNN(), x, y, batch=batch, opt="adam", lr=2e-3, seed=seed, val=val, steps=150)

    return fn


def _healthy_regression(opt: str, seed: int):
    def fn(run: Path) -> Path:
        from advisor import Probe

        torch.manual_seed(seed)
        x, _ = digits()
        target = (x.sum(1, keepdim=True) - 20) / 10
        model = _mlp([64, 64, 1])
        optim = _optimizer(opt, model.parameters(), 0.01 if opt == "sgd" else 1e-3)
        with Probe(model, run=run, every=EVERY) as probe:
            for step, (xb, yb) in enumerate(batches(x, target, 64, 150, seed=seed)):
                loss = nn.functional.mse_loss(model(xb), yb)
                optim.zero_grad()
                loss.backward()
                probe.step(step=step, loss=loss)
                optim.step()
        return run

    return fn


def _healthy_amp(run: Path) -> Path:
    from advisor import Probe

    torch.manual_seed(0)
    x, y, _ = _data()
    model = _mlp([64, 64, 10])
    opt = torch.optim.Adam(model.parameters(), lr=2e-3)
    with Probe(model, run=run, every=EVERY) as probe:
        for step, (xb, yb) in enumerate(batches(x, y, 64, 150)):
            with torch.autocast("cpu", dtype=torch.bfloat16):
                logits = model(xb)
            loss = nn.functional.cross_entropy(logits.float(), yb)
            opt.zero_grad()
            loss.backward()
            probe.step(step=step, loss=loss, logits=logits.float(), targets=yb)
            opt.step()
    return run


HEALTHY: list[Case] = []
for i, (opt, batch, schedule) in enumerate(
    (o, b, s) for o in ("sgd", "adam", "adamw") for b in (8, 32, 128, 512) for s in ("const", "warmup_cosine")
):
    HEALTHY.append(Case(f"healthy_mlp_{opt}_b{batch}_{schedule}", _healthy_classifier(opt, batch, schedule, seed=i), [], CLS))
HEALTHY += [
    Case(f"healthy_cnn_b{b}", _healthy_cnn(b, seed=b), [], CLS + ["convolution"]) for b in (16, 64, 256)
]
HEALTHY += [
    Case("healthy_transformer_preln_warmup", lambda r: transformer_run(r, norm_first=True, warmup=True), [], SEQ),
    Case("healthy_transformer_postln_warmup", lambda r: transformer_run(r, norm_first=False, warmup=True, lr=5e-4, seed=1), [], SEQ),
    Case("healthy_transformer_causal_lm", lambda r: transformer_run(r, causal_lm=True, seed=2), [], SEQ),
    Case("healthy_attention_classifier", lambda r: attn_run(r, seed=3), [], ["attention", "sequence", "classification", "normalization_layers"]),
    Case("healthy_attention_causal", lambda r: attn_run(r, causal=True, seed=4), [], ["attention", "sequence", "classification", "normalization_layers"]),
    Case("healthy_simsiam", lambda r: ssl_run(r, "simsiam"), [], SSL + ["normalization_layers"]),
    Case("healthy_simsiam_b256", lambda r: ssl_run(r, "simsiam", batch=256, seed=1), [], SSL + ["normalization_layers"]),
    Case("healthy_byol_ema", lambda r: ssl_run(r, "byol"), [], SSL + ["normalization_layers"]),
    Case("healthy_vicreg", lambda r: ssl_run(r, "vicreg", lr=0.02), [], SSL + ["normalization_layers", "multi_term_loss"]),
    Case("healthy_simclr", lambda r: ssl_run(r, "simclr"), [], SSL + ["contrastive", "normalization_layers"]),
    Case("healthy_simclr_b64", lambda r: ssl_run(r, "simclr", batch=64, seed=2), [], SSL + ["contrastive", "normalization_layers"]),
    Case("healthy_regression_sgd", _healthy_regression("sgd", 0), [], []),
    Case("healthy_regression_adam", _healthy_regression("adam", 1), [], []),
    Case("healthy_bandit", lambda r: bandit_run(r, seed=1), [], ["rl_preference"]),
    Case("healthy_amp_bf16", _healthy_amp, [], CLS + ["mixed_precision"]),
]
HEALTHY += _load_sibling("more_faults").healthy(sys.modules[__name__])

# the original fault-injected scenarios of tests/fault_runs.py, with their settings
_ORIGINAL_SETTINGS = {
    "ssl_collapse": ["ssl", "joint_embedding", "representation"],
    "low_rank_bottleneck": ["classification", "representation"],
    "exploding_nan": [],
}
ORIGINAL: list[Case] = [
    Case(name, fn, expected, _ORIGINAL_SETTINGS.get(name, CLS), "tests/fault_runs.py")
    for name, (fn, expected) in fault_runs.SCENARIOS.items()
]

ALL: dict[str, Case] = {c.name: c for c in FAULTS + HEALTHY + ORIGINAL}


# Written into each cached run's `.complete`; a run cached under another stamp is trained again. Change
# it when what a corpus run records changes (runs cached while the probe's default max_overhead was 0.25
# kept one reading of each probe metric on the cheap healthy runs, so their silence proved nothing).
CACHE_STAMP = "2: every grid step read"


def build(names: list[str] | None = None, force: bool = False, cache: Path = CACHE, log=print) -> dict[str, Path]:
    """Train (or reuse from the cache) the named cases; name -> run directory."""
    import warnings

    out: dict[str, Path] = {}
    for name, case in ALL.items():
        if names and name not in names:
            continue
        path = cache / name
        done = path / ".complete"
        if force or not done.exists() or done.read_text().strip() != CACHE_STAMP:
            shutil.rmtree(path, ignore_errors=True)
            path.parent.mkdir(parents=True, exist_ok=True)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                case.fn(path)
            path.mkdir(parents=True, exist_ok=True)
            done.write_text(CACHE_STAMP + "\n")
            log(f"trained {name}")
        out[name] = path
    return out
