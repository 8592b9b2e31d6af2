"""The checker: holds a model's answer to the prompt it was given.

- Citations: `[id]` (or several ids in one bracket, or a bare id) naming an entry that was not in the
  prompt is removed from the text and listed in `removed_citations`; the ids that stay are `citations`.
- Numbers: every number the answer quotes must appear in the prompt (evidence, entry text, the
  user's description), allowing for how numbers get written: 0.35 = 0.350, 3.2% = 3.2 or 0.032,
  12,000 = 12000, 1e-8, a value rounded to the digits the answer shows (0.3512 -> 0.35). List
  markers ("1.") and small plain counts (0-10, "two fixes") are not numbers to check; "5x" or "5%" are.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation

from kb.models import SOURCE_KEYS

# Entry ids as kb.parse makes them: source/NNN-slug, source/problem-N-slug, source/fix-N-N-slug. In brackets,
# any source/slug whose slug has a digit and a hyphen is a citation ([train/val] and [runs/exp1] are not);
# bare ids in prose are recognised only for known sources and not when a path goes on (runs/001-a/log.csv).
_ID_IN_BRACKET = re.compile(r"^[A-Za-z][\w.\-]*/(?=[\w.\-]*\d)(?=[\w.\-]*-)[\w.\-]+$")
_BARE_SLUG = r"/(?:\d{1,4}-|problem-\d+-|fix-\d+-\d+-)[a-z0-9][a-z0-9\-]*(?![\w\-]|[/.]\w)"


def _bare_id_pattern(allowed_ids: list[str]) -> re.Pattern:
    sources = set(SOURCE_KEYS) | {i.split("/", 1)[0] for i in allowed_ids if "/" in i}
    names = "|".join(sorted((re.escape(s) for s in sources), key=len, reverse=True))
    return re.compile(rf"(?<![\w/\[.\-])((?:{names}){_BARE_SLUG})", re.I)


# A bracket not followed by "(" (that would be a markdown link's text), with the spaces before it.
_BRACKET = re.compile(r"[ \t]*\[([^\[\]\n]{1,400})\](?!\()")
_LIST_MARKER = re.compile(r"^(\s*(?:[-*+]\s+)?)\d{1,3}[.)](?=\s)", re.M)

_NUMBER = re.compile(
    r"""(?<![\w.])                                # not inside a word, an id or a longer number
        (?P<mant>\d{1,3}(?:,\d{3})+(?:\.\d+)?|\d+(?:\.\d+)?|\.\d+)
        (?:[eE](?P<exp>[-+]?\d+))?
        (?P<suffix>\s?%|[x×](?![A-Za-z])|[kK](?![A-Za-z]))?
        (?P<after>[A-Za-z]*)""",
    re.X,
)
# Every digit run in the prompt counts as supported, even inside words (A6000, fp16, ids).
_PROMPT_NUMBER = re.compile(r"\d{1,3}(?:,\d{3})+(?:\.\d+)?|\d+(?:\.\d+)?(?:[eE][-+]?\d+)?|\.\d+")
_PROMPT_PERCENT = re.compile(r"(\d+(?:\.\d+)?)\s?%")
_CUT = "\x00"  # marks where a citation was removed, until the text around it is tidied
_ORDINAL_SUFFIX = {"st", "nd", "rd", "th"}
SMALL_COUNT = 10


@dataclass
class CheckResult:
    text: str  # the answer with invented citations removed
    citations: list[str] = field(default_factory=list)  # valid ids, in order of first appearance
    removed_citations: list[str] = field(default_factory=list)
    unsupported_numbers: list[str] = field(default_factory=list)


def check_answer(answer: str, allowed_ids: list[str], prompt: str) -> CheckResult:
    """Check `answer` against the ids that were in the prompt and the prompt's text."""
    text, citations, removed = _check_citations(answer, allowed_ids)
    scan = _strip_ids(text, allowed_ids)
    return CheckResult(
        text=text,
        citations=citations,
        removed_citations=removed,
        unsupported_numbers=unsupported_numbers(scan, prompt),
    )


def _check_citations(answer: str, allowed_ids: list[str]) -> tuple[str, list[str], list[str]]:
    canonical = {i.lower(): i for i in allowed_ids}
    cited: list[str] = []
    removed: list[str] = []

    def sort(candidate: str) -> str | None:
        """The canonical id for an allowed candidate; None (and noted) for an invented one."""
        hit = canonical.get(candidate.lower())
        if hit is not None:
            cited.append(hit)
            return hit
        removed.append(candidate)
        return None

    def bracket(m: re.Match) -> str:
        parts = [p.strip().strip("`'\"*").strip() for p in re.split(r"[,;]|\s+and\s+", m.group(1))]
        if not parts or not all(_ID_IN_BRACKET.match(p) for p in parts if p):
            return m.group(0)  # not a citation: [high], [1], [see below]
        kept = [k for k in (sort(p) for p in parts if p) if k]
        if not kept:
            return _CUT
        lead = m.group(0)[: len(m.group(0)) - len(m.group(0).lstrip(" \t"))]
        return f"{lead}[{', '.join(kept)}]"

    text = _BRACKET.sub(bracket, answer.replace(_CUT, ""))

    def bare(m: re.Match) -> str:
        return m.group(0) if sort(m.group(1)) else _CUT

    text = _bare_id_pattern(allowed_ids).sub(bare, text)
    # Tidy only where a citation was cut out: "fix [x]." -> "fix.", "(see [x])" -> "", "see x too" -> "see too".
    text = re.sub(rf"[ \t]*\((?:[ \t,;]*{_CUT})+[ \t,;]*\)", "", text)
    text = re.sub(rf"[ \t]*{_CUT}[ \t]*(?=[.,;:)!?])", "", text)
    text = re.sub(rf"(?<=\S)[ \t]*{_CUT}[ \t]*(?=\S)", " ", text)
    text = re.sub(rf"[ \t]*{_CUT}[ \t]*", "", text)
    return text, list(dict.fromkeys(cited)), list(dict.fromkeys(removed))


def _strip_ids(text: str, allowed_ids: list[str]) -> str:
    """The text with ids and list markers taken out, so their digits are not read as quoted numbers."""
    for i in sorted(allowed_ids, key=len, reverse=True):
        text = re.sub(re.escape(i), " ", text, flags=re.I)
    return _LIST_MARKER.sub(r"\1", text)


def _decimal(text: str) -> Decimal | None:
    try:
        return abs(Decimal(text.replace(",", "")))
    except InvalidOperation:
        return None


def prompt_numbers(prompt: str) -> tuple[set[Decimal], set[Decimal]]:
    """Every number in the prompt, and (separately) those written as percentages."""
    found: set[Decimal] = set()
    for m in _PROMPT_NUMBER.finditer(prompt):
        d = _decimal(m.group(0))
        if d is not None:
            found.add(d.normalize())
    percents = {d.normalize() for m in _PROMPT_PERCENT.finditer(prompt) if (d := _decimal(m.group(1))) is not None}
    return found, percents


def _decimals(d: Decimal) -> int:
    exponent = d.as_tuple().exponent
    return -exponent if isinstance(exponent, int) and exponent < 0 else 0


def _matches(candidate: Decimal, places: int, supported: set[Decimal]) -> bool:
    if candidate.normalize() in supported:
        return True
    # A value rounded to the digits the answer shows; whole numbers only from 2 digits up, so 1.4 is not "1".
    if places == 0 and candidate < 10:
        return False
    quantum = Decimal(1).scaleb(-places)
    for t in supported:
        try:
            if t.quantize(quantum, rounding=ROUND_HALF_UP) == candidate:
                return True
        except InvalidOperation:
            continue
    return False


def unsupported_numbers(text: str, prompt: str) -> list[str]:
    """The numbers in `text`, as written, that the prompt does not support."""
    supported, percents = prompt_numbers(prompt)
    flagged: list[str] = []
    for m in _NUMBER.finditer(text):
        after = m.group("after").lower()
        if after in _ORDINAL_SUFFIX:
            continue
        mantissa = _decimal(m.group("mant"))
        if mantissa is None:
            continue
        exp = int(m.group("exp")) if m.group("exp") else 0
        value = mantissa.scaleb(exp)
        suffix = (m.group("suffix") or "").strip()
        plain_integer = "." not in m.group("mant") and not m.group("exp")
        if plain_integer and not suffix and value <= SMALL_COUNT:
            continue
        places = _decimals(value)
        candidates = [(value, places)]
        if suffix == "%":
            candidates.append((value.scaleb(-2), places + 2))  # 3.2% may be a 0.032 share in the data
        elif suffix.lower() == "k":
            candidates.append((value * 1000, max(places - 3, 0)))
        share_of_percent = suffix != "%" and _matches(value.scaleb(2), max(places - 2, 0), percents)  # 0.32 for 32%
        if not share_of_percent and not any(_matches(c, p, supported) for c, p in candidates):
            flagged.append(m.group(0)[: m.start("after") - m.start()].strip())  # as written, without a unit
    return list(dict.fromkeys(flagged))
