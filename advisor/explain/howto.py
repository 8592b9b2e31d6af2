""""How to tell if it worked", per signal kind: what the next run should show, in the signal's own numbers.

The sentences are data (advisor/howto.toml, keyed by the kinds the detectors emit), loaded once. Each
uses only the signal's metric, steps, value and threshold, so the checker finds every number it
quotes in the evidence. A kind without its own sentence gets the generic one: the same detector
should stay quiet on the next run.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources

from advisor.explain.models import GroundedSignal
from advisor.numbers import format_number


@dataclass(frozen=True)
class HowToTell:
    text: str  # a str.format template: {kind} {metric} {start} {end} {was}
    value_is: str = "it was"


@lru_cache(maxsize=1)
def how_to_tell_table() -> tuple[dict[str, HowToTell], str]:
    """(kind -> sentence template, the generic template), from advisor/howto.toml."""
    data = tomllib.loads((resources.files("advisor") / "howto.toml").read_text(encoding="utf-8"))
    kinds = {kind: HowToTell(**row) for kind, row in data.get("kinds", {}).items()}
    return kinds, data["fallback"]


def _was(s: GroundedSignal, value_is: str) -> str:
    """' (it was V; the threshold is T)' with whichever of the two the signal has."""
    parts = []
    if s.value is not None:
        parts.append(f"{value_is} {format_number(s.value)}")
    if s.threshold is not None:
        parts.append(f"the threshold is {format_number(s.threshold)}")
    return f" ({'; '.join(parts)})" if parts else ""


def how_to_tell(s: GroundedSignal) -> str:
    kinds, fallback = how_to_tell_table()
    row = kinds.get(s.kind) or HowToTell(fallback)
    return row.text.format(kind=s.kind, metric=s.metric, start=format_number(s.start_step), end=format_number(s.end_step),
                           was=_was(s, row.value_is))
