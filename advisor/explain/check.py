"""The checker: holds a model's answer to the grounding it was given, one sentence at a time.

An answer is cut into units (a sentence, a list item, a heading, a fenced code block) and each unit is
judged in order, so a streamed answer is checked exactly as a whole one (`Checker.feed` / `flush`):

- Instructions: a unit that reads as an instruction to a model ("ignore previous instructions",
  "you are now in admin mode", "system:") is never shown; the explanation falls back to the composer.
- Citations: `[id]` (or several ids in one bracket, or a bare id) naming an entry that was not in the
  prompt is cut out; a unit whose citations were all invented is removed whole (its advice is
  attributed to an entry that does not exist).
- Actions: shell commands, code, URLs, links, host and e-mail addresses and file paths must appear in the own
  text (steps, expected outcome, title) of an entry cited so far, or in the user's description, the
  run's path or the advisor's own commands; a unit holding any other action is removed.
- Numbers: each number must equal, as written (0.35 = 0.350, 1,500 = 1500, 62% = 0.62), a number of
  the run's evidence (signals, notes, the user's description) or of an entry cited so far; others are
  kept and marked "[not in the evidence]". No rounding: 2.35 is not 2.351. List markers, ordinals,
  small plain counts (0-10, "two fixes"), version strings and IP addresses are not numbers to check.

Removing a unit leaves the sentences around it as they were, so what remains reads as written.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation

from advisor.explain.models import CheckFinding, Grounding
from kb.models import SOURCE_KEYS

NOT_IN_EVIDENCE = "[not in the evidence]"
SMALL_COUNT = 10
MAX_SHOWN = 80  # characters of a removed piece quoted in a finding

# -- citations -------------------------------------------------------------------------------------

# Entry ids as kb.parse makes them: source/NNN-slug, source/problem-N-slug, source/fix-N-N-slug. In brackets,
# any source/slug whose slug has a digit and a hyphen is a citation ([train/val] and [runs/exp1] are not);
# bare ids in prose are recognised only for known sources and not when a path goes on (runs/001-a/log.csv).
_ID_IN_BRACKET = re.compile(r"^[A-Za-z][\w.\-]*/(?=[\w.\-]*\d)(?=[\w.\-]*-)[\w.\-]+$")
_BARE_SLUG = r"/(?:\d{1,4}-|problem-\d+-|fix-\d+-\d+-)[a-z0-9][a-z0-9\-]*(?![\w\-]|[/.]\w)"
# A bracket not followed by "(" (that would be a markdown link's text), with the spaces before it.
_BRACKET = re.compile(r"[ \t]*\[([^\[\]\n]{1,400})\](?!\()")
_CUT = "\x00"  # marks where a citation was removed, until the text around it is tidied
_JOIN = r"(?:,|;|&|\band\b|\bor\b)"


def _bare_id_pattern(allowed_ids: list[str]) -> re.Pattern:
    sources = set(SOURCE_KEYS) | {i.split("/", 1)[0] for i in allowed_ids if "/" in i}
    names = "|".join(sorted((re.escape(s) for s in sources), key=len, reverse=True))
    return re.compile(rf"(?<![\w/\[.\-])((?:{names}){_BARE_SLUG})", re.I)


# -- instructions aimed at a model -------------------------------------------------------------------

_INSTRUCTION = re.compile(
    r"""\b(?:ignore|disregard|forget|override|bypass)\b[^.\n]{0,40}?\b(?:previous|prior|above|earlier|preceding|all|your|these|the)\b
        [^.\n]{0,30}?\b(?:instructions?|rules|prompts?|guidelines|directions|constraints|messages?)\b
      | \byou\s+are\s+(?:now\s+)?(?:in\s+)?(?:admin|developer|god|dan|jailbreak|root|sudo|unrestricted)\b
      | \b(?:admin|developer|god|jailbreak)\s+mode\b
      | \bnew\s+(?:system\s+)?instructions?\s*:
      | (?:^|\n)\s*(?:system|assistant|developer)\s*:
      | <\|?(?:im_start|im_end|system|endoftext)\|?>
      | \bdo\s+anything\s+now\b""",
    re.I | re.X,
)

# -- actions ---------------------------------------------------------------------------------------

_FENCE = re.compile(r"```[^\n]*\n?(.*?)(?:```|\Z)", re.S)
_CODE_SPAN = re.compile(r"`([^`\n]+)`")
_MD_LINK = re.compile(r"!?\[[^\]\n]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
_URL = re.compile(r"\b(?:(?:https?|ftp|file|ssh|git)://|www\.)[^\s<>`\"')\]]+", re.I)
_EMAIL = re.compile(r"(?<![\w.+\-])[\w.+\-]+@[A-Za-z0-9\-]+(?:\.[A-Za-z0-9\-]+)+")  # somewhere to send things
_HOST = re.compile(r"(?<![\w.])\d{1,3}(?:\.\d{1,3}){3}(?::\d{2,5})?(?![\w.]*\d)")
_SHELL = re.compile(
    r"""(?<![\w/.\-])(?:sudo\s+)?
        (?:(?:rm|rmdir|dd|mkfs\S*|chmod|chown|shred|curl|wget|scp|rsync|nc|ncat|kill|pkill|killall|bash|sh|zsh|eval|exec|iex|
             python3?|perl|ruby|node|powershell|pwsh|certutil)
             \s+(?=[-/~.$'"]|\w+://|[^\s|]*\s*[|>])
         |(?:pip3?|conda|apt|apt-get|brew|npm|git)\s+(?:install|uninstall|remove|clone|push|reset|clean|checkout|rm)\b)
        [^\n`\[]*?(?=\s*\[|[.;!?](?:\s|$)|\n|$)""",  # to the end of the sentence or a citation
    re.X,
)
_PIPE_TO_SHELL = re.compile(r"\|\s*(?:sudo\s+)?(?:(?:ba|z|da)?sh|iex|python3?|perl|ruby|node|powershell|pwsh)\b", re.I)
_FILE_EXT = (r"(?:sh|bash|zsh|ps1|bat|cmd|exe|py|ipynb|pt|pth|ckpt|bin|safetensors|csv|json|jsonl|ya?ml|toml|txt|log|"
             r"cfg|ini|pkl|npz|npy|h5|onnx|tar|gz|zip)")
_FILE_NAME = re.compile(rf"\.{_FILE_EXT}$", re.I)
_PATH = re.compile(
    r"""(?<![\w/.\-\[:])(?:~|\.{1,2})?/(?:[\w.\-]+/?)+                         # /etc/x, ~/x, ./x, ../x
      | (?<![\w/.\-\[])[A-Za-z]:\\[^\s`]+                                      # C:\\x
      | (?<![\w/.\-\[])[\w.\-]+(?:/[\w.\-]+)+\.""" + _FILE_EXT + r"\b",
    re.X,
)
# One identifier in a code span (no space, no slash): a setting, metric or function name, not an action.
_NAME = re.compile(r"^[A-Za-z_][\w.\-]*(?:\(\))?$")
# The advisor's own commands, which the composer writes and anyone may run.
_OWN_COMMAND = re.compile(r"^(?:advisor|kb)\s+(?:diagnose|annotate|explain|show|query|notes|stats)\b[\w./\- ]*$")

# -- numbers ---------------------------------------------------------------------------------------

_NUMBER = re.compile(
    r"""(?<![\w.])                                # not inside a word, an id or a longer number
        (?P<mant>\d{1,3}(?:,\d{3})+(?:\.\d+)?|\d+(?:\.\d+)?|\.\d+)
        (?:[eE](?P<exp>[-+]?\d+))?
        (?P<suffix>\s?%|[x×](?![A-Za-z])|[kK](?![A-Za-z]))?
        (?P<after>[A-Za-z]*)""",
    re.X,
)
# In the evidence every digit run counts, even inside words (A6000, fp16, layer1).
_SOURCE_NUMBER = re.compile(r"\d{1,3}(?:,\d{3})+(?:\.\d+)?|\d+(?:\.\d+)?(?:[eE][-+]?\d+)?|\.\d+")
_SOURCE_PERCENT = re.compile(r"(\d+(?:\.\d+)?)\s?%")
_VERSION = re.compile(r"(?<![\w.])\d+(?:\.\d+){2,}(?![\w.]*\d)")
_LIST_MARKER = re.compile(r"^(\s*(?:[-*+]\s+)?)\d{1,3}[.)](?=\s)", re.M)
_ORDINAL_SUFFIX = {"st", "nd", "rd", "th"}

# -- units -----------------------------------------------------------------------------------------

_INVISIBLE = re.compile("[\u00ad\u200b-\u200f\u202a-\u202e\u2060-\u2064\ufeff]")
_ABBREVIATIONS = ("e.g.", "i.e.", "etc.", "vs.", "cf.", "approx.", "fig.", "eq.", "no.", "resp.")


def _decimal(text: str) -> Decimal | None:
    try:
        return abs(Decimal(text.replace(",", ""))).normalize()
    except InvalidOperation:
        return None


def source_numbers(text: str) -> tuple[set[Decimal], set[Decimal]]:
    """Every number in `text`, and (separately) those written as percentages."""
    found = {d for m in _SOURCE_NUMBER.finditer(text) if (d := _decimal(m.group(0))) is not None}
    percents = {d for m in _SOURCE_PERCENT.finditer(text) if (d := _decimal(m.group(1))) is not None}
    return found, percents


def _squash(text: str) -> str:
    return " ".join(text.replace("`", " ").split()).casefold()


def _short(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= MAX_SHOWN else text[: MAX_SHOWN - 1] + "…"


@dataclass
class CheckResult:
    text: str  # the answer as checked: invented citations and ungrounded units removed, numbers marked
    citations: list[str] = field(default_factory=list)  # valid ids in the kept text, in order of first appearance
    removed_citations: list[str] = field(default_factory=list)
    unsupported_numbers: list[str] = field(default_factory=list)
    removed_actions: list[str] = field(default_factory=list)  # commands, code, links, paths not from a cited entry
    instructions: list[str] = field(default_factory=list)  # text aimed at a model, never shown
    findings: list[CheckFinding] = field(default_factory=list)  # all of the above, for a person


class Checker:
    """Judges an answer unit by unit against a grounding; feed it pieces, read the checked text back.

        checker = Checker(grounding)
        shown = checker.feed(piece)      # checked text of the units completed so far ('' while inside one)
        shown += checker.flush()         # the last unit
        checker.result()                 # CheckResult

    `check_answer` is `feed(answer) + flush()`, so a streamed answer is shown exactly as a whole one.
    """

    def __init__(self, grounding: Grounding):
        self.grounding = grounding
        self._canonical = {i.lower(): i for i in grounding.ids}
        self._bare_ids = _bare_id_pattern(grounding.ids)
        evidence = [grounding.run or "", grounding.user_description or "", *grounding.notes]
        for s in grounding.signals:
            evidence.append(s.model_dump_json())
        self._numbers, self._percents = source_numbers("\n".join(evidence))
        self._names = {n.casefold() for s in grounding.signals for n in (s.metric, s.kind)} | set(self._canonical)
        # Names and commands the run's own evidence or the user's description hold are theirs (a metric
        # named in a detector's summary, the command line the user said they ran).
        self._action_text = _squash("\n".join(evidence))
        self._buffer = ""
        self._pending_sep = ""
        self._removed_since_shown = False
        self._rest_of_line = False
        self._shown_any = False
        self._cited: list[str] = []
        self._removed_ids: list[str] = []
        self._numbers_flagged: list[str] = []
        self._actions: list[str] = []
        self._instructions: list[str] = []
        self._findings: list[CheckFinding] = []

    # -- streaming ---------------------------------------------------------------------------------

    def feed(self, piece: str) -> str:
        self._buffer += piece
        out = []
        while True:
            cut = _unit_end(self._buffer, final=False)
            if cut is None:
                return "".join(out)
            unit, self._buffer = self._buffer[:cut], self._buffer[cut:]
            out.append(self._unit(unit))

    def flush(self) -> str:
        out = []
        while self._buffer:
            cut = _unit_end(self._buffer, final=True)
            unit, self._buffer = self._buffer[:cut], self._buffer[cut:]
            out.append(self._unit(unit))
        return "".join(out)

    def result(self, text: str) -> CheckResult:
        return CheckResult(
            text=text,
            citations=list(dict.fromkeys(self._cited)),
            removed_citations=list(dict.fromkeys(self._removed_ids)),
            unsupported_numbers=list(dict.fromkeys(self._numbers_flagged)),
            removed_actions=list(dict.fromkeys(self._actions)),
            instructions=list(dict.fromkeys(self._instructions)),
            findings=list(self._findings),
        )

    # -- one unit ----------------------------------------------------------------------------------

    def _unit(self, unit: str) -> str:
        """Checked text for one unit. Whitespace around units is held until a kept unit follows, so
        removing a unit never leaves a double space or an empty line where it stood."""
        body = unit.strip()
        lead = unit[: len(unit) - len(unit.lstrip())]
        self._add_sep(lead)
        if not body:
            return ""
        trail = unit[len(unit.rstrip()):]
        if self._rest_of_line and "\n" not in lead:
            kept = None  # the line an instruction to a model started: nothing on it is advice
        else:
            self._rest_of_line = False
            kept = self._judge(body)  # sets _rest_of_line on an instruction
        if "\n" in trail:
            self._rest_of_line = False
        if kept is None:
            self._removed_since_shown = True
            self._add_sep(trail)
            return ""
        out = (self._pending_sep if self._shown_any else "") + kept
        self._pending_sep, self._removed_since_shown, self._shown_any = "", False, True
        self._add_sep(trail)
        return out

    def _add_sep(self, sep: str) -> None:
        if sep:
            self._pending_sep = _merge_sep(self._pending_sep, sep) if self._removed_since_shown else self._pending_sep + sep

    def _judge(self, body: str) -> str | None:
        """The unit as shown, or None when it is removed."""
        body = _INVISIBLE.sub("", body)  # zero-width characters would hide a word from every pattern below
        if _INSTRUCTION.search(body):
            self._instructions.append(_short(body))
            self._rest_of_line = True
            self._findings.append(CheckFinding(kind="instruction", what=_short(body),
                                               why="it reads as an instruction to a model, not advice"))
            return None
        text, valid, invented = self._citations(body)
        if invented and not valid:
            self._removed_ids += invented
            self._findings.append(CheckFinding(kind="citation", what=_short(body.replace(_CUT, "")),
                                               why=f"it cites only entries that are not in the diagnosis ({', '.join(invented)})"))
            return None
        cited = list(dict.fromkeys(self._cited + valid))
        ungrounded = [a for a in _actions(text) if not self._grounded_action(a, cited)]
        if ungrounded:
            self._actions += ungrounded
            where = "the steps of the entries it cites" if cited else "any cited entry (it cites none)"
            for action in ungrounded:
                self._findings.append(CheckFinding(kind="action", what=_short(action), why=f"it is not in {where}"))
            if invented:
                self._removed_ids += invented
            return None
        if invented:
            self._removed_ids += invented
            self._findings.append(CheckFinding(kind="citation", what=", ".join(invented),
                                               why="no such entry is in the diagnosis (the citation was cut, the sentence kept)"))
        self._cited += valid
        return self._mark_numbers(text, cited)

    def _citations(self, body: str) -> tuple[str, list[str], list[str]]:
        """(text with invented ids cut and tidied, valid ids, invented ids) for one unit."""
        valid: list[str] = []
        invented: list[str] = []

        def sort(candidate: str) -> str | None:
            hit = self._canonical.get(candidate.lower())
            if hit is not None:
                valid.append(hit)
                return hit
            invented.append(candidate)
            return None

        def bracket(m: re.Match) -> str:
            parts = [p.strip().strip("`'\"*.:").strip() for p in re.split(r"[,;]|\s+and\s+", m.group(1))]
            if not parts or not all(_ID_IN_BRACKET.match(p) for p in parts if p):
                return m.group(0)  # not a citation: [high], [1], [see below]
            kept = [k for k in (sort(p) for p in parts if p) if k]
            if not kept:
                return _CUT
            lead = m.group(0)[: len(m.group(0)) - len(m.group(0).lstrip(" \t"))]
            return f"{lead}[{', '.join(kept)}]"

        text = _BRACKET.sub(bracket, body.replace(_CUT, ""))
        text = self._bare_ids.sub(lambda m: m.group(0) if sort(m.group(1)) else _CUT, text)
        if _CUT in text:
            text = _tidy_cuts(text)
        return text, list(dict.fromkeys(valid)), list(dict.fromkeys(invented))

    def _entry_text(self, cited: list[str]) -> str:
        parts = []
        for entry_id in cited:
            s = self.grounding.suggestion(entry_id)
            if s is not None:
                parts += [s.title, *s.steps, s.expected_outcome]
        return "\n".join(parts)

    def _grounded_action(self, action: str, cited: list[str]) -> bool:
        squashed = _squash(action)
        if not squashed or _OWN_COMMAND.match(squashed) or squashed in self._names:
            return True
        if _NAME.match(action) and not _FILE_NAME.search(action) and not _URL.match(action):
            return True  # `lr`, `max_norm`, `torch.nn.utils.clip_grad_norm_`: a name, nothing to run
        if squashed in self._action_text:
            return True
        return squashed in _squash(self._entry_text(cited))

    def _mark_numbers(self, text: str, cited: list[str]) -> str:
        numbers, percents = source_numbers(self._entry_text(cited))
        numbers |= self._numbers
        percents |= self._percents
        scan = _blank_non_numbers(text, cited)
        marks: list[int] = []
        for m in _NUMBER.finditer(scan):
            written = _unsupported(m, numbers, percents)
            if written is None:
                continue
            self._numbers_flagged.append(written)
            marks.append(m.start() + len(m.group(0)) - len(m.group("after")))
        if not marks:
            return text
        flagged = list(dict.fromkeys(self._numbers_flagged[-len(marks):]))
        self._findings.append(CheckFinding(kind="number", what=", ".join(flagged), removed=False,
                                           why="neither in the run's evidence nor in a cited entry"))
        for pos in reversed(marks):
            text = f"{text[:pos].rstrip()} {NOT_IN_EVIDENCE}{'' if pos >= len(text) or text[pos] in ' .,;:!?)' else ' '}{text[pos:]}"
        return text


def _unsupported(m: re.Match, numbers: set[Decimal], percents: set[Decimal]) -> str | None:
    """The number as written when the evidence does not hold it; None when it does or is not a number to check."""
    if m.group("after").lower() in _ORDINAL_SUFFIX:
        return None
    mantissa = _decimal(m.group("mant"))
    if mantissa is None:
        return None
    exp = int(m.group("exp")) if m.group("exp") else 0
    value = mantissa.scaleb(exp).normalize()
    suffix = (m.group("suffix") or "").strip().lower()
    plain_integer = "." not in m.group("mant") and not m.group("exp")
    if plain_integer and not suffix and value <= SMALL_COUNT:
        return None
    if suffix == "%":  # a percentage is one the evidence writes as such, or a share of 1 (62% of 0.62)
        if value in percents or value.scaleb(-2).normalize() in numbers:
            return None
        return m.group(0)[: m.start("after") - m.start()].strip()
    if value in numbers:
        return None
    if suffix == "k" and (value * 1000).normalize() in numbers:
        return None
    if not suffix and value.scaleb(2).normalize() in percents:
        return None  # 0.08 for a written 8%
    return m.group(0)[: m.start("after") - m.start()].strip()


def _blank_non_numbers(text: str, cited: list[str]) -> str:
    """`text` with everything that is not prose (code, links, paths, ids, list markers, versions)
    blanked out, character for character, so match positions still point into `text`."""

    def blank(m: re.Match) -> str:
        return re.sub(r"[^\n]", " ", m.group(0))

    for pattern in (_FENCE, _CODE_SPAN, _MD_LINK, _URL, _EMAIL, _HOST, _PATH, _VERSION):
        text = pattern.sub(blank, text)
    for entry_id in sorted(cited, key=len, reverse=True):
        text = re.sub(re.escape(entry_id), blank, text, flags=re.I)
    text = re.sub(r"\[[^\[\]\n]*/[^\[\]\n]*\]", blank, text)  # any other id-like bracket
    return _LIST_MARKER.sub(lambda m: m.group(1) + " " * (len(m.group(0)) - len(m.group(1))), text)


def _actions(text: str) -> list[str]:
    """Shell commands, code, URLs, links, host addresses and file paths in one unit, as written."""
    found: list[str] = []
    rest = text
    for m in _FENCE.finditer(text):
        found += [ln.strip() for ln in m.group(1).splitlines() if ln.strip()]
    rest = _FENCE.sub(" ", rest)
    found += [m.group(1).strip() for m in _CODE_SPAN.finditer(rest)]
    rest = _CODE_SPAN.sub(" ", rest)
    found += [m.group(1) for m in _MD_LINK.finditer(rest)]
    rest = _MD_LINK.sub(" ", rest)
    found += [m.group(0).strip() for m in _SHELL.finditer(rest)]
    rest = _SHELL.sub(" ", rest)
    if _PIPE_TO_SHELL.search(rest):
        found.append(re.sub(r"\s*\[[^\[\]\n]*\]", "", rest).strip(" .;"))  # "... | sh" after a command not named above
    found += [m.group(0).rstrip(".,;:") for m in _URL.finditer(rest)]
    rest = _URL.sub(" ", rest)
    found += [m.group(0) for m in _EMAIL.finditer(rest)]
    rest = _EMAIL.sub(" ", rest)
    found += [m.group(0) for m in _HOST.finditer(rest)]
    rest = _HOST.sub(" ", rest)
    for m in _PATH.finditer(rest):
        path = m.group(0).rstrip(".")
        if len(path) > 1:
            found.append(path)
    return [a for a in dict.fromkeys(found) if a]


def _tidy_cuts(text: str) -> str:
    """Remove cut citations and the joining words around them: "fix [a] and [x]." -> "fix [a].", "(see [x])" -> ""."""
    text = re.sub(rf"{_CUT}(?:[ \t]*{_JOIN}?[ \t]*{_CUT})+", _CUT, text)
    text = re.sub(rf"[ \t]*\((?:[ \t]*(?:see|cf\.?|also|e\.g\.)?[ \t,;]*{_CUT})+[ \t,;]*\)", "", text, flags=re.I)
    text = re.sub(rf"(?<=\])[ \t]*{_JOIN}[ \t]*{_CUT}", "", text)
    text = re.sub(rf"(?<=\S){_CUT}[ \t]*{_JOIN}[ \t]*(?=\[)", " ", text)
    text = re.sub(rf"{_CUT}[ \t]*{_JOIN}[ \t]*(?=\[)", "", text)
    text = re.sub(rf"[ \t]*{_CUT}[ \t]*(?=[.,;:)!?])", "", text)
    text = re.sub(rf"(?<=\S)[ \t]*{_CUT}[ \t]*(?=\S)", " ", text)
    return re.sub(rf"[ \t]*{_CUT}[ \t]*", "", text)


def _merge_sep(a: str, b: str) -> str:
    """The whitespace between two kept units when units between them were removed: the wider break, not both."""
    return a if a.count("\n") >= b.count("\n") else b


def _unit_end(text: str, final: bool) -> int | None:
    """Where the first unit of `text` ends (after its terminator), or None if that needs more text.

    A unit ends after a newline, or after '.', '!' or '?' followed by whitespace, outside a fenced
    block or a code span; not after a list marker ("1."), an abbreviation ("e.g.") or inside a number.
    A fenced block is one unit. Leading whitespace belongs to the unit it precedes.
    """
    i = len(text) - len(text.lstrip())
    if i >= len(text):
        return len(text) if final else None
    if text.startswith("```", i):
        close = text.find("```", i + 3)
        if close < 0:
            return len(text) if final else None
        nl = text.find("\n", close + 3)
        return nl + 1 if nl >= 0 else (len(text) if final else None)
    in_code = False
    line_start = i
    for j in range(i, len(text)):
        c = text[j]
        if c == "\n":
            return j + 1
        if c == "`":
            in_code = not in_code
            continue
        if in_code or c not in ".!?":
            continue
        if j + 1 >= len(text):
            return len(text) if final else None
        if not text[j + 1].isspace():
            continue
        before = text[line_start : j + 1]
        if re.fullmatch(r"\s*(?:[-*+]\s+)?\d{1,3}\.", before):
            continue  # a list marker
        if before.lower().endswith(_ABBREVIATIONS):
            continue
        return j + 1
    return len(text) if final else None


def check_answer(answer: str, grounding: Grounding) -> CheckResult:
    """Check a whole answer against its grounding (the same judgement a stream gets)."""
    checker = Checker(grounding)
    text = checker.feed(answer)
    text += checker.flush()
    return checker.result(text)


def unsupported_numbers(text: str, grounding: Grounding, cited: list[str] | None = None) -> list[str]:
    """The numbers in `text`, as written, that neither the evidence nor the `cited` entries (default: all
    the grounding's entries) hold."""
    checker = Checker(grounding)
    checker._mark_numbers(text, grounding.ids if cited is None else cited)
    return list(dict.fromkeys(checker._numbers_flagged))
