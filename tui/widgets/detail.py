"""The detail pane for the selected suggestion, in the order a person needs it: what was seen in the
run (one sentence each, with its numbers), the fix (the entry's steps first), the evidence plots
(a sparkline of each metric with the signal's window marked), and where the entry came from.

The detector's own fields (value, threshold, trend statistics, role...) are behind a toggle (`i`).
"""

from __future__ import annotations

import asyncio

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Vertical, VerticalScroll
from textual.css.query import NoMatches
from textual.widgets import Markdown, Static

from advisor.numbers import format_number
from advisor.sparkline import value_range
from tui.widgets.entry import (
    SEVERITY_STYLE,
    STRENGTH_STYLE,
    entry_markdown,
    fix_markdown,
    provenance_text,
    source_badge,
    strength,
    suggestion_markdown,
    why,
)
from tui.widgets.spark import WindowSpark

SECTION = "bold underline"


def _steps(start, end) -> str:
    if start is None:
        return ""
    if end is None or end == start:
        return f"step {start:g}"
    return f"steps {start:g}–{end:g}"


def _where(ev, signal=None, nested: bool = False) -> str:
    """steps a–b (epochs c–d); `nested` (already inside parentheses): steps a–b, epochs c–d"""
    out = _steps(ev.step, ev.end_step)
    if signal is not None and signal.start_epoch is not None:
        if signal.end_epoch is not None and signal.end_epoch != signal.start_epoch:
            epochs = f"epochs {signal.start_epoch:g}–{signal.end_epoch:g}"
        else:
            epochs = f"epoch {signal.start_epoch:g}"
        out += f", {epochs}" if nested else f" ({epochs})"
    return out


def seen_text(ev, signal=None, new: bool = False) -> Text:
    """● What was seen: the detector's sentence (it carries the numbers) and where, in the run."""
    t = Text()
    t.append("● ", style=SEVERITY_STYLE.get(ev.severity, ""))
    t.append(ev.summary or f"{ev.signal} in {ev.metric}")
    where = _where(ev, signal, nested=True)
    if where and where not in (ev.summary or ""):
        t.append(f"  ({where})", style="dim")
    if new:
        t.append("  NEW", style="bold reverse #ffd75f")
    return t


def evidence_head(ev, signal=None, new: bool = False) -> Text:
    """severity kind in metric  steps a–b (epochs)  [NEW] — the heading of one evidence plot."""
    t = Text()
    t.append(f"{ev.severity} ", style=SEVERITY_STYLE.get(ev.severity, ""))
    t.append(ev.signal, style="bold")
    t.append(" in ")
    t.append(ev.metric, style="italic")
    where = _where(ev, signal)
    if where:
        t.append(f"  {where}")
    if new:
        t.append("  NEW", style="bold reverse #ffd75f")
    return t


def evidence_numbers(ev, signal=None, series_values=None) -> Text:
    """The detector's fields (shown with `i`)."""
    nums = []
    if ev.value is not None:
        nums.append(f"value {format_number(ev.value)}")
    if ev.threshold is not None:
        nums.append(f"threshold {format_number(ev.threshold)}")
    if signal is not None:
        nums.extend(f"{k} {format_number(v)}" for k, v in signal.numbers.items() if v is not None)
    if series_values is not None and len(series_values):
        nums.append(f"range {value_range(series_values)}")
    return Text(" · ".join(nums), style="#9e9e9e")


def find_signal(signals, ev):
    for s in signals:
        if s.kind == ev.signal and s.metric == ev.metric and (ev.step is None or s.start == ev.step):
            return s
    return next((s for s in signals if s.kind == ev.signal and s.metric == ev.metric), None)


class EvidenceView(Vertical):
    """One evidence plot: heading, sparkline with the window, the detector's fields (toggled)."""

    DEFAULT_CSS = """
    EvidenceView { height: auto; margin: 0 0 1 0; }
    EvidenceView.-new { background: $warning 10%; }
    EvidenceView .ev-numbers, EvidenceView .ev-spark { margin-left: 2; }
    EvidenceView .ev-numbers { display: none; }
    """

    def __init__(self, ev, signal=None, series=None, new: bool = False):
        super().__init__(classes="-new" if new else "")
        self.ev, self.signal, self.series, self.new = ev, signal, series, new

    def compose(self) -> ComposeResult:
        values = self.series.values if self.series is not None else None
        yield Static(evidence_head(self.ev, self.signal, self.new), markup=False, classes="ev-text ev-head")
        if self.series is not None and len(self.series):
            yield WindowSpark(self.series.steps, self.series.values, (self.ev.step, self.ev.end_step), classes="ev-spark")
        numbers = evidence_numbers(self.ev, self.signal, values)
        if numbers.plain:
            yield Static(numbers, markup=False, classes="ev-text ev-numbers")


class SuggestionDetail(VerticalScroll):
    """Fixed parts updated in place; the seen sentences and evidence plots are rebuilt per suggestion."""

    def compose(self) -> ComposeResult:
        yield Static("", id="detail-head", markup=False)
        yield Static(Text("What was seen", style=SECTION), id="seen-title", classes="section", markup=False)
        yield Vertical(id="seen")
        yield Markdown("", id="fix-md")
        yield Static(Text("Evidence", style=SECTION), id="evidence-title", classes="section", markup=False)
        yield Vertical(id="evidence")
        yield Markdown("", id="entry-md")
        yield Static("", id="provenance", markup=False)

    _signature = None  # what the seen sentences and plots show now (see show)

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._markdown_text: dict[str, str] = {}
        # One render at a time, the newest request wins: a render is never cancelled half way (a
        # Markdown update or a mount cancelled mid-way leaves widgets that never answer again);
        # a request that a newer one overtook while it waited does nothing.
        self._render_lock = asyncio.Lock()
        self._requests = 0
    FOCUSED_TITLE = "Detail (keys here) · esc: back to the list"

    def on_mount(self) -> None:
        self.query_one("#seen-title").display = False
        self.query_one("#evidence-title").display = False

    def on_focus(self) -> None:
        self.border_title = self.FOCUSED_TITLE  # Enter moved the keys here: say so

    def on_blur(self) -> None:
        self.border_title = None

    @property
    def internals(self) -> bool:
        return self.has_class("-internals")

    def toggle_internals(self) -> bool:
        """Show or hide the detector's fields under each plot; returns whether they show now."""
        self.toggle_class("-internals")
        return self.internals

    async def _render_latest(self, render) -> None:
        self._requests += 1
        request = self._requests
        async with self._render_lock:
            if request != self._requests:
                return
            try:
                await render()
            except NoMatches:  # its parts are gone: the app is closing
                pass

    async def show(self, sug, **kwargs) -> None:
        """Show a suggestion (see `_show`); nothing when the pane is being torn down (the app quits)."""
        await self._render_latest(lambda: self._show(sug, **kwargs))

    async def _show(self, sug, *, entry=None, run=None, signals=(), mark=None, new_evidence=frozenset(), keep_scroll: bool = False, dismissed: bool = False) -> None:
        head = Text()
        head.append(sug.title, style="bold")
        head.append("\n")
        head.append_text(source_badge(sug.source))
        if dismissed:
            head.append("  dismissed on this run", style="bold")
            head.append(" · x or c: restore it", style="dim")
        else:
            level = strength(sug)
            head.append(f"  {level}", style=STRENGTH_STYLE.get(level, ""))
            reason = why(sug)
            if reason:
                head.append(f": {reason}")
            if sug.evidence:
                head.append(" · ")
                head.append(sug.severity, style=SEVERITY_STYLE.get(sug.severity, ""))
        head.append("\n")
        if mark is not None:
            head.append("Marked: ", style="bold")
            head.append(f" {mark.status} ", style="bold reverse")
            if mark.note:
                head.append("  note: ")
                head.append(mark.note, style="italic")
        else:
            head.append("Not marked · t tried · h helped · u no help · x dismiss · n note", style="dim")
        self.query_one("#detail-head", Static).update(head)

        # the same evidence as shown already (a re-rank, a mark, a live poll that only added points):
        # keep the widgets, no flicker; new points go to the plots in place
        signature = (sug.id, tuple(
            (ev.signal, ev.metric, ev.step, ev.end_step, ev.summary, (ev.signal, ev.metric) in new_evidence)
            for ev in sug.evidence
        ))
        rebuild = signature != self._signature
        self._signature = signature
        if not rebuild and run is not None:
            for view in self.query(EvidenceView):
                series = run.series.get(view.ev.metric)
                for spark in view.query(WindowSpark):
                    if series is not None and len(series) != len(spark.steps):
                        spark.steps, spark.values = series.steps, series.values
                        spark.refresh()
        seen, plots = [], []
        for ev in sug.evidence if rebuild else ():
            signal = find_signal(signals, ev)
            new = (ev.signal, ev.metric) in new_evidence
            seen.append(Static(seen_text(ev, signal, new), markup=False, classes="ev-text ev-seen"))
            series = run.series.get(ev.metric) if run is not None else None
            plots.append(EvidenceView(ev, signal, series, new))
        async with self.batch():
            if rebuild:
                self.query_one("#seen-title").display = bool(seen)
                self.query_one("#evidence-title").display = bool(plots)
                for box, children in ((self.query_one("#seen", Vertical), seen), (self.query_one("#evidence", Vertical), plots)):
                    await box.remove_children()
                    if children:
                        await box.mount_all(children)
            if entry is not None:
                fix, rest = fix_markdown(entry), entry_markdown(entry, fix=False)
            else:
                fix, rest = fix_markdown(sug), suggestion_markdown(sug, fix=False)
            await self._markdown("#fix-md", fix or "*(the entry lists no steps)*")
            await self._markdown("#entry-md", rest)
            prov = provenance_text(sug.provenance)
            prov.append(f"\n{sug.id}", style="dim")
            if not dismissed:
                prov.append(f"  score {sug.score:.2f}", style="dim")
            self.query_one("#provenance", Static).update(prov)
        if not keep_scroll:
            self.scroll_home(animate=False)

    async def _markdown(self, selector: str, text: str) -> None:
        """Update a Markdown part only when its text changes (its blocks are rebuilt on update)."""
        if self._markdown_text.get(selector) != text:
            self._markdown_text[selector] = text
            await self.query_one(selector, Markdown).update(text)

    async def show_message(self, text: str) -> None:
        await self._render_latest(lambda: self._show_message(text))

    async def _show_message(self, text: str) -> None:
        self._signature = None
        self.query_one("#detail-head", Static).update(Text(text))
        self.query_one("#seen-title").display = False
        self.query_one("#evidence-title").display = False
        await self.query_one("#seen", Vertical).remove_children()
        await self.query_one("#evidence", Vertical).remove_children()
        await self._markdown("#fix-md", "")
        await self._markdown("#entry-md", "")
        self.query_one("#provenance", Static).update("")
