"""Real public logs: what an experienced practitioner sees, and what the detectors say."""

from __future__ import annotations

import pytest
from detector_cases import loud, of_kind, only, real


def test_hf_en_te_translation_is_healthy():
    # Train loss 4.36 -> 0.10 and eval loss 2.29 -> 0.151, both falling every time they are logged; the
    # grad norm falls 17 -> 0.5 as the linear schedule takes the LR to zero; the flat last 150 steps are
    # the LR reaching zero. A healthy fine-tune: nothing to flag.
    assert loud(real("hf-en-te-translation.json")) == []


def test_hf_whisper_mongolian_is_healthy():
    # Train loss 1.92 -> 0.012, eval loss 0.319 -> 0.019 falling at every evaluation, best checkpoint is the
    # last evaluation (3200); grad norm ~0.2-1.0 and calm. Healthy; the first logged loss is just high.
    signals = real("hf-whisper-small-mongolian.json")
    assert loud(signals) == []
    assert not of_kind(signals, "overfitting") and not of_kind(signals, "plateau", "eval_loss")


def test_keras_mnist_is_healthy():
    # 99.65% val accuracy; val loss 0.05 -> 0.009 after a first-epoch transient (3.64 at epoch 0, before
    # BatchNorm statistics settle); LR halves twice (ReduceLROnPlateau) and each drop helps. Nothing to flag.
    signals = real("keras-mnist-cnn.csv")
    assert loud(signals) == []
    assert not of_kind(signals, "overfitting") and not of_kind(signals, "plateau")


def test_hf_financial_sentiment_overfits_from_epoch_3():
    # Eval loss is best at epoch 3 (1.326) and ends 12% worse (1.486) while the train loss keeps falling
    # (1.50 -> 1.16): overfitting in the loss. Macro-F1 still creeps up (best checkpoint by F1 at step 8280,
    # epoch 8) but stays poor (~0.25). The grad norm gets spikier late (41 at step 7500, 76 at 9000 vs ~10-14).
    signals = real("hf-financial-news-sentiment.json")
    over = only(signals, "overfitting", "eval_loss")
    assert over.numbers["best_epoch"] == 3 and over.numbers["best_step"] == 3105
    assert over.numbers["rise_pct"] == pytest.approx(12.0, abs=0.5) and over.numbers["train_change_pct"] < 0
    assert over.numbers["metric"] == "eval_macro_f1" and over.numbers["trainer_best_step"] == 8280
    assert of_kind(signals, "grad_spike", "grad_norm")


def test_hf_whisper_hindi_eval_loss_overfits_while_wer_improves():
    # The classic Whisper fine-tune: train loss -> 0.0002 (memorised), eval loss best at step 1000 (0.307)
    # and 52% worse by step 5000, while WER still improves slightly to 32.0 at step 4000 (the best
    # checkpoint). Overfitting in the loss, softened by the metric. The train loss alternates high/low at
    # each log in epochs 3-4 (0.03 <-> 0.06): odd but harmless, at most a low note.
    signals = real("hf-whisper-small-hi.json")
    over = only(signals, "overfitting", "eval_loss")
    assert over.numbers["best_step"] == 1000 and over.numbers["metric_best_step"] == 4000
    assert over.severity == "medium"
    assert all(s.severity == "low" for s in signals if s.metric == "loss")


def test_hf_whisper_braj_diverges():
    # Learning rate 1.5e-3 -> 3e-3 (about 100x the usual Whisper fine-tuning LR): the train loss rises from
    # 1.24 to 2.16 as the LR warms up; the eval loss is best at epoch 1 (2.55) and never gets back, ending
    # 34% worse; WER stays at 90-97%. The run diverged: the best checkpoint is the first evaluations.
    signals = real("hf-whisper-small-braj.json")
    val = only(signals, "divergence", "eval_loss")
    assert val.numbers["best_epoch"] == 1 and val.numbers["train_change_pct"] > 10 and val.severity == "high"
    train = only(signals, "divergence", "loss")
    assert train.numbers["best_value"] == pytest.approx(1.2366) and train.severity in ("medium", "high")
    assert of_kind(signals, "plateau", "eval_wer")


def test_keras_tomato_leaf_overfits_after_epoch_18():
    # Train loss falls steadily (1.84 -> 0.05-0.09); val loss bottoms at 0.291 at epoch 18 and then wanders
    # up to 0.42-0.46 while val accuracy hovers at 0.88-0.92: overfitting, early stopping belongs at epoch 18.
    over = only(real("keras-tomato-leaf-cnn.csv"), "overfitting", "val_loss")
    assert over.numbers["best_epoch"] == 18 and over.numbers["rise_pct"] > 30
    assert over.severity in ("medium", "high")


def test_keras_fer_resnet50_spikes_early_then_overfits_mildly():
    # A one-epoch val loss spike at epoch 1 (7.4 vs ~1.4: an early transient of fine-tuning a BatchNorm
    # network) — worth a note, not an alarm. Val loss is best at epoch 10 (1.024), 5-10% worse in the last
    # epochs while train loss keeps falling and val accuracy sits at ~0.60: mild overfitting from epoch 10.
    signals = real("keras-fer-resnet50.log")
    spike = only(signals, "spike", "val_loss")
    assert spike.start == 1 and spike.severity == "low"
    assert only(signals, "overfitting", "val_loss").numbers["best_epoch"] == 10


def test_keras_brain_tumor_segmentation_is_stuck_on_background():
    # Loss falls 1.39 -> 0.06 in three epochs and is flat after; val accuracy is frozen at 0.98661 and val
    # mean IoU at 0.37547 from epoch 2 on — the share of background pixels: the model predicts background
    # only. The LR is cut 1000x without effect. A one-epoch glitch in the train precision/sensitivity/
    # specificity at epoch 25 (0.98 -> 0.50 -> 0.98) is a metric artefact.
    signals = real("keras-brain-tumor-seg.log")
    frozen = only(signals, "plateau", "val_accuracy")
    assert frozen.severity == "medium" and frozen.start_epoch <= 3 and frozen.end_epoch == 34
    assert only(signals, "plateau", "val_mean_io_u").severity == "medium"
    glitch = only(signals, "level_shift", "precision")
    assert glitch.start == 25 and glitch.severity == "low" and glitch.numbers["persistent"] == 0
    assert not of_kind(signals, "overfitting") and not of_kind(signals, "divergence")


def test_lightning_chem_rings_then_settles():
    # Valid MSE falls 300k -> 3.8k by epoch 17, then rings (43.8k, 3.8k, 14.1k, 3.6k, 6.3k...) — a damped
    # oscillation of an LR/momentum at the edge of stability — settles by epoch ~55 and still improves at
    # the end (2,860). Worth a low note; no overfitting, no divergence.
    signals = real("lightning-chem-mse.csv")
    osc = only(signals, "oscillation", "Valid MSE")
    assert 15 <= osc.start <= 20 and 40 <= osc.end <= 60 and osc.severity == "low"
    assert loud(signals) == []


@pytest.mark.parametrize("name", ["hf-eagle-draft-star.json", "hf-t5-summarization.json"])
def test_lone_gradient_spikes_the_loss_never_felt_are_notes(name):
    # EAGLE draft model (grad norm 82 at step 22360, 17x its median) and T5 (35.6 at step 190000): one log
    # each, the loss at those steps within its usual band — healthy long runs
    signals = real(name)
    spikes = of_kind(signals, "grad_spike", "grad_norm")
    assert spikes and all(s.severity == "low" and s.numbers["points"] == 1 for s in spikes)
    assert loud(signals) == []


def test_one_inf_gradient_norm_in_an_amp_run_is_a_note():
    # LoRA fine-tune in fp16: one Inf grad norm at step 33 (the GradScaler skips that step), finite after
    signals = real("hf-llama2-lora-hrchatbot.json")
    assert only(signals, "nan_inf", "grad_norm").severity == "low"
    assert loud(signals) == []
