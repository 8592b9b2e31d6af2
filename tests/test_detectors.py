"""Detectors against real material (the JEPA fixture, real logs), synthetic curves and probe run stores."""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import shared_path
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from advisor import runstore
from advisor.detectors import REGISTRY, detect, detector_table
from advisor.logs import read_log
from advisor.models import Run, Series, Signal

# ---- helpers -------------------------------------------------------------------------------------------


def make_run(series: dict[str, tuple], axis: str = "step", epochs_per_step: float | None = None, meta: dict | None = None) -> Run:
    """series: name -> (role, steps, values[, higher_is_better[, component_of]])."""
    run = Run(path="synthetic", format="csv", axis=axis, meta=dict(meta or {}))
    for name, spec in series.items():
        role, steps, values = spec[:3]
        hib = spec[3] if len(spec) > 3 else False
        comp = spec[4] if len(spec) > 4 else None
        steps = np.asarray(steps, dtype=float)
        epochs = steps * epochs_per_step if epochs_per_step else None
        run.series[name] = Series(name, role, steps, np.asarray(values, dtype=float), epochs=epochs, higher_is_better=hib, component_of=comp)
    return run


def of_kind(signals: list[Signal], kind: str, metric: str | None = None) -> list[Signal]:
    return [s for s in signals if s.kind == kind and (metric is None or s.metric == metric)]


def loud(signals: list[Signal]) -> list[tuple]:
    return [(s.kind, s.metric, s.severity, s.summary) for s in signals if s.severity in ("medium", "high")]


def only(signals: list[Signal], kind: str, metric: str | None = None) -> Signal:
    found = of_kind(signals, kind, metric)
    assert found, f"no {kind} on {metric}: {[(s.kind, s.metric, s.severity) for s in signals]}"
    return found[0]


# ---- the JEPA run: what its analysis found, found in the right windows -------------------------------------

JEPA_RENAMES = [
    {},  # as written
    {  # every column renamed to other sensible names
        "train/infonce": "loss/infonce_term", "train/sigreg": "loss/sigreg_term", "train/invariance": "loss/invariance_term",
        "train/relational": "loss/relational_term", "train/total": "loss/total", "val/loss": "validation_loss",
        "grad_norm/mean": "gradnorm_mean", "grad_norm/max": "gradnorm_max", "vq/usage": "codebook_utilization",
        "rank/context": "eff_rank_ctx", "rank/target": "eff_rank_tgt", "step": "global_step",
    },
    {  # flat Keras-like names
        "train/infonce": "infonce_loss", "train/sigreg": "sigreg_loss", "train/invariance": "invariance_loss",
        "train/relational": "relational_loss", "train/total": "loss", "val/loss": "val_loss",
        "grad_norm/mean": "grad_norm_avg", "grad_norm/max": "grad_norm_peak", "vq/usage": "vq_codes_used",
        "rank/context": "context_rankme", "rank/target": "target_rankme", "step": "iteration", "epoch": "ep",
    },
]


def jepa_run(tmp_path: Path, renames: dict[str, str]) -> tuple[Run, callable]:
    src = shared_path("fixtures", "jepa_run.jsonl")
    if not renames:
        return read_log(src), lambda n: n
    p = tmp_path / "renamed.jsonl"
    with open(src) as fh, open(p, "w") as out:
        for line in fh:
            out.write(json.dumps({renames.get(k, k): v for k, v in json.loads(line).items()}) + "\n")
    return read_log(p), lambda n: renames.get(n, n)


@pytest.mark.parametrize("renames", JEPA_RENAMES, ids=["as-written", "renamed", "keras-style"])
def test_jepa_findings_in_their_windows(tmp_path, renames):
    run, name = jepa_run(tmp_path, renames)
    signals = detect(run)

    # relational term grows ~0.18 (epoch 10) -> 1.10 (epoch 71) while the main loss keeps falling
    growth = only(signals, "component_growth", name("train/relational"))
    assert abs(growth.start_epoch - 10) <= 2 and abs(growth.end_epoch - 71) <= 1
    assert growth.numbers["start_value"] == pytest.approx(0.18, abs=0.02)
    assert growth.numbers["end_value"] == pytest.approx(1.09, abs=0.03)
    assert growth.numbers["share_end"] > 0.1 > growth.numbers["share_start"]
    assert growth.numbers["main"] == name("train/infonce") and growth.numbers["main_change_pct"] < -5
    assert "relational" in growth.query and growth.severity == "high"
    assert not of_kind(signals, "component_growth", name("train/infonce"))

    # gradient-norm peaks 54-82 in epochs 34-41
    spike = only(signals, "grad_spike", name("grad_norm/max"))
    assert 33 <= spike.start_epoch and spike.end_epoch <= 42
    assert spike.numbers["peak"] >= 54 and spike.numbers["points"] >= 6

    # a codebook-usage jump to 30% at step 3000, then back down to ~14%
    usage = [s for s in signals if s.metric == name("vq/usage") and s.kind in ("level_shift", "usage_collapse")]
    at_3000 = [s for s in usage if 2900 <= s.start <= 3100]
    assert at_3000, usage
    assert at_3000[0].numbers["peak"] == pytest.approx(0.302) and at_3000[0].numbers["after"] < 0.16

    # validation loss best around epoch 69 (the fixture's noise puts its minimum, 8.208, at epoch 67;
    # the analysis reports 8.224 at 69) and ~3% worse at epoch 80
    over = only(signals, "overfitting", name("val/loss"))
    assert 67 <= over.numbers["best_epoch"] <= 69 and over.numbers["best_value"] == pytest.approx(8.21, abs=0.02)
    assert 2.5 <= over.numbers["rise_pct"] <= 4.5 and over.end_epoch == 80

    # validation loss flat at 8.2-8.5 from about epoch 50
    plateau = only(signals, "plateau", name("val/loss"))
    assert 45 <= plateau.start_epoch <= 56 and plateau.end_epoch == 80
    assert 8.2 <= plateau.numbers["min_in_window"] and plateau.numbers["max_in_window"] <= 8.55

    # the effective ranks grow healthily: no collapse or low-rank alarm, nothing at all on them
    for rank in (name("rank/context"), name("rank/target")):
        assert [s for s in signals if s.metric == rank] == []
    assert not of_kind(signals, "representation_collapse") and not of_kind(signals, "low_rank")


def test_jepa_renamed_gives_the_same_advice(tmp_path):
    def shape(run, name_back):
        return sorted((s.kind, name_back.get(s.metric, s.metric), s.severity, s.start, s.end) for s in detect(run))

    base, _ = jepa_run(tmp_path, {})
    renamed, _ = jepa_run(tmp_path, JEPA_RENAMES[1])
    back = {v: k for k, v in JEPA_RENAMES[1].items()}
    assert shape(renamed, back) == shape(base, {})


def test_jepa_epoch_csv_gives_the_same_findings():
    signals = detect(read_log(shared_path("fixtures", "jepa_epochs.csv")))
    growth = only(signals, "component_growth", "train/relational")
    assert (growth.start_epoch, growth.end_epoch) == (10, 71)
    spike = only(signals, "grad_spike", "grad_norm/max")
    assert (spike.start_epoch, spike.end_epoch) == (34, 41)
    assert 67 <= only(signals, "overfitting", "val/loss").numbers["best_epoch"] <= 69


def test_jepa_with_its_clip_value_shows_clip_pressure(tmp_path):
    roles = tmp_path / "roles.toml"
    roles.write_text("[settings]\nclip_value = 0.5\n")  # the analysis: max_norm = 0.5, norms 10-160x above it
    signals = detect(read_log(shared_path("fixtures", "jepa_run.jsonl"), roles_file=roles))
    clip = only(signals, "clip_pressure")
    assert clip.metric == "grad_norm/mean" and clip.severity == "high" and clip.numbers["share_above"] == 1.0


# ---- real logs: what an experienced practitioner sees, and what the detectors say --------------------------


def real(name: str) -> list[Signal]:
    return detect(read_log(shared_path("real-logs", name)))


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


# ---- synthetic curves, one detector at a time --------------------------------------------------------------

N = 1000
STEPS = np.arange(N, dtype=float)
T = STEPS / N


def noisy(base: np.ndarray, rel: float, seed: int = 0) -> np.ndarray:
    return base * (1 + rel * np.random.default_rng(seed).standard_normal(len(base)))


def healthy_loss(seed: int = 0, rel: float = 0.05) -> np.ndarray:
    return noisy(0.4 + 2.0 * np.exp(-T / 0.2), rel, seed)


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


def test_grad_spike_burst():
    grad = noisy(np.full(N, 2.0), 0.1)
    grad[600:620] *= 4
    s = only(detect(make_run({"grad_norm": ("grad_norm", STEPS, grad)}, epochs_per_step=0.01)), "grad_spike", "grad_norm")
    assert 598 <= s.start <= 602 and 617 <= s.end <= 621 and s.severity == "medium"
    assert s.start_epoch == pytest.approx(s.start * 0.01)


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


def test_divergence():
    loss = noisy(np.where(T < 0.5, 2.0 * np.exp(-T / 0.1) + 0.3, 0.3 + 4 * (T - 0.5) ** 2 * 8), 0.03)
    s = only(detect(make_run({"loss": ("loss", STEPS, loss)})), "divergence", "loss")
    assert 420 <= s.start <= 560 and s.end == 999 and s.severity == "high"


def test_plateau_of_a_stuck_loss():
    loss = noisy(np.where(T < 0.15, 2.5 - 8 * T, 1.3), 0.02)
    s = only(detect(make_run({"loss": ("loss", STEPS, loss)})), "plateau", "loss")
    assert 140 <= s.start <= 200 and s.end == 999 and s.severity == "medium"


def test_oscillation_that_goes_on():
    base = 0.8 + 0.1 * np.exp(-T)
    loss = np.where(np.arange(N) % 40 < 20, base * 0.5, base * 1.6)[::10]
    s = only(detect(make_run({"loss": ("loss", STEPS[::10], loss)})), "oscillation", "loss")
    assert s.severity == "medium" and s.numbers["swings"] >= 10


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


def test_level_shift_that_persists():
    usage = noisy(np.where(T < 0.6, 0.6, 0.2), 0.03)
    s = only(detect(make_run({"vq/usage": ("usage", STEPS[::10], usage[::10], True)})), "level_shift")
    assert 590 <= s.start <= 610 and s.numbers["persistent"] == 1 and s.severity == "medium"


def test_usage_collapse():
    usage = noisy(np.where(T < 0.3, 0.8, 0.8 * np.exp(-(T - 0.3) / 0.05)) + 0.05, 0.03)
    s = only(detect(make_run({"codebook_usage": ("usage", STEPS, usage, True)})), "usage_collapse")
    assert 250 <= s.numbers["peak_step"] <= 320 and s.end == 999 and s.severity == "high"


def test_rank_that_falls_is_low_rank_and_a_rising_one_is_quiet():
    falling = noisy(np.where(T < 0.4, 30.0, 30 * np.exp(-(T - 0.4) / 0.1) + 3), 0.02)
    s = only(detect(make_run({"rankme": ("rank", STEPS, falling, True)})), "low_rank", "rankme")
    assert s.numbers["final"] < 5
    rising = noisy(5 + 20 * T, 0.05)
    assert detect(make_run({"rankme": ("rank", STEPS, rising, True)})) == []


def test_clip_pressure_needs_the_clip_value():
    grad = noisy(np.full(N, 3.0), 0.2)
    assert not of_kind(detect(make_run({"grad_norm": ("grad_norm", STEPS, grad)})), "clip_pressure")
    s = only(detect(make_run({"grad_norm": ("grad_norm", STEPS, grad)}, meta={"clip_value": 1.0})), "clip_pressure")
    assert s.numbers["share_above"] > 0.95 and s.severity == "medium"


# ---- healthy curves stay quiet ----------------------------------------------------------------------------


def healthy_run(seed: int, n: int, shape: str, noise: float) -> Run:
    rng = np.random.default_rng(seed)
    steps = np.arange(n, dtype=float)
    t = steps / n
    base = {"power": 1.5 + 3.0 * (1 + steps / 20) ** -0.6, "exp": 0.3 + 2.0 * np.exp(-t / 0.2),
            "fast": 0.1 + 2.0 * np.exp(-t / 0.05)}[shape]
    every = max(1, n // 40)
    vs = steps[::every]
    return make_run({
        "loss": ("loss", steps, base * (1 + noise * rng.standard_normal(n))),
        "val_loss": ("val_loss", vs, base[::every] * 1.08 * (1 + 0.01 * rng.standard_normal(len(vs)))),
        "grad_norm": ("grad_norm", steps, (0.5 + 2 * np.exp(-t / 0.1)) * rng.lognormal(0, 0.2, n)),
        "lr": ("lr", steps, 1e-3 * np.minimum(1, t / 0.03) * 0.5 * (1 + np.cos(np.pi * t))),
        "val_acc": ("val_metric", vs, np.clip(1 - 0.9 * np.exp(-t[::every] / 0.2) + 0.005 * rng.standard_normal(len(vs)), 0, 1), True),
    }, epochs_per_step=10 / n)


@pytest.mark.parametrize("shape", ["power", "exp", "fast"])
@pytest.mark.parametrize("noise", [0.02, 0.08, 0.2])
@pytest.mark.parametrize("n", [40, 2000, 50_000])
def test_healthy_curves_raise_nothing_loud(shape, noise, n):
    for seed in range(3):
        run = healthy_run(seed, n, shape, noise)
        assert loud(detect(run)) == [], (shape, noise, n, seed)
        assert not [note for note in run.skipped if "failed" in note]


# ---- robustness ----------------------------------------------------------------------------------------------

ROLES = ["loss", "val_loss", "loss_component", "val_metric", "train_metric", "grad_norm", "lr", "rank", "usage", "other", "probe"]
values = st.lists(st.one_of(st.floats(allow_nan=True, allow_infinity=True, width=64), st.floats(-1e6, 1e6)), min_size=0, max_size=80)
probe_names = st.sampled_from(["grad/global_norm", "grad/first_last_ratio", "act/l1/zero_fraction", "act/l1/saturation_fraction",
                               "update/max_ratio", "update/frozen_share", "embeddings/l2norm_std", "embeddings/effective_rank_ratio",
                               "logits/top_class_share", "codes/usage_share", "attention/entropy_ratio", "weight/l1/norm_growth",
                               "time/data_wait_share", "gpu/mem_reserved_gb", "nonfinite/loss", "grad/nonfinite_count"])


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.lists(st.tuples(st.sampled_from(ROLES), values, probe_names), min_size=1, max_size=5),
       clip=st.one_of(st.none(), st.floats(allow_nan=True, allow_infinity=True)))
def test_detectors_never_fail_on_arbitrary_arrays(data, clip):
    run = Run(path="h", format="csv", axis="step", meta={"clip_value": clip} if clip is not None else {})
    for i, (role, vals, pname) in enumerate(data):
        name = pname if role == "probe" else f"{role}_{i}"
        steps = np.cumsum(np.ones(len(vals))) * (i + 1)
        run.series[name] = Series(name, role, steps, np.asarray(vals, dtype=float), higher_is_better=(i % 2 == 0),
                                  component_of=next((n for n in run.series if n.startswith("loss_")), None))
    signals = detect(run)
    assert not [n for n in run.skipped if "failed" in n], run.skipped
    for s in signals:
        assert s.start <= s.end and s.summary and s.query


def test_constant_and_tiny_series_are_quiet():
    flat = np.ones(200)
    run = make_run({"loss": ("loss", np.arange(200), flat), "val_loss": ("val_loss", np.arange(200), flat),
                    "grad_norm": ("grad_norm", np.arange(200), flat), "u": ("usage", np.arange(200), flat, True)})
    signals = detect(run)
    assert loud([s for s in signals if s.kind != "plateau"]) == []
    assert detect(make_run({"loss": ("loss", [0, 1], [1.0, 2.0])})) == []


def test_a_long_noisy_log_is_judged_fast_and_keeps_its_spike():
    n = 300_000
    steps = np.arange(n, dtype=float)
    loss = noisy(0.4 + 2.0 * np.exp(-steps / n / 0.2), 0.05, 3)
    loss[200_000:200_050] *= 6
    run = make_run({"loss": ("loss", steps, loss), "grad_norm": ("grad_norm", steps, noisy(np.ones(n), 0.1, 4))})
    t0 = time.perf_counter()
    signals = detect(run)
    assert time.perf_counter() - t0 < 3
    s = only(signals, "spike", "loss")
    assert 199_000 <= s.start <= 200_100


# ---- probe run stores ----------------------------------------------------------------------------------------

PROBE_STEPS = np.arange(0, 400, 5)


def _noisy_reading(level: float, rel: float = 0.05):
    rng = np.random.default_rng(int(level * 1000) % 2**31)
    return lambda i, n: level * (1 + rel * rng.standard_normal())


def _decay(a: float, b: float, rel: float = 0.03):
    rng = np.random.default_rng(7)
    return lambda i, n: (b + (a - b) * math.exp(-3 * i / n)) * (1 + rel * rng.standard_normal())


HEALTHY_READINGS = {
    "loss": _decay(2.3, 0.3, 0.08), "val_loss": _decay(2.3, 0.35, 0.01), "lr": 1e-3,
    "act/encoder.0/zero_fraction": _noisy_reading(0.5), "act/encoder.0/dead_unit_share": _noisy_reading(0.02, 0.5),
    "act/encoder.0/std": _noisy_reading(1.0), "act/encoder.0/sample_similarity": _noisy_reading(0.4),
    "act/head.0/saturation_fraction": _noisy_reading(0.05, 0.3),
    "grad/global_norm": _decay(3.0, 1.0, 0.2), "grad/first_last_ratio": _noisy_reading(0.8, 0.3), "grad/nonfinite_count": 0.0,
    "grad/zero_share": _noisy_reading(0.02, 0.3), "grad/min_layer_norm": _noisy_reading(0.1, 0.3),
    "weight/global_norm": lambda i, n: 10 + 2 * i / n, "weight/encoder.0/norm_growth": lambda i, n: 1 + 0.2 * i / n,
    "update/max_ratio": _noisy_reading(3e-3, 0.3), "update/encoder.0/ratio": _noisy_reading(2e-3, 0.3),
    "update/frozen_share": 0.0, "update/frozen_params": 0.0,
    "embeddings/effective_rank": lambda i, n: 20 + 20 * i / n, "embeddings/effective_rank_ratio": lambda i, n: (20 + 20 * i / n) / 64,
    "embeddings/top1_variance_share": _noisy_reading(0.1), "embeddings/offdiag_cov_energy": _noisy_reading(0.3),
    "embeddings/dead_dim_share": 0.0, "embeddings/l2norm_std": _noisy_reading(0.11), "embeddings/l2norm_std_ref": 0.125,
    "embeddings/mean_pairwise_cosine": _noisy_reading(0.05, 0.5), "embeddings/norm_cv": _noisy_reading(0.2), "embeddings/dim": 64.0,
    "logits/entropy": _noisy_reading(1.0), "logits/entropy_ratio": _noisy_reading(0.4), "logits/top_class_share": _noisy_reading(0.15, 0.2),
    "logits/confidence": _noisy_reading(0.7), "logits/accuracy": _noisy_reading(0.68), "logits/num_classes": 10.0,
    "codes/usage_share": _noisy_reading(0.7), "codes/perplexity_ratio": _noisy_reading(0.5),
    "attention/entropy": _noisy_reading(2.0), "attention/entropy_ratio": _noisy_reading(0.6),
    "gpu/mem_reserved_gb": _noisy_reading(30, 0.01), "gpu/mem_total_gb": 80.0, "gpu/mem_peak_gb": _noisy_reading(28, 0.01),
    "gpu/utilization": _noisy_reading(95, 0.02), "time/step_s": _noisy_reading(0.2), "time/data_wait_share": _noisy_reading(0.05, 0.3),
}


def probe_store(path: Path, readings: dict) -> Path:
    con = runstore.open_for_writing(path)
    rows = []
    n = len(PROBE_STEPS)
    for name, fn in readings.items():
        for i, step in enumerate(PROBE_STEPS):
            rows.append((int(step), name, float(fn(i, n) if callable(fn) else fn), 0.0))
    runstore.write_readings(con, rows)
    runstore.write_meta(con, {"started": 0.0, "finished": 1.0, "every": 5})
    con.close()
    return path


def after(step: float, value, before=None):
    """A reading that changes to `value` from `step` on (before: the healthy reading, or a constant)."""
    def fn(i, n):
        if PROBE_STEPS[i] >= step:
            return value(i, n) if callable(value) else value
        return before(i, n) if callable(before) else (before if before is not None else value)
    return fn


def test_healthy_probe_run_is_quiet(tmp_path):
    run = read_log(probe_store(tmp_path / "run", HEALTHY_READINGS))
    assert run.format == "probe"
    assert detect(run) == []


FAULTS = [
    # kind, readings replaced, metric of the signal, earliest start step
    ("dead_units", {"act/encoder.0/zero_fraction": after(100, 0.95, 0.5), "act/encoder.0/dead_unit_share": after(100, 0.8, 0.02)},
     "act/encoder.0/zero_fraction", 100),
    ("saturation", {"act/head.0/saturation_fraction": after(150, 0.7, 0.05)}, "act/head.0/saturation_fraction", 150),
    ("vanishing_gradients", {"grad/first_last_ratio": after(50, 1e-4, 0.8)}, "grad/first_last_ratio", 50),
    ("exploding_gradients", {"grad/first_last_ratio": after(200, 150.0, 0.8)}, "grad/first_last_ratio", 200),
    ("exploding_gradients", {"grad/global_norm": lambda i, n: 1.0 * 1.08 ** i}, "grad/global_norm", 0),
    ("nonfinite_gradients", {"grad/nonfinite_count": after(300, 12.0, 0.0)}, "grad/nonfinite_count", 300),
    ("nan_inf", {"nonfinite/loss": after(300, 1.0, 0.0)}, "nonfinite/loss", 300),
    ("zero_gradients", {"grad/zero_share": after(100, 0.999, 0.02)}, "grad/zero_share", 100),
    ("frozen_parameters", {"update/frozen_share": 0.25, "update/frozen_params": 2.0}, "update/frozen_share", 0),
    ("large_updates", {"update/max_ratio": after(100, 0.4, 3e-3)}, "update/max_ratio", 100),
    ("weight_growth", {"weight/encoder.0/norm_growth": lambda i, n: 1 + 30 * i / n}, "weight/encoder.0/norm_growth", 0),
    ("representation_collapse", {"embeddings/l2norm_std": after(150, 0.005, 0.11), "embeddings/mean_pairwise_cosine": after(150, 0.99, 0.05)},
     "embeddings/l2norm_std", 150),
    ("low_rank", {"embeddings/effective_rank_ratio": 2 / 64, "embeddings/effective_rank": 2.0}, "embeddings/effective_rank_ratio", 0),
    ("correlated_dimensions", {"embeddings/offdiag_cov_energy": 0.95, "embeddings/top1_variance_share": 0.8}, "embeddings/offdiag_cov_energy", 0),
    ("dead_dimensions", {"embeddings/dead_dim_share": after(100, 0.5, 0.0)}, "embeddings/dead_dim_share", 100),
    ("class_collapse", {"logits/top_class_share": after(100, 0.95, 0.15)}, "logits/top_class_share", 100),
    ("overconfidence", {"logits/confidence": 0.99, "logits/accuracy": _noisy_reading(0.6)}, "logits/confidence", 0),
    ("codebook_collapse", {"codes/usage_share": after(100, 0.03, 0.7)}, "codes/usage_share", 100),
    ("uniform_attention", {"attention/entropy_ratio": 0.99}, "attention/entropy_ratio", 0),
    ("gpu_memory_pressure", {"gpu/mem_reserved_gb": 79.0}, "gpu/mem_reserved_gb", 0),
    ("data_loading_bottleneck", {"time/data_wait_share": after(100, 0.55, 0.05), "gpu/utilization": 40.0}, "time/data_wait_share", 100),
    ("usage_collapse", {"codes/usage_share": after(150, 0.2, 0.7)}, "codes/usage_share", 140),
]


@pytest.mark.parametrize("kind, change, metric, start", FAULTS, ids=[f"{f[0]}-{f[2]}" for f in FAULTS])
def test_probe_reading_faults_are_found_in_their_window(tmp_path, kind, change, metric, start):
    run = read_log(probe_store(tmp_path / "run", {**HEALTHY_READINGS, **change}))
    signals = detect(run)
    s = only(signals, kind, metric)
    assert s.severity in ("medium", "high")
    assert start - 1e-9 <= s.start <= max(start, PROBE_STEPS[-1] * 0.05) + 10, (s.start, s.end)
    assert s.end == PROBE_STEPS[-1] or kind == "usage_collapse"
    assert s.numbers and s.summary and s.query
    other_kinds = {x.kind for x in signals if x.severity != "low"} - {kind, "codebook_collapse", "usage_collapse", "overconfidence"}
    related = {"representation_collapse": {"correlated_dimensions", "low_rank"}, "low_rank": {"correlated_dimensions"}}
    assert other_kinds <= related.get(kind, set()), other_kinds


def test_a_symptom_that_went_away_is_not_reported(tmp_path):
    # dead ReLUs for the first fifth of training, revived afterwards: the run's current state is healthy
    change = {"act/encoder.0/zero_fraction": after(80, 0.5, 0.95)}
    assert detect(read_log(probe_store(tmp_path / "run", {**HEALTHY_READINGS, **change}))) == []


def test_early_transients_do_not_alarm(tmp_path):
    # huge updates and a spiky loss at the first readings only (Adam's first steps): nothing loud
    change = {"update/max_ratio": after(15, 3e-3, 2.0), "loss": after(10, _decay(2.3, 0.3, 0.08), 40.0)}
    assert loud(detect(read_log(probe_store(tmp_path / "run", {**HEALTHY_READINGS, **change})))) == []


# ---- the registry ----------------------------------------------------------------------------------------------

BRIEF_KINDS = {"nan_inf", "spike", "component_growth", "divergence", "plateau", "oscillation", "overfitting", "level_shift",
               "usage_collapse", "clip_pressure", "grad_spike", "dead_units", "saturation", "vanishing_gradients",
               "exploding_gradients", "nonfinite_gradients", "zero_gradients", "frozen_parameters", "large_updates",
               "weight_growth", "representation_collapse", "low_rank", "correlated_dimensions", "dead_dimensions",
               "class_collapse", "codebook_collapse", "uniform_attention", "gpu_memory_pressure", "data_loading_bottleneck"}


def test_registry_states_thresholds_and_sources():
    table = detector_table()
    assert BRIEF_KINDS <= {row["kind"] for row in table}
    for row in table:
        assert row["threshold"] and row["reference"] and row["function"].startswith("detect_")
    links = Path(__file__).resolve().parents[1] / "advisor" / "links.toml"
    if links.exists():
        import tomllib

        linked = set(tomllib.loads(links.read_text())["links"])
        assert {d.kind for d in REGISTRY} <= linked


def test_detect_orders_by_severity_then_axis(tmp_path):
    signals = detect(read_log(shared_path("fixtures", "jepa_run.jsonl")))
    order = {"high": 0, "medium": 1, "low": 2}
    keys = [(order[s.severity], s.start) for s in signals]
    assert keys == sorted(keys)
