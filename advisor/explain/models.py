"""The explainer's data: what a backend may see (`Grounding`), and what the checker reports (`CheckFinding`).

These models import nothing else of `advisor.explain`, so `grounding` (which builds them), `howto`
(which writes a sentence from a signal) and `check` can each import them without a cycle.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

# int before float so a whole number stays 1200, not 1200.0, in the prompt and the composer's text.
Number = int | float


class GroundedSignal(BaseModel):
    kind: str
    metric: str
    severity: str
    start_step: Number
    end_step: Number
    start_epoch: Number | None = None
    end_epoch: Number | None = None
    value: Number | str | None = None  # str only for NaN / Inf, which JSON cannot hold
    threshold: Number | str | None = None
    numbers: dict[str, int | float | str | None] = Field(default_factory=dict)
    summary: str = ""
    how_to_tell: str = ""


class EvidenceRef(BaseModel):
    signal: str
    metric: str


class GroundedSuggestion(BaseModel):
    rank: int
    id: str
    title: str
    severity: str
    matched_by: list[str] = Field(default_factory=list)
    evidence: list[EvidenceRef] = Field(default_factory=list)
    steps: list[str] = Field(default_factory=list)
    expected_outcome: str = ""
    # For an entry that is not from the shipped KB: whose words these are ("your own notes", "your imported document x.md").
    from_user: str | None = None


class Grounding(BaseModel):
    run: str | None = None
    user_description: str | None = None
    signals: list[GroundedSignal] = Field(default_factory=list)
    suggestions: list[GroundedSuggestion] = Field(default_factory=list)
    notes: list[str] = Field(default_factory=list)

    @property
    def ids(self) -> list[str]:
        return [s.id for s in self.suggestions]

    @property
    def empty(self) -> bool:
        return not self.signals and not self.suggestions

    def signal(self, kind: str, metric: str) -> GroundedSignal | None:
        return next((s for s in self.signals if s.kind == kind and s.metric == metric), None)

    def suggestion(self, entry_id: str) -> GroundedSuggestion | None:
        return next((s for s in self.suggestions if s.id == entry_id), None)


FindingKind = Literal["citation", "action", "instruction", "number"]


class CheckFinding(BaseModel):
    """One thing the checker removed from a model's answer, or marked in it."""

    kind: FindingKind
    what: str  # as the answer wrote it (shortened)
    why: str  # one clause a person can read
    removed: bool = True  # False: kept in the text and marked "[not in the evidence]"
