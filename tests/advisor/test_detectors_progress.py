"""Progress detectors (advisor.detectors.progress): plateaus, plateaus under LR cuts, a loss stuck where it started, overfitting."""

from __future__ import annotations

import numpy as np
import pytest
from detector_cases import STEPS, T, N, healthy_loss, loud, make_run, noisy, of_kind, only, real

from advisor.detectors import detect


def test_plateau_of_a_stuck_loss():
    loss = noisy(np.where(T < 0.15, 2.5 - 8 * T, 1.3), 0.02)
    s = only(detect(make_run({"loss": ("loss", STEPS, loss)})), "plateau", "loss")
    assert 140 <= s.start <= 200 and s.end == 999 and s.severity == "medium"


def test_overfitting_with_train_still_falling():
    train = noisy(0.1 + 2 * np.exp(-T / 0.2), 0.02)
    val_steps = STEPS[::20]
    vt = val_steps / N
    val = noisy(0.6 + 1.5 * np.exp(-vt / 0.15) + 0.8 * np.clip(vt - 0.4, 0, None), 0.01, 2)
    run = make_run({"loss": ("loss", STEPS, train), "val_loss": ("val_loss", val_steps, val)}, epochs_per_step=0.02)
    s = only(detect(run), "overfitting", "val_loss")
    assert 300 <= s.numbers["best_step"] <= 560 and s.numbers["train_change_pct"] < -10
    assert s.numbers["best_epoch"] == pytest.approx(s.numbers["best_step"] * 0.02)
    assert s.numbers["rise_pct"] > 20 and s.severity in ("medium", "high")
