"""Search the knowledge base: results as you type (debounced), enter opens one."""

from __future__ import annotations

import asyncio

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.screen import Screen
from textual.widgets import Footer, Input, OptionList, Static
from textual.widgets.option_list import Option

from tui.widgets.entry import source_badge

DEBOUNCE_S = 0.15
RESULTS = 15


def hit_prompt(hit) -> Text:
    e = hit.entry
    t = Text()
    t.append_text(source_badge(e.source))
    t.append(" ")
    t.append(" ".join(e.title.split()), style="bold")
    t.append(f"  {hit.score:.3f}", style="dim")
    first = e.symptoms[0] if e.symptoms else (e.root_cause or e.section)
    if first:
        first = " ".join(str(first).split())
        t.append("\n  " + (first[:140] + "…" if len(first) > 140 else first), style="#9e9e9e")
    return t


class SearchScreen(Screen):
    BINDINGS = [
        Binding("escape", "back", "Back"),
        Binding("down", "results", "Results", show=False),
        Binding("ctrl+l", "clear", "Clear"),
    ]

    def __init__(self, query: str = ""):
        super().__init__()
        self.initial = query
        self.hits: list = []

    def compose(self) -> ComposeResult:
        yield Input(self.initial, placeholder="Search the knowledge base: symptoms, metrics, errors…", id="search-input")
        yield Static("", id="search-status", markup=False)
        yield OptionList(id="search-results")
        yield Footer()

    def on_mount(self) -> None:
        self.query_one("#search-input", Input).focus()
        if self.initial:
            self.search(self.initial)

    @on(Input.Changed, "#search-input")
    def _changed(self, event: Input.Changed) -> None:
        self.search(event.value)

    @on(Input.Submitted, "#search-input")
    def _submitted(self, event: Input.Submitted) -> None:
        results = self.query_one(OptionList)
        if results.option_count:
            results.highlighted = 0
            results.focus()

    @work(exclusive=True, group="search")
    async def search(self, text: str) -> None:
        """Debounced: a newer keystroke cancels this worker while it waits."""
        await asyncio.sleep(DEBOUNCE_S)
        status = self.query_one("#search-status", Static)
        if not text.strip():
            self._show([], "")
            return
        status.update(Text("searching…", style="dim"))
        try:
            kb = await asyncio.to_thread(self.app.get_kb)
            hits = await asyncio.to_thread(kb.search, text, RESULTS)
        except Exception as exc:  # a KB error is shown, not raised
            self._show([], f"search failed: {exc}")
            return
        self._show(hits, f"{len(hits)} result{'s' if len(hits) != 1 else ''} for “{text.strip()}”" if hits else f"nothing found for “{text.strip()}”")

    def _show(self, hits: list, message: str) -> None:
        self.hits = hits
        results = self.query_one(OptionList)
        results.clear_options()
        results.add_options([Option(hit_prompt(h), id=h.entry.id) for h in hits])
        self.query_one("#search-status", Static).update(Text(message, style="dim"))

    @on(OptionList.OptionSelected, "#search-results")
    def _selected(self, event: OptionList.OptionSelected) -> None:
        hit = next((h for h in self.hits if h.entry.id == event.option_id), None)
        if hit is not None:
            from tui.screens.entry import EntryScreen

            self.app.push_screen(EntryScreen(hit.entry))

    def action_results(self) -> None:
        results = self.query_one(OptionList)
        if results.option_count:
            if results.highlighted is None:
                results.highlighted = 0
            results.focus()

    def action_clear(self) -> None:
        box = self.query_one("#search-input", Input)
        box.value = ""
        box.focus()

    def action_back(self) -> None:
        self.app.pop_screen()
