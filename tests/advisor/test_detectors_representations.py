"""Representation detectors (advisor.detectors.representations): collapse, partial collapse, rank curves."""

from __future__ import annotations

import math

import numpy as np
import pytest
from detector_cases import HEALTHY_READINGS, STEPS, T, after, make_run, noisy, of_kind, only, probe_store

from advisor.detectors import detect
from advisor.logs import read_log


def test_rank_that_falls_is_low_rank_and_a_rising_one_is_quiet():
    falling = noisy(np.where(T < 0.4, 30.0, 30 * np.exp(-(T - 0.4) / 0.1) + 3), 0.02)
    s = only(detect(make_run({"rankme": ("rank", STEPS, falling, True)})), "low_rank", "rankme")
    assert s.numbers["final"] < 5
    rising = noisy(5 + 20 * T, 0.05)
    assert detect(make_run({"rankme": ("rank", STEPS, rising, True)})) == []


# ---- partial collapse ---------------------------------------------------------------------------------------


def _partial(cos_end: float, rank_end: float):
    """Embedding readings that drift from healthy (cosine 0.1, rank 40 of 64) to the given end values."""
    def towards(a, b):
        return lambda i, n: a + (b - a) * min(1.0, 2 * i / n)
    return {"embeddings/mean_pairwise_cosine": towards(0.1, cos_end), "embeddings/effective_rank": towards(40, rank_end),
            "embeddings/effective_rank_ratio": lambda i, n: towards(40, rank_end)(i, n) / 64, "embeddings/dim": 64.0,
            "embeddings/l2norm_std": towards(0.11, 0.05), "embeddings/l2norm_std_ref": 0.125}


def test_a_representation_folding_onto_few_directions_is_partial_collapse(tmp_path):
    # SimSiam without its stop-gradient, caught early: cosine 0.79, effective rank 3 of 64 — under the hard
    # collapse limits (cosine 0.9, std 0.2x of 1/sqrt(D)), and the advice is asymmetry, not a VICReg coefficient
    signals = detect(read_log(probe_store(tmp_path / "run", {**HEALTHY_READINGS, **_partial(0.79, 3.0)})))
    s = only(signals, "partial_collapse", "embeddings/mean_pairwise_cosine")
    assert s.severity == "high" and s.numbers["rank_fell"] == 1 and s.numbers["effective_rank"] == pytest.approx(3.0)
    assert not of_kind(signals, "representation_collapse") and not of_kind(signals, "low_rank")


def test_a_healthy_or_a_fully_collapsed_representation_is_not_partial_collapse(tmp_path):
    healthy = detect(read_log(probe_store(tmp_path / "healthy", HEALTHY_READINGS)))
    assert not of_kind(healthy, "partial_collapse")
    full = detect(read_log(probe_store(tmp_path / "full", {**HEALTHY_READINGS, **_partial(0.97, 1.5),
                                                            "embeddings/l2norm_std": after(100, 0.005, 0.11)})))
    assert of_kind(full, "representation_collapse") and not of_kind(full, "partial_collapse")


def test_simsiam_without_stop_gradient_collapses_on_a_real_run(tmp_path):
    from detector_cases import train_simsiam

    signals = detect(read_log(train_simsiam(tmp_path / "run", stop_grad=False, steps=60)))
    found = [s for s in signals if s.kind in ("representation_collapse", "partial_collapse")]
    assert found and all(s.severity in ("medium", "high") for s in found)


@pytest.mark.slow
def test_byol_without_its_predictor_slowly_collapses_and_with_it_stays_quiet(tmp_path):
    # no limit crossed (cosine under 0.9, rank not halved): the cosine creeps up third by third while the
    # spread of the normalised rows shrinks, each beyond its own noise
    from detector_cases import train_byol

    s = only(detect(read_log(train_byol(tmp_path / "bare", predictor=False))), "partial_collapse", "embeddings/mean_pairwise_cosine")
    assert s.severity == "medium" and s.numbers["cosine_trend_t"] >= 2 and s.numbers["spread_trend_t"] <= -2
    assert s.numbers["spread_last_third"] < s.numbers["spread_first_third"] and "spread" in s.summary
    healthy = detect(read_log(train_byol(tmp_path / "byol", predictor=True)))
    assert not [x for x in healthy if x.severity != "low"]


# ---- weight growth that flattens ------------------------------------------------------------------------------


def test_a_weight_norm_that_grew_from_a_small_init_and_levelled_off_is_quiet(tmp_path):
    # a classifier head's norm 1.8 -> 9.9 (5.5x) that has flattened out: not unbounded growth
    flat = {"weight/head/norm_growth": lambda i, n: 1 + 4.5 * (1 - math.exp(-6 * i / n))}
    assert not of_kind(detect(read_log(probe_store(tmp_path / "flat", {**HEALTHY_READINGS, **flat}))), "weight_growth")
    steady = {"weight/head/norm_growth": lambda i, n: 1 + 8 * i / n}
    assert only(detect(read_log(probe_store(tmp_path / "steady", {**HEALTHY_READINGS, **steady}))), "weight_growth").severity == "medium"


def test_a_layer_that_starts_tiny_grows_fast_then_slowly_is_not_high(tmp_path):
    # a positional embedding at std 0.02 reaches the scale of the other layers in its first steps (13x),
    # then keeps creeping up: still growing, but not the unbounded growth of a run without weight decay
    creep = {"weight/pos/norm_growth": lambda i, n: 1 + 12 * min(1.0, 10 * i / n) + 24 * i / n}
    s = only(detect(read_log(probe_store(tmp_path / "creep", {**HEALTHY_READINGS, **creep}))), "weight_growth")
    assert s.severity == "medium" and s.numbers["growth"] >= 20 and s.numbers["second_half_growth"] < 2
    steady = {"weight/pos/norm_growth": lambda i, n: 1 + 40 * (i / n) ** 2}
    assert only(detect(read_log(probe_store(tmp_path / "steady", {**HEALTHY_READINGS, **steady}))), "weight_growth").severity == "high"
