"""Codebook and discontinuity detectors (advisor.detectors.codebook)."""

from __future__ import annotations

import numpy as np
from detector_cases import STEPS, T, make_run, noisy, only

from advisor.detectors import detect


def test_level_shift_that_persists():
    usage = noisy(np.where(T < 0.6, 0.6, 0.2), 0.03)
    s = only(detect(make_run({"vq/usage": ("usage", STEPS[::10], usage[::10], True)})), "level_shift")
    assert 590 <= s.start <= 610 and s.numbers["persistent"] == 1 and s.severity == "medium"


def test_usage_collapse():
    usage = noisy(np.where(T < 0.3, 0.8, 0.8 * np.exp(-(T - 0.3) / 0.05)) + 0.05, 0.03)
    s = only(detect(make_run({"codebook_usage": ("usage", STEPS, usage, True)})), "usage_collapse")
    assert 250 <= s.numbers["peak_step"] <= 320 and s.end == 999 and s.severity == "high"
