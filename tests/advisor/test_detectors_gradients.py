"""Gradient detectors (advisor.detectors.gradients and weights): spikes, clipping pressure, gradients summed across steps."""

from __future__ import annotations

import numpy as np
import pytest
from detector_cases import STEPS, N, T, make_run, noisy, of_kind, only, real

from advisor.detectors import detect
from advisor.logs import read_log


def test_grad_spike_burst():
    grad = noisy(np.full(N, 2.0), 0.1)
    grad[600:620] *= 4
    s = only(detect(make_run({"grad_norm": ("grad_norm", STEPS, grad)}, epochs_per_step=0.01)), "grad_spike", "grad_norm")
    assert 598 <= s.start <= 602 and 617 <= s.end <= 621 and s.severity == "medium"
    assert s.start_epoch == pytest.approx(s.start * 0.01)


def test_clip_pressure_needs_the_clip_value():
    grad = noisy(np.full(N, 3.0), 0.2)
    assert not of_kind(detect(make_run({"grad_norm": ("grad_norm", STEPS, grad)})), "clip_pressure")
    s = only(detect(make_run({"grad_norm": ("grad_norm", STEPS, grad)}, meta={"clip_value": 1.0})), "clip_pressure")
    assert s.numbers["share_above"] > 0.95 and s.severity == "medium"


def test_the_largest_of_several_grad_spikes_is_the_one_reported():
    # Financial-news fine-tune: grad norm ~10-14, then 33 (6000), 41 (7500) and 75.9 at step 9000 (5.8x the run's median)
    s = only(real("hf-financial-news-sentiment.json"), "grad_spike", "grad_norm")
    assert s.numbers["peak"] == pytest.approx(75.85, abs=0.01) and s.numbers["peak_step"] == 9000
    assert s.severity == "medium"


@pytest.fixture(scope="module")
def loops(tmp_path_factory):
    """The same MLP on digits, once with optimizer.zero_grad() and once without (real CPU runs)."""
    from detector_cases import mlp, train_classifier

    base = tmp_path_factory.mktemp("zero_grad")
    return {zg: detect(read_log(train_classifier(base / str(zg), mlp([64, 64, 32, 10]), steps=100, opt="sgd", lr=1e-3,
                                                 zero_grad=zg))) for zg in (True, False)}


def test_a_missing_zero_grad_shows_as_gradients_that_accumulate(loops):
    s = only(loops[False], "accumulating_gradients", "grad/global_norm")
    assert s.severity in ("medium", "high") and s.numbers["growth"] >= 10
    assert 0.4 <= s.numbers["power_exponent"] <= 2.5 and s.numbers["trend_rho"] >= 0.97
    assert "zero_grad" in s.summary
    assert not of_kind(loops[True], "accumulating_gradients") and not of_kind(loops[True], "exploding_gradients")


def test_gradient_norms_that_grow_exponentially_are_exploding_not_accumulating():
    grad = 0.5 * 1.01 ** STEPS * (1 + 0.02 * np.random.default_rng(1).standard_normal(N))
    loss = 2.0 + 0.0 * T
    signals = detect(make_run({"loss": ("loss", STEPS, noisy(loss, 0.02)), "grad_norm": ("grad_norm", STEPS, grad)}))
    assert not of_kind(signals, "accumulating_gradients")
