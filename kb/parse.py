"""Markdown troubleshooting documents -> `Entry`s.

The token stream of markdown-it-py gives the structure (headings, lists, fences, tables) with source
line maps, so a `#` inside a code fence is code, not a heading, and every entry keeps the lines it
came from. Each document's style is detected from its headings:

- catalog: numbered `## N. Title` problems with Symptoms / Suggested Next Steps;
- guide:   `### Problem` headings grouped under `## Section`s, a Quick Diagnosis table whose symptom
           phrases link to sections, and a Quick Checklist;
- run:     a run analysis with `### Problem N: …` root causes and `#### Fix N.M: …` fixes;
- audit:   `### N. Issue STATUS` headings with Root Cause / Fixes Applied / Status;
- generic: any other markdown — the heading level that carries most of the content.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from markdown_it import MarkdownIt

from kb.models import Entry, KBError, Provenance
from kb.text import repair_mojibake, slugify, strip_symbols

MAX_DOCUMENT_BYTES = 5 * 1024 * 1024  # a troubleshooting guide is kilobytes; 5 MB is already generous

STATUS_WORDS = ("PARTIALLY FIXED", "NEEDS MORE DATA", "EXPECTED WITH LIMITED DATA", "NOT FIXED", "FIXED", "OPEN", "WONTFIX", "RESOLVED", "IN PROGRESS")

# Labels (bold lead-ins like `**Symptoms**:`) -> Entry field. Labels not listed stay in the body only.
LABEL_FIELDS: dict[str, str] = {
    "symptoms": "symptoms",
    "symptom": "symptoms",
    "error": "symptoms",
    "errors": "symptoms",
    "error message": "symptoms",
    "signals": "signal_kinds",
    "common causes": "causes",
    "causes": "causes",
    "cause": "causes",
    "why it fails": "causes",
    "why": "causes",
    "problem": "causes",
    "root cause": "root_cause",
    "suggested next steps": "steps",
    "next steps": "steps",
    "fixes": "steps",
    "fix": "steps",
    "fixes applied": "steps",
    "potential fixes": "steps",
    "fix required": "steps",
    "our fix options": "steps",
    "solution": "steps",
    "solutions": "steps",
    "correct": "steps",
    "workaround": "steps",
    "recommendation": "steps",
    "fallback": "steps",
    "implementation": "steps",
    "experiment": "steps",
    "improvement": "steps",
    "improvements": "steps",
    "diagnosis steps": "diagnosis",
    "diagnosis": "diagnosis",
    "evidence": "evidence",
    "event timeline": "evidence",
    "impact": "evidence",
    "current status": "evidence",
    "current": "evidence",
    "key observations": "evidence",
    "rationale": "rationale",
    "benefit": "rationale",
    "hypothesis": "rationale",
    "expected outcome": "expected",
    "expected": "expected",
    "success criteria": "expected",
    "result": "expected",
    "status": "status",
    "see also": "see_also",
}


@dataclass
class Block:
    kind: str  # label | list | code | para | table | quote
    start: int  # 0-based first line
    end: int  # 0-based line after the block
    text: str = ""
    label: str = ""
    items: list[str] = field(default_factory=list)
    rows: list[list[str]] = field(default_factory=list)
    links: list[tuple[str, str]] = field(default_factory=list)  # (text, href)


@dataclass
class Heading:
    level: int
    raw: str  # inline markdown as written (repaired)
    line: int  # 0-based
    end: int = 0  # 0-based line after the section (next heading of the same or higher level)

    @property
    def text(self) -> str:
        return inline_text(self.raw)


@dataclass
class ParsedDocument:
    source: str
    file: str
    style: str
    title: str
    entries: list[Entry]
    checklist: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)  # boilerplate sections left out (licence, contributing...)


_MD = MarkdownIt("commonmark").enable("table")
_LINK = re.compile(r"\[([^\]]+)\]\(([^)\s]+)\)")


def inline_text(raw: str) -> str:
    """Inline markdown -> plain text: links to their text, emphasis markers dropped, code kept."""
    text = _LINK.sub(r"\1", raw)
    text = re.sub(r"(\*\*|__)(.+?)\1", r"\2", text)
    text = re.sub(r"(?<![\w*])\*(?!\s)(.+?)(?<!\s)\*(?![\w*])", r"\1", text)
    return re.sub(r"\s+", " ", text).strip()


def _label_split(raw: str) -> tuple[str, str] | None:
    """`**Label**: rest` or `**Label:** rest` -> (label, rest)."""
    m = re.match(r"^\*\*([^*]{1,80}?)(:?)\*\*\s*(:?)\s*(.*)$", raw.strip(), re.S)
    if not m or not (m.group(2) or m.group(3)):
        return None
    return m.group(1).strip(), m.group(4).strip()


def _inline_children_text(tokens, i: int, close_type: str) -> tuple[list[str], int]:
    """Collect inline contents until the matching close token; returns (texts, index after close)."""
    depth = 0
    texts: list[str] = []
    j = i
    open_type = close_type.replace("_close", "_open")
    while j < len(tokens):
        t = tokens[j]
        if t.type == open_type:
            depth += 1
        elif t.type == close_type:
            depth -= 1
            if depth == 0:
                return texts, j + 1
        elif t.type == "inline":
            texts.append(t.content)
        elif t.type in ("fence", "code_block"):
            texts.append(t.content.strip())
        j += 1
    return texts, j


def _list_items(tokens, i: int) -> tuple[list[tuple[str, list[str]]], int]:
    """A (bullet/ordered) list at tokens[i] -> [(item's first text, nested item texts)], index after."""
    close = tokens[i].type.replace("_open", "_close")
    item_level = tokens[i].level + 1
    items: list[tuple[str, list[str]]] = []
    j = i + 1
    while j < len(tokens) and not (tokens[j].type == close and tokens[j].level == tokens[i].level):
        t = tokens[j]
        if t.type == "list_item_open" and t.level == item_level:
            texts, j = _inline_children_text(tokens, j, "list_item_close")
            items.append((texts[0] if texts else "", texts[1:]))
            continue
        j += 1
    return items, j + 1


def _blocks(tokens) -> tuple[list[Heading], list[Block]]:
    headings: list[Heading] = []
    blocks: list[Block] = []
    i = 0
    while i < len(tokens):
        t = tokens[i]
        if t.level != 0 or t.map is None:
            i += 1
            continue
        start, end = t.map
        if t.type == "heading_open":
            headings.append(Heading(level=int(t.tag[1]), raw=tokens[i + 1].content, line=start))
            i += 3
        elif t.type == "paragraph_open":
            raw = tokens[i + 1].content
            split = _label_split(raw)
            links = _LINK.findall(raw)
            if split:
                blocks.append(Block("label", start, end, label=split[0], text=split[1], links=links))
            else:
                blocks.append(Block("para", start, end, text=raw, links=links))
            i += 3
        elif t.type in ("bullet_list_open", "ordered_list_open"):
            items, i = _list_items(tokens, i)
            plain: list[str] = []
            for first, nested in items:
                split = _label_split(first)
                if split and (nested or split[1]):
                    # `- **Root Cause**: text` / `- **Fixes Applied**:` + nested list: a labelled field
                    if plain:
                        blocks.append(Block("list", start, end, items=plain))
                        plain = []
                    blocks.append(Block("label", start, end, label=split[0], text=split[1]))
                    if nested:
                        blocks.append(Block("list", start, end, items=nested))
                else:
                    joiner = " " if first.rstrip().endswith(":") else ": "
                    plain.append(first + (joiner + "; ".join(inline_text(n) for n in nested) if nested else ""))
            if plain:
                blocks.append(Block("list", start, end, items=plain))
        elif t.type in ("fence", "code_block"):
            blocks.append(Block("code", start, end, text=t.content.rstrip("\n")))
            i += 1
        elif t.type == "table_open":
            rows: list[list[str]] = []
            j = i + 1
            row: list[str] = []
            links: list[tuple[str, str]] = []
            while j < len(tokens) and tokens[j].type != "table_close":
                tj = tokens[j]
                if tj.type == "tr_open":
                    row = []
                elif tj.type == "inline":
                    row.append(tj.content)
                    links.extend(_LINK.findall(tj.content))
                elif tj.type == "tr_close":
                    rows.append(row)
                j += 1
            blocks.append(Block("table", start, end, rows=rows, links=links))
            i = j + 1
        elif t.type == "blockquote_open":
            texts, i = _inline_children_text(tokens, i, "blockquote_close")
            blocks.append(Block("quote", start, end, text=" ".join(texts)))
        else:
            i += 1
    n_lines = max([b.end for b in blocks] + [h.line + 1 for h in headings] + [0])
    for k, h in enumerate(headings):
        nxt = next((g.line for g in headings[k + 1 :] if g.level <= h.level), None)
        h.end = nxt if nxt is not None else n_lines
    return headings, blocks


@dataclass
class Fields:
    values: dict[str, list[str]] = field(default_factory=dict)
    code: list[str] = field(default_factory=list)
    links: list[tuple[str, str]] = field(default_factory=list)
    intro: list[str] = field(default_factory=list)

    def add(self, name: str, text: str) -> None:
        text = inline_text(text)
        if text:
            self.values.setdefault(name, []).append(text)

    def get(self, name: str) -> list[str]:
        return self.values.get(name, [])


def _field_of(label: str) -> str | None:
    key = re.sub(r"\s*\(.*?\)", "", label).strip().lower().rstrip(":")
    if key in LABEL_FIELDS:
        return LABEL_FIELDS[key]
    parts = [p.strip() for p in re.split(r"/|\bor\b", key) if p.strip()]
    if len(parts) > 1:  # "Error/Symptoms"
        return next((LABEL_FIELDS[p] for p in parts if p in LABEL_FIELDS), None)
    if key.startswith("option"):
        return "steps"
    return None


def _fields(blocks: list[Block]) -> Fields:
    out = Fields()
    current: str | None = None
    for b in blocks:
        if b.kind == "label":
            current = _field_of(b.label)
            if current == "see_also":
                out.links.extend(b.links)
                continue
            if current == "steps" and _field_of(b.label) and b.label.lower().startswith("option"):
                out.add("steps", b.label + (": " + b.text if b.text else ""))
            elif current and b.text:
                out.add(current, b.text)
            elif current is None and b.text:
                out.intro.append(inline_text(f"{b.label}: {b.text}"))
        elif b.kind == "list":
            for item in b.items:
                if current:
                    out.add(current, item)
                else:
                    out.intro.append(inline_text(item))
        elif b.kind == "code":
            if current in (None, "diagnosis"):
                out.code.append(b.text)
                if current is None:
                    continue
            if current == "diagnosis":
                continue
            out.code.append(b.text)
        elif b.kind in ("para", "quote"):
            if current:
                out.add(current, b.text)
            else:
                out.intro.append(inline_text(b.text))
    return out


def _clean_title(raw: str) -> str:
    text = strip_symbols(inline_text(raw)).replace("`", "")
    text = re.sub(r"^(problem|fix|issue)\s+\d+(\.\d+)*\s*[:.)-]\s*", "", text, flags=re.I)
    text = re.sub(r"^\d+(\.\d+)*\s*[.:)]\s*", "", text)
    status, text = _split_status(text)
    return text.strip(" -:")


def _split_status(text: str) -> tuple[str, str]:
    for word in STATUS_WORDS:
        if re.search(rf"\s{re.escape(word)}\s*$", " " + text):
            return word, re.sub(rf"\s*{re.escape(word)}\s*$", "", text).strip()
    return "", text


def _provenance(file: str, h: Heading, lines: list[str]) -> Provenance:
    end = min(h.end, len(lines))
    while end > h.line + 1 and lines[end - 1].strip() in ("", "---", "***", "___"):
        end -= 1
    return Provenance(file=file, start_line=h.line + 1, end_line=max(end, h.line + 1))


def _section_blocks(blocks: list[Block], start: int, end: int) -> list[Block]:
    return [b for b in blocks if start <= b.start < end]


def _own_end(h: Heading, headings: list[Heading]) -> int:
    """Line where the heading's own text stops (its first sub-heading, or its end)."""
    return next((g.line for g in headings if h.line < g.line < h.end), h.end)


def detect_style(headings: list[Heading], blocks: list[Block] | None = None) -> str:
    texts = [(h.level, strip_symbols(h.text)) for h in headings]
    if any(re.match(r"^(Problem \d+|Fix \d+\.\d+)\s*:", t) for _, t in texts):
        return "run"
    numbered = [(lvl, t) for lvl, t in texts if re.match(r"^\d+\.\s+\S", t)]
    if numbered:
        with_status = [t for _, t in numbered if _split_status(t)[0]]
        if with_status and len(with_status) * 2 >= len(numbered):
            return "audit"
        if len(numbered) >= 3:
            return "catalog"
    by_level = {lvl for lvl, _ in texts}
    # the guide parser exists for the router table (symptom phrases linking to sections); any other
    # document with sections and sub-sections is cut by the generic parser, which follows its outline
    router = blocks is None or any(b.kind == "table" and any(href.startswith("#") for _, href in b.links) for b in blocks)
    if 2 in by_level and 3 in by_level and router:
        return "guide"
    return "generic"


def _entry(
    *,
    source: str,
    entry_id: str,
    kind: str,
    title: str,
    section: str,
    h: Heading,
    headings: list[Heading],
    blocks: list[Block],
    lines: list[str],
    file: str,
    status: str = "",
) -> tuple[Entry, Fields]:
    own = _section_blocks(blocks, h.line + 1, h.end)
    f = _fields(own)
    body = "\n".join(lines[h.line + 1 : _provenance(file, h, lines).end_line]).strip("\n")
    steps = f.get("steps")
    entry = Entry(
        id=entry_id,
        source=source,
        kind=kind,  # type: ignore[arg-type]
        title=title,
        section=section,
        symptoms=f.get("symptoms"),
        causes=f.get("causes"),
        steps=steps,
        diagnosis_code=f.code,
        evidence=f.get("evidence"),
        root_cause=" ".join(f.get("root_cause")),
        rationale=" ".join(f.get("rationale")),
        expected_outcome="; ".join(f.get("expected")),
        status=status or " ".join(f.get("status")),
        signal_kinds=sorted({k.strip(" `") for v in f.get("signal_kinds") for k in re.split(r"[,;\s]+", v) if k.strip(" `")}),
        references=[f"{text} ({href})" for text, href in f.links],
        body=body,
        provenance=_provenance(file, h, lines),
    )
    if not entry.steps and not entry.symptoms and f.intro:
        entry.causes = entry.causes or f.intro[:3]
    if not entry.steps and entry.causes:  # a causes-only entry: each cause is the thing to check
        entry.steps = [f"Check: {c}" for c in entry.causes]
    return entry, f


def _parent(h: Heading, headings: list[Heading], level: int) -> Heading | None:
    parent = None
    for g in headings:
        if g.line >= h.line:
            break
        if g.level == level:
            parent = g
    return parent


def github_anchor(text: str) -> str:
    return re.sub(r"[^\w\- ]", "", text.strip().lower()).replace(" ", "-")


def parse_text(text: str, *, source: str, file: str) -> ParsedDocument:
    """Parse one document's text. Raises KBError when it holds no entries."""
    if "\x00" in text:
        raise KBError(f"{file}: looks like a binary file, not markdown")
    text = re.sub(r"\r\n?", "\n", text)  # markdown-it's own line breaks: line numbers must agree with it
    fixed = repair_mojibake(text)
    lines = fixed.split("\n")
    if len(lines) != len(text.split("\n")):  # provenance relies on the repair keeping lines
        lines = text.split("\n")
        fixed = text
    try:
        tokens = _MD.parse(fixed)
    except Exception as exc:  # markdown-it is robust, but a parser bug must not escape as a traceback
        raise KBError(f"{file}: could not parse markdown ({exc.__class__.__name__})") from exc
    headings, blocks = _blocks(tokens)
    if not headings:
        raise KBError(f"{file}: no markdown headings found, so no entries to extract")
    style = detect_style(headings, blocks)
    title = next((strip_symbols(h.text) for h in headings if h.level == 1), Path(file).stem)
    parser = {"catalog": _parse_catalog, "guide": _parse_guide, "run": _parse_run, "audit": _parse_audit}.get(style, _parse_generic)
    doc = parser(source=source, file=file, headings=headings, blocks=blocks, lines=lines)
    doc.title = title
    if not doc.entries:
        raise KBError(f"{file}: no troubleshooting entries found under its headings")
    return doc


def _doc(source: str, file: str, style: str, entries: list[Entry], skipped: list[str] | None = None) -> ParsedDocument:
    seen: set[str] = set()
    for e in entries:  # ids must be unique within a document; duplicates get a suffix
        base, n = e.id, 2
        while e.id in seen:
            e.id = f"{base}-{n}"
            n += 1
        seen.add(e.id)
    return ParsedDocument(source=source, file=file, style=style, title="", entries=entries, skipped=skipped or [])


def _parse_catalog(*, source, file, headings, blocks, lines) -> ParsedDocument:
    entries = []
    numbered = [h for h in headings if re.match(r"^\d+\.\s+\S", strip_symbols(h.text))]
    level = min(h.level for h in numbered)
    for h in numbered:
        if h.level != level:
            continue
        number = int(re.match(r"^(\d+)", strip_symbols(h.text)).group(1))
        title = _clean_title(h.raw)
        parent = _parent(h, headings, level - 1) if level > 1 else None
        section = strip_symbols(parent.text) if parent and parent.level > 1 else ""
        e, _ = _entry(source=source, entry_id=f"{source}/{number:03d}-{slugify(title)}", kind="problem", title=title,
                      section=section, h=h, headings=headings, blocks=blocks, lines=lines, file=file)
        entries.append(e)
    return _doc(source, file, "catalog", entries)


def _parse_audit(*, source, file, headings, blocks, lines) -> ParsedDocument:
    entries = []
    for h in headings:
        text = strip_symbols(h.text)
        m = re.match(r"^(\d+)\.\s+(.*)$", text)
        if not m:
            continue
        status, _ = _split_status(m.group(2))
        title = _clean_title(h.raw)
        e, f = _entry(source=source, entry_id=f"{source}/{int(m.group(1)):03d}-{slugify(title)}", kind="issue",
                      title=title, section="", h=h, headings=headings, blocks=blocks, lines=lines, file=file, status=status)
        entries.append(e)
    return _doc(source, file, "audit", entries)


def _parse_guide(*, source, file, headings, blocks, lines) -> ParsedDocument:
    entries: list[Entry] = []
    by_section: dict[str, list[Entry]] = {}
    checklist: list[str] = []
    quick_tables: list[Block] = []
    for h in headings:
        if h.level == 2 and "checklist" in h.text.lower():
            for b in _section_blocks(blocks, h.line + 1, h.end):
                checklist.extend(re.sub(r"^\[[ xX]\]\s*", "", inline_text(i)) for i in b.items)
            continue
        if h.level == 2:
            own = _section_blocks(blocks, h.line + 1, h.end)
            tables = [b for b in own if b.kind == "table" and any(href.startswith("#") for _, href in b.links)]
            if tables:
                quick_tables.extend(tables)
            continue
        if h.level != 3:
            continue
        parent = _parent(h, headings, 2)
        own = _section_blocks(blocks, h.line + 1, h.end)
        if any(b.kind == "table" and any(href.startswith("#") for _, href in b.links) for b in own):
            quick_tables.extend(b for b in own if b.kind == "table")
            continue  # the Quick Diagnosis table is a router, not a problem
        title = _clean_title(h.raw)
        e, f = _entry(source=source, entry_id=f"{source}/{len(entries) + 1:03d}-{slugify(title)}", kind="problem",
                      title=title, section=strip_symbols(parent.text) if parent else "", h=h, headings=headings,
                      blocks=blocks, lines=lines, file=file)
        entries.append(e)
        if parent:
            by_section.setdefault(github_anchor(strip_symbols(parent.text)), []).append(e)
        by_section.setdefault(github_anchor(strip_symbols(h.text)), []).append(e)
    # see-also links that point into this document resolve to entry ids; others stay references
    for e in entries:
        kept = []
        for ref in e.references:
            m = re.match(r"^(.*) \((#[^)]+)\)$", ref)
            targets = by_section.get(m.group(2)[1:], []) if m else []
            if targets:
                e.see_also.extend(t.id for t in targets if t.id != e.id)
            else:
                kept.append(ref)
        e.references = kept
    # Quick Diagnosis rows: the symptom phrase becomes a symptom of the entries its row links to
    for table in quick_tables:
        for row in table.rows[1:]:
            if not row:
                continue
            phrase = inline_text(row[0])
            links = [href for cell in row for _, href in _LINK.findall(cell) if href.startswith("#")]
            for href in links:
                targets = by_section.get(href[1:], [])
                for e in _best_matches(phrase, targets):
                    if phrase not in e.symptoms:
                        e.symptoms.append(phrase)
    doc = _doc(source, file, "guide", entries)
    doc.checklist = [c for c in checklist if c]
    return doc


_STOP = set("a an the is are of to in on at for and or not no with by be as it its this that from into".split())


def _words(text: str) -> set[str]:
    return {w.rstrip("s") for w in re.findall(r"[a-z0-9]+", text.lower()) if w not in _STOP and len(w) > 1}


def _best_matches(phrase: str, entries: list[Entry]) -> list[Entry]:
    """The entries of a section that a symptom phrase is about: best word overlap, else all of them."""
    if not entries:
        return []
    words = _words(phrase)
    scored = [(len(words & _words(e.title + " " + " ".join(e.symptoms))), e) for e in entries]
    best = max(s for s, _ in scored)
    return [e for s, e in scored if s == best and s > 0] or entries


def _parse_run(*, source, file, headings, blocks, lines) -> ParsedDocument:
    problems: list[tuple[Entry, Fields]] = []
    fixes: list[tuple[Entry, Fields, Heading | None]] = []
    for h in headings:
        text = strip_symbols(h.text)
        pm = re.match(r"^Problem (\d+)\s*:", text)
        fm = re.match(r"^Fix (\d+)\.(\d+)\s*:", text)
        if not (pm or fm):
            continue
        title = _clean_title(h.raw)
        if pm:
            e, f = _entry(source=source, entry_id=f"{source}/problem-{pm.group(1)}-{slugify(title)}", kind="problem",
                          title=title, section="Root Cause Analysis", h=h, headings=headings, blocks=blocks, lines=lines, file=file)
            e.root_cause = e.root_cause or title
            problems.append((e, f))
        else:
            phase = _parent(h, headings, h.level - 1)
            e, f = _entry(source=source, entry_id=f"{source}/fix-{fm.group(1)}-{fm.group(2)}-{slugify(title)}", kind="fix",
                          title=title, section=strip_symbols(phase.text) if phase else "", h=h, headings=headings,
                          blocks=blocks, lines=lines, file=file)
            if not e.steps:
                e.steps = [title]
            fixes.append((e, f, phase))
    # a phase's Expected Outcome is written once, after its last fix: fixes without their own inherit it
    by_phase: dict[int, str] = {}
    for e, _, phase in fixes:
        if phase is not None and e.expected_outcome and "; " in e.expected_outcome:
            by_phase.setdefault(phase.line, e.expected_outcome)
    for e, _, phase in fixes:
        if not e.expected_outcome and phase is not None and phase.line in by_phase:
            e.expected_outcome = by_phase[phase.line]
    _link_problems_to_fixes([p for p, _ in problems], [f for f, _, _ in fixes])
    return _doc(source, file, "run", [p for p, _ in problems] + [f for f, _, _ in fixes])


def _link_problems_to_fixes(problems: list[Entry], fixes: list[Entry]) -> None:
    """Each fix addresses the problem(s) whose distinctive words it shares most (idf-weighted overlap)."""
    if not problems or not fixes:
        return
    import math

    docs = [_words(p.title + " " + p.body) for p in problems]
    df: dict[str, int] = {}
    for d in docs:
        for w in d:
            df[w] = df.get(w, 0) + 1
    idf = {w: math.log((1 + len(docs)) / (1 + n)) for w, n in df.items()}
    for fix in fixes:
        fwords = _words(fix.title + " " + fix.body)
        title_words = _words(fix.title)
        scores = []
        for p, pwords in zip(problems, docs):
            s = sum(idf.get(w, 0.0) for w in fwords & pwords) + 3 * sum(idf.get(w, 0.0) for w in title_words & pwords)
            scores.append(s)
        best = max(scores)
        if best <= 0:
            continue
        p = problems[scores.index(best)]
        p.links.append(fix.id)
        fix.links.append(p.id)


# ---- generic documents ------------------------------------------------------------------------
# A section longer than one embedding window is split at its sub-headings: the encoder reads 256 word
# pieces (about 200 words), so a longer entry is searched by its first screen only.
MAX_ENTRY_WORDS = 200

# Sections a reader skips: not troubleshooting knowledge, whatever the document.
_BOILERPLATE = re.compile(
    r"^(?:table of contents|contents|toc|licen[cs]es?|licensing|copyright|contributing|contributions?|how to contribute|"
    r"contributors?|contributor licen[cs]e agreements?(?: \(cla\))?|cla|code of conduct|code reviews?|community guidelines|"
    r"citations?|citing|cite|how to cite|cite this work|acknowledge?ments?|thanks|credits|authors?)$",
    re.I,
)

# Prose cues (general English troubleshooting phrasing, not any one document's words)
_SYMPTOM_LEAD = re.compile(r"\b(symptoms?|signs?|you (?:may |might |will )?(?:see|notice|observe|get)|look(?:s)? for|indicat\w*|typical errors?)\b", re.I)
_FIX_LEAD = re.compile(r"\b(fix(?:es)?|solutions?|solve|mitigat\w*|resolv\w*|workarounds?|remed\w*|what to do|tips|try|things to try)\b", re.I)
_CAUSE_LEAD = re.compile(r"\b(causes?|reasons?|why (?:it|this) happens)\b", re.I)
_IF_YOU_SEE = re.compile(
    r"^(?:if|when(?:ever)?)\s+(?:you\s+)?(?:see|notice|observe|get|encounter|hit|run into|are seeing|keep getting)\s+(.+?)"
    r"(?:,\s*(?:then\s+)?|\s+then\s+)(.+)$",
    re.I | re.S,
)
_INLINE_LABEL = re.compile(r"^(symptoms?|signs?|causes?|fix(?:es)?|solutions?|workarounds?|try)\s*[:\u2013\u2014-]\s+(.+)$", re.I | re.S)


def is_boilerplate(title: str) -> bool:
    """A heading a reader skips (licence, contributing, citation, table of contents...), alone or joined with "and"/","."""
    text = re.sub(r"[^\w\s(),&/-]", "", strip_symbols(title)).strip().lower()
    parts = [p.strip() for p in re.split(r",|&|/|\band\b", text) if p.strip()]
    return bool(parts) and all(_BOILERPLATE.match(p) for p in parts)


def _prose_fields(blocks: list[Block]) -> tuple[list[str], list[str], list[str], list[str]]:
    """Symptoms, causes, steps and other text of a section written as prose and plain lists.

    "If you see X, do Y" gives a symptom and a step; a lead-in naming symptoms, causes or fixes
    ("Common causes:", "Things to try:") files the list after it; other list items are advice
    (steps) and paragraphs are kept as text, so every sentence of the section is searchable.
    """
    symptoms: list[str] = []
    causes: list[str] = []
    steps: list[str] = []
    text: list[str] = []
    pending: list[str] | None = None  # where the list after a lead-in paragraph goes

    def lead_target(lead: str) -> list[str] | None:
        if _SYMPTOM_LEAD.search(lead):
            return symptoms
        if _CAUSE_LEAD.search(lead):
            return causes
        if _FIX_LEAD.search(lead):
            return steps
        return None

    def sentence(item: str, default: list[str]) -> None:
        item = inline_text(item)
        if not item:
            return
        m = _IF_YOU_SEE.match(item)
        if m:
            symptoms.append(m.group(1).strip(" .;:"))
            steps.append(m.group(2).strip())
            return
        m = _INLINE_LABEL.match(item)
        if m:
            target = lead_target(m.group(1)) or default
            target.append(m.group(2).strip())
            return
        if ":" in item:  # a list item with nested items: "Common causes: a; b; c"
            lead, rest = item.split(":", 1)
            target = lead_target(lead) if len(lead.split()) <= 8 else None
            if target is not None and rest.strip():
                target.extend(x.strip() for x in rest.split("; ") if x.strip())
                return
        default.append(item)

    for b in blocks:
        if b.kind == "list":
            for item in b.items:
                sentence(item, pending if pending is not None else steps)
            pending = None
        elif b.kind in ("para", "quote", "label"):
            raw = f"{b.label}: {b.text}" if b.kind == "label" else b.text
            plain = inline_text(re.sub(r"<[^>]+>", " ", raw))
            if not plain:
                continue
            pending = lead_target(plain) if plain.rstrip().endswith(":") and len(plain.split()) <= 12 else None
            if pending is None:
                sentence(plain, text)
        elif b.kind == "table":
            text.extend(" | ".join(inline_text(c) for c in row) for row in b.rows[1:])
    return symptoms, causes, steps, text


def _words_in(lines: list[str], start: int, end: int) -> int:
    return sum(len(ln.split()) for ln in lines[start:end])


def _is_question(lead: str) -> bool:
    """A list item's lead that reads as a question or a quoted error, not as a sentence of advice."""
    lead = inline_text(lead).strip()
    if not lead:
        return False
    if lead.endswith("?") or lead[0] in "\"'`\u201c":
        return True
    return len(lead.split()) <= 20 and lead[-1] not in ".:;!,"


def _question_items(lines: list[str], start: int, end: int) -> list[tuple[int, int]]:
    """Line ranges (0-based, end exclusive) of the top-level list items of a section written as a list
    of questions with answers (a FAQ): at least two items, at least two thirds of them leading with a
    question or quoted error and holding an answer after it, and the list carrying most of the
    section's text. [] for any other section (a list of advice is one entry)."""
    tokens = _MD.parse("\n".join(lines[start:end]))
    items: list[tuple[int, int, bool]] = []
    for i, t in enumerate(tokens):
        if not (t.type == "list_item_open" and t.level == 1 and t.map):
            continue
        lead, blocks = "", 0
        for u in tokens[i + 1 :]:
            if u.type == "list_item_close" and u.level == 1:
                break
            if u.type == "inline" and not lead:
                lead = u.content
            if u.level == 2 and u.type in ("paragraph_open", "fence", "code_block", "table_open", "bullet_list_open", "ordered_list_open"):
                blocks += 1
        items.append((start + t.map[0], start + t.map[1], _is_question(lead) and blocks > 1))
    if len(items) < 2 or sum(1 for *_, q in items if q) * 3 < 2 * len(items):
        return []
    listed = sum(len(ln.split()) for a, b, _ in items for ln in lines[a:b])
    if listed * 2 < _words_in(lines, start, end):
        return []
    return [(a, b) for a, b, _ in items]


def _qa_entry(source: str, file: str, lines: list[str], start: int, end: int, chain: list[str]) -> Entry | None:
    """One question-and-answer list item -> an entry: the question (what the reader sees) is its title
    and symptom; the answer's lists and prose are read like a section's."""
    item = lines[start:end]
    first = re.sub(r"^\s*(?:[-*+]|\d+[.)])\s+", "", item[0])
    indent = len(item[0]) - len(item[0].lstrip()) + (len(item[0].lstrip()) - len(re.sub(r"^(?:[-*+]|\d+[.)])\s+", "", item[0].lstrip())))
    body = [first] + [ln[indent:] if ln[:indent].strip() == "" else ln.lstrip() for ln in item[1:]]
    heads, blocks = _blocks(_MD.parse("\n".join(body)))
    if not blocks or blocks[0].kind != "para":
        return None
    question = inline_text(blocks[0].text).strip()
    if not question:
        return None
    title = question.rstrip(" .")
    if len(title) > 1 and title[0] in "\"\u201c" and title[-1] in "\"\u201d" and not re.search("[\"\u201c\u201d]", title[1:-1]):
        title = title[1:-1]  # a quoted error message alone
    if len(title) > 150:
        title = title[:150].rsplit(" ", 1)[0] + "…"
    symptoms, causes, steps, text = _prose_fields(blocks[1:])
    code = [b.text for b in blocks[1:] if b.kind == "code"]
    while end > start + 1 and lines[end - 1].strip() == "":
        end -= 1
    return Entry(
        id=f"{source}/{slugify(title)}", source=source, kind="problem", title=title, section=" > ".join(chain),
        symptoms=[question, *symptoms], causes=causes, steps=steps, diagnosis_code=code, rationale=" ".join(text),
        body="\n".join(lines[start:end]), provenance=Provenance(file=file, start_line=start + 1, end_line=end),
    )


def _parse_generic(*, source, file, headings, blocks, lines) -> ParsedDocument:
    """Sections become entries; a section longer than one embedding window is cut at its sub-headings
    (each part keeps its parent headings as context), boilerplate sections are skipped, and sub-headings
    that name a field ("Symptoms", "Fix") stay inside their section."""
    blocks = sorted(
        blocks + [Block("label", h.line, h.line + 1, label=h.text) for h in headings if h.level > 1 and _field_of(strip_symbols(h.text))],
        key=lambda b: b.start,
    )
    units = [h for h in headings if not (h.level > 1 and _field_of(strip_symbols(h.text)))]
    top = min((h.level for h in units if h.level > 1), default=1)
    entries: list[Entry] = []
    skipped: list[str] = []

    def children(h: Heading) -> list[Heading]:
        inner = [g for g in units if h.line < g.line < h.end and g.level > h.level]
        if not inner:
            return []
        level = min(g.level for g in inner)
        return [g for g in inner if g.level == level]

    def emit(h: Heading, end: int, chain: list[str]) -> None:
        part = Heading(level=h.level, raw=h.raw, line=h.line, end=end)
        title = _clean_title(h.raw) or strip_symbols(h.text) or "Untitled"
        status, _ = _split_status(strip_symbols(h.text))
        e, f = _entry(source=source, entry_id=f"{source}/{slugify(title)}", kind="problem", title=title,
                      section=" > ".join(chain), h=part, headings=headings, blocks=blocks, lines=lines, file=file, status=status)
        if not f.values:  # no labelled fields: read the prose
            own = _section_blocks(blocks, part.line + 1, part.end)
            symptoms, causes, steps, text = _prose_fields(own)
            e.symptoms, e.causes, e.steps = symptoms, causes, steps
            e.rationale = " ".join(text)
        if not (e.symptoms or e.steps or e.causes or e.rationale or e.diagnosis_code):
            return
        entries.append(e)

    def visit(h: Heading, chain: list[str]) -> None:
        name = strip_symbols(h.text)
        if is_boilerplate(name):
            skipped.append(name)
            return
        kids = children(h)
        long = _words_in(lines, h.line + 1, h.end) > MAX_ENTRY_WORDS
        items = _question_items(lines, h.line + 1, h.end) if long and not kids else []
        if items:  # a FAQ written as a list: each question with its answer is an entry
            emit(h, items[0][0], chain)
            for start, end in items:
                qa = _qa_entry(source, file, lines, start, end, chain + [name])
                if qa is not None:
                    entries.append(qa)
            return
        if not kids or not long:
            emit(h, h.end, chain)
            return
        emit(h, kids[0].line, chain)  # the section's own text before its first sub-heading
        for k in kids:
            visit(k, chain + [name])

    roots = [h for h in units if h.level == top] if top > 1 else [h for h in units if h.level == 1]
    for h in roots:
        visit(h, [])
    return _doc(source, file, "generic", entries, skipped)


def read_document(path: str | Path) -> str:
    """Read a markdown file as UTF-8 with the checks `kb import` promises (one KBError line each)."""
    p = Path(path)
    if not p.exists():
        raise KBError(f"{p}: no such file")
    if p.is_dir():
        raise KBError(f"{p}: is a directory; give markdown files")
    size = p.stat().st_size
    if size > MAX_DOCUMENT_BYTES:
        raise KBError(f"{p}: {size / 1e6:.1f} MB is too large for a troubleshooting document (limit {MAX_DOCUMENT_BYTES / 1e6:.0f} MB)")
    data = p.read_bytes()
    if b"\x00" in data[:8192]:
        raise KBError(f"{p}: looks like a binary file, not markdown")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise KBError(f"{p}: not UTF-8 text (invalid byte at offset {exc.start})") from exc


def parse_file(path: str | Path, source: str | None = None) -> ParsedDocument:
    p = Path(path)
    return parse_text(read_document(p), source=source or slugify(p.stem, 40), file=p.name)
