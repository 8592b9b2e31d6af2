"""Fault-injected runs trained on CPU with the probe: the right entries rank in the top 3, the healthy run stays quiet."""

from __future__ import annotations

import pytest

import fault_runs
from advisor.diagnose import diagnose


@pytest.fixture(scope="module")
def fault_dirs(tmp_path_factory):
    return fault_runs.run_all(tmp_path_factory.mktemp("faults"))


@pytest.mark.slow
@pytest.mark.parametrize("name", [n for n, (_, expected) in fault_runs.SCENARIOS.items() if expected])
def test_fault_is_diagnosed_in_top3(name, fault_dirs, kb):
    expected = fault_runs.SCENARIOS[name][1]
    result = diagnose(fault_dirs[name], kb=kb)
    top3 = [s.id for s in result.suggestions[:3]]
    assert any(e in top3 for e in expected), (name, top3, [(s.kind, s.metric, s.severity) for s in result.signals])
    hit = next(s for s in result.suggestions[:3] if s.id in expected)
    assert hit.evidence, "a suggestion for a probe run must carry the signal that triggered it"
    assert all(e.step is not None for e in hit.evidence)


@pytest.mark.slow
def test_healthy_run_stays_quiet(fault_dirs, kb):
    result = diagnose(fault_dirs["healthy"], kb=kb)
    loud = [(s.kind, s.metric, s.severity, s.summary) for s in result.signals if s.severity in ("high", "medium")]
    assert loud == []
