"""An `Explanation` for a person: clean text for a terminal (`render_text`), Markdown for the TUI
(`render_markdown`). Both end with what the checker removed or could not verify, whenever it did
anything, so that nothing is changed behind the reader's back.
"""

from __future__ import annotations

import re

from advisor.explain.check import NOT_IN_EVIDENCE
from advisor.explain.compose import HEADINGS
from advisor.explain.core import Explanation
from advisor.explain.models import CheckFinding

HEADING_CHECKED = "What the checker removed or could not verify"

_FIX_TITLE = re.compile(r"^(\d{1,2})\. (.+\[[^\[\]\s]+/[^\[\]\s]+\].*)$")
_FIX_FIELD = re.compile(r"^ {3}(Why|Steps \(from [^)]*\)|Expected outcome \(from [^)]*\)|The entry lists no steps)(:?)(.*)$")
_FIX_STEP = re.compile(r"^ {3}- (.*)$")
_HEADING_DECOR = re.compile(r"^[#*_\s]*(.*?)[*_:\s]*$")


def _heading(line: str) -> str | None:
    """The known section heading a line is (as a model may decorate it: '## Fixes to try first:'), or None."""
    core = _HEADING_DECOR.match(line).group(1)  # type: ignore[union-attr]
    return next((h for h in HEADINGS if core.lower() == h.lower()), None)


def finding_line(f: CheckFinding) -> str:
    """'removed `rm -rf ~/`: it is not in the steps of the entries it cites', and the like."""
    if f.kind == "number":
        return f"marked {f.what} {NOT_IN_EVIDENCE}: {f.why}"
    if f.kind == "action":
        return f"removed a sentence with `{f.what}`, which is not from the knowledge base: {f.why}"
    if f.kind == "instruction":  # not quoted: what was aimed at a model is not repeated to the reader
        return f"removed a sentence that {f.why.removeprefix('it ')}"
    what = f'"{f.what}"' if " " in f.what else f.what
    return f"removed {what}: {f.why}"


def checked_lines(e: Explanation) -> list[str]:
    """One line per thing the checker did, most serious first; [] when it changed nothing."""
    order = {"instruction": 0, "action": 1, "citation": 2}
    lines = [finding_line(f) for f in sorted((f for f in e.findings if f.kind != "number"), key=lambda f: order[f.kind])]
    numbers = list(dict.fromkeys(n for f in e.findings if f.kind == "number" for n in f.what.split(", ")))
    if numbers:  # one line for all of them
        lines.append(finding_line(CheckFinding(kind="number", what=", ".join(numbers), removed=False,
                                               why=next(f.why for f in e.findings if f.kind == "number"))))
    return lines


def written_by(e: Explanation) -> str:
    """Who wrote the text, and which model was asked (kept on a fallback too); '' for the composer backend."""
    if e.backend == "none" or not e.model:
        return ""
    if e.fallback:
        return f"Written by the built-in composer; the model asked was {e.model} ({e.backend} backend)."
    return f"Written by {e.model} ({e.backend} backend), checked against the knowledge base and the run's evidence."


def render_text(e: Explanation) -> str:
    """The explanation for a terminal: underlined headings, then a "checked" footer when the checker acted."""
    out: list[str] = []
    for line in e.text.splitlines():
        heading = _heading(line) if line.strip() else None
        if heading:
            out += [heading, "─" * len(heading)]
        else:
            out.append(line)
    lines = checked_lines(e)
    if lines:
        out += ["", HEADING_CHECKED, "─" * len(HEADING_CHECKED), *[f"- {ln}" for ln in lines]]
    if written_by(e):
        out += ["", written_by(e)]
    return "\n".join(out).rstrip() + "\n"


def render_markdown(e: Explanation) -> str:
    """The explanation as Markdown (the TUI's explain pane): sections as headings, each fix a sub-heading
    with its why, steps and expected outcome, and the checker's section at the end when it acted."""
    out: list[str] = []
    for line in e.text.splitlines():
        stripped = line.strip()
        if not stripped:
            out.append("")
            continue
        if stripped.startswith("Note: ") and not out:
            out += [f"> **Note:** {stripped[len('Note: '):]}", ""]
            continue
        heading = _heading(stripped)
        if heading:
            out += ["", f"## {heading}", ""]
            continue
        title = _FIX_TITLE.match(line)
        if title:
            out += ["", f"### {title.group(1)}. {title.group(2)}", ""]
            continue
        field = _FIX_FIELD.match(line)
        if field:
            name, colon, rest = field.groups()
            out += ["", f"**{name}{colon}**{rest}", ""]
            continue
        step = _FIX_STEP.match(line)
        out.append(f"- {step.group(1)}" if step else line)
    lines = checked_lines(e)
    if lines:
        out += ["", f"## {HEADING_CHECKED}", "", *[f"- {ln}" for ln in lines]]
    if written_by(e):
        out += ["", f"*{written_by(e)}*"]
    text = "\n".join(out)
    return re.sub(r"\n{3,}", "\n\n", text).strip() + "\n"
