"""How a number is written for a person: one formatter, so an explanation's checker can hold the text
to the evidence digit for digit (it compares what the prompt shows with what the answer quotes).

Signal summaries keep their own wording (advisor/detectors/base.py `fmt`: "n/a" for a missing value);
everything a person reads beside them goes through `format_number`.
"""

from __future__ import annotations

import math

SIGNIFICANT_DIGITS = 4


def format_number(x: float | int | bool | str | None) -> str:
    """Integers plain (1200, not 1200.0), others to 4 significant digits; NaN / Inf / -Inf as words;
    None as ''; text (a role, a layer name among a signal's numbers) as it is."""
    if x is None:
        return ""
    if isinstance(x, str):
        return x
    if isinstance(x, bool):
        return str(x).lower()
    if isinstance(x, int):
        return str(x)
    if math.isnan(x):
        return "NaN"
    if math.isinf(x):
        return "Inf" if x > 0 else "-Inf"
    if x == int(x) and abs(x) < 1e15:
        return str(int(x))
    return f"{x:.{SIGNIFICANT_DIGITS}g}"


def rounded(x: float | int | str | None) -> float | int | str | None:
    """A number as it is shown, kept as a number where JSON can hold it: the digits `format_number` writes."""
    if x is None or isinstance(x, (str, bool)):
        return x
    if isinstance(x, float) and (math.isnan(x) or math.isinf(x)):
        return format_number(x)  # JSON has no NaN; the word is what the reader needs
    if isinstance(x, float) and x == int(x) and abs(x) < 1e15:
        return int(x)
    return float(format_number(x)) if isinstance(x, float) else x
