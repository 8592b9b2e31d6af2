"""Detectors: a `Run` in, `Signal`s out.

`REGISTRY` is the table of every detector — the signal kind, the function, its threshold and the
literature the threshold comes from. Adding a detector is one function (taking a `Context`, returning
Signals) and one row here. `detect(run)` runs them all; one detector failing on odd data never stops
the others (it is recorded in the run's `skipped` notes instead).

Modules by family: `losses` (nan_inf, spike, blowup, divergence, oscillation), `progress` (plateau,
lr_decay_plateau, high_plateau, overfitting), `gradients` (grad_spike, clip_pressure), `components`
(component_growth), `codebook` (level_shift, usage_collapse), `rewards` (reward_stall, reward_decline,
reward_spread_collapse) on a log's curves; on probe readings, `readings` (the shared sustained-window
test and the rule table of threshold-style checks: saturation, identical_outputs, vanishing/exploding
gradients, zero_gradients, large_updates, dead_dimensions, uneven_feature_norms, codebook_collapse,
uniform_attention, data_loading_bottleneck), `activations` (dead_units, ReLU layers only; input_scale), `weights`
(nonfinite_gradients, frozen_parameters, weight_growth, exploding/accumulating_gradients),
`representations` (representation_collapse, partial_collapse, low_rank, correlated_dimensions) and
`outputs` (class_collapse, overconfidence, gpu_memory_pressure). `base` holds what they share.
"""

from __future__ import annotations

import numpy as np

from advisor.detectors import (
    activations,
    codebook,
    components,
    gradients,
    losses,
    outputs,
    progress,
    representations,
    rewards,
    weights,
)
from advisor.detectors import readings as r
from advisor.detectors.base import Context, Detector
from advisor.models import SEVERITY_ORDER, Run, Signal

REGISTRY: list[Detector] = [
    # ---- from a log's curves ----
    Detector("nan_inf", losses.detect_nan_inf, "any NaN/Inf value; high when a loss ends non-finite or >= 5% of it is",
             "Goodfellow et al. 2016 (Deep Learning, 8.2 numerical issues); AMP GradScaler skips overflow steps"),
    Detector("spike", losses.detect_spikes, f"robust z >= {losses.SPIKE_Z} against a rolling median/MAD and >= {losses.SPIKE_REL:.0%} above it; returns to its level",
             "Iglewicz & Hoaglin 1993 (modified z-score); Chowdhery et al. 2022 (PaLM loss spikes)"),
    Detector("grad_spike", gradients.detect_grad_spikes, f"gradient norm >= {gradients.GRAD_SPIKE_RATIO}x its trailing median and robust z >= {gradients.GRAD_SPIKE_Z}",
             "Pascanu et al. 2013 (exploding gradients); Molybog et al. 2023 (Adam instability)"),
    Detector("component_growth", components.detect_component_growth,
             f"a loss term grows >= {components.COMPONENT_GROWTH_RATIO}x (and >= {components.COMPONENT_MIN_SHARE_GROWTH:.0%} of the total) with rank trend >= {components.COMPONENT_MIN_TREND} while the rest of the loss falls",
             "Chen et al. 2018 (GradNorm); Kendall et al. 2018 (uncertainty weighting of multi-task losses)"),
    Detector("divergence", losses.detect_divergence, f"training loss ends >= {losses.DIVERGENCE_RISE:.0%} above its smoothed minimum, sustained; high at {losses.DIVERGENCE_HIGH_FACTOR}x",
             "Smith 2017 (LR range test); fastai lr_find stops at 4x the minimum loss"),
    Detector("blowup", losses.detect_blowup,
             f"smoothed loss >= {losses.BLOWUP_RISE}x its best so far for >= {losses.BLOWUP_MIN_POINTS} logs, then back at least halfway; high at {losses.BLOWUP_HIGH:g}x",
             "Chowdhery et al. 2022 (PaLM loss spikes that recover); Molybog et al. 2023; Smith 2017 / fastai lr_find (4x)"),
    Detector("plateau", progress.detect_plateau,
             f"final window >= {progress.PLATEAU_MIN_FRACTION:.0%} of the run that improves < {progress.PLATEAU_REL_TOL:.0%} and stays in a {progress.PLATEAU_BAND:.0%} band",
             "Keras ReduceLROnPlateau / EarlyStopping (patience, min_delta)"),
    Detector("lr_decay_plateau", progress.detect_lr_decay_plateau,
             f"LR cut abruptly, >= {progress.LR_CUT:g}x in all, and the training loss gains < {progress.LR_CUT_GAIN_SHARE:.0%} of its earlier gain, < {progress.LR_CUT_LEVEL_SHARE:.0%} of its level "
             f"or Welch t < {progress.LR_CUT_T:g} after it; medium while >= {progress.LR_CUT_STILL_HIGH:.0%} of its start",
             "Keras ReduceLROnPlateau (cuts meant to unlock progress); Smith 2017 (LR too small stalls training)"),
    Detector("high_plateau", progress.detect_high_plateau,
             f"training loss's last third >= {1 - progress.HIGH_PLATEAU_DROP:.0%} of its start, or >= "
             f"{progress.HIGH_PLATEAU_CHANCE:.0%} of ln(C) when the classes are known (medium only then)",
             "Xiong et al. 2020 (post-LN transformers need warmup); Liu et al. 2020; ln(C) = cross-entropy at chance"),
    Detector("oscillation", losses.detect_oscillation, f">= {losses.OSC_MIN_SWINGS} consecutive swings of >= {losses.OSC_SWING_REL:.0%} of the lower level; medium: ongoing, >= {losses.OSC_MEDIUM_SWINGS} swings over >= {losses.OSC_MEDIUM_COVERAGE:.0%} of the series",
             "Zhang et al. 2021 (AUTOTRAINER: oscillating loss)"),
    Detector("overfitting", progress.detect_overfitting, f"validation loss ends >= {progress.OVERFIT_GL:.0%} above its minimum (GL), beyond {progress.OVERFIT_NOISE_SIGMAS} noise sigmas, sustained",
             "Prechelt 1998 (Early Stopping - But When?, GL_alpha criterion)"),
    Detector("level_shift", codebook.detect_level_shift, f"one-step jump >= {codebook.LEVEL_SHIFT_Z} robust sigmas of recent steps and >= {codebook.LEVEL_SHIFT_REL:.0%} of the level",
             "Page 1954 (CUSUM change points); Dhariwal et al. 2020 (codebook resets)"),
    Detector("usage_collapse", codebook.detect_usage_collapse, f"usage falls to <= {codebook.USAGE_DROP:.0%} of its peak",
             "van den Oord et al. 2017 (VQ-VAE); Dhariwal et al. 2020 (Jukebox); Lancucki et al. 2020"),
    Detector("clip_pressure", gradients.detect_clip_pressure, f"gradient norm above the clip value at >= {gradients.CLIP_SHARE_MEDIUM:.0%} of points (needs clip_value)",
             "Pascanu et al. 2013; Zhang et al. 2020 (Why gradient clipping accelerates training)"),
    Detector("low_rank", representations.detect_rank_drop, f"effective rank falls to <= {representations.RANK_DROP:.0%} of its peak and stays there",
             "Garrido et al. 2023 (RankMe); Jing et al. 2022 (dimensional collapse)"),
    Detector("reward_decline", rewards.detect_reward_decline,
             f"main reward's last third below its first by Welch t <= -{rewards.REWARD_T:g}",
             "Henderson et al. 2018 (Deep RL that Matters: noisy learning curves compared with their spread)"),
    Detector("reward_stall", rewards.detect_reward_stall,
             f"main reward's last third not above its first by Welch t >= {rewards.REWARD_T:g} (medium over >= {rewards.REWARD_STALL_MIN_POINTS} logs)",
             "Henderson et al. 2018 (Deep RL that Matters: noisy learning curves compared with their spread)"),
    Detector("reward_spread_collapse", rewards.detect_reward_spread_collapse,
             f"reward std's last third <= {rewards.SPREAD_COLLAPSE:.0%} of its first, or zero-std groups >= {rewards.ZERO_SPREAD_SHARE:.0%}",
             "Shao et al. 2024 (GRPO group-normalised advantages); Yu et al. 2025 (DAPO dynamic sampling)"),
    # ---- from probe readings (threshold-style checks are rows of readings.RULES) ----
    *r.rule_detectors(),
    Detector("dead_units", activations.detect_dead_units,
             f"act/*/zero_fraction >= {activations.DEAD_ZERO_FRACTION:.0%} sustained, ReLU layers only",
             "Wardat et al. 2022 (DeepDiagnosis); Zhang et al. 2021 (AUTOTRAINER dying ReLU)", "readings"),
    Detector("input_scale", activations.detect_input_scale,
             f"the first watched layer's output std >= {activations.INPUT_SCALE_STD:g} at the run's first step (unit-scale inputs read well under 1)",
             "LeCun et al. 1998 (Efficient BackProp: normalise inputs); Glorot & Bengio 2010; He et al. 2015", "readings"),
    Detector("exploding_gradients", weights.detect_gradient_growth,
             f"gradient norm's last third >= {weights.GRAD_GROWTH:g}x its first third and still rising (>= {weights.GRAD_GROWTH_WHILE_LEARNING:g}x if the loss improves by {weights.LOSS_IMPROVED:.0%})",
             "Pascanu et al. 2013", "readings"),
    Detector("accumulating_gradients", weights.detect_accumulating_gradients,
             f"gradient norm >= {weights.GRAD_GROWTH:g}x, rising at >= {weights.ACCUMULATION_MIN_TREND} rank correlation as step^a with a in "
             f"[{weights.ACCUMULATION_MIN_EXPONENT}, {weights.ACCUMULATION_MAX_EXPONENT}] (log-log R^2 >= {weights.ACCUMULATION_MIN_FIT})",
             "PyTorch autograd docs (.grad accumulates until zeroed); Pascanu et al. 2013", "series"),
    Detector("nonfinite_gradients", weights.detect_nonfinite_gradients, "grad/nonfinite_count > 0",
             "Zhang et al. 2021 (AUTOTRAINER: NaN gradients)", "readings"),
    Detector("nan_inf", weights.detect_nonfinite_tensors, "nonfinite/<name> > 0", "probe's non-finite counters", "readings"),
    Detector("frozen_parameters", weights.detect_frozen_parameters, "update/frozen_share > 0 sustained",
             "practitioner check: parameters left out of the optimizer", "readings"),
    Detector("weight_growth", weights.detect_weight_growth,
             f"weight norm >= {weights.WEIGHT_GROWTH:g}x its first reading and over the second half still gaining >= "
             f"{weights.WEIGHT_GROWTH_STILL:g}x what it gained over the quarter before; high at {weights.WEIGHT_GROWTH_HIGH:g}x and {weights.WEIGHT_GROWTH_HIGH_SECOND_HALF:g}x over the second half",
             "Soudry et al. 2018 (implicit bias: unbounded norm growth on separable data)", "readings"),
    Detector("representation_collapse", representations.detect_representation_collapse,
             f"l2norm_std < {representations.COLLAPSE_STD_RATIO}x 1/sqrt(D), or mean pairwise cosine > {representations.COLLAPSE_COSINE}, sustained",
             "Chen & He 2021 (SimSiam collapse check)", "readings"),
    Detector("partial_collapse", representations.detect_partial_collapse,
             f"mean pairwise cosine >= {representations.PARTIAL_COSINE} in the last third, risen >= {representations.PARTIAL_COSINE_RISE} "
             f"or with the effective rank at <= {representations.PARTIAL_RANK_FALL:.0%} of its peak, or rising third by third (Welch t >= "
             f"{representations.PARTIAL_TREND_T:g}) while the normalised spread falls (t <= -{representations.PARTIAL_TREND_T:g})",
             "Jing et al. 2022 (dimensional collapse); Chen & He 2021 (SimSiam stop-gradient); Wang & Isola 2020", "readings"),
    Detector("low_rank", representations.detect_low_rank, f"effective_rank_ratio < {representations.LOW_RANK_RATIO} sustained and not rising",
             "Garrido et al. 2023 (RankMe); Jing et al. 2022", "readings"),
    Detector("correlated_dimensions", representations.detect_correlated_dimensions,
             f"offdiag_cov_energy >= {representations.CORRELATED_ENERGY} with top-1 variance share >= {representations.CORRELATED_TOP1}; "
             f"medium only with the effective rank at <= {representations.PARTIAL_RANK_FALL:.0%} of its peak or < {representations.LOW_RANK_RATIO}",
             "Bardes et al. 2022 (VICReg covariance term); Zbontar et al. 2021 (Barlow Twins); Simon et al. 2023 (stepwise SSL)", "readings"),
    Detector("class_collapse", outputs.detect_class_collapse,
             f"top_class_share >= max({outputs.CLASS_TOP_SHARE}, 3/K) ({outputs.BINARY_TOP_SHARE} for 2 classes) sustained",
             "majority-class baseline; Buda et al. 2018 (class imbalance in CNNs)", "readings"),
    Detector("overconfidence", outputs.detect_overconfidence, f"confidence - accuracy >= {outputs.OVERCONFIDENCE_GAP} sustained",
             "Guo et al. 2017 (On Calibration of Modern Neural Networks)", "readings"),
    Detector("gpu_memory_pressure", outputs.detect_gpu_memory, f"reserved memory >= {outputs.GPU_MEMORY_SHARE:.0%} of the card sustained",
             "PyTorch CUDA memory management notes", "readings"),
]


def detect(run: Run) -> list[Signal]:
    """Every signal the registry finds in a run, most severe first, then by position on the axis."""
    ctx = Context(run)
    signals: list[Signal] = []
    for det in REGISTRY:
        try:
            # logs hold ±1e308, Inf and NaN: sums and ratios of them overflow, and each detector judges
            # a non-finite result itself, so numpy's warnings would only be noise on the user's terminal
            with np.errstate(all="ignore"):
                signals.extend(det.fn(ctx))
        except Exception as exc:  # a detector must never take the others down with it
            note = f"Detector {det.kind} ({det.fn.__name__}) failed on this run: {type(exc).__name__}: {exc}."
            if note not in run.skipped:
                run.skipped.append(note)
    signals.sort(key=lambda s: (-SEVERITY_ORDER[s.severity], s.start, s.kind, s.metric))
    return signals


def detector_table() -> list[dict[str, str]]:
    """The registry as rows (kind, function, threshold, reference, inputs) for docs and `--help` output."""
    return [{"kind": d.kind, "function": d.fn.__name__, "threshold": d.threshold, "reference": d.reference, "inputs": d.inputs}
            for d in REGISTRY]


__all__ = ["REGISTRY", "Context", "Detector", "detect", "detector_table"]
