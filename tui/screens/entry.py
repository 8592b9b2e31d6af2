"""One KB entry on its own (a search result): the entry as Markdown and where it came from."""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import Screen
from textual.widgets import Footer, Markdown, Static

from tui.widgets.entry import entry_markdown, provenance_text, source_badge


class EntryScreen(Screen):
    BINDINGS = [
        Binding("escape", "app.pop_screen", "Back"),
        Binding("q", "app.pop_screen", "Back", show=False),
        Binding("o", "open_source", "Source"),
    ]

    def __init__(self, entry):
        super().__init__()
        self.entry = entry

    def compose(self) -> ComposeResult:
        head = Text()
        head.append(self.entry.title, style="bold")
        head.append("\n")
        head.append_text(source_badge(self.entry.source))
        head.append(f"  {self.entry.kind}  ", style="dim")
        head.append(self.entry.id, style="dim")
        yield Static(head, id="entry-head", markup=False)
        with VerticalScroll(id="entry-body"):
            yield Markdown(entry_markdown(self.entry), id="entry-md")
            yield Static(provenance_text(self.entry.provenance), id="entry-provenance", markup=False)
        yield Footer()

    def on_mount(self) -> None:
        self.query_one("#entry-body").focus()

    def action_open_source(self) -> None:
        self.app.open_source(self.entry.source, self.entry.provenance)
