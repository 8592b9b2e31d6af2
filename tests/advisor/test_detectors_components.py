"""Loss-component detectors (advisor.detectors.components)."""

from __future__ import annotations

import numpy as np
from detector_cases import STEPS, T, make_run, noisy, of_kind, only

from advisor.detectors import detect


def test_component_growth_while_the_total_falls():
    main = 3.0 * np.exp(-T / 0.3) + 1.0
    term = 0.05 + 0.6 * np.clip(T - 0.2, 0, None)
    run = make_run({"total": ("loss", STEPS, noisy(main + term, 0.01)), "ce": ("loss_component", STEPS, noisy(main, 0.01), False, "total"),
                    "aux": ("loss_component", STEPS, noisy(term, 0.02, 1), False, "total")})
    s = only(detect(run), "component_growth", "aux")
    assert 150 <= s.start <= 260 and s.end >= 900 and s.numbers["main"] == "ce"
    assert s.numbers["growth_ratio"] > 5 and s.numbers["share_end"] > s.numbers["share_start"]
    assert not of_kind(detect(run), "component_growth", "ce")


def test_component_growth_stays_quiet_when_everything_rises_together():
    both = 1.0 + T
    run = make_run({"total": ("loss", STEPS, noisy(2 * both, 0.01)), "a": ("loss_component", STEPS, noisy(both, 0.01), False, "total"),
                    "b": ("loss_component", STEPS, noisy(both, 0.01, 1), False, "total")})
    assert not of_kind(detect(run), "component_growth")
