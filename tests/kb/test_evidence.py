"""The query evidence parser: numbers kept whole, named, and judged by the shared thresholds."""

from __future__ import annotations

import math

from kb import evidence
from kb.evidence import read_numbers, signal_words


def reading(text: str, name: str):
    return next(r for r in read_numbers(text) if r.name == name)


def test_numbers_stay_whole():
    assert reading("lr=3.0e-02 loss=inf", "lr").values == [0.03]
    assert math.isinf(reading("lr=3.0e-02 loss=inf", "loss").values[0])
    assert reading("step 1200 | grad_norm: 3.4e+04 | loss: 8.91", "grad_norm").values == [34000.0]
    acc = reading("val acc 35%", "val acc")
    assert acc.values == [0.35] and acc.percent
    rng = reading("accuracy 2-8% on the test set", "accuracy")
    assert rng.is_range and rng.values == [0.02, 0.08]
    chain = reading("GradScaler scale 65536 -> 32768 -> 16384", "gradscaler scale")
    assert chain.values == [65536.0, 32768.0, 16384.0] and chain.arrow


def test_repeated_keys_make_one_series():
    assert reading("epoch 2 loss 4.1021 | epoch 3 loss 4.1019 | epoch 4 loss 4.1020", "loss").values == [4.1021, 4.1019, 4.102]
    assert reading("loss: 1.21 (ep5) 1.34 (ep10) 1.52 (ep15)", "loss").values == [1.21, 1.34, 1.52]


def test_log_lines_carry_their_signal():
    assert "loss becomes NaN Inf" in signal_words("Epoch 3:  42%| 1310/3125 [02:11<03:02, loss=nan]")
    assert any("exploding" in w for w in signal_words("step 1200 | grad_norm: 3.4e+04 | loss: 8.91"))
    assert any("near zero" in w for w in signal_words("nt_xent_loss: 0.0003 at step 500"))
    assert any("all zero" in w for w in signal_words("grad_norm: 0.0 at step 300"))
    assert any("vanishing" in w for w in signal_words("grad_norm: 3e-9 at step 300"))
    assert any("cosine" in w for w in signal_words("train/pairwise_cos 0.9987"))
    assert any("codebook" in w for w in signal_words("train/codebook_usage=0.04"))
    assert any("slower" in w for w in signal_words("time/epoch_s: 41.2 ... 58.9 ... 97.3"))
    assert any("overfitting" in w for w in signal_words("train_loss=0.21 val_loss=1.87 (epoch 40)"))


def test_tracebacks_and_framework_messages():
    oom = "torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB (GPU 0; 23.65 GiB total capacity)"
    assert any("out of memory" in w for w in signal_words(oom))
    assert any("AMP" in w for w in signal_words("Gradient overflow. Skipping step, loss scaler 0 reducing loss scale to 1024"))
    detached = "RuntimeError: element 0 of tensors does not require grad and does not have a grad_fn"
    assert any("detached" in w for w in signal_words(detached))
    assert any("detached" in w for w in signal_words("I call .numpy() on the logits inside my loss"))


def test_one_step_of_reasoning_on_numbers():
    # chance-level accuracy needs the class count; the loss of uniform predictions is ln(C)
    assert any("chance" in w for w in signal_words("val acc 0.101 on CIFAR-10 after 20 epochs"))
    assert not any("chance" in w for w in signal_words("val acc 0.62 on CIFAR-10 after 20 epochs"))
    assert any("not learning" in w for w in signal_words("cross-entropy stuck at 2.3026 with 10 classes"))
    assert any("not learning" in w for w in signal_words("loss 4.6052, 100 classes"))
    # per-dimension std against 1/sqrt(D)
    assert any("collapse" in w for w in signal_words("z_std 0.0008 with D=2048"))
    assert not any("collapse" in w for w in signal_words("z_std 0.021 with D=2048"))  # ~1/sqrt(2048): healthy


def test_thresholds_are_pure_functions():
    assert evidence.is_chance_accuracy(0.1, 10) and not evidence.is_chance_accuracy(0.3, 10)
    assert evidence.is_uniform_prediction_loss(math.log(10), 10) and not evidence.is_uniform_prediction_loss(1.0, 10)
    assert evidence.is_collapsed_std(1e-4, 256) and not evidence.is_collapsed_std(1 / 16, 256)
    assert evidence.is_exploding_grad(math.inf) and evidence.is_exploding_grad(1e3) and not evidence.is_exploding_grad(5.0)
    assert evidence.is_scale_backing_off([65536, 32768, 16384]) and not evidence.is_scale_backing_off([1024, 2048])


def test_expansion_misfires_are_gone():
    # a size change is not a metric trend, an epoch range is not a trend, a duration is not a slowdown
    assert signal_words("went from 512 -> 1024 units in the hidden layer") == []
    assert signal_words("between epochs 10-20 the accuracy is fine") == []
    assert signal_words("one epoch takes 3 hours on 50k images") == []
    assert signal_words("I trained for 40 min then 90 min on the second machine") == []
    # scientific notation stays one number
    assert reading("learning rate 3e-4", "learning rate").values == [3e-4]


def test_plain_sentences_carry_no_evidence():
    assert signal_words("the embeddings look fine to me") == []
