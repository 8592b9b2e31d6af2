"""Progress detectors (advisor.detectors.progress): plateaus, plateaus under LR cuts, a loss stuck where it started, overfitting."""

from __future__ import annotations

import math

import numpy as np
import pytest
from detector_cases import STEPS, N, T, make_run, noisy, of_kind, only, real

from advisor.detectors import detect
from advisor.logs import read_log


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


# ---- plateaus under learning-rate cuts, and a loss that never leaves where it started ----------------------


@pytest.fixture(scope="module")
def cpu_runs(tmp_path_factory):
    """Real CPU runs of one MLP on digits: the LR cut 1000x at step 15 (a scheduler bug), and labels the
    inputs cannot predict (fresh random labels every batch)."""
    from detector_cases import mlp, train_classifier

    base = tmp_path_factory.mktemp("progress")
    return {
        "lr_cut": detect(read_log(train_classifier(base / "lr_cut", mlp([64, 64, 32, 10]), steps=100, lr=1e-3,
                                                   lr_at=lambda step: 1.0 if step < 15 else 1e-3))),
        "random_labels": detect(read_log(train_classifier(base / "random", mlp([64, 64, 32, 10]), steps=100, random_labels=True))),
    }


def test_an_lr_cut_that_does_not_help_is_found(cpu_runs):
    s = only(cpu_runs["lr_cut"], "lr_decay_plateau", "loss")
    assert s.severity == "medium" and s.numbers["first_cut_step"] == 15 and s.numbers["lr_cut"] == pytest.approx(1000, rel=1e-6)
    assert "does not help" in s.summary


def test_labels_the_inputs_cannot_predict_keep_the_loss_at_chance(cpu_runs):
    s = only(cpu_runs["random_labels"], "high_plateau", "loss")
    assert s.severity == "medium" and s.numbers["near_chance"] == 1
    assert s.numbers["chance_loss"] == pytest.approx(math.log(10), rel=1e-5)


def test_lr_cuts_on_a_converged_loss_are_a_note():
    # Brain-tumour segmentation: loss 1.39 -> 0.06 in four epochs, then ReduceLROnPlateau cuts the LR
    # 1e-3 -> 2e-4 -> 4e-5 -> 1e-5 -> 0 and the loss does not move: worth a note, not an alarm
    s = only(real("keras-brain-tumor-seg.log"), "lr_decay_plateau", "loss")
    assert s.severity == "low" and s.numbers["first_cut_step"] == 9 and s.numbers["lr_cut"] >= 100


def test_a_smooth_decay_to_zero_is_not_a_cut_and_a_fine_tune_that_barely_moves_is_no_alarm():
    # T5 summarisation fine-tune: linear LR decay to ~0 over 215k steps, loss 1.89 -> 1.77 (a pretrained model)
    signals = real("hf-t5-summarization.json")
    assert not of_kind(signals, "lr_decay_plateau")
    assert all(s.severity == "low" for s in of_kind(signals, "high_plateau"))


def test_a_step_cut_that_helps_is_quiet():
    lr = np.where(T < 0.5, 1e-2, 1e-3)
    loss = noisy(np.where(T < 0.5, 1.0 + np.exp(-T / 0.1), 1.0 + np.exp(-5) - 0.5 * (1 - np.exp(-(T - 0.5) / 0.05))), 0.01)
    signals = detect(make_run({"loss": ("loss", STEPS, loss), "lr": ("lr", STEPS, lr)}))
    assert not of_kind(signals, "lr_decay_plateau")
