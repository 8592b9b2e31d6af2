"""Loss-curve detectors (advisor.detectors.losses): non-finite values, spikes, blow-ups, divergence, oscillation."""

from __future__ import annotations

import numpy as np
import pytest
from detector_cases import STEPS, T, N, healthy_loss, loud, make_run, noisy, of_kind, only, real

from advisor.detectors import detect


def test_nan_inf_in_a_loss():
    loss = healthy_loss()
    loss[700:] = np.nan
    s = only(detect(make_run({"loss": ("loss", STEPS, loss)})), "nan_inf", "loss")
    assert s.severity == "high" and s.start == 700 and s.numbers["recovered"] == 0 and s.numbers["count"] == 300
    once = healthy_loss()
    once[400] = np.inf
    s = only(detect(make_run({"loss": ("loss", STEPS, once)})), "nan_inf", "loss")
    assert s.severity == "medium" and s.numbers["recovered"] == 1 and s.numbers["inf_count"] == 1


def test_nan_written_for_steps_without_a_value_is_a_low_note():
    val = healthy_loss()
    val[np.arange(N) % 10 != 0] = np.nan  # a custom logger writing NaN where validation did not run
    s = only(detect(make_run({"val_loss": ("val_loss", STEPS, val)})), "nan_inf", "val_loss")
    assert s.severity == "low" and "not computed" in s.summary


def test_rare_inf_grad_norms_are_a_low_note():
    grad = noisy(np.ones(N), 0.1)
    grad[[100, 600]] = np.inf  # AMP's loss scaler probing
    assert only(detect(make_run({"grad_norm": ("grad_norm", STEPS, grad)})), "nan_inf").severity == "low"


def test_spike_returns_to_its_level():
    loss = healthy_loss()
    loss[500] *= 5
    s = only(detect(make_run({"loss": ("loss", STEPS, loss)})), "spike", "loss")
    assert s.start == 500 and s.severity == "high" and s.numbers["ratio"] > 4


def test_spike_in_the_warm_up_is_only_a_note():
    loss = healthy_loss()
    loss[20] *= 6
    s = only(detect(make_run({"loss": ("loss", STEPS, loss)})), "spike", "loss")
    assert s.start == 20 and s.severity == "low"


def test_divergence():
    loss = noisy(np.where(T < 0.5, 2.0 * np.exp(-T / 0.1) + 0.3, 0.3 + 4 * (T - 0.5) ** 2 * 8), 0.03)
    s = only(detect(make_run({"loss": ("loss", STEPS, loss)})), "divergence", "loss")
    assert 420 <= s.start <= 560 and s.end == 999 and s.severity == "high"


def test_oscillation_that_goes_on():
    base = 0.8 + 0.1 * np.exp(-T)
    loss = np.where(np.arange(N) % 40 < 20, base * 0.5, base * 1.6)[::10]
    s = only(detect(make_run({"loss": ("loss", STEPS[::10], loss)})), "oscillation", "loss")
    assert s.severity == "medium" and s.numbers["swings"] >= 10
