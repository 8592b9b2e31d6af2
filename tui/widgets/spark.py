"""A sparkline of one metric over the run's step axis, with a signal's window marked."""

from __future__ import annotations

from rich.text import Text
from textual.widget import Widget

from advisor.sparkline import spark

RULER_MARKS = "└┘─^"


def render_spark(
    steps,
    values,
    width: int,
    window: tuple[float | None, float | None] | None = None,
    window_style: str = "bold red",
    line_style: str = "cyan",
) -> tuple[Text, Text]:
    """The shared sparkline (advisor.sparkline: columns bucketed by step, max per bucket, × for NaN/Inf)
    styled: the window in the highlight colour, columns with no point of their own dim, and the ruler
    with the window bracketed and the first/last step at its ends."""
    if len(steps) == 0:
        return Text("(no data)", style="dim"), Text("")
    drawn = spark(steps, values, width=width, window=window)
    line = Text()
    for cell in drawn.cells:
        style = window_style if cell.in_window else line_style
        if cell.kind == "nonfinite":
            style = "bold red reverse" if cell.in_window else "bold red"
        elif cell.kind == "carried":
            style += " dim"
        line.append(cell.char, style=style)
    ruler = Text()
    for ch in drawn.ruler:
        ruler.append(ch, style=window_style if ch in RULER_MARKS else "dim")
    return line, ruler


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

