"""Signals -> ranked suggestions: explicit links, search, agreement, description, history."""

from __future__ import annotations

import pytest

from advisor.matcher import HISTORY_WEIGHT, rank, signal_links, suggestions_for_signal
from advisor.models import Signal


def sig(kind, metric="loss", severity="high", query="", start=100.0, end=200.0, **numbers):
    return Signal(kind=kind, metric=metric, start=start, end=end, severity=severity, summary=f"{kind} in {metric}", query=query, numbers=numbers)


def test_every_link_points_at_an_entry(kb):
    missing = [(kind, eid) for kind, ids in signal_links().items() for eid in ids if eid not in {e.id for e in kb.entries()}]
    assert missing == []


def test_nan_signal_ranks_the_nan_entry_first(kb):
    out = rank([sig("nan_inf", query="loss becomes nan")], kb)
    assert out[0].id == "guide/001-loss-becomes-nan"
    assert out[0].severity == "high"
    assert out[0].evidence[0].signal == "nan_inf" and out[0].evidence[0].metric == "loss"
    assert out[0].provenance.file == "guide-troubleshooting.md"
    assert "link+search" in out[0].matched_by


def test_jepa_like_signals_bring_the_run_analysis_forward(kb):
    signals = [
        sig("component_growth", metric="train/relational", query="one loss component keeps growing while the total loss decreases"),
        sig("overfitting", metric="val/loss", severity="medium", query="validation loss rises after its minimum while training loss falls"),
    ]
    out = rank(signals, kb)
    top3 = [s.id for s in out[:3]]
    assert "run/problem-1-relational-loss-not-scale-invariant" in top3
    fix = next(s for s in out if s.id == "run/fix-1-1-remove-or-drastically-reduce-relational-loss")
    assert fix.evidence and fix.evidence[0].metric == "train/relational"
    patience = next(s for s in out if s.id == "run/fix-1-3-increase-early-stopping-patience")
    assert "8.0-8.1" in patience.expected_outcome
    # the run analysis's own problems and fixes come first; the general overfitting guide stays on the first screen
    assert any(s.id == "guide/012-validation-loss-increasing-while-training-loss-decreases" for s in out[:8])


def test_agreement_between_signals_raises_an_entry(kb):
    one = rank([sig("grad_spike", metric="grad_norm")], kb)
    two = rank([sig("grad_spike", metric="grad_norm"), sig("exploding_gradients", metric="grad/first_last_ratio")], kb)
    score_one = next(s.score for s in one if s.id == "guide/008-exploding-gradients")
    score_two = next(s for s in two if s.id == "guide/008-exploding-gradients")
    assert score_two.score > score_one
    assert {e.signal for e in score_two.evidence} == {"grad_spike", "exploding_gradients"}


def test_severity_orders_equal_evidence(kb):
    out = rank([sig("dead_units", severity="low"), sig("nan_inf", severity="high", query="loss is nan")], kb)
    assert out[0].id == "guide/001-loss-becomes-nan"


def test_describe_alone_and_describe_reranks(kb):
    alone = rank([], kb, describe="gpu runs out of memory when I increase the batch size")
    assert alone[0].id == "guide/011-out-of-memory-oom"
    assert alone[0].matched_by == ["describe"]
    base = rank([sig("plateau", severity="medium", query="loss stops decreasing and stays flat")], kb)
    described = rank([sig("plateau", severity="medium", query="loss stops decreasing and stays flat")], kb, describe="learning rate is probably too low, loss barely moves")
    assert [s.id for s in base[:3]] != [s.id for s in described[:3]]


def test_dismissed_and_history(kb):
    signals = [sig("nan_inf", query="loss becomes nan")]
    assert all(s.id != "guide/001-loss-becomes-nan" for s in rank(signals, kb, dismissed={"guide/001-loss-becomes-nan"}))
    base = rank(signals, kb)
    boosted_id = base[3].id
    boosted = rank(signals, kb, history={boosted_id: 1.0})
    assert [s.id for s in boosted].index(boosted_id) < 3 or boosted[2].score - base[3].score > HISTORY_WEIGHT
    hit = next(s for s in boosted if s.id == boosted_id)
    assert hit.score == pytest.approx(base[3].score + HISTORY_WEIGHT, abs=1e-3)
    assert "history" in hit.matched_by


def test_suggestions_for_one_signal(kb):
    entries = suggestions_for_signal(sig("usage_collapse", metric="vq/usage", query="codebook usage drops"), kb, k=3)
    assert len(entries) == 3
    assert entries[0][0].id == "run/problem-2-vq-refresh-introduces-discontinuity"


# --------------------------------------------------------------- advice fits the run (applicability)

VQ_ENTRIES = {
    "run/problem-2-vq-refresh-introduces-discontinuity",
    "run/fix-1-2-disable-vq-refresh",
    "run/fix-3-4-hybrid-vq-vae-strategy",
}


@pytest.fixture(scope="module")
def real_run():
    """Read one of the real public logs (no codebook, no SSL, no attention metadata)."""
    from advisor.logs import read_log
    from conftest import shared_path

    return lambda name: read_log(shared_path("real-logs", name))


@pytest.fixture(scope="module")
def demo_run():
    from advisor import demo_run_path
    from advisor.logs import read_log

    return read_log(demo_run_path())


def test_entry_profiles_come_from_the_entries_text(kb):
    from advisor.matcher import applicability

    table = applicability(kb)
    profile = lambda i: table.profile(kb.get(i))  # noqa: E731
    assert "vq" in profile("run/problem-2-vq-refresh-introduces-discontinuity").all_of
    assert profile("catalog/092-model-fails-after-moving-to-mixed-precision").any_of == {"mixed_precision"}
    assert "attention" in profile("guide/016-attention-weights-are-uniform").any_of
    assert "joint_embedding" in profile("catalog/071-symmetric-architectures-cause-collapse").any_of
    assert "rl_preference" in profile("guide/019-dpo-loss-not-decreasing").any_of
    for general in ("guide/001-loss-becomes-nan", "guide/008-exploding-gradients", "catalog/044-loss-curve-shows-sudden-jumps-or-drops"):
        assert profile(general).settings == frozenset(), general
    # a project's own analysis needs the project's setting even where the entry's text does not name it
    assert "joint_embedding" in profile("run/fix-1-3-increase-early-stopping-patience").all_of


def test_run_profile_from_series_names_and_roles(real_run, demo_run):
    from advisor.applicability import run_profile

    assert {"vq", "multi_term_loss", "contrastive", "joint_embedding", "representation"} <= run_profile(demo_run).has
    mnist = run_profile(real_run("keras-mnist-cnn.csv"))
    assert mnist.has == {"classification"}
    grpo = run_profile(real_run("hf-grpo-chaos-economy.json"))
    assert "rl_preference" in grpo.has and "vq" not in grpo.settings
    seg = run_profile(real_run("hf-segformer-mitb0.json"))
    assert {"segmentation", "classification"} <= seg.has
    slm = run_profile(real_run("lightning-slm-pretrain.csv"))
    assert "sequence" in slm.has and "attention" in slm.possible  # a text log cannot show its modules
    # what the user describes counts as what the run has
    assert "vq" in run_profile(real_run("keras-mnist-cnn.csv"), describe="my VQ codebook usage drops").has


def test_run_profile_from_a_real_probe_run(tmp_path):
    """Module types, tensors and AMP metadata the probe records show attention, embeddings, mixed precision."""
    import torch
    from torch import nn

    from advisor import Probe
    from advisor.applicability import run_profile
    from advisor.logs import read_log

    torch.manual_seed(0)
    layer = nn.TransformerEncoderLayer(16, 2, 32, batch_first=True)
    head = nn.Linear(16, 4)
    model = nn.Sequential(layer, head)
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    with Probe(model, run=tmp_path / "tf", every=2) as probe:
        for step in range(6):
            x = torch.randn(8, 5, 16)
            with torch.autocast("cpu", dtype=torch.bfloat16):
                h = layer(x)
            logits = head(h.float().mean(1))
            loss = nn.functional.cross_entropy(logits, torch.randint(0, 4, (8,)))
            opt.zero_grad()
            loss.backward()
            probe.step(step=step, loss=loss, embeddings=h.float().mean(1), logits=logits)
            opt.step()
    profile = run_profile(read_log(tmp_path / "tf"))
    assert {"attention", "normalization_layers", "representation", "classification"} <= profile.has, profile.evidence
    assert "vq" not in profile.settings and "rl_preference" not in profile.settings

    mlp = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))
    with Probe(mlp, run=tmp_path / "mlp", every=2) as probe:
        for step in range(4):
            loss = mlp(torch.randn(8, 4)).pow(2).mean()
            loss.backward()
            probe.step(step=step, loss=loss)
    plain = run_profile(read_log(tmp_path / "mlp"))
    assert not plain.has & {"attention", "vq", "normalization_layers", "representation", "mixed_precision"}, plain.evidence


def test_vq_entries_are_never_suggested_for_a_run_without_a_codebook(kb, real_run):
    run = real_run("keras-mnist-cnn.csv")
    signals = [
        sig("level_shift", metric="loss", query="the loss jumps to a new level and stays there"),
        sig("spike", metric="loss", query="loss curve shows sudden jumps"),
        sig("usage_collapse", metric="loss", severity="medium", query="codebook usage drops"),
    ]
    ids = [s.id for s in rank(signals, kb, run=run, top=20)]
    assert ids and not VQ_ENTRIES & set(ids), ids
    # the same signals without a run (a describe-only search) keep the VQ entries
    assert VQ_ENTRIES & {s.id for s in rank(signals, kb, top=20)}
    # annotations of one signal keep to the run too
    assert not VQ_ENTRIES & {e.id for e, _ in suggestions_for_signal(signals[0], kb, k=5, run=run)}


def test_level_shift_links_to_vq_only_for_usage_series(kb, demo_run):
    on_usage = rank([sig("level_shift", metric="vq/usage", role="usage", query="codebook usage jumps")], kb, run=demo_run)
    assert on_usage[0].id == "run/problem-2-vq-refresh-introduces-discontinuity"
    on_loss = rank([sig("level_shift", metric="train/total", role="loss", query="the loss jumps to a new level")], kb, run=demo_run)
    assert on_loss[0].id == "catalog/044-loss-curve-shows-sudden-jumps-or-drops"


def test_project_analysis_entries_only_for_runs_that_share_the_setting(kb, real_run, demo_run):
    growth = sig("component_growth", metric="odds_ratio_loss", query="one loss component keeps growing while the total loss decreases")
    orpo = rank([growth], kb, run=real_run("hf-orpo-chatglm-recsys.json"), top=20)
    assert orpo and not [s.id for s in orpo if s.source == "run"], [s.id for s in orpo]
    assert "run/problem-3-multi-loss-optimization-without-balancing" in {s.id for s in rank([growth], kb, run=demo_run)[:5]}
    plateau = sig("plateau", metric="loss", query="loss stops decreasing")
    mnist = rank([plateau, sig("overfitting", metric="val_loss", severity="medium")], kb, run=real_run("keras-mnist-cnn.csv"), top=20)
    assert not [s.id for s in mnist if s.source in ("run", "audit") and s.id != "audit/003-model-collapsing-to-few-classes"]


def test_describe_naming_a_setting_lets_its_entries_back_in(kb, real_run):
    run = real_run("keras-mnist-cnn.csv")
    signals = [sig("level_shift", metric="loss", query="the loss jumps to a new level and stays there")]
    assert not VQ_ENTRIES & {s.id for s in rank(signals, kb, run=run, top=20)}
    # the JEPA analysis's VQ entries need both of its settings named
    half = rank(signals, kb, run=run, describe="my VQ codebook usage collapses after a refresh", top=20)
    assert not VQ_ENTRIES & {s.id for s in half}
    described = rank(signals, kb, run=run, describe="my JEPA model's VQ codebook usage collapses after a refresh", top=20)
    assert VQ_ENTRIES & {s.id for s in described}
    attention = {"guide/016-attention-weights-are-uniform", "catalog/077-attention-maps-are-uniform-or-random"}
    plateau = [sig("plateau", metric="loss", query="loss stops decreasing")]
    assert not attention & {s.id for s in rank(plateau, kb, run=run, top=20)}
    assert attention & {s.id for s in rank(plateau, kb, run=run, describe="the attention weights look uniform", top=5)}


def test_demoted_entries_rank_lower(kb):
    signals = [sig("nan_inf", query="loss becomes nan")]
    base = rank(signals, kb)
    first = base[0].id
    demoted = rank(signals, kb, demoted={first: 0.3})
    assert [s.id for s in demoted].index(first) > 0
    assert next(s for s in demoted if s.id == first).score == pytest.approx(0.3 * base[0].score, rel=1e-3)


def test_notes_linked_to_a_signal_kind_become_candidates(kb_copy):
    from kb import KnowledgeBase

    store = KnowledgeBase(kb_copy)
    try:
        if not hasattr(store, "save_note"):
            pytest.skip("this KB has no user notes")
        note = store.save_note(
            run="runs/old", entry_id="guide/006-gradients-are-all-zero", title="Gradients are all zero",
            note="forgot optimizer.zero_grad() in my loop", signal_kinds=["grad_growth"],
        )
        out = rank([sig("grad_growth", metric="grad/global_norm", query="gradient norm grows with the step count")], store)
        hit = next(s for s in out if s.id == note.id)
        assert "notes" in hit.matched_by and out.index(hit) < 3
    finally:
        store.close()
