"""The probe's reading functions against hand-computed and numpy reference values."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from advisor.probe import metrics as M
from advisor.probe.parameters import ParameterReader, expand


def _numbers(readings: dict) -> dict[str, float]:
    return {k: float(v) for k, v in readings.items()}


def _rep(z: torch.Tensor, additive: bool = True) -> dict[str, float]:
    return _numbers(M.representation_readings(M.representation_stats(z, additive)))


def _rankme_np(s: np.ndarray) -> float:
    p = s / s.sum() + 1e-7
    return float(np.exp(-(p * np.log(p)).sum()))


@pytest.fixture
def gaussian() -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    scales = torch.linspace(0.2, 3.0, 16)
    return torch.randn(300, 16, generator=g) * scales + torch.linspace(-1, 1, 16)


# ------------------------------------------------------------------ representations


def test_rankme_of_orthogonal_matrix_is_its_dimension():
    q, _ = torch.linalg.qr(torch.randn(32, 32, generator=torch.Generator().manual_seed(1), dtype=torch.float64))
    assert float(M.effective_rank(q)) == pytest.approx(32, rel=1e-4)
    assert _rep(q)["effective_rank"] == pytest.approx(32, rel=1e-4)
    assert _rep(q)["effective_rank_ratio"] == pytest.approx(1.0, rel=1e-4)


def test_rankme_of_rank_one_matrix_is_one():
    z = torch.outer(torch.arange(1.0, 51.0), torch.randn(8))
    assert float(M.effective_rank(z)) == pytest.approx(1.0, abs=1e-3)
    assert _rep(z)["effective_rank"] == pytest.approx(1.0, abs=1e-2)


def test_representation_readings_match_numpy(gaussian):
    z = gaussian.numpy().astype(np.float64)
    got = _rep(gaussian)
    s = np.linalg.svd(z, compute_uv=False)
    cov = np.cov(z.T)
    eig = np.sort(np.linalg.eigvalsh(cov))[::-1]
    norms = np.linalg.norm(z, axis=1)
    u = z / norms[:, None]
    pair = (u @ u.T)[~np.eye(len(u), dtype=bool)].mean()
    off = (cov**2).sum() - (np.diag(cov) ** 2).sum()
    assert got["effective_rank"] == pytest.approx(_rankme_np(s), rel=1e-5)
    assert got["top1_variance_share"] == pytest.approx(eig[0] / eig.sum(), rel=1e-5)
    assert got["top5_variance_share"] == pytest.approx(eig[:5].sum() / eig.sum(), rel=1e-5)
    assert got["offdiag_cov_energy"] == pytest.approx(off / (cov**2).sum(), rel=1e-4)
    assert got["dim_std_mean"] == pytest.approx(z.std(axis=0, ddof=1).mean(), rel=1e-5)
    assert got["l2norm_std"] == pytest.approx(u.std(axis=0, ddof=1).mean(), rel=1e-5)
    assert got["l2norm_std_ref"] == pytest.approx(1 / 4)
    assert got["mean_pairwise_cosine"] == pytest.approx(pair, rel=1e-5)
    assert got["norm_max_median"] == pytest.approx(norms.max() / np.median(norms), rel=1e-5)
    assert got["norm_cv"] == pytest.approx(norms.std(ddof=1) / norms.mean(), rel=1e-5)
    assert got["dim"] == 16
    assert got["dead_dim_share"] == 0.0
    # The standalone metric functions agree with the family.
    assert float(M.l2norm_std(gaussian)) == pytest.approx(got["l2norm_std"], rel=1e-5)
    assert float(M.mean_pairwise_cosine(gaussian)) == pytest.approx(pair, rel=1e-5)
    assert float(M.offdiag_cov_energy(gaussian)) == pytest.approx(got["offdiag_cov_energy"], rel=1e-5)
    ratio, cv = M.norm_spread(gaussian)
    assert float(ratio) == pytest.approx(got["norm_max_median"], rel=1e-5)
    assert float(cv) == pytest.approx(got["norm_cv"], rel=1e-5)


def test_kernel_path_equals_gram_path_when_dimension_exceeds_batch():
    z = torch.randn(12, 40, generator=torch.Generator().manual_seed(2)) + 0.5
    gram = _rep(z, additive=True)
    kernel_stats = M.representation_stats(z, additive=False)
    assert "gram_eig" in kernel_stats and "m2" not in kernel_stats
    kernel = _numbers(M.representation_readings(kernel_stats))
    for key, value in gram.items():
        assert kernel[key] == pytest.approx(value, rel=1e-4, abs=1e-9), key
    assert gram["effective_rank"] == pytest.approx(_rankme_np(np.linalg.svd(z.double().numpy(), compute_uv=False)), rel=1e-5)


def test_collapsed_embeddings():
    z = torch.randn(1, 32).repeat(64, 1)
    got = _rep(z)
    assert got["l2norm_std"] == pytest.approx(0.0, abs=1e-6)
    assert got["l2norm_std_ref"] == pytest.approx(1 / math.sqrt(32))
    assert got["mean_pairwise_cosine"] == pytest.approx(1.0, abs=1e-6)
    assert got["effective_rank"] == pytest.approx(1.0, abs=1e-2)
    assert got["dead_dim_share"] == 1.0


def test_healthy_gaussian_l2norm_std_is_near_its_reference():
    z = torch.randn(4000, 64, generator=torch.Generator().manual_seed(3))
    got = _rep(z)
    assert got["l2norm_std"] == pytest.approx(got["l2norm_std_ref"], rel=0.02)
    assert abs(got["mean_pairwise_cosine"]) < 0.01


def test_dead_dimensions_and_large_mean_precision():
    z = torch.randn(256, 16, generator=torch.Generator().manual_seed(4)) * 0.01 + 1000.0
    z[:, :3] = 1000.0  # three constant dimensions
    got = _rep(z)
    assert got["dead_dim_share"] == pytest.approx(3 / 16)
    # Centring before the float32 matmul keeps a 0.01 spread visible under a mean of 1000.
    ref = z.double().std(0, unbiased=True)[3:].numpy()
    assert got["dim_std_mean"] == pytest.approx(ref.sum() / 16, rel=1e-3)
    assert float(M.dead_dim_share(torch.tensor([1.0, 1.0, 0.001, 0.0]))) == 0.5


def test_variance_share_and_rankme_by_hand():
    assert float(M.variance_share(torch.tensor([1.0, 3.0, 0.0, 4.0]), 1)) == pytest.approx(0.5)
    assert float(M.variance_share(torch.tensor([1.0, 3.0, 0.0, 4.0]), 2)) == pytest.approx(7 / 8)
    p = np.array([0.5, 0.5]) + 1e-7
    assert float(M.rankme(torch.tensor([2.0, 2.0]))) == pytest.approx(np.exp(-(p * np.log(p)).sum()))
    assert float(M.offdiag_energy_share(torch.tensor(10.0), torch.tensor([1.0, 2.0]))) == pytest.approx(0.5)


def test_views_cosine(gaussian):
    other = gaussian + torch.randn_like(gaussian, memory_format=torch.preserve_format).mul(0.5)
    got = _numbers(M.view_readings(M.view_stats(gaussian, other)))
    assert got["cosine"] == pytest.approx(float(F.cosine_similarity(gaussian, other).mean()), rel=1e-5)
    assert got["effective_rank"] == pytest.approx(_rep(gaussian)["effective_rank"])
    assert float(M.paired_cosine(gaussian, other)) == pytest.approx(got["cosine"], rel=1e-5)


def test_nan_rows_are_left_out_and_counted(gaussian):
    z = gaussian.clone()
    z[[3, 10], 2] = float("nan")
    z[5, 0] = float("inf")
    got = _rep(z)
    keep = torch.ones(len(z), dtype=torch.bool)
    keep[[3, 5, 10]] = False
    ref = _rep(gaussian[keep])
    for key, value in ref.items():
        assert got[key] == pytest.approx(value, rel=1e-4), key
    assert float(M.nonfinite_count(z)) == 3
    assert float(M.nonfinite_count(torch.arange(4))) == 0


def test_all_nan_representation_gives_nan_not_an_exception():
    got = _rep(torch.full((8, 4), float("nan")))
    assert math.isnan(got["l2norm_std"]) and math.isnan(got["norm_cv"])


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_low_precision_inputs_read_in_float32(gaussian, dtype):
    low = gaussian.to(dtype)
    got, ref = _rep(low), _rep(low.float())
    for key, value in ref.items():
        assert got[key] == pytest.approx(value, rel=1e-5, abs=1e-6), key
    logits = torch.randn(32, 5).to(dtype)
    assert float(M.logit_readings(M.logit_stats(logits))["entropy"]) == pytest.approx(
        float(M.prediction_entropy(logits.float())), rel=1e-5
    )


# ------------------------------------------------------------------ outputs


def test_logit_readings_by_hand():
    logits = torch.tensor([[2.0, 0.0, 0.0], [0.0, 3.0, 0.0], [1.0, 1.0, 5.0], [4.0, 0.0, 0.0]])
    targets = torch.tensor([0, 1, 1, -100])  # -100: ignored, as in Hugging Face
    got = _numbers(M.logit_readings(M.logit_stats(logits, targets)))
    p = torch.softmax(logits.double(), -1)
    entropy = float(-(p * p.log()).sum(-1).mean())
    assert got["entropy"] == pytest.approx(entropy)
    assert got["entropy_ratio"] == pytest.approx(entropy / math.log(3))
    assert got["confidence"] == pytest.approx(float(p.max(-1).values.mean()))
    assert got["top_class_share"] == pytest.approx(0.5)  # class 0 predicted twice of four
    assert got["accuracy"] == pytest.approx(2 / 3)
    assert got["num_classes"] == 3
    assert float(M.prediction_entropy(logits)) == pytest.approx(entropy)


def test_logits_extremes_and_binary():
    uniform = _numbers(M.logit_readings(M.logit_stats(torch.zeros(10, 7))))
    assert uniform["entropy_ratio"] == pytest.approx(1.0)
    collapsed = _numbers(M.logit_readings(M.logit_stats(torch.tensor([[0.0, 50.0, 0.0]]).repeat(20, 1))))
    assert collapsed["top_class_share"] == 1.0 and collapsed["confidence"] == pytest.approx(1.0)
    assert collapsed["entropy_ratio"] == pytest.approx(0.0, abs=1e-6)
    binary = _numbers(M.logit_readings(M.logit_stats(torch.tensor([3.0, -2.0, 1.0]), torch.tensor([1.0, 0.0, 0.0]))))
    assert binary["num_classes"] == 2 and binary["accuracy"] == pytest.approx(2 / 3)
    onehot = F.one_hot(torch.tensor([0, 1]), 3).float()
    assert float(M.logit_readings(M.logit_stats(torch.eye(3)[:2] * 5, onehot))["accuracy"]) == 1.0


def test_logits_in_chunks_equal_logits_at_once(monkeypatch):
    g = torch.Generator().manual_seed(5)
    logits, targets = torch.randn(2, 50, 11, generator=g), torch.randint(0, 11, (2, 50), generator=g)
    whole = _numbers(M.logit_readings(M.logit_stats(logits, targets)))
    monkeypatch.setattr(M, "LOGIT_CHUNK_ELEMENTS", 30)
    chunked = _numbers(M.logit_readings(M.logit_stats(logits, targets)))
    assert chunked == pytest.approx(whole)


def test_code_usage_and_perplexity_by_hand():
    got = _numbers(M.code_readings(M.code_stats(torch.tensor([0, 0, 1, 3]), codebook_size=4)))
    p = np.array([0.5, 0.25, 0.25])
    ppl = float(np.exp(-(p * np.log(p)).sum()))
    assert got["usage_share"] == pytest.approx(0.75)
    assert got["perplexity"] == pytest.approx(ppl)
    assert got["perplexity_ratio"] == pytest.approx(ppl / 4)
    inferred = _numbers(M.code_readings(M.code_stats(torch.tensor([[0, 1], [1, 1]]))))
    assert inferred["usage_share"] == 1.0  # size inferred as max index + 1 = 2
    soft = _numbers(M.code_readings(M.code_stats(F.one_hot(torch.tensor([2, 2, 2]), 8).float())))
    assert soft["usage_share"] == pytest.approx(1 / 8) and soft["perplexity"] == pytest.approx(1.0)


def test_attention_entropy_ratio():
    uniform = torch.full((2, 3, 5, 5), 0.2)
    assert float(M.attention_readings(M.attention_stats(uniform))["entropy_ratio"]) == pytest.approx(1.0)
    peaked = torch.eye(6).expand(2, 6, 6)
    assert float(M.attention_readings(M.attention_stats(peaked))["entropy_ratio"]) == pytest.approx(0.0, abs=1e-9)
    scores = torch.randn(4, 6, 6, generator=torch.Generator().manual_seed(6))
    p = torch.softmax(scores.double(), -1)
    ref = float(-(p * p.log()).sum(-1).mean() / math.log(6))
    assert float(M.attention_readings(M.attention_stats(scores))["entropy_ratio"]) == pytest.approx(ref, rel=1e-5)


def test_unknown_tensor_summary_is_nan_safe():
    x = torch.tensor([1.0, 2.0, float("nan"), 4.0, float("inf")])
    got = _numbers(M.tensor_readings(M.tensor_stats(x)))
    finite = torch.tensor([1.0, 2.0, 4.0])
    assert got["mean"] == pytest.approx(float(finite.mean()))
    assert got["std"] == pytest.approx(float(finite.std()))
    assert got["norm"] == pytest.approx(float(finite.norm()))
    assert got["nonfinite"] == 2


# ------------------------------------------------------------------ activations


def test_relu_activation_readings():
    y = torch.relu(torch.tensor([[1.0, -1.0, 0.0, 2.0], [3.0, -2.0, 1.0, -1.0], [0.5, -0.1, -3.0, 1.0]]))
    got = _numbers(M.activation_readings(M.activation_stats(y, M.RELU_LIKE)))
    assert got["zero_fraction"] == pytest.approx(6 / 12)
    assert got["dead_unit_share"] == pytest.approx(1 / 4)  # column 1 is zero for every sample
    assert got["std"] == pytest.approx(float(y.std()))
    mean_sample = y.double().mean(0)
    assert got["sample_similarity"] == pytest.approx(float((mean_sample**2).sum() / (y.double() ** 2).sum(1).mean()))


def test_conv_units_are_channels():
    y = torch.rand(4, 3, 5, 5)
    y[:, 1] = 0.0
    got = _numbers(M.activation_readings(M.activation_stats(y, M.RELU_LIKE)))
    assert got["dead_unit_share"] == pytest.approx(1 / 3)
    assert M.unit_axis(4) == 1 and M.unit_axis(3) == 2 and M.unit_axis(2) == 1


def test_tanh_saturation_and_sample_similarity_extremes():
    y = torch.tensor([[0.99, -0.985, 0.2, 0.0], [0.5, -0.999, 0.97, 1.0]])
    got = _numbers(M.activation_readings(M.activation_stats(y, M.BOUNDED, (-1.0, 1.0))))
    assert got["saturation_fraction"] == pytest.approx(4 / 8)  # |y| >= 0.98
    same = torch.randn(1, 10).repeat(6, 1)
    assert float(M.activation_readings(M.activation_stats(same, M.PLAIN))["sample_similarity"]) == pytest.approx(1.0)
    opposite = torch.cat([torch.ones(3, 10), -torch.ones(3, 10)])
    assert float(M.activation_readings(M.activation_stats(opposite, M.PLAIN))["sample_similarity"]) == pytest.approx(0.0)


# ------------------------------------------------------------------ merging (micro-batches, ranks)


def test_merged_halves_equal_the_whole(gaussian):
    a, b = gaussian[:120], gaussian[120:]
    merged = M.merge_stats(M.representation_stats(a), M.representation_stats(b))
    whole = _rep(gaussian)
    assert _numbers(M.representation_readings(merged)) == pytest.approx(whole, rel=1e-6)
    codes_merged = M.merge_stats(M.code_stats(torch.tensor([0, 1])), M.code_stats(torch.tensor([3, 3])))
    assert codes_merged["hist"].tolist() == [1.0, 1.0, 0.0, 2.0]
    logits = torch.randn(40, 4)
    targets = torch.randint(0, 4, (40,))
    halves = M.merge_stats(M.logit_stats(logits[:15], targets[:15]), M.logit_stats(logits[15:], targets[15:]))
    assert _numbers(M.logit_readings(halves)) == pytest.approx(_numbers(M.logit_readings(M.logit_stats(logits, targets))))


def test_registry_names_every_family():
    assert set(M.FAMILIES) == {"representation", "views", "logits", "codes", "attention", "tensor", "activation"}
    assert callable(M.METRICS["effective_rank"])


# ------------------------------------------------------------------ gradients, weights, updates


def test_gradient_weight_and_update_readings():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.ReLU(), torch.nn.Linear(4, 2))
    frozen = torch.nn.Linear(2, 2)  # has gradients but no optimizer: its update is zero
    model.add_module("head", frozen)
    opt = torch.optim.SGD(list(model[0].parameters()) + list(model[2].parameters()), lr=0.1)
    model(torch.randn(5, 3)).pow(2).sum().backward()
    model[2].weight.grad[0, 0] = 0.0
    reader = ParameterReader(model)
    grads, per_param = reader.gradient_readings()
    g = expand(grads)
    layer_norm = {n: math.sqrt(sum(float(p.grad.norm()) ** 2 for p in m.parameters())) for n, m in
                  [("0", model[0]), ("2", model[2]), ("head", frozen)]}  # fmt: skip
    assert g["grad/0/norm"] == pytest.approx(layer_norm["0"], rel=1e-6)
    assert g["grad/global_norm"] == pytest.approx(math.sqrt(sum(v**2 for v in layer_norm.values())), rel=1e-6)
    assert g["grad/first_last_ratio"] == pytest.approx(layer_norm["0"] / layer_norm["head"], rel=1e-6)
    assert g["grad/min_layer_norm"] == pytest.approx(min(layer_norm.values()), rel=1e-6)
    total = sum(p.numel() for p in model.parameters())
    zeros = sum(int((p.grad == 0).sum()) for p in model.parameters())
    assert g["grad/zero_share"] == pytest.approx(zeros / total)
    assert g["grad/nonfinite_count"] == 0

    w = expand(reader.weight_readings())
    assert w["weight/2/norm"] == pytest.approx(math.hypot(float(model[2].weight.detach().norm()), float(model[2].bias.detach().norm())))
    assert w["weight/2/norm_growth"] == pytest.approx(1.0)

    reader.take_snapshot(7, per_param)
    before = [p.detach().clone() for p in model[0].parameters()]
    opt.step()
    step, updates = reader.update_readings()
    u = expand(updates)
    assert step == 7 and not reader.has_snapshot()
    delta = math.sqrt(sum(float((p.detach() - b).norm()) ** 2 for p, b in zip(model[0].parameters(), before)))
    assert u["update/0/ratio"] == pytest.approx(delta / math.sqrt(sum(float(b.norm()) ** 2 for b in before)), rel=1e-5)
    assert u["update/head/ratio"] == 0.0
    assert u["update/frozen_params"] == 2  # the head's weight and bias
    assert u["update/frozen_share"] == pytest.approx(2 / 6)
    assert u["update/max_ratio"] == pytest.approx(max(v for k, v in u.items() if k.endswith("/ratio") and "max" not in k))

    with torch.no_grad():
        model[0].weight.mul_(2)
    assert expand(reader.weight_readings())["weight/0/norm_growth"] > 1.5
    model[0].weight.grad[0, 0] = float("nan")
    assert expand(reader.gradient_readings()[0])["grad/nonfinite_count"] == 1


def test_activation_std_survives_a_large_offset_and_big_outputs_are_counted_on_a_subset():
    y = 1000.0 + 0.01 * torch.randn(64, 300, generator=torch.Generator().manual_seed(7))
    got = _numbers(M.activation_readings(M.activation_stats(y, M.PLAIN)))
    assert got["std"] == pytest.approx(float(y.double().std()), rel=1e-3)
    big = torch.relu(torch.randn(32, 8, 30, 30, generator=torch.Generator().manual_seed(8)) - 0.3)
    assert big.numel() > M.CPU_SUBSET  # read from a strided subset on the CPU
    stats = M.activation_stats(big, M.RELU_LIKE)
    exact = float((big <= 0).double().mean())
    assert float(M.activation_readings(stats)["zero_fraction"]) == pytest.approx(exact, abs=0.01)
    assert float(stats["n"]) == big.numel()
    assert float(M.activation_readings(stats)["std"]) == pytest.approx(float(big.double().std()), rel=0.01)
    assert float(M.activation_readings(stats)["dead_unit_share"]) == float((big.amax(dim=(0, 2, 3)) <= 0).double().mean())
