"""Representation detectors (advisor.detectors.representations): collapse, partial collapse, rank curves."""

from __future__ import annotations

import numpy as np
import pytest
from detector_cases import STEPS, T, N, healthy_loss, loud, make_run, noisy, of_kind, only, real

from advisor.detectors import detect


def test_rank_that_falls_is_low_rank_and_a_rising_one_is_quiet():
    falling = noisy(np.where(T < 0.4, 30.0, 30 * np.exp(-(T - 0.4) / 0.1) + 3), 0.02)
    s = only(detect(make_run({"rankme": ("rank", STEPS, falling, True)})), "low_rank", "rankme")
    assert s.numbers["final"] < 5
    rising = noisy(5 + 20 * T, 0.05)
    assert detect(make_run({"rankme": ("rank", STEPS, rising, True)})) == []
