"""More generated faults: the same failure mechanisms as two corpus faults, in other settings.

- representation collapse without a hard threshold crossed: SSL set-ups that lose their variance
  slowly (a VICReg variance term too weak to hold the spread, BYOL or SimSiam without the predictor
  that makes the branches asymmetric, an encoder squeezed through a few hidden units);
- inputs far from unit scale: raw 0-255 pixels into an MLP or a CNN, tabular features whose columns
  span four orders of magnitude.

and, in `healthy(corpus)`, more SSL runs that train well (seeds, batch sizes, a longer run).

`faults(corpus)` and `healthy(corpus)` build the cases with the corpus module's helpers (passed in, since this module is
loaded by corpus.py while it is still being imported). Which half a case lands in is `corpus.half`.
"""

from __future__ import annotations

from pathlib import Path

import torch

RAW_PIXEL_SCALE = 255.0  # digits are read as [0, 1]; a pipeline that forgets to divide feeds 0-255


def _column_scales(width: int, seed: int) -> torch.Tensor:
    """One scale per input column, log-uniform over 1..1e4 (prices next to ratios next to counts)."""
    g = torch.Generator().manual_seed(seed)
    return 10 ** (4 * torch.rand(width, generator=g))


def faults(c) -> list:
    """The cases (corpus.Case) built with the corpus module `c`."""
    expected_collapse = c.COLLAPSE_SG + ["catalog/012-very-low-output-variance", "catalog/001-representation-rank-is-low"]
    expected_scale = c.EXPLODE + ["guide/003-loss-oscillates-wildly", "catalog/080-first-few-layers-are-frozen-in-learning"]
    ssl = c.SSL + ["normalization_layers"]

    def raw_pixels(model_fn, opt, lr):
        def fn(run: Path) -> Path:
            torch.manual_seed(0)
            x, y, val = c._data()
            return c.classify(run, model_fn(), x * RAW_PIXEL_SCALE, y, opt=opt, lr=lr, val=(val[0] * RAW_PIXEL_SCALE, val[1]))

        return fn

    def mixed_scales(opt, lr):
        def fn(run: Path) -> Path:
            torch.manual_seed(0)
            x, y, val = c._data()
            s = _column_scales(x.shape[1], seed=3)
            return c.classify(run, c._mlp([64, 64, 10]), x * s, y, opt=opt, lr=lr, val=(val[0] * s, val[1]))

        return fn

    return [
        c.Case("vicreg_weak_variance", lambda r: c.ssl_run(r, "vicreg", lr=0.02, variance_weight=0.05, covariance_weight=0.04),
               expected_collapse, ssl + ["multi_term_loss"], "VICReg with its variance/covariance weights 500x/25x too small"),
        c.Case("byol_no_predictor", lambda r: c.ssl_run(r, "byol", predictor=False), expected_collapse, ssl,
               "BYOL (EMA target) with the online predictor removed"),
        c.Case("simsiam_no_predictor", lambda r: c.ssl_run(r, "simsiam", predictor=False), expected_collapse, ssl,
               "SimSiam with stop-gradient but no predictor"),
        c.Case("ssl_bottleneck_encoder", lambda r: c.ssl_run(r, "simsiam", bottleneck=3),
               expected_collapse + ["catalog/065-projection-head-is-bottlenecking-learning", "catalog/007-eigenvalues-decay-too-quickly"], ssl,
               "SimSiam whose encoder passes through 3 hidden units"),
        c.Case("raw_pixels_mlp_sgd", raw_pixels(lambda: c._mlp([64, 64, 10]), "sgd", 0.01), expected_scale, c.CLS, "0-255 pixels, MLP, SGD"),
        c.Case("raw_pixels_mlp_adam", raw_pixels(lambda: c._mlp([64, 64, 10]), "adam", 2e-3), expected_scale, c.CLS, "0-255 pixels, MLP, Adam"),
        c.Case("raw_pixels_cnn_adam", raw_pixels(lambda: c.SmallCNN(), "adam", 2e-3), expected_scale, c.CLS + ["convolution"], "0-255 pixels, CNN, Adam"),
        c.Case("raw_pixels_cnn_sgd", raw_pixels(lambda: c.SmallCNN(), "sgd", 0.01), expected_scale, c.CLS + ["convolution"], "0-255 pixels, CNN, SGD"),
        c.Case("unscaled_tabular_features", mixed_scales("adam", 1e-3), expected_scale, c.CLS, "input columns scaled 1..1e4, Adam"),
        c.Case("mixed_scale_features_sgd", mixed_scales("sgd", 0.01), expected_scale, c.CLS, "input columns scaled 1..1e4, SGD"),
    ]


def healthy(c) -> list:
    """SSL runs that train well, beside the faults above: seeds, batch sizes and a longer run, so that the
    slow-collapse test is checked on more healthy trajectories than the ones it was built beside."""
    ssl = c.SSL + ["normalization_layers"]
    return [
        c.Case("healthy_byol_ema_seed2", lambda r: c.ssl_run(r, "byol", seed=2), [], ssl),
        c.Case("healthy_byol_ema_b64", lambda r: c.ssl_run(r, "byol", batch=64, seed=4), [], ssl),
        c.Case("healthy_simsiam_seed3", lambda r: c.ssl_run(r, "simsiam", seed=3), [], ssl),
        c.Case("healthy_simsiam_long", lambda r: c.ssl_run(r, "simsiam", steps=400, seed=5), [], ssl),
        c.Case("healthy_vicreg_b256", lambda r: c.ssl_run(r, "vicreg", lr=0.02, batch=256, seed=6), [], ssl + ["multi_term_loss"]),
        c.Case("healthy_simclr_b256", lambda r: c.ssl_run(r, "simclr", batch=256, seed=7), [], ssl + ["contrastive"]),
    ]
