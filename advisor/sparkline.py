"""One sparkline for every screen: a metric over the run's step axis in block characters, with a
signal's window marked on a ruler underneath. `advisor annotate` prints it as text; the TUI styles
the same cells (tui/widgets/spark.py).

Columns bucket the points by step (the maximum of each bucket, so a spike is never averaged away);
a non-finite point shows as ×; a column with no point repeats the last level (drawn dim in the TUI).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

from advisor.numbers import format_number

BLOCKS = "▁▂▃▄▅▆▇█"
NONFINITE = "×"
MIN_WIDTH = 8


def fraction(v: float, lo: float, hi: float) -> float:
    """Where v sits in [lo, hi], 0..1, without overflowing near ±1.8e308 (halves first)."""
    span = hi / 2 - lo / 2
    if not span > 0 or not math.isfinite(span):
        return 0.0
    f = (v / 2 - lo / 2) / span
    return min(1.0, max(0.0, f)) if math.isfinite(f) else 0.0


@dataclass(frozen=True)
class Cell:
    char: str
    in_window: bool
    kind: str  # "value", "carried" (no point in this column: the last level again), "nonfinite", "empty"


@dataclass(frozen=True)
class Spark:
    cells: list[Cell]
    ruler: str  # the window bracketed (└─┘, or ^ for one column) and the first/last step at the ends

    @property
    def line(self) -> str:
        return "".join(c.char for c in self.cells)

    def text(self) -> str:
        return self.line + "\n" + self.ruler


def spark(steps: Sequence[float], values: Sequence[float], width: int = 48,
          window: tuple[float | None, float | None] | None = None) -> Spark:  # fmt: skip
    """The cells and ruler of a sparkline `width` columns wide; `window` is (start, end) on the step axis."""
    width = max(int(width), MIN_WIDTH)
    n = len(steps)
    if n == 0:
        return Spark([], "")
    s0, s1 = float(steps[0]), float(steps[-1])

    def col(step: float) -> int:
        return int(fraction(float(step), s0, s1) * (width - 1) + 0.5)

    buckets: list[list[float]] = [[] for _ in range(width)]
    bad = [False] * width
    for st, v in zip(steps, values):
        c = col(st)
        fv = float(v)
        if math.isfinite(fv):
            buckets[c].append(fv)
        else:
            bad[c] = True
    finite = [v for b in buckets for v in b]
    lo, hi = (min(finite), max(finite)) if finite else (0.0, 1.0)
    w0 = w1 = None
    if window is not None and window[0] is not None:
        w0 = col(window[0])
        w1 = col(window[1] if window[1] is not None else window[0])
        w0, w1 = min(w0, w1), max(w0, w1)
    cells: list[Cell] = []
    last_level = None
    for c in range(width):
        inside = w0 is not None and w0 <= c <= w1
        if bad[c]:
            cells.append(Cell(NONFINITE, inside, "nonfinite"))
        elif buckets[c]:
            level = BLOCKS[int(fraction(max(buckets[c]), lo, hi) * (len(BLOCKS) - 1) + 0.5)]  # a flat curve sits at the bottom
            last_level = level
            cells.append(Cell(level, inside, "value"))
        elif last_level is not None:
            cells.append(Cell(last_level, inside, "carried"))
        else:
            cells.append(Cell(" ", inside, "empty"))
    ruler = [" "] * width
    if w0 is not None:
        if w1 == w0:
            ruler[w0] = "^"
        else:
            ruler[w0], ruler[w1] = "└", "┘"
            for c in range(w0 + 1, w1):
                ruler[c] = "─"
    left, right = format_number(s0), format_number(s1)
    line = "".join(ruler)
    # the step labels go where the ruler is blank
    if line[: len(left) + 1].strip() == "":
        line = left + line[len(left) :]
    if line[width - len(right) - 1 :].strip() == "":
        line = line[: width - len(right)] + right
    return Spark(cells, line)


def value_range(values: Sequence[float]) -> str:
    """`lo … hi` over the finite values, for a line under a plot."""
    finite = [float(v) for v in values if math.isfinite(float(v))]
    if not finite:
        return "no finite values"
    return f"{format_number(min(finite))} … {format_number(max(finite))}"
