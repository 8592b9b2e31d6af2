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


# ---- severity against the series' own noise and scale --------------------------------------------------------


def test_ctc_blowup_that_recovers_is_a_blowup_not_a_spike_or_divergence():
    # wav2vec2 CTC fine-tune: the loss falls 11383 -> 883 (step 2150), climbs to 2397 at step 2600 over ~10 logs,
    # then comes back to ~1060 by step 3050 — too long for a spike, recovered so not divergence.
    signals = real("hf-wav2vec2-stress-ctc.json")
    blow = only(signals, "blowup", "loss")
    assert 2150 <= blow.start <= 2300 and 2700 <= blow.end <= 3050
    assert blow.numbers["peak"] == pytest.approx(2396.6, rel=1e-3) and 2.0 <= blow.numbers["factor"] <= 3.0
    assert blow.severity == "medium"
    assert not of_kind(signals, "divergence", "loss") and not of_kind(signals, "spike", "loss")


def test_a_synthetic_blowup_over_many_points_recovers():
    base = 0.5 + 2.0 * np.exp(-T / 0.15)
    bump = np.where((T > 0.55) & (T < 0.65), 1.0 + 2.0 * np.sin(np.pi * (T - 0.55) / 0.1), 1.0)
    s = only(detect(make_run({"loss": ("loss", STEPS, noisy(base * bump, 0.03))})), "blowup", "loss")
    assert 530 <= s.start <= 600 and 600 <= s.end <= 700 and s.numbers["factor"] >= 2.0


def test_a_surrogate_loss_that_crosses_zero_gets_no_ratio_signals():
    # GRPO: the policy loss sits around 0 (-0.22 .. 0.04) and crosses it; "1014x its running level" meant nothing.
    signals = real("hf-grpo-chaos-economy.json")
    assert not [s for s in signals if s.metric == "loss" and s.kind in ("spike", "divergence", "oscillation", "blowup", "plateau")]


def test_a_term_at_one_percent_of_the_total_spikes_as_a_note():
    # ORPO: sft_loss (~0.001) next to a total loss of ~0.1 triples for one log: invisible in the total.
    signals = real("hf-orpo-chatglm-recsys.json")
    spike = only(signals, "spike", "sft_loss")
    assert spike.severity == "low" and spike.numbers["total_level"] > 20 * spike.numbers["baseline"]


@pytest.mark.parametrize("name", ["keras-mnist-cnn.csv", "hf-whisper-small-mongolian.json", "jsonl-bsmae-pretrain.jsonl",
                                  "keras-brain-tumor-seg.log"])
def test_the_first_points_of_a_falling_loss_are_never_spikes(name):
    # each log starts high and falls fast; the first one or two points used to be called spikes
    from advisor.logs import read_log
    from conftest import shared_path

    run = read_log(shared_path("real-logs", name))
    firsts = {n: float(s.steps[1]) for n, s in run.series.items() if len(s) > 2}
    assert not [s for s in detect(run) if s.kind == "spike" and s.start <= firsts.get(s.metric, -1)]


def test_recurrent_minibatch_excursions_are_notes_but_a_lone_one_is_not():
    rng = np.random.default_rng(5)
    level = 0.05 + 2.0 * np.exp(-T / 0.05)
    # one misclassified sample in a batch of 16 lifts a 0.05 loss by ~0.3, a few dozen times per run
    loss = level * (1 + 0.1 * rng.standard_normal(N)) + np.where(rng.random(N) < 0.03, 0.3, 0.0)
    run = make_run({"loss": ("loss", STEPS, loss)})
    assert loud(detect(run)) == []
    lone = level * (1 + 0.1 * rng.standard_normal(N))
    lone[700] += 2.0  # back to the starting loss for one step
    assert only(detect(make_run({"loss": ("loss", STEPS, lone)})), "spike", "loss").severity in ("medium", "high")


def test_an_amp_loss_scale_is_not_a_loss(tmp_path):
    # AMP's GradScaler halves its scale on overflow and doubles it every 2000 steps: a sawtooth, not a loss
    path = tmp_path / "metrics.csv"
    steps = np.arange(0, 4000, 10)
    scale = 65536.0 * 2.0 ** ((steps // 2000) - np.isin(steps // 10, [57, 140, 260]).cumsum())
    loss = 0.5 + 2 * np.exp(-steps / 800)
    path.write_text("step,loss,loss_scale\n" + "".join(f"{s},{l:.5f},{c:g}\n" for s, l, c in zip(steps, loss, scale)))
    from advisor.logs import read_log

    run = read_log(path)
    assert run.series["loss_scale"].role == "loss_scale"
    assert not [s for s in detect(run) if s.metric == "loss_scale"]
