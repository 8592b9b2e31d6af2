"""Gradient detectors (advisor.detectors.gradients and weights): spikes, clipping pressure, gradients summed across steps."""

from __future__ import annotations

import numpy as np
import pytest
from detector_cases import STEPS, T, N, healthy_loss, loud, make_run, noisy, of_kind, only, real

from advisor.detectors import detect


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
