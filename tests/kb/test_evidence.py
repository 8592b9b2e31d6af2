"""The query evidence parser: numbers kept whole, named, and judged by the shared thresholds."""

from __future__ import annotations

import math

from kb import evidence
from kb.evidence import read_numbers, signal_words


def reading(text: str, name: str):
    return next(r for r in read_numbers(text) if r.name == name)


def test_numbers_stay_whole():
    assert reading("lr=7.5e-03 loss=inf", "lr").values == [0.0075]
    assert math.isinf(reading("lr=7.5e-03 loss=inf", "loss").values[0])
    assert reading("it 700 | grad_norm: 2.7e+05 | loss: 6.02", "grad_norm").values == [270000.0]
    acc = reading("val acc 35%", "val acc")
    assert acc.values == [0.35] and acc.percent
    rng = reading("accuracy 2-8% on the test set", "accuracy")
    assert rng.is_range and rng.values == [0.02, 0.08]
    chain = reading("GradScaler scale 131072 -> 65536 -> 32768", "gradscaler scale")
    assert chain.values == [131072.0, 65536.0, 32768.0] and chain.arrow


def test_repeated_keys_make_one_series():
    assert reading("epoch 7 loss 3.217 | epoch 8 loss 3.216 | epoch 9 loss 3.218", "loss").values == [3.217, 3.216, 3.218]
    assert reading("loss: 0.87 (ep4) 0.95 (ep8) 1.16 (ep12)", "loss").values == [0.87, 0.95, 1.16]


def test_log_lines_carry_their_signal():
    assert "loss becomes NaN Inf" in signal_words("Epoch 11:  67%| 842/1250 [05:40<02:44, loss=nan]")
    assert any("exploding" in w for w in signal_words("it 950 | grad_norm: 6.1e+03 | loss: 7.44"))
    assert any("near zero" in w for w in signal_words("nt_xent_loss: 0.0007 by it 2400"))
    assert any("all zero" in w for w in signal_words("grad_norm: 0.0 since it 80"))
    assert any("vanishing" in w for w in signal_words("grad_norm: 3e-9 at step 300"))
    assert any("cosine" in w for w in signal_words("train/pairwise_cos 0.991"))
    assert any("codebook" in w for w in signal_words("train/codebook_usage=0.09"))
    assert any("slower" in w for w in signal_words("time/epoch_s: 33.0 ... 47.5 ... 71.8"))
    assert any("overfitting" in w for w in signal_words("train_loss=0.08 val_loss=1.43 (epoch 65)"))


def test_tracebacks_and_framework_messages():
    oom = "RuntimeError: CUDA out of memory. Tried to allocate 512.00 MiB (GPU 3; 79.1 GiB total)"
    assert any("out of memory" in w for w in signal_words(oom))
    assert any("AMP" in w for w in signal_words("[deepspeed] OVERFLOW! Rank 0 Skipping step. Attempted loss scale: 4096, reducing to 2048"))
    detached = "RuntimeError: tensor 1 does not require grad and does not have a grad_fn"
    assert any("detached" in w for w in signal_words(detached))
    assert any("detached" in w for w in signal_words("the criterion converts preds with .numpy() before the sum"))


def test_one_step_of_reasoning_on_numbers():
    # chance-level accuracy needs the class count; the loss of uniform predictions is ln(C)
    assert any("chance" in w for w in signal_words("val acc 0.101 on CIFAR-10 after 20 epochs"))
    assert not any("chance" in w for w in signal_words("val acc 0.62 on CIFAR-10 after 20 epochs"))
    assert any("not learning" in w for w in signal_words("xent frozen on 2.3026, 10 classes"))
    assert any("not learning" in w for w in signal_words("loss 4.6052, 100 classes"))
    # per-dimension std against 1/sqrt(D)
    assert any("collapse" in w for w in signal_words("z_std 0.0003 with D=1024"))
    assert not any("collapse" in w for w in signal_words("z_std 0.03 with D=1024"))  # ~1/sqrt(1024): healthy


def test_numbers_are_read_at_the_precision_written():
    # a rounded loss is compared with ln(C) rounded the same way; a loss near but not at ln(C) is not
    assert reading("loss hovering near 4.6", "loss hovering near").decimals == [1]
    assert any("not learning" in w for w in signal_words("the loss sits on 2.3 for hours"))
    assert any("not learning" in w for w in signal_words("train loss 0.69 since the start"))
    assert not any("not learning" in w for w in signal_words("train loss 2.35 since the start"))
    assert not any("not learning" in w for w in signal_words("train loss 2.3371 since the start"))  # 4 decimals: exact match needed
    assert evidence.is_uniform_prediction_loss(4.6, decimals=1) and not evidence.is_uniform_prediction_loss(4.6, decimals=4)


def test_counts_and_from_to_phrases():
    # "after 45 epochs" says when, not a loss value: no rising trend is read into it
    assert reading("loss 0.41 after 45 epochs", "loss").values == [0.41]
    assert signal_words("loss 0.41 after 45 epochs") == []
    # "from a ... to b" is one series even with words between its ends
    assert reading("epoch duration climbed from 52 s early on to 130 s", "duration climbed").values == [52.0, 130.0]
    assert any("slower" in w for w in signal_words("epoch duration climbed from 52 s early on to 130 s"))
    assert reading("loss went from 1.2 in the first epoch to 2.5", "loss went").values == [1.2, 2.5]


def test_an_unnamed_number_measures_what_the_sentence_named():
    # "then it hovers around 0.69": the value is the loss the sentence is about (ln 2: nothing learned)
    assert reading("train loss fell quickly, then it hovers around 0.69", "train loss then it hovers").values == [0.69]
    assert any("not learning" in w for w in signal_words("train loss fell quickly, then it hovers around 0.69"))
    # a new sentence names its own metric
    assert not any("not learning" in w for w in signal_words("the loss fell quickly. I use 0.69 as dropout"))


def test_thresholds_are_pure_functions():
    assert evidence.is_chance_accuracy(0.1, 10) and not evidence.is_chance_accuracy(0.3, 10)
    assert evidence.is_uniform_prediction_loss(math.log(10), 10) and not evidence.is_uniform_prediction_loss(1.0, 10)
    assert evidence.is_collapsed_std(1e-4, 256) and not evidence.is_collapsed_std(1 / 16, 256)
    assert evidence.is_exploding_grad(math.inf) and evidence.is_exploding_grad(1e3) and not evidence.is_exploding_grad(5.0)
    assert evidence.is_scale_backing_off([8192, 4096, 2048]) and not evidence.is_scale_backing_off([1024, 2048])


def test_expansion_misfires_are_gone():
    # a size change is not a metric trend, an epoch range is not a trend, a duration is not a slowdown
    assert signal_words("went from 512 -> 1024 units in the hidden layer") == []
    assert signal_words("between epochs 30-45 top-1 is fine") == []
    assert signal_words("a single epoch needs 5 hours for 80k clips") == []
    assert signal_words("I trained for 40 min then 90 min on the second machine") == []
    # scientific notation stays one number
    assert reading("learning rate 3e-4", "learning rate").values == [3e-4]


def test_plain_sentences_carry_no_evidence():
    assert signal_words("the embeddings look fine to me") == []
