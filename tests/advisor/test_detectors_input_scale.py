"""input_scale (advisor.detectors.activations): a first layer far from unit scale before any update, on real CPU runs."""

from __future__ import annotations

import pytest
from detector_cases import HEALTHY_READINGS, mlp, of_kind, only, probe_store, small_cnn, train_classifier

from advisor.detectors import detect
from advisor.logs import read_log


@pytest.mark.slow
@pytest.mark.parametrize("model, opt, lr", [(lambda: mlp([64, 64, 10]), "sgd", 0.01), (small_cnn, "adam", 2e-3)], ids=["mlp-sgd", "cnn-adam"])
def test_raw_0_255_pixels_are_found_at_the_first_step_and_normalised_ones_are_not(tmp_path, model, opt, lr):
    raw = detect(read_log(train_classifier(tmp_path / "raw", model(), input_scale=255.0, opt=opt, lr=lr, steps=30)))
    s = only(raw, "input_scale")
    assert s.severity == "high" and s.start == 0 and s.numbers["std_at_init"] >= 10
    assert s.numbers["grad_norm_at_init"] is not None and "not normalised" in s.summary
    scaled = detect(read_log(train_classifier(tmp_path / "scaled", model(), opt=opt, lr=lr, steps=30)))
    assert not of_kind(scaled, "input_scale")


def test_a_large_first_layer_read_after_the_start_is_not_an_input_scale(tmp_path):
    # a probe attached to a resumed run reads trained weights: their scale says nothing about the inputs
    readings = {**HEALTHY_READINGS, "act/encoder.0/std": 40.0}
    assert of_kind(detect(read_log(probe_store(tmp_path / "start", readings))), "input_scale")
    run = read_log(probe_store(tmp_path / "resumed", readings))
    for s in run.series.values():
        s.steps = s.steps + 5000
    assert not of_kind(detect(run), "input_scale")
