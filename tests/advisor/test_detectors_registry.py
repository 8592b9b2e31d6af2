"""The registry as a whole: thresholds and sources stated, healthy curves quiet, arbitrary input survived, long logs fast."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest
from detector_cases import healthy_run, loud, make_run, noisy, only
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from advisor.detectors import REGISTRY, detect, detector_table
from advisor.models import Run, Series


@pytest.mark.parametrize("shape", ["power", "exp", "fast"])
@pytest.mark.parametrize("noise", [0.02, 0.08, 0.2])
@pytest.mark.parametrize("n", [40, 2000, 50_000])
def test_healthy_curves_raise_nothing_loud(shape, noise, n):
    for seed in range(3):
        run = healthy_run(seed, n, shape, noise)
        assert loud(detect(run)) == [], (shape, noise, n, seed)
        assert not [note for note in run.skipped if "failed" in note]


# ---- robustness ----------------------------------------------------------------------------------------------

ROLES = ["loss", "val_loss", "loss_component", "val_metric", "train_metric", "grad_norm", "lr", "rank", "usage", "reward", "loss_scale", "other", "probe"]
values = st.lists(st.one_of(st.floats(allow_nan=True, allow_infinity=True, width=64), st.floats(-1e6, 1e6)), min_size=0, max_size=80)
probe_names = st.sampled_from(["grad/global_norm", "grad/first_last_ratio", "act/l1/zero_fraction", "act/l1/saturation_fraction",
                               "update/max_ratio", "update/frozen_share", "embeddings/l2norm_std", "embeddings/effective_rank_ratio",
                               "logits/top_class_share", "codes/usage_share", "attention/entropy_ratio", "weight/l1/norm_growth",
                               "time/data_wait_share", "gpu/mem_reserved_gb", "nonfinite/loss", "grad/nonfinite_count"])


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.lists(st.tuples(st.sampled_from(ROLES), values, probe_names), min_size=1, max_size=5),
       clip=st.one_of(st.none(), st.floats(allow_nan=True, allow_infinity=True)))


def test_detectors_never_fail_on_arbitrary_arrays(data, clip):
    run = Run(path="h", format="csv", axis="step", meta={"clip_value": clip} if clip is not None else {})
    for i, (role, vals, pname) in enumerate(data):
        name = pname if role == "probe" else f"{role}_{i}"
        steps = np.cumsum(np.ones(len(vals))) * (i + 1)
        run.series[name] = Series(name, role, steps, np.asarray(vals, dtype=float), higher_is_better=(i % 2 == 0),
                                  component_of=next((n for n in run.series if n.startswith("loss_")), None))
    signals = detect(run)
    assert not [n for n in run.skipped if "failed" in n], run.skipped
    for s in signals:
        assert s.start <= s.end and s.summary and s.query


def test_constant_and_tiny_series_are_quiet():
    flat = np.ones(200)
    run = make_run({"loss": ("loss", np.arange(200), flat), "val_loss": ("val_loss", np.arange(200), flat),
                    "grad_norm": ("grad_norm", np.arange(200), flat), "u": ("usage", np.arange(200), flat, True)})
    signals = detect(run)
    assert loud([s for s in signals if s.kind != "plateau"]) == []
    assert detect(make_run({"loss": ("loss", [0, 1], [1.0, 2.0])})) == []


def test_a_long_noisy_log_is_judged_fast_and_keeps_its_spike():
    n = 300_000
    steps = np.arange(n, dtype=float)
    loss = noisy(0.4 + 2.0 * np.exp(-steps / n / 0.2), 0.05, 3)
    loss[200_000:200_050] *= 6
    run = make_run({"loss": ("loss", steps, loss), "grad_norm": ("grad_norm", steps, noisy(np.ones(n), 0.1, 4))})
    t0 = time.perf_counter()
    signals = detect(run)
    assert time.perf_counter() - t0 < 3
    s = only(signals, "spike", "loss")
    assert 199_000 <= s.start <= 200_100


BRIEF_KINDS = {"nan_inf", "spike", "component_growth", "divergence", "plateau", "oscillation", "overfitting", "level_shift",
               "usage_collapse", "clip_pressure", "grad_spike", "dead_units", "saturation", "vanishing_gradients",
               "exploding_gradients", "nonfinite_gradients", "zero_gradients", "frozen_parameters", "large_updates",
               "weight_growth", "representation_collapse", "low_rank", "correlated_dimensions", "dead_dimensions",
               "class_collapse", "codebook_collapse", "uniform_attention", "gpu_memory_pressure", "data_loading_bottleneck"}


def test_registry_states_thresholds_and_sources():
    table = detector_table()
    assert BRIEF_KINDS <= {row["kind"] for row in table}
    for row in table:
        assert row["threshold"] and row["reference"] and row["function"].startswith("detect_")
    links = Path(__file__).resolve().parents[2] / "advisor" / "links.toml"
    if links.exists():
        import tomllib

        linked = set(tomllib.loads(links.read_text())["links"])
        assert {d.kind for d in REGISTRY} <= linked
