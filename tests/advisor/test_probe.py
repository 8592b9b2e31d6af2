"""The live Probe end to end: a real training loop, the run store, failures, precision, compile, kill."""

from __future__ import annotations

import math
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from advisor import Probe
from advisor.runstore import read_events, read_meta, read_readings

REPO = Path(__file__).resolve().parents[2]

REPRESENTATION = [
    "effective_rank", "effective_rank_ratio", "top1_variance_share", "top5_variance_share",
    "offdiag_cov_energy", "dim_std_mean", "dead_dim_share", "l2norm_std", "l2norm_std_ref",
    "mean_pairwise_cosine", "norm_max_median", "norm_cv", "dim",
]  # fmt: skip


class DigitNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.encoder = nn.Sequential(nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 32), nn.Tanh())
        self.head = nn.Linear(32, 10)
        self.register_buffer("codebook", torch.randn(16, 32, generator=torch.Generator().manual_seed(9)))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        z = self.encoder(x)
        return z, self.head(z)


def _digits() -> tuple[torch.Tensor, torch.Tensor]:
    from sklearn.datasets import load_digits

    data = load_digits()
    x = torch.tensor(data.data, dtype=torch.float32) / 16.0
    return x, torch.tensor(data.target, dtype=torch.long)


def test_digits_training_writes_every_reading_family(tmp_path):
    torch.manual_seed(0)
    x_all, y_all = _digits()
    model = DigitNet()
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=20, gamma=0.5)
    run = tmp_path / "digits"
    steps, every = 60, 10
    with Probe(model, run=run, every=every) as probe:
        for step in range(steps):
            t0 = time.perf_counter()
            idx = torch.randint(0, len(x_all), (64,))
            x, y = x_all[idx], y_all[idx]
            data_time = time.perf_counter() - t0
            z, logits = model(x)
            loss = F.cross_entropy(logits, y)
            opt.zero_grad()
            loss.backward()
            codes = torch.cdist(z.detach(), model.codebook).argmin(1)
            attention = torch.softmax(z.detach() @ z.detach().T, dim=-1)
            views = (z, z + 0.05 * torch.randn_like(z))
            probe.step(
                loss=loss, lr=sched.get_last_lr()[0], embeddings=z, logits=logits, targets=y, codes=codes,
                codebook_size=16, attention=attention, views=views, hidden=x @ model.encoder[0].weight.T,
                data_time=data_time,
            )  # fmt: skip
            opt.step()
            sched.step()

    readings = read_readings(run)
    sampled = list(range(0, steps, every))

    def check(name: str, expected_steps: list[int] | None = None) -> np.ndarray:
        assert name in readings, f"{name} missing; have {sorted(readings)}"
        s, v = readings[name]
        assert s.tolist() == (expected_steps if expected_steps is not None else sampled), name
        return v

    # Scalars every step.
    assert np.all(np.isfinite(check("loss", list(range(steps)))))
    lr = check("lr", list(range(steps)))
    assert lr[0] == pytest.approx(3e-3) and lr[-1] == pytest.approx(3e-3 * 0.25)
    # Representations and views.
    for suffix in REPRESENTATION:
        assert np.all(np.isfinite(check(f"embeddings/{suffix}"))), suffix
        check(f"views/{suffix}")
    assert check("embeddings/dim")[0] == 32
    assert 1 < check("embeddings/effective_rank")[-1] <= 32
    assert np.all(check("views/cosine") > 0.9)
    # Activations: the ReLU and the tanh layer.
    for suffix in ("zero_fraction", "dead_unit_share", "std", "sample_similarity"):
        check(f"act/encoder.1/{suffix}")
    assert 0 < check("act/encoder.1/zero_fraction")[0] < 1
    for suffix in ("saturation_fraction", "std", "sample_similarity"):
        check(f"act/encoder.3/{suffix}")
    # Gradients, weights, updates.
    for name in ("grad/global_norm", "grad/first_last_ratio", "grad/nonfinite_count", "grad/zero_share",
                 "grad/min_layer_norm", "grad/encoder.0/norm", "grad/head/norm"):  # fmt: skip
        check(name)
    assert check("grad/nonfinite_count").sum() == 0
    for name in ("weight/global_norm", "weight/encoder.0/norm", "weight/head/norm_growth"):
        check(name)
    assert check("weight/head/norm_growth")[0] == pytest.approx(1.0)
    for name in ("update/encoder.0/ratio", "update/head/ratio", "update/max_ratio"):
        assert np.all(check(name) > 0)
    assert np.all(check("update/frozen_share") == 0) and np.all(check("update/frozen_params") == 0)
    # Outputs.
    assert check("logits/num_classes")[0] == 10
    for name in ("logits/entropy", "logits/entropy_ratio", "logits/top_class_share", "logits/confidence"):
        check(name)
    accuracy = check("logits/accuracy")
    assert accuracy[-1] > accuracy[0] and accuracy[-1] > 0.5  # it did learn
    for name in ("codes/usage_share", "codes/perplexity", "codes/perplexity_ratio", "attention/entropy_ratio"):
        check(name)
    assert 0 < check("codes/usage_share")[0] <= 1
    # Unknown tensors, non-finite counts, time.
    for suffix in ("mean", "std", "norm", "nonfinite"):
        check(f"hidden/{suffix}")
    for name in ("embeddings", "logits", "attention", "views", "hidden"):
        assert np.all(check(f"nonfinite/{name}") == 0)
    check("time/step_s", sampled[1:])
    assert np.all((check("time/data_wait_share", sampled[1:]) >= 0))
    # Hardware readings are cleanly absent without a GPU.
    if not torch.cuda.is_available():
        assert not [n for n in readings if n.startswith("gpu/")]

    meta = read_meta(run)
    assert meta["every"] == every and meta["codebook_size"] == 16 and meta["status"] == "closed"
    assert meta["torch_version"] == torch.__version__ and meta["device"] == "cpu"
    assert meta["model"]["class"] == "DigitNet" and meta["activation_layers"] == ["encoder.1", "encoder.3"]
    assert read_events(run) == []


def _train_small(run: Path | None, every: int, steps: int = 5):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Dropout(0.3), nn.Linear(16, 16), nn.Tanh(), nn.Linear(16, 4))
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    probe = Probe(model, run=run, every=every, representation_every=1) if run is not None else None
    outputs, grads = [], []
    for _ in range(steps):
        x, y = torch.randn(32, 8), torch.randint(0, 4, (32,))
        out = model(x)
        loss = F.cross_entropy(out, y)
        opt.zero_grad()
        loss.backward()
        outputs.append(out.detach().clone())
        grads.append([p.grad.clone() for p in model.parameters()])
        if probe is not None:
            probe.step(loss=loss, logits=out, targets=y, embeddings=out, views=(out, out * 2))
        opt.step()
    if probe is not None:
        probe.close()
    return outputs, grads, [p.detach().clone() for p in model.parameters()]


@pytest.mark.parametrize("every", [1, 2])
def test_outputs_and_gradients_are_bit_identical_with_the_probe(tmp_path, every):
    plain = _train_small(None, every)
    probed = _train_small(tmp_path / "run", every)
    for a, b in zip(plain[0], probed[0]):
        assert torch.equal(a, b)
    for ga, gb in zip(plain[1], probed[1]):
        assert all(torch.equal(a, b) for a, b in zip(ga, gb))
    assert all(torch.equal(a, b) for a, b in zip(plain[2], probed[2]))
    assert "act/1/zero_fraction" in read_readings(tmp_path / "run")


def test_a_failing_reading_disables_itself_once_and_training_goes_on(tmp_path, monkeypatch):
    import advisor.probe.arguments as arguments
    import advisor.probe.metrics as metrics

    def broken_logits(logits, targets=None):
        raise RuntimeError("logits reading exploded")

    real_activation_stats = metrics.activation_stats

    def broken_relu(y, kind, bounds=None):
        if kind == metrics.RELU_LIKE:
            raise ValueError("relu reading exploded")
        return real_activation_stats(y, kind, bounds)

    monkeypatch.setitem(arguments.FAMILIES, "logits", (broken_logits, arguments.FAMILIES["logits"][1]))
    monkeypatch.setattr(metrics, "activation_stats", broken_relu)
    with pytest.warns(RuntimeWarning) as caught:
        outputs, _, _ = _train_small(tmp_path / "run", every=1, steps=4)
    assert len(outputs) == 4
    messages = [str(w.message) for w in caught if "advisor.probe" in str(w.message)]
    assert len([m for m in messages if "'logits'" in m]) == 1
    assert len([m for m in messages if "'act/1'" in m]) == 1
    events = read_events(tmp_path / "run")
    assert sorted(e["name"] for e in events if e["kind"] == "reading_disabled") == ["act/1", "logits"]
    assert "logits reading exploded" in next(e["message"] for e in events if e["name"] == "logits")
    readings = read_readings(tmp_path / "run")
    assert not [n for n in readings if n.startswith("logits/") or n.startswith("act/1/")]
    assert readings["embeddings/effective_rank"][0].tolist() == [0, 1, 2, 3]
    assert readings["act/4/saturation_fraction"][0].tolist() == [0, 1, 2, 3]
    assert read_meta(tmp_path / "run")["disabled_readings"].keys() == {"logits", "act/1"}


def test_an_internal_error_stops_the_probe_not_the_training(tmp_path, monkeypatch):
    import advisor.probe.sampled as sampled

    def explode(self, *args, **kwargs):
        raise RuntimeError("store machinery broke")

    monkeypatch.setattr(sampled.SampledReader, "finalize", explode)
    with pytest.warns(RuntimeWarning, match="probe stopped"):
        outputs, _, _ = _train_small(tmp_path / "run", every=2, steps=4)
    assert len(outputs) == 4
    events = read_events(tmp_path / "run")
    assert [e["kind"] for e in events] == ["probe_disabled"]
    assert read_meta(tmp_path / "run")["status"] == "failed"


def test_nan_inputs_are_readings_and_readings_stay_nan_safe(tmp_path):
    z = torch.randn(40, 8)
    z[:3, 1] = float("nan")
    z[5, 5] = float("inf")
    logits = torch.randn(40, 5)
    logits[7] = float("nan")
    with Probe(None, run=tmp_path / "run", every=1, representation_every=1) as probe:
        probe.step(loss=float("nan"), embeddings=z, logits=logits, targets=torch.randint(0, 5, (40,)))
        probe.step(loss=torch.tensor(float("inf")), embeddings=torch.full((4, 3), float("nan")))
    r = read_readings(tmp_path / "run")
    assert math.isnan(r["loss"][1][0]) and r["loss"][1][1] == math.inf
    assert r["nonfinite/embeddings"][1].tolist() == [4, 12]
    assert r["nonfinite/logits"][1].tolist() == [5]
    assert np.isfinite(r["embeddings/effective_rank"][1][0]) and np.isfinite(r["embeddings/l2norm_std"][1][0])
    assert np.isfinite(r["logits/entropy"][1][0])
    assert math.isnan(r["embeddings/l2norm_std"][1][1])  # nothing finite left: undefined, stored as NULL


def test_float16_and_bfloat16(tmp_path):
    torch.manual_seed(0)
    z = torch.randn(64, 16)
    logits = torch.randn(64, 10)
    with Probe(None, run=tmp_path / "half", every=1, representation_every=1) as probe:
        for dtype in (torch.float32, torch.float16, torch.bfloat16):
            probe.step(embeddings=z.to(dtype), logits=logits.to(dtype), loss=torch.tensor(1.5, dtype=dtype))
    r = read_readings(tmp_path / "half")
    for name in ("embeddings/effective_rank", "embeddings/l2norm_std", "logits/entropy"):
        values = r[name][1]
        assert values[1] == pytest.approx(values[0], rel=1e-2) and values[2] == pytest.approx(values[0], rel=2e-2)

    model = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 16), nn.Sigmoid(), nn.Linear(16, 3)).to(torch.bfloat16)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    with Probe(model, run=tmp_path / "bf16", every=1) as probe:
        for _ in range(3):
            out = model(torch.randn(16, 8, dtype=torch.bfloat16))
            loss = out.float().pow(2).mean()
            opt.zero_grad()
            loss.backward()
            probe.step(loss=loss, logits=out, embeddings=out)
            opt.step()
        assert probe.disabled == {}
    r = read_readings(tmp_path / "bf16")
    for name in ("act/1/zero_fraction", "act/3/saturation_fraction", "grad/global_norm", "update/max_ratio", "logits/entropy"):
        assert np.all(np.isfinite(r[name][1])), name
    assert read_meta(tmp_path / "bf16")["dtype"] == "bfloat16"


def test_activations_come_from_the_sampled_steps_forward(tmp_path):
    # Identity weights: step s feeds s negative columns out of 8, so the ReLU's zero fraction is s/8.
    linear = nn.Linear(8, 8, bias=False)
    with torch.no_grad():
        linear.weight.copy_(torch.eye(8))
    model = nn.Sequential(linear, nn.ReLU())
    with Probe(model, run=tmp_path / "run", every=3) as probe:
        for s in range(8):
            x = torch.ones(4, 8)
            x[:, :s] = -1
            model(x).sum().backward()
            with torch.no_grad():  # an evaluation pass in between is not the training batch
                model(-torch.ones(4, 8))
            probe.step()
            relu_hooks = len(model[1]._forward_hooks)
            assert relu_hooks == (1 if probe.will_sample else 0)  # hooks exist only for sampled steps
        probe.sample_next()
        assert len(model[1]._forward_hooks) == 1
        x = torch.ones(4, 8)
        x[:, :5] = -1
        model(x).sum().backward()
        probe.step()  # step 8: not on the grid, sampled on request
    steps, values = read_readings(tmp_path / "run")["act/1/zero_fraction"]
    assert steps.tolist() == [0, 3, 6, 8]
    assert values.tolist() == [0.0, 3 / 8, 6 / 8, 5 / 8]


class _GatedMLP(nn.Module):
    """Changes its GELU's output in place after the hook (legal: GELU saves its input, not its output)."""

    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(4, 64)
        self.act = nn.GELU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.act(self.lin(x))
        h.mul_(0.0)
        return h.sum()


@pytest.mark.parametrize("stash_bytes", [0, 1 << 20])
def test_activation_outputs_changed_in_place_are_read_in_their_hook_or_skipped(tmp_path, monkeypatch, stash_bytes):
    from advisor.probe.hooks import ActivationRecorder

    monkeypatch.setattr(ActivationRecorder, "STASH_BYTES", stash_bytes)
    model = _GatedMLP()
    with Probe(model, run=tmp_path / "run", every=1) as probe:
        for _ in range(2):
            model(torch.randn(32, 4)).backward()
            probe.step()
    readings = read_readings(tmp_path / "run")
    if stash_bytes == 0:  # read inside the hook, before the change: the GELU outputs still spread
        assert readings["act/act/std"][1][0] > 0.05
    else:  # set aside, found changed at the end of forward: skipped (not misread as all zero), then
        # read inside the hook from the next sampled step on
        assert readings["act/act/std"][0].tolist() == [1]
        assert readings["act/act/std"][1][0] > 0.05
    assert "act/act/zero_fraction" not in readings  # GELU outputs at or below zero are not dead
    assert "grad/lin/norm" in readings
    assert read_events(tmp_path / "run") == []  # the hooks did fire: no "saw no forward pass" note


def test_explicit_steps_log_and_observe(tmp_path):
    with Probe(None, run=tmp_path / "run", every=5, representation_every=5) as probe:
        for step in (100, 101, 104, 105):
            assert probe.will_sample == (step % 5 == 0)  # it predicts the step after the last one
            if probe.will_sample:
                probe.observe(embeddings=torch.randn(32, 4))  # e.g. from inside forward
                probe.observe(embeddings=torch.randn(32, 4))  # a second micro-batch adds up
            probe.step(step=step, loss=1.0 / step, step_time=0.5, data_time=0.1)
        probe.log(val_loss=0.25)
        probe.log(step=100, val_acc=0.5)
    r = read_readings(tmp_path / "run")
    assert r["loss"][0].tolist() == [100, 101, 104, 105]
    assert r["val_loss"][0].tolist() == [105] and r["val_acc"][0].tolist() == [100]
    assert r["embeddings/dim"][0].tolist() == [100, 105]
    assert r["time/step_s"][1].tolist() == [0.5, 0.5]  # the mean of the step times passed since the last sample
    assert r["time/data_wait_share"][1] == pytest.approx([0.2, 0.2])


def test_store_is_readable_while_training_writes(tmp_path):
    probe = Probe(None, run=tmp_path / "run", every=2)
    for step in range(5):
        probe.step(loss=float(step))
    probe.flush()
    assert read_readings(tmp_path / "run")["loss"][0].tolist() == [0, 1, 2, 3, 4]
    assert read_meta(tmp_path / "run")["status"] == "running"
    probe.close()
    probe.close()  # idempotent
    probe.step(loss=1.0)  # after close: ignored, no error
    assert read_meta(tmp_path / "run")["status"] == "closed"


def test_compiled_model(tmp_path):
    torch._dynamo.reset()
    model = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 4))
    compiled = torch.compile(model, backend="aot_eager")
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    with Probe(compiled, run=tmp_path / "run", every=2) as probe:
        for _ in range(5):
            out = compiled(torch.randn(16, 8))
            opt.zero_grad()
            out.pow(2).mean().backward()
            probe.step(logits=out)
            opt.step()
    r = read_readings(tmp_path / "run")
    assert r["act/1/zero_fraction"][0].tolist() == [0, 2, 4]
    assert "grad/0/norm" in r and "update/2/ratio" in r
    assert not [n for n in r if "_orig_mod" in n]
    assert read_meta(tmp_path / "run")["compiled"] is True
    torch._dynamo.reset()


def test_killed_training_leaves_a_readable_store(tmp_path):
    run = tmp_path / "killed"
    script = textwrap.dedent(
        f"""
        import torch, torch.nn as nn
        from advisor import Probe
        model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))
        opt = torch.optim.SGD(model.parameters(), lr=0.01)
        probe = Probe(model, run={str(run)!r}, every=2, flush_seconds=0.05)
        step = 0
        while True:
            loss = model(torch.randn(8, 4)).pow(2).mean()
            opt.zero_grad(); loss.backward()
            probe.step(loss=loss, embeddings=torch.randn(8, 4))
            opt.step()
            step += 1
        """
    )
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen([sys.executable, "-c", script], cwd=REPO, env=env)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            time.sleep(0.2)
            assert proc.poll() is None, "the training script died on its own"
            try:
                if len(read_readings(run).get("grad/global_norm", ([], []))[0]) >= 3:
                    break
            except Exception:
                pass  # not created yet
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)
    finally:
        if proc.poll() is None:
            proc.kill()
    readings = read_readings(run)
    assert len(readings["loss"][0]) >= 5 and len(readings["grad/global_norm"][0]) >= 3
    assert read_meta(run)["status"] == "running"  # it never got to close


def test_importing_advisor_stays_cheap():
    code = (
        "import sys, advisor; assert 'torch' not in sys.modules, 'advisor imported torch'; "
        "import advisor.probe.integrations; "
        "assert not {'lightning', 'pytorch_lightning', 'transformers'} & set(sys.modules), 'integrations imported a framework'"
    )
    subprocess.run([sys.executable, "-c", code], cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)}, check=True)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_training_with_autocast(tmp_path):
    torch.manual_seed(0)
    device = torch.device("cuda")
    model = nn.Sequential(nn.Linear(32, 64), nn.ReLU(), nn.Linear(64, 32), nn.Tanh(), nn.Linear(32, 10)).to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    scaler = torch.amp.GradScaler("cuda")
    with Probe(model, run=tmp_path / "cuda", every=2) as probe:
        for _ in range(6):
            x, y = torch.randn(128, 32, device=device), torch.randint(0, 10, (128,), device=device)
            with torch.autocast("cuda", dtype=torch.float16):
                z = model[:4](x)
                logits = model[4](z)
                loss = F.cross_entropy(logits, y)
            opt.zero_grad()
            scaler.scale(loss).backward()
            probe.step(loss=loss, embeddings=z, logits=logits, targets=y, scaler=scaler)
            scaler.step(opt)
            scaler.update()
        assert probe.disabled == {}
    r = read_readings(tmp_path / "cuda")
    for name in ("gpu/mem_allocated_gb", "gpu/mem_reserved_gb", "gpu/mem_peak_gb", "gpu/mem_total_gb"):
        assert r[name][0].tolist() == [0, 2, 4]
    assert len(r["loss"][0]) == 6 and np.all(np.isfinite(r["loss"][1]))
    assert np.all(np.isfinite(r["embeddings/effective_rank"][1]))
    assert r["amp/loss_scale"][0].tolist() == [0, 2, 4] and r["amp/loss_scale"][1][0] == 65536.0
    assert read_meta(tmp_path / "cuda")["amp"] == {"autocast_dtype": "float16", "grad_scaler": True}
    assert read_meta(tmp_path / "cuda")["device"].startswith("cuda")


def test_max_overhead_spaces_sampled_steps_to_fit_the_budget(tmp_path):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 32), nn.ReLU(), nn.Linear(32, 4))
    opt = torch.optim.SGD(model.parameters(), lr=0.01)

    def train(run, steps, max_overhead, pause=0.0):
        with Probe(model, run=tmp_path / run, every=1, max_overhead=max_overhead, representation_every=1) as probe:
            for _ in range(steps):
                x = torch.randn(16, 8)
                out = model(x)
                loss = out.pow(2).mean()
                opt.zero_grad()
                loss.backward()
                time.sleep(pause)  # a training step this long earns enough credit for every sample
                probe.step(loss=loss, embeddings=out)
                opt.step()
            return probe.costs()

    # A tiny model (a step of ~2 ms): its readings cost more than 10% of a step, so grid steps are skipped.
    costs = train("tight", 60, 0.1, pause=0.002)
    r = read_readings(tmp_path / "tight")
    sampled = r["grad/global_norm"][0].tolist()
    assert r["loss"][0].tolist() == list(range(60))  # scalars every step all the same
    assert sampled[0] == 0 and 2 <= len(sampled) < 50 and costs["skipped_for_budget"] >= 10
    # Skipped steps are skipped whole: activations come from exactly the sampled steps' forwards.
    assert r["act/1/zero_fraction"][0].tolist() == sampled and r["embeddings/effective_rank"][0].tolist() == sampled
    notes = [e for e in read_events(tmp_path / "tight") if e["name"] == "sampling"]
    assert len(notes) == 1 and "10%" in notes[0]["message"]
    assert read_meta(tmp_path / "tight")["max_overhead"] == 0.1

    costs = train("roomy", 6, 0.5, pause=0.05)
    assert costs["skipped_for_budget"] == 0
    assert read_readings(tmp_path / "roomy")["grad/global_norm"][0].tolist() == list(range(6))


def test_unsampled_steps_record_every_kind_of_scalar(tmp_path):
    """Unsampled steps take a short path; what they record is what the full path records."""
    model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))
    with Probe(model, run=tmp_path / "run", every=4) as probe:
        for s in range(8):
            model(torch.randn(5, 4)).sum().backward()
            probe.step(loss=torch.tensor(0.5 * s), lr=1e-3, epoch=s // 4, flag=True, acc=np.float32(0.25),
                       nan=float("nan"), z=torch.randn(5, 3), pair=[torch.randn(5, 3), torch.randn(5, 3)], absent=None,
                       **({"step_time": 0.01} if s == 5 else {}))  # fmt: skip
    r = read_readings(tmp_path / "run")
    for name in ("loss", "lr", "epoch", "flag", "acc", "nan"):
        assert r[name][0].tolist() == list(range(8)), name
    assert r["loss"][1].tolist() == [0.5 * s for s in range(8)]
    assert r["epoch"][1].tolist() == [0, 0, 0, 0, 1, 1, 1, 1] and set(r["flag"][1]) == {1.0} and set(r["acc"][1]) == {0.25}
    assert np.isnan(r["nan"][1]).all()
    assert r["z/std"][0].tolist() == [0, 4] and r["pair.0/std"][0].tolist() == [0, 4]
    assert r["grad/global_norm"][0].tolist() == [0, 4] and r["act/1/zero_fraction"][0].tolist() == [0, 4]
    assert "absent" not in r and read_events(tmp_path / "run") == []


def test_representation_readings_have_their_own_cadence_that_the_user_sets(tmp_path):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 4))
    opt = torch.optim.SGD(model.parameters(), lr=0.01)

    def train(run, steps, force=(), **kwargs):
        with Probe(model, run=tmp_path / run, **kwargs) as probe:
            for step in range(steps):
                if step in force:
                    probe.sample_next()
                out = model(torch.randn(16, 8))
                loss = out.pow(2).mean()
                opt.zero_grad()
                loss.backward()
                probe.step(loss=loss, embeddings=out)
                opt.step()
        return read_readings(tmp_path / run), read_meta(tmp_path / run)

    # every=1 by default: every cheap reading every step, the representations every 5th (and on a forced sample).
    r, meta = train("default", 25, every=1)
    assert meta["representation_every"] == 5
    for name in ("grad/global_norm", "weight/global_norm", "act/1/zero_fraction", "nonfinite/embeddings"):
        assert r[name][0].tolist() == list(range(25)), name
    assert r["embeddings/effective_rank"][0].tolist() == [0, 5, 10, 15, 20]
    assert r["embeddings/l2norm_std"][0].tolist() == [0, 5, 10, 15, 20]
    # Rounded up to a multiple of every, so that they fall on sampled steps; forced samples read them.
    r, meta = train("every3", 25, every=3, force=(7,))
    assert meta["representation_every"] == 6
    assert r["grad/global_norm"][0].tolist() == [0, 3, 6, 7, 9, 12, 15, 18, 21, 24]
    assert r["embeddings/effective_rank"][0].tolist() == [0, 6, 7, 12, 18, 24]
    # The user's choice: every sampled step.
    r, meta = train("all", 6, every=2, representation_every=1)
    assert meta["representation_every"] == 2 and r["embeddings/effective_rank"][0].tolist() == [0, 2, 4]
    with pytest.raises(ValueError):
        Probe(None, run=tmp_path / "bad", representation_every=0)
