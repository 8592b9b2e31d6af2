"""Probe-reading detectors: the rule table (advisor.detectors.readings) and the checks beside it, on run stores."""

from __future__ import annotations

import pytest
from detector_cases import HEALTHY_READINGS, PROBE_STEPS, _decay, _noisy_reading, after, loud, only, probe_store

from advisor.detectors import detect
from advisor.logs import read_log


def test_healthy_probe_run_is_quiet(tmp_path):
    run = read_log(probe_store(tmp_path / "run", HEALTHY_READINGS))
    assert run.format == "probe"
    assert detect(run) == []


FAULTS = [
    # kind, readings replaced, metric of the signal, earliest start step
    ("dead_units", {"act/encoder.0/zero_fraction": after(100, 0.95, 0.5), "act/encoder.0/dead_unit_share": after(100, 0.8, 0.02)},
     "act/encoder.0/zero_fraction", 100),
    ("saturation", {"act/head.0/saturation_fraction": after(150, 0.7, 0.05)}, "act/head.0/saturation_fraction", 150),
    ("vanishing_gradients", {"grad/first_last_ratio": after(50, 1e-4, 0.8)}, "grad/first_last_ratio", 50),
    ("exploding_gradients", {"grad/first_last_ratio": after(200, 150.0, 0.8)}, "grad/first_last_ratio", 200),
    ("exploding_gradients", {"grad/global_norm": lambda i, n: 1.0 * 1.08 ** i}, "grad/global_norm", 0),
    ("nonfinite_gradients", {"grad/nonfinite_count": after(300, 12.0, 0.0)}, "grad/nonfinite_count", 300),
    ("nan_inf", {"nonfinite/loss": after(300, 1.0, 0.0)}, "nonfinite/loss", 300),
    ("zero_gradients", {"grad/zero_share": after(100, 0.999, 0.02)}, "grad/zero_share", 100),
    ("frozen_parameters", {"update/frozen_share": 0.25, "update/frozen_params": 2.0}, "update/frozen_share", 0),
    ("large_updates", {"update/max_ratio": after(100, 0.4, 3e-3)}, "update/max_ratio", 100),
    ("weight_growth", {"weight/encoder.0/norm_growth": lambda i, n: 1 + 30 * i / n}, "weight/encoder.0/norm_growth", 0),
    ("representation_collapse", {"embeddings/l2norm_std": after(150, 0.005, 0.11), "embeddings/mean_pairwise_cosine": after(150, 0.99, 0.05)},
     "embeddings/l2norm_std", 150),
    ("low_rank", {"embeddings/effective_rank_ratio": 2 / 64, "embeddings/effective_rank": 2.0}, "embeddings/effective_rank_ratio", 0),
    ("correlated_dimensions", {"embeddings/offdiag_cov_energy": 0.95, "embeddings/top1_variance_share": 0.8}, "embeddings/offdiag_cov_energy", 0),
    ("dead_dimensions", {"embeddings/dead_dim_share": after(100, 0.5, 0.0)}, "embeddings/dead_dim_share", 100),
    ("class_collapse", {"logits/top_class_share": after(100, 0.95, 0.15)}, "logits/top_class_share", 100),
    ("overconfidence", {"logits/confidence": 0.99, "logits/accuracy": _noisy_reading(0.6)}, "logits/confidence", 0),
    ("codebook_collapse", {"codes/usage_share": after(100, 0.03, 0.7)}, "codes/usage_share", 100),
    ("uniform_attention", {"attention/entropy_ratio": 0.99}, "attention/entropy_ratio", 0),
    ("gpu_memory_pressure", {"gpu/mem_reserved_gb": 79.0}, "gpu/mem_reserved_gb", 0),
    ("data_loading_bottleneck", {"time/data_wait_share": after(100, 0.55, 0.05), "gpu/utilization": 40.0}, "time/data_wait_share", 100),
    ("usage_collapse", {"codes/usage_share": after(150, 0.2, 0.7)}, "codes/usage_share", 140),
]


@pytest.mark.parametrize("kind, change, metric, start", FAULTS, ids=[f"{f[0]}-{f[2]}" for f in FAULTS])
def test_probe_reading_faults_are_found_in_their_window(tmp_path, kind, change, metric, start):
    run = read_log(probe_store(tmp_path / "run", {**HEALTHY_READINGS, **change}))
    signals = detect(run)
    s = only(signals, kind, metric)
    assert s.severity in ("medium", "high")
    assert start - 1e-9 <= s.start <= max(start, PROBE_STEPS[-1] * 0.05) + 10, (s.start, s.end)
    assert s.end == PROBE_STEPS[-1] or kind == "usage_collapse"
    assert s.numbers and s.summary and s.query
    other_kinds = {x.kind for x in signals if x.severity != "low"} - {kind, "codebook_collapse", "usage_collapse", "overconfidence"}
    related = {"representation_collapse": {"correlated_dimensions", "low_rank"}, "low_rank": {"correlated_dimensions"}}
    assert other_kinds <= related.get(kind, set()), other_kinds


def test_a_symptom_that_went_away_is_not_reported(tmp_path):
    # dead ReLUs for the first fifth of training, revived afterwards: the run's current state is healthy
    change = {"act/encoder.0/zero_fraction": after(80, 0.5, 0.95)}
    assert detect(read_log(probe_store(tmp_path / "run", {**HEALTHY_READINGS, **change}))) == []


def test_early_transients_do_not_alarm(tmp_path):
    # huge updates and a spiky loss at the first readings only (Adam's first steps): nothing loud
    change = {"update/max_ratio": after(15, 3e-3, 2.0), "loss": after(10, _decay(2.3, 0.3, 0.08), 40.0)}
    assert loud(detect(read_log(probe_store(tmp_path / "run", {**HEALTHY_READINGS, **change})))) == []
