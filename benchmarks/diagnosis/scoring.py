"""Scoring one diagnosis against a labelled case: recall in the top 3, loud signals, misfits in the top 5."""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from advisor.applicability import rules
from advisor.matcher import applicability
from advisor.models import Diagnosis

HERE = Path(__file__).resolve().parent
REAL_LOGS = HERE.parents[1].parent / "shared" / "real-logs"
TOP_RECALL = 3
TOP_MISFIT = 5


@dataclass
class RealLog:
    name: str
    path: Path
    expected: list[str]
    settings: list[str]
    symptoms: list[str] = field(default_factory=list)
    evidence: str = ""

    @property
    def healthy(self) -> bool:
        return not self.expected


def real_logs(folder: Path = REAL_LOGS) -> list[RealLog]:
    labels = tomllib.loads((HERE / "real_logs.toml").read_text(encoding="utf-8"))["logs"]
    return [
        RealLog(name, folder / name, spec.get("expected", []), spec.get("settings", []), spec.get("symptoms", []), spec.get("evidence", ""))
        for name, spec in labels.items()
    ]


def closed(settings: list[str]) -> frozenset[str]:
    """The labelled settings with those they imply (a contrastive run is self-supervised)."""
    out = set(settings)
    pending = list(out)
    while pending:
        s = rules().settings.get(pending.pop())
        for other in s.implies if s else ():
            if other not in out:
                out.add(other)
                pending.append(other)
    return frozenset(out)


def score(diagnosis: Diagnosis, expected: list[str], settings: list[str], kb) -> dict:
    """One case's row: hit (fault cases), loud signals (medium/high), misfits among the top 5."""
    ids = [s.id for s in diagnosis.suggestions]
    has = closed(settings)
    table = applicability(kb)
    misfits = [s.id for s in diagnosis.suggestions[:TOP_MISFIT] if not table.profile(kb.get(s.id)).fits(has)]
    loud = [f"{s.kind}:{s.metric}:{s.severity}" for s in diagnosis.signals if s.severity in ("high", "medium")]
    return {
        "healthy": not expected,
        "hit": bool(expected) and any(i in expected for i in ids[:TOP_RECALL]),
        "rank": next((i + 1 for i, e in enumerate(ids) if e in expected), None),
        "top": ids[:TOP_MISFIT],
        "loud": loud,
        "signals": sorted({f"{s.kind}:{s.severity}" for s in diagnosis.signals}),
        "misfits": misfits,
    }


def summary(rows: dict[str, dict]) -> dict:
    faults = [r for r in rows.values() if not r["healthy"]]
    healthy = [r for r in rows.values() if r["healthy"]]
    return {
        "cases": len(rows),
        "faults": len(faults),
        "healthy": len(healthy),
        "recall_top3": round(sum(r["hit"] for r in faults) / len(faults), 3) if faults else None,
        "loud_per_healthy_run": round(sum(len(r["loud"]) for r in healthy) / len(healthy), 3) if healthy else None,
        "healthy_runs_with_loud_signals": sum(bool(r["loud"]) for r in healthy),
        "misfits": sum(len(r["misfits"]) for r in rows.values()),
    }
