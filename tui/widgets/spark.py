"""A sparkline of one metric over the run's step axis, with a signal's window marked."""

from __future__ import annotations

import math

from rich.text import Text
from textual.widget import Widget

BLOCKS = "▁▂▃▄▅▆▇█"


def _fraction(v: float, lo: float, hi: float) -> float:
    """Where v sits in [lo, hi], 0..1, without overflowing on values near ±1.8e308 (halves first)."""
    span = hi / 2 - lo / 2
    if not span > 0 or not math.isfinite(span):
        return 0.0
    f = (v / 2 - lo / 2) / span
    return min(1.0, max(0.0, f)) if math.isfinite(f) else 0.0


def _fmt(v: float) -> str:
    if v is None or not math.isfinite(v):
        return str(v)
    if v != 0 and (abs(v) >= 1e5 or abs(v) < 1e-3):
        return f"{v:.2e}"
    return f"{v:.4g}"


def render_spark(
    steps,
    values,
    width: int,
    window: tuple[float | None, float | None] | None = None,
    window_style: str = "bold red",
    line_style: str = "cyan",
) -> tuple[Text, Text]:
    """Two lines: the sparkline (columns bucketed by step, max per bucket, × for NaN/Inf) and a ruler
    with the window bracketed and the first/last step written at its ends."""
    width = max(int(width), 8)
    n = len(steps)
    if n == 0:
        return Text("(no data)", style="dim"), Text("")
    s0, s1 = float(steps[0]), float(steps[-1])

    def col(step: float) -> int:
        return int(_fraction(float(step), s0, s1) * (width - 1) + 0.5)

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
    spark = Text()
    last_level = None
    for c in range(width):
        inside = w0 is not None and w0 <= c <= w1
        style = window_style if inside else line_style
        if bad[c]:
            spark.append("×", style="bold red reverse" if inside else "bold red")
            continue
        if buckets[c]:
            level = int(_fraction(max(buckets[c]), lo, hi) * (len(BLOCKS) - 1) + 0.5)
            last_level = level
            spark.append(BLOCKS[level], style=style)
        elif last_level is not None:
            spark.append(BLOCKS[last_level], style=style + " dim")
        else:
            spark.append(" ")
    ruler = [" "] * width
    if w0 is not None:
        if w1 == w0:
            ruler[w0] = "^"
        else:
            ruler[w0], ruler[w1] = "└", "┘"
            for c in range(w0 + 1, w1):
                ruler[c] = "─"
    left, right = f"{s0:g}", f"{s1:g}"
    ruler_text = Text()
    line = "".join(ruler)
    # the step labels go where the ruler is blank
    if line[: len(left) + 1].strip() == "":
        line = left + line[len(left) :]
    if line[width - len(right) - 1 :].strip() == "":
        line = line[: width - len(right)] + right
    for ch in line:
        ruler_text.append(ch, style=window_style if ch in "└┘─^" else "dim")
    return spark, ruler_text


class WindowSpark(Widget):
    """`metric` over steps, the window [start, end] in the highlight colour, a ruler underneath."""

    DEFAULT_CSS = """
    WindowSpark { height: 2; width: 1fr; }
    """

    def __init__(self, steps, values, window=None, *, name=None, id=None, classes=None):
        super().__init__(name=name, id=id, classes=classes)
        self.steps = steps
        self.values = values
        self.window = window

    def render(self) -> Text:
        spark, ruler = render_spark(self.steps, self.values, self.content_size.width or 40, self.window)
        return Text("\n").join([spark, ruler])


def series_range(values) -> str:
    finite = [float(v) for v in values if math.isfinite(float(v))]
    if not finite:
        return "no finite values"
    return f"{_fmt(min(finite))} … {_fmt(max(finite))}"
