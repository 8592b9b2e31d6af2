"""The domain lexicon (kb/lexicon.toml) applied to text: `expand_text` for entries and queries.

People write `train/grad_norm`, `wd`, `ema_tau`, `SimSiam`, `GradScaler`; the documents write
"gradient norm", "weight decay", "EMA target", "stop-gradient siamese", "loss scale". The index
build expands every entry with the same function that expands every query, so the two meet on the
lexicon's words. Expansion is appended, never substituted: nothing the user wrote is lost.
"""

from __future__ import annotations

import re
import tomllib
from functools import lru_cache
from pathlib import Path

LEXICON_PATH = Path(__file__).with_name("lexicon.toml")
# identifiers: words, hyphenated words and logger keys (train/grad_norm, val_loss_epoch, lr-Adam)
_IDENT = re.compile(r"[a-z][a-z0-9]*(?:[_/.\-][a-z0-9]+)*[_]?")
_SPLIT = re.compile(r"[_/.\-]+")


@lru_cache(maxsize=1)
def lexicon() -> tuple[dict[str, str], tuple[str, ...], str, re.Pattern | None]:
    """(single-token terms, multi-word phrases, ignore words, phrase regex) read from lexicon.toml."""
    data = tomllib.loads(LEXICON_PATH.read_text(encoding="utf-8"))
    terms = {k.lower(): v for k, v in data.get("terms", {}).items()}
    ignore = data.get("ignore", {})
    ignore_forms = [f.lower() for f in ignore.get("forms", [])]
    phrases = [k for k in terms if " " in k]
    alternation = "|".join(re.escape(p) for p in sorted(ignore_forms + phrases, key=len, reverse=True))
    pattern = re.compile(rf"(?<![a-z0-9])(?:{alternation})(?![a-z0-9])") if alternation else None
    return terms, tuple(ignore_forms), ignore.get("means", ""), pattern


def expansions(text: str) -> list[str]:
    """The lexicon meanings of the terms found in text, in order of appearance, without repeats."""
    terms, ignore_forms, ignore_means, pattern = lexicon()
    low = text.lower()
    found: list[str] = []
    if pattern is not None:
        def phrase(m: re.Match) -> str:
            form = m.group(0)
            found.append(ignore_means if form in ignore_forms else terms[form])
            return " "
        low = pattern.sub(phrase, low)
    for ident in _IDENT.findall(low):
        ident = ident.rstrip("_") if ident not in terms else ident
        if ident in terms:
            found.append(terms[ident])
            continue
        parts = [p for p in _SPLIT.split(ident) if p]
        if len(parts) < 2:
            continue
        i = 0
        while i < len(parts):  # longest known run of parts first: train/grad_norm -> grad_norm
            for j in range(len(parts), i, -1):
                key = "_".join(parts[i:j])
                if key in terms:
                    found.append(terms[key])
                    i = j
                    break
            else:
                i += 1
    return list(dict.fromkeys(m for m in found if m))


def expand_text(text: str) -> str:
    """The text followed by the lexicon words for its terms (used on entries at index time and on queries)."""
    extra = expansions(text)
    return text + "\n" + " ".join(extra) if extra else text
