"""The detail pane for the selected suggestion: what it is, the evidence for it (with a sparkline of
each metric and the signal's window marked), the entry as Markdown, and where it came from."""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Vertical, VerticalScroll
from textual.widgets import Markdown, Static

from tui.widgets.entry import (
    SEVERITY_STYLE,
    entry_markdown,
    provenance_text,
    source_badge,
    suggestion_markdown,
)
from tui.widgets.spark import WindowSpark, _fmt, series_range


def _num(v) -> str:
    if isinstance(v, float):
        return _fmt(v)
    return str(v)


def _steps(start, end) -> str:
    if start is None:
        return ""
    if end is None or end == start:
        return f"step {start:g}"
    return f"steps {start:g}–{end:g}"


def evidence_head(ev, signal=None, new: bool = False) -> Text:
    """● severity kind in metric  steps a–b (epochs)  [NEW]"""
    t = Text()
    t.append("● ", style=SEVERITY_STYLE.get(ev.severity, ""))
    t.append(f"{ev.severity} ", style=SEVERITY_STYLE.get(ev.severity, ""))
    t.append(ev.signal, style="bold")
    t.append(" in ")
    t.append(ev.metric, style="italic")
    rng = _steps(ev.step, ev.end_step)
    if rng:
        t.append(f"  {rng}")
    if signal is not None and signal.start_epoch is not None:
        if signal.end_epoch is not None and signal.end_epoch != signal.start_epoch:
            t.append(f" (epochs {signal.start_epoch:g}–{signal.end_epoch:g})", style="dim")
        else:
            t.append(f" (epoch {signal.start_epoch:g})", style="dim")
    if new:
        t.append("  NEW", style="bold reverse #ffd75f")
    return t


def evidence_numbers(ev, signal=None, series_values=None) -> Text:
    nums = []
    if ev.value is not None:
        nums.append(f"value {_num(ev.value)}")
    if ev.threshold is not None:
        nums.append(f"threshold {_num(ev.threshold)}")
    if signal is not None:
        nums.extend(f"{k} {_num(v)}" for k, v in signal.numbers.items() if v is not None)
    if series_values is not None and len(series_values):
        nums.append(f"range {series_range(series_values)}")
    return Text(" · ".join(nums), style="#9e9e9e")


def evidence_text(ev, signal=None, new: bool = False, series_values=None) -> Text:
    """The whole evidence item as one text (head, summary, numbers)."""
    t = evidence_head(ev, signal, new)
    if ev.summary:
        t.append("\n  " + ev.summary)
    nums = evidence_numbers(ev, signal, series_values)
    if nums.plain:
        t.append("\n  ")
        t.append_text(nums)
    return t


def find_signal(signals, ev):
    for s in signals:
        if s.kind == ev.signal and s.metric == ev.metric and (ev.step is None or s.start == ev.step):
            return s
    return next((s for s in signals if s.kind == ev.signal and s.metric == ev.metric), None)


class EvidenceView(Vertical):
    DEFAULT_CSS = """
    EvidenceView { height: auto; margin: 0 0 1 0; }
    EvidenceView.-new { background: $warning 10%; }
    EvidenceView .ev-summary, EvidenceView .ev-numbers { padding-left: 2; }
    EvidenceView .ev-spark { margin-left: 2; }
    """

    def __init__(self, ev, signal=None, series=None, new: bool = False):
        super().__init__(classes="-new" if new else "")
        self.ev, self.signal, self.series, self.new = ev, signal, series, new

    def compose(self) -> ComposeResult:
        values = self.series.values if self.series is not None else None
        yield Static(evidence_head(self.ev, self.signal, self.new), markup=False, classes="ev-text ev-head")
        if self.ev.summary:
            yield Static(Text(self.ev.summary), markup=False, classes="ev-text ev-summary")
        if self.series is not None and len(self.series):
            yield WindowSpark(self.series.steps, self.series.values, (self.ev.step, self.ev.end_step), classes="ev-spark")
        numbers = evidence_numbers(self.ev, self.signal, values)
        if numbers.plain:
            yield Static(numbers, markup=False, classes="ev-text ev-numbers")


class SuggestionDetail(VerticalScroll):
    """Fixed parts updated in place; the evidence list is rebuilt for each suggestion."""

    def compose(self) -> ComposeResult:
        yield Static("", id="detail-head", markup=False)
        yield Static(Text("Evidence", style="bold underline"), id="evidence-title", markup=False)
        yield Vertical(id="evidence")
        yield Markdown("", id="entry-md")
        yield Static("", id="provenance", markup=False)

    def on_mount(self) -> None:
        self.query_one("#evidence-title").display = False

    async def show(self, sug, *, entry=None, run=None, signals=(), mark=None, new_evidence=frozenset(), keep_scroll: bool = False) -> None:
        head = Text()
        head.append(sug.title, style="bold")
        head.append("\n")
        head.append_text(source_badge(sug.source))
        head.append(f" score {sug.score:.2f} · ")
        head.append(sug.severity, style=SEVERITY_STYLE.get(sug.severity, ""))
        n = len(sug.evidence)
        head.append(f" · {n} signal{'s' if n != 1 else ''}")
        if sug.matched_by:
            head.append(f" · via {', '.join(sug.matched_by)}", style="dim")
        head.append("\n")
        if mark is not None:
            head.append("Marked: ", style="bold")
            head.append(f" {mark.status} ", style="bold reverse")
            if mark.note:
                head.append("  note: ")
                head.append(mark.note, style="italic")
        else:
            head.append("Not marked: t tried · h helped · u did not help · x dismiss · n note", style="dim")
        self.query_one("#detail-head", Static).update(head)

        box = self.query_one("#evidence", Vertical)
        self.query_one("#evidence-title").display = bool(sug.evidence)
        views = []
        for ev in sug.evidence:
            series = run.series.get(ev.metric) if run is not None else None
            views.append(EvidenceView(ev, find_signal(signals, ev), series, (ev.signal, ev.metric) in new_evidence))
        async with self.batch():
            await box.remove_children()
            if views:
                await box.mount_all(views)
            md = entry_markdown(entry) if entry is not None else suggestion_markdown(sug)
            await self.query_one("#entry-md", Markdown).update(md)
            prov = provenance_text(sug.provenance)
            prov.append(f"\n{sug.id}", style="dim")
            self.query_one("#provenance", Static).update(prov)
        if not keep_scroll:
            self.scroll_home(animate=False)

    async def show_message(self, text: str) -> None:
        self.query_one("#detail-head", Static).update(Text(text))
        self.query_one("#evidence-title").display = False
        await self.query_one("#evidence", Vertical).remove_children()
        await self.query_one("#entry-md", Markdown).update("")
        self.query_one("#provenance", Static).update("")
