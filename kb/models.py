"""The knowledge base's contract: what an entry is and what a search returns.

`advisor` and `tui` import these; nothing here knows about torch, logs or Textual.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

from kb.errors import KBError  # noqa: F401  (re-exported: the contract's error type)

EntryKind = Literal["problem", "fix", "issue", "checklist", "section"]
SOURCE_KEYS = ("catalog", "guide", "run", "audit")


class Provenance(BaseModel):
    """Where an entry came from: the source file name and 1-based inclusive line range."""

    file: str
    start_line: int
    end_line: int


class Entry(BaseModel):
    """One troubleshooting item: a problem with its symptoms and steps, a fix, or an audited issue."""

    id: str
    source: str
    kind: EntryKind = "problem"
    title: str
    section: str = ""
    symptoms: list[str] = Field(default_factory=list)
    causes: list[str] = Field(default_factory=list)
    steps: list[str] = Field(default_factory=list)
    diagnosis_code: list[str] = Field(default_factory=list)
    evidence: list[str] = Field(default_factory=list)
    root_cause: str = ""
    rationale: str = ""
    expected_outcome: str = ""
    status: str = ""
    see_also: list[str] = Field(default_factory=list)
    links: list[str] = Field(default_factory=list)  # run analysis: problem <-> the fixes that address it
    references: list[str] = Field(default_factory=list)  # see-also links that point outside the KB
    signal_kinds: list[str] = Field(default_factory=list)  # advisor signal kinds this entry answers (a user's helped note)
    body: str = ""
    provenance: Provenance

    def search_text(self) -> str:
        """The text that is indexed and embedded: what a user describing a symptom would match."""
        comments = [ln.strip("# ").strip() for code in self.diagnosis_code for ln in code.splitlines() if ln.strip().startswith("#")]
        parts = [self.title, self.section, *self.symptoms, *self.causes, self.root_cause, *self.evidence, *self.steps, *comments]
        if self.rationale:
            parts.append(self.rationale)
        return "\n".join(p for p in parts if p)

    def symptom_text(self) -> str:
        """The entry as a symptom: title, symptoms and causes only (a second, focused embedding)."""
        return "\n".join(p for p in [self.title, *self.symptoms, *self.causes, self.root_cause] if p)

    def to_result(self, score: float) -> dict:
        """The JSON shape of one search result (`kb query --json`)."""
        from kb.search import result_dict

        return result_dict(self.model_dump(), score)


class SourceInfo(BaseModel):
    """One source document in the KB (`kb sources`): where it came from and how many entries it gave."""

    source: str  # the key entry ids start with; for imports, the path relative to the import root
    file: str  # the shipped file name, or the imported file's absolute path
    origin: Literal["shipped", "imported", "notes"]
    style: str = ""
    title: str = ""
    entries: int = 0
    imported: str = ""  # ISO time of the last import that changed it ("" for shipped sources)
    skipped_sections: list[str] = Field(default_factory=list)  # boilerplate sections left out (licence, contributing...)


class Hit(BaseModel):
    """One search result: the entry, its fused score, and the ranks each retriever gave it."""

    entry: Entry
    score: float
    bm25_rank: int | None = None
    dense_rank: int | None = None
