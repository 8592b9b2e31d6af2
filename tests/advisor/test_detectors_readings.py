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
    ("correlated_dimensions", {"embeddings/offdiag_cov_energy": 0.95, "embeddings/top1_variance_share": 0.8,
                               "embeddings/effective_rank": lambda i, n: 40 - 30 * i / n, "embeddings/effective_rank_ratio": lambda i, n: (40 - 30 * i / n) / 64},
     "embeddings/offdiag_cov_energy", 0),
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


def test_correlated_dimensions_while_the_rank_holds_are_a_note(tmp_path):
    # one dominant, correlated direction while the effective rank keeps rising: how a healthy SSL
    # representation learns its directions one after another, not a narrowing representation
    change = {"embeddings/offdiag_cov_energy": 0.95, "embeddings/top1_variance_share": 0.8}
    s = only(detect(read_log(probe_store(tmp_path / "run", {**HEALTHY_READINGS, **change}))), "correlated_dimensions", "embeddings/offdiag_cov_energy")
    assert s.severity == "low" and "rank holds" in s.summary


def test_a_symptom_that_went_away_is_not_reported(tmp_path):
    # dead ReLUs for the first fifth of training, revived afterwards: the run's current state is healthy
    change = {"act/encoder.0/zero_fraction": after(80, 0.5, 0.95)}
    assert detect(read_log(probe_store(tmp_path / "run", {**HEALTHY_READINGS, **change}))) == []


def _flickering(high: float, low: float):
    """From two thirds of the run on, `high` for four readings in six, lapsing twice just before the last
    reading: the symptom passes the last-third share, but its latest episode is that last reading alone."""
    def fn(i, n):
        if i < 2 * n // 3:
            return low
        return low if (n - 1 - i) % 6 in (1, 2) else high
    return fn


@pytest.mark.parametrize("kind, reading", [("class_collapse", "logits/top_class_share"), ("dead_units", "act/encoder.0/zero_fraction")])
def test_a_symptom_shown_by_its_last_reading_alone_is_low(tmp_path, kind, reading):
    # it came and went over the last third: reported, but one reading is not a sustained state
    run = read_log(probe_store(tmp_path / "run", {**HEALTHY_READINGS, reading: _flickering(0.97, 0.15 if kind == "class_collapse" else 0.5)}))
    signals = detect(run)
    s = only(signals, kind, reading)
    assert s.numbers["readings"] == 1 and s.numbers["share_of_last_third"] >= 0.6
    assert s.severity == "low"
    assert loud(signals) == []


def test_early_transients_do_not_alarm(tmp_path):
    # huge updates and a spiky loss at the first readings only (Adam's first steps): nothing loud
    change = {"update/max_ratio": after(15, 3e-3, 2.0), "loss": after(10, _decay(2.3, 0.3, 0.08), 40.0)}
    assert loud(detect(read_log(probe_store(tmp_path / "run", {**HEALTHY_READINGS, **change})))) == []


# ---- the rule table ------------------------------------------------------------------------------------------


def test_every_rule_is_a_registry_row_with_its_limit_and_source():
    from advisor.detectors import REGISTRY
    from advisor.detectors.readings import RULES

    rows = {d.kind: d for d in REGISTRY if d.fn.__module__ == "advisor.detectors.readings"}
    for rule in RULES:
        row = rows[rule.kind]
        assert rule.reading in row.threshold and f"{rule.limit:g}" in row.threshold
        assert rule.reference and rule.reference.split(" (")[0] in row.reference
        assert row.fn.__name__ == f"detect_{rule.kind}"


# ---- activation-aware dead units ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def negative_bias_runs(tmp_path_factory):
    """Real CPU runs: an MLP whose hidden pre-activations start at -3 (biases), with ReLU and with GELU."""
    from detector_cases import mlp, train_classifier
    from torch import nn

    base = tmp_path_factory.mktemp("acts")
    return {name: detect(read_log(train_classifier(base / name, mlp([64, 64, 32, 10], act=act, bias=-3.0), steps=60)))
            for name, act in (("relu", nn.ReLU), ("gelu", nn.GELU))}


def test_relu_outputs_at_zero_are_dead_units_and_gelu_outputs_are_not(negative_bias_runs):
    relu = [s for s in negative_bias_runs["relu"] if s.kind == "dead_units"]
    assert relu and all(s.severity == "high" for s in relu)
    assert not [s for s in negative_bias_runs["gelu"] if s.kind == "dead_units"]


def test_zero_fractions_of_a_non_relu_layer_in_an_older_store_are_not_dead_units(tmp_path):
    # stores written before the probe knew activation kinds counted GELU outputs <= 0 as inactive
    change = {"act/mlp.act/zero_fraction": 0.95, "act/mlp.act/dead_unit_share": 0.0,
              "act/block.gelu/zero_fraction": 0.95, "act/encoder.0/zero_fraction": after(100, 0.95, 0.5)}
    signals = detect(read_log(probe_store(tmp_path / "run", {**HEALTHY_READINGS, **change},
                                          meta={"activation_kinds": {"mlp.act": "gelu", "encoder.0": "relu"}})))
    dead = {s.numbers["layer"] for s in signals if s.kind == "dead_units"}
    assert dead == {"encoder.0"}


# ---- causal-mask-aware attention entropy ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def attention_runs(tmp_path_factory):
    from detector_cases import train_causal_attention

    base = tmp_path_factory.mktemp("attention")
    return {u: detect(read_log(train_causal_attention(base / str(u), uniform=u))) for u in (True, False)}


def test_exactly_uniform_causal_attention_is_uniform_attention(attention_runs):
    # each position weighs every key it may see alike: entropy at 100% of its causal maximum (it read 0.73
    # when divided by log L over all keys)
    s = only(attention_runs[True], "uniform_attention", "attention/entropy_ratio")
    assert s.numbers["median"] >= 0.99
    assert not [x for x in attention_runs[False] if x.kind == "uniform_attention"]


def test_sparse_relu_outputs_with_every_unit_alive_are_a_note(tmp_path):
    # 75% of a ReLU layer's outputs at zero but no unit dead on a whole batch: sparse, not dying
    sparse = {"act/encoder.0/zero_fraction": after(100, 0.75, 0.5), "act/encoder.0/dead_unit_share": 0.0}
    s = only(detect(read_log(probe_store(tmp_path / "sparse", {**HEALTHY_READINGS, **sparse}))), "dead_units")
    assert s.severity == "low"
    dying = {"act/encoder.0/zero_fraction": after(100, 0.75, 0.5), "act/encoder.0/dead_unit_share": after(100, 0.3, 0.02)}
    assert only(detect(read_log(probe_store(tmp_path / "dying", {**HEALTHY_READINGS, **dying}))), "dead_units").severity == "medium"


def test_gradients_of_parameters_outside_the_optimizer_are_explained_by_frozen_parameters(tmp_path):
    # a first layer left out of the optimizer: optimizer.zero_grad() never clears its .grad, so the ratio of
    # first- to last-layer gradient norms climbs past AUTOTRAINER's 70 — a consequence, not a second fault
    change = {"update/frozen_share": 0.3, "update/frozen_params": 2.0, "grad/first_last_ratio": after(150, 120.0, 0.8)}
    signals = detect(read_log(probe_store(tmp_path / "run", {**HEALTHY_READINGS, **change})))
    assert only(signals, "frozen_parameters").severity == "medium"
    explode = only(signals, "exploding_gradients", "grad/first_last_ratio")
    assert explode.severity == "low" and "frozen_parameters" in explode.summary
