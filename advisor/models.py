"""The advisor's contract: series in, signals out, suggestions and annotations for people.

Logs and live probe runs both become `Series`; detectors turn series into `Signal`s; the matcher
turns signals into `Suggestion`s; `annotate` turns signals into `Annotation`s over a log's own axis.
The TUI and the explainer import these and nothing else of the advisor's internals.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, Field

from kb.models import Provenance

Severity = Literal["high", "medium", "low"]
SEVERITY_WEIGHT: dict[str, float] = {"high": 1.0, "medium": 0.6, "low": 0.3}
SEVERITY_ORDER: dict[str, int] = {"low": 0, "medium": 1, "high": 2}

# Roles a series can play; inferred from its name (advisor.roles) or set in a TOML override.
Role = Literal[
    "loss",  # the main / total training loss
    "loss_component",  # one term of a multi-term loss
    "val_loss",
    "val_metric",  # validation accuracy, F1, WER... (direction in Series.higher_is_better)
    "train_metric",
    "grad_norm",
    "lr",
    "rank",  # effective rank of a representation
    "usage",  # codebook usage / perplexity share
    "reward",  # an RL / preference-tuning reward (higher is better), its spread, its zero-spread share
    "loss_scale",  # a mixed-precision loss scale (GradScaler): not a loss
    "epoch",
    "step",
    "probe",  # a reading written by the live probe (name says which)
    "other",
]


class AdvisorError(Exception):
    """Every error the advisor raises on purpose; the CLI turns it into one line and exit 2."""


@dataclass
class Series:
    """One metric over the run's step axis. `steps` is increasing; `values` may hold NaN/Inf."""

    name: str  # exactly as in the log (column or key) or the probe's reading name
    role: str
    steps: np.ndarray
    values: np.ndarray
    epochs: np.ndarray | None = None  # epoch at each point, when the log knows it
    higher_is_better: bool = False
    component_of: str | None = None  # for loss components: the name of the total they add up to

    def __len__(self) -> int:
        return len(self.values)


@dataclass
class Run:
    """Everything read from one log or run store, on one step axis."""

    path: str
    format: str  # csv | jsonl | tensorboard | trainer_state | probe | wandb | wandb_export | mlflow (advisor.readers)
    axis: str  # the log's step column/key, "epoch", or "row"
    series: dict[str, Series] = field(default_factory=dict)
    skipped: list[str] = field(default_factory=list)  # human-readable notes about what was dropped
    meta: dict[str, Any] = field(default_factory=dict)  # e.g. clip value, codebook size, probe metadata
    live: bool = False  # a probe run store that is still being written


class Signal(BaseModel):
    """A symptom a detector found, with the numbers that prove it."""

    kind: str  # e.g. nan_inf, spike, component_growth, overfitting, dead_units (see advisor/links.toml)
    metric: str  # the series name exactly as in the log or run store
    start: float  # on the run's step axis
    end: float
    start_epoch: float | None = None
    end_epoch: float | None = None
    severity: Severity
    value: float | None = None  # the headline number (e.g. the ratio, the share, the z-score)
    threshold: float | None = None  # the threshold it crossed
    numbers: dict[str, float | int | str | None] = Field(default_factory=dict)
    summary: str  # one sentence a person can read
    query: str = ""  # symptom text the matcher searches the KB with


class Evidence(BaseModel):
    """One signal as it supports one suggestion."""

    signal: str  # Signal.kind
    metric: str
    value: float | None = None
    threshold: float | None = None
    step: float | None = None  # where it starts on the step axis
    end_step: float | None = None
    severity: Severity = "low"
    summary: str = ""

    @classmethod
    def from_signal(cls, s: Signal) -> "Evidence":
        return cls(
            signal=s.kind,
            metric=s.metric,
            value=s.value,
            threshold=s.threshold,
            step=s.start,
            end_step=s.end,
            severity=s.severity,
            summary=s.summary,
        )


# Every way the matcher finds a suggestion (Suggestion.matched_by); explain has a phrase for each.
MATCHED_BY = ("link", "search", "link+search", "describe", "history", "linked-fix", "notes")
CURATED_MATCHES = frozenset({"link", "link+search", "linked-fix"})  # someone linked the entry to this kind of signal
USER_MATCHES = frozenset({"history", "notes"})  # the user's own experience with it


class Suggestion(BaseModel):
    """One KB entry ranked for a run, with the evidence that triggered it."""

    id: str
    source: str
    title: str
    score: float
    severity: Severity
    evidence: list[Evidence] = Field(default_factory=list)
    steps: list[str] = Field(default_factory=list)
    symptoms: list[str] = Field(default_factory=list)
    provenance: Provenance
    expected_outcome: str = ""  # what the run analysis expected this fix to achieve, when it said
    matched_by: list[str] = Field(default_factory=list)  # values from MATCHED_BY

    @property
    def strength(self) -> str:
        """strong / likely / possible, from how many independent lines of support found the entry (a
        curated link, the KB search, the user's description, the user's own marks and notes), not from
        the score, whose scale means nothing to a reader."""
        how = set(self.matched_by)
        lines = sum((bool(how & CURATED_MATCHES), bool(how & {"search", "link+search"}), "describe" in how, bool(how & USER_MATCHES)))
        if lines >= 2 and how & (CURATED_MATCHES | USER_MATCHES):
            return "strong"
        if how & (CURATED_MATCHES | USER_MATCHES) or lines >= 2:
            return "likely"
        return "possible"


class SuggestionRef(BaseModel):
    id: str
    source: str
    title: str
    score: float


class Annotation(BaseModel):
    """A signal placed on a log's own step axis, with the entries that address it."""

    signal: str
    metric: str
    start: float
    end: float
    start_epoch: float | None = None
    end_epoch: float | None = None
    severity: Severity
    summary: str
    evidence: dict[str, Any] = Field(default_factory=dict)
    suggestions: list[SuggestionRef] = Field(default_factory=list)


class SeriesSummary(BaseModel):
    """One series of an annotated log: its name, role and extent on the step axis."""

    name: str
    role: str
    points: int
    first: float | None = None
    last: float | None = None


class AnnotationReport(BaseModel):
    """What `advisor annotate` returns: the log's signals placed on its own step axis."""

    log: str
    format: str
    axis: str
    series: list[SeriesSummary] = Field(default_factory=list)
    skipped: list[str] = Field(default_factory=list)  # what the reader left out
    notes: list[str] = Field(default_factory=list)  # the analysis' remarks: not enough data, healthy curves
    annotations: list[Annotation] = Field(default_factory=list)


class Diagnosis(BaseModel):
    """What `advisor diagnose` returns."""

    path: str | None = None
    describe: str | None = None
    suggestions: list[Suggestion] = Field(default_factory=list)
    signals: list[Signal] = Field(default_factory=list)
    notes: list[str] = Field(default_factory=list)  # e.g. "not enough data", what was skipped
