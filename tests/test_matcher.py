"""Signals -> ranked suggestions: explicit links, search, agreement, description, history."""

from __future__ import annotations

import pytest

from advisor.matcher import rank, signal_links, suggestions_for_signal
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
    assert any(s.id == "guide/012-validation-loss-increasing-while-training-loss-decreases" for s in out[:6])


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
    assert [s.id for s in boosted].index(boosted_id) < 3
    assert "history" in next(s for s in boosted if s.id == boosted_id).matched_by


def test_suggestions_for_one_signal(kb):
    entries = suggestions_for_signal(sig("usage_collapse", metric="vq/usage", query="codebook usage drops"), kb, k=3)
    assert len(entries) == 3
    assert entries[0][0].id == "run/problem-2-vq-refresh-introduces-discontinuity"
