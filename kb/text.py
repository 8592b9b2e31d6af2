"""Text repair and small text helpers shared by the parser and the store.

Mojibake in the shipped documents comes in two flavours:
- UTF-8 read as Mac Roman (seed `run`): ``‚úÖ`` for ✅, ``‚Üí`` for →, ``Œª`` for λ. ftfy does not
  detect it and its quote uncurling makes it worse, so we repair it ourselves: a run of characters
  that all exist in Mac Roman is encoded back to bytes and decoded as UTF-8; the repair is kept only
  when the bytes are valid UTF-8. 4-byte emoji start with 0xF0, which Mac Roman maps to U+F8FF.
- UTF-8 read as Windows-1252 (seed `audit`): ``âœ…``, ``ðŸ”´`` — the same run repair with cp1252,
  then ftfy for whatever else it recognises (quote uncurling and line-break changes off, so the
  text and its line numbers stay as written).
"""

from __future__ import annotations

import re
import unicodedata

import ftfy

# Non-ASCII runs (with U+F8FF, Mac Roman's 0xF0) that may be mis-decoded UTF-8.
_NON_ASCII_RUN = re.compile(r"[^\x00-\x7f]{2,}")
_CODECS = ("mac_roman", "cp1252")


def _repair_run(run: str) -> str:
    for codec in _CODECS:
        try:
            raw = run.encode(codec)
        except UnicodeEncodeError:
            continue
        try:
            fixed = raw.decode("utf-8")
        except UnicodeDecodeError:
            # a run may hold mojibake followed by legitimate text: try the longest valid prefix
            fixed = _longest_utf8_prefix(raw)
            if fixed is None:
                continue
            consumed = len(fixed.encode("utf-8"))
            tail = raw[consumed:].decode(codec)
            return fixed + _repair_run(tail) if tail != run else run
        if fixed != run:
            return fixed
    return run


def _longest_utf8_prefix(raw: bytes) -> str | None:
    for end in range(len(raw) - 1, 1, -1):
        try:
            text = raw[:end].decode("utf-8")
        except UnicodeDecodeError:
            continue
        if any(ord(c) > 0x7F for c in text):
            return text
        return None
    return None


def repair_mojibake(text: str) -> str:
    """Undo UTF-8-read-as-Mac-Roman/Windows-1252 mojibake; leaves correct text alone."""
    repaired = _NON_ASCII_RUN.sub(lambda m: _repair_run(m.group(0)), text)
    repaired = ftfy.fix_text(repaired, uncurl_quotes=False, fix_line_breaks=False, normalization="NFC")
    return repaired


def looks_like_mojibake(text: str) -> bool:
    """True when some non-ASCII run would still decode as UTF-8 from Mac Roman or cp1252 bytes."""
    if "\uf8ff" in text or ftfy.is_bad(text):
        return True
    return any(_repair_run(m.group(0)) != m.group(0) for m in _NON_ASCII_RUN.finditer(text))


_EMOJI_OR_SYMBOL = re.compile(r"[\u2190-\u21ff\u2300-\u27bf\u2b00-\u2bff\U0001f000-\U0001faff\ufe0f\u200d]")


def strip_symbols(text: str) -> str:
    """Drop emoji, arrows and dingbats (status marks in headings), keep letters and punctuation."""
    text = _EMOJI_OR_SYMBOL.sub("", text)
    return "".join(c for c in text if unicodedata.category(c) != "So").strip()


def slugify(text: str, max_len: int = 60) -> str:
    text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    slug = re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")
    return slug[:max_len].rstrip("-") or "entry"
