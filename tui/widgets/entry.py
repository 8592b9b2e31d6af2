"""A KB entry as Markdown (symptoms, causes, steps, diagnosis code...) and its provenance line.

Entries come from markdown documents, so they are shown with Textual's Markdown widget, which never
reads Rich markup: a `[red]` in an entry stays text.
"""

from __future__ import annotations

from rich.text import Text

SOURCE_STYLE = {"catalog": "bold #5fafff", "guide": "bold #87d787", "run": "bold #ffaf5f", "audit": "bold #d787d7"}
SEVERITY_STYLE = {"high": "bold #ff5f5f", "medium": "bold #ffd75f", "low": "#8a8a8a"}
SEVERITY_SHORT = {"high": "high", "medium": "med", "low": "low"}


# Why an entry is on the list (Suggestion.matched_by, values from advisor.models.MATCHED_BY), for a person.
WHY = {
    "link": "linked to the signal",
    "link+search": "linked to the signal, found by search",
    "search": "found by search",
    "describe": "from your description",
    "history": "helped before",
    "linked-fix": "fix for a linked problem",
    "notes": "your note",
}
WHY_SHORT = {
    "link": "signal",
    "link+search": "signal+search",
    "search": "search",
    "describe": "your words",
    "history": "helped",
    "linked-fix": "linked fix",
    "notes": "your note",
}
STRENGTH_STYLE = {"strong": "bold #87d787", "likely": "#ffd75f", "possible": "#8a8a8a"}


def strength(sug) -> str:
    """strong / likely / possible (advisor.models.Suggestion.strength)."""
    return sug.strength


def why(sug, short: bool = False) -> str:
    """Why the entry is suggested, in words ("linked to the signal, helped before")."""
    table = WHY_SHORT if short else WHY
    parts = [table.get(m, m) for m in sug.matched_by]
    if "link+search" in sug.matched_by:  # says both already
        parts = [p for m, p in zip(sug.matched_by, parts) if m not in ("link", "search") or m == "link+search"]
    return (" · " if short else ", ").join(dict.fromkeys(parts))


def source_badge(source: str) -> Text:
    """[guide] for a shipped document; the user's own documents and notes say so."""
    from kb.build import NOTES_SOURCE
    from kb.store import SHIPPED_SOURCES

    if source == NOTES_SOURCE:
        return Text("[your note]", style="bold #5fd7d7")
    if source not in SHIPPED_SOURCES:
        return Text(f"[your document: {source}]", style="bold #5fd7d7")
    return Text(f"[{source}]", style=SOURCE_STYLE.get(source, "bold"))


def _fence(code: str) -> str:
    fence = "```"
    while fence in code:
        fence += "`"
    lang = "python" if any(tok in code for tok in ("import ", "def ", "torch", "print(", " = ")) else ""
    return f"{fence}{lang}\n{code.rstrip()}\n{fence}"


def _bullets(items: list[str], numbered: bool = False) -> str:
    lines = []
    for i, item in enumerate(items, 1):
        item = " ".join(str(item).split("\n")).strip()
        lines.append(f"{i}. {item}" if numbered else f"- {item}")
    return "\n".join(lines)


def fix_markdown(entry) -> str:
    """The fix of an entry (or a Suggestion): its steps and what they should achieve ("" if neither)."""
    parts = []
    if entry.steps:
        parts.append("### Steps\n\n" + _bullets(entry.steps, numbered=True))
    if entry.expected_outcome:
        parts.append("### Expected outcome\n\n" + entry.expected_outcome)
    return "\n\n".join(parts)


def entry_markdown(entry, with_title: bool = False, fix: bool = True) -> str:
    """Markdown for one `kb.models.Entry`. `fix=False` leaves out the steps and expected outcome
    (the detail pane shows them first, with `fix_markdown`, and the rest of the entry below)."""
    parts: list[str] = []
    if with_title:
        parts.append(f"## {entry.title}")
    if entry.section:
        parts.append(f"*{entry.section}*")
    if entry.status:
        parts.append(f"**Status:** {entry.status}")
    if entry.symptoms:
        parts.append("### Symptoms\n\n" + _bullets(entry.symptoms))
    if entry.causes:
        parts.append("### Causes\n\n" + _bullets(entry.causes))
    if entry.root_cause:
        parts.append("### Root cause\n\n" + entry.root_cause)
    if entry.evidence:
        parts.append("### What the source saw\n\n" + _bullets(entry.evidence))
    if fix and entry.steps:
        parts.append("### Steps\n\n" + _bullets(entry.steps, numbered=True))
    if entry.diagnosis_code:
        parts.append("### Diagnosis code\n\n" + "\n\n".join(_fence(c) for c in entry.diagnosis_code))
    if entry.rationale:
        parts.append("### Rationale\n\n" + entry.rationale)
    if fix and entry.expected_outcome:
        parts.append("### Expected outcome\n\n" + entry.expected_outcome)
    if entry.links:
        parts.append("### Linked\n\n" + _bullets([f"`{x}`" for x in entry.links]))
    if entry.see_also or entry.references:
        parts.append("### See also\n\n" + _bullets([*entry.see_also, *entry.references]))
    if len(parts) <= (1 if with_title else 0) and entry.body:
        parts.append(entry.body)
    if not parts and not fix:
        return ""
    return "\n\n".join(parts) if parts else "*(this entry has no text)*"


def suggestion_markdown(sug, fix: bool = True) -> str:
    """Markdown from a Suggestion alone (when the KB does not have the entry); `fix` as in entry_markdown."""
    parts = []
    if fix and sug.steps:
        parts.append("### Steps\n\n" + _bullets(sug.steps, numbered=True))
    if fix and sug.expected_outcome:
        parts.append("### Expected outcome\n\n" + sug.expected_outcome)
    if sug.symptoms:
        parts.append("### Symptoms\n\n" + _bullets(sug.symptoms))
    return "\n\n".join(parts) or ("*(no text)*" if fix else "")


def provenance_text(prov, key_hint: str = "o") -> Text:
    t = Text()
    t.append("Source  ", style="bold")
    t.append(f"{prov.file}", style="underline")
    t.append(f"  lines {prov.start_line}–{prov.end_line}")
    if key_hint:
        t.append(f"   ({key_hint}: open the source at these lines)", style="dim")
    return t
