"""A source document with an entry's lines selected: where a suggestion came from."""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.screen import Screen
from textual.widgets import Footer, Static, TextArea
from textual.widgets.text_area import Selection


class SourceScreen(Screen):
    """The whole document, read-only, scrolled to the provenance lines, which are selected."""

    BINDINGS = [
        Binding("escape", "app.pop_screen", "Back"),
        Binding("q", "app.pop_screen", "Back", show=False),
        Binding("w", "toggle_wrap", "Wrap"),
    ]

    def __init__(self, file: str, text: str, start_line: int, end_line: int):
        super().__init__()
        self.file = file
        self.text = text
        lines = text.split("\n")
        self.start_line = max(1, min(start_line, len(lines)))
        self.end_line = max(self.start_line, min(end_line, len(lines)))
        self._lines = lines

    def compose(self) -> ComposeResult:
        title = Text()
        title.append(self.file, style="bold")
        title.append(f"  lines {self.start_line}–{self.end_line}", style="bold #ffd75f")
        title.append(f"  of {len(self._lines)}", style="dim")
        yield Static(title, id="source-title", markup=False)
        yield TextArea.code_editor(self.text, read_only=True, soft_wrap=True, id="source-text", highlight_cursor_line=False)
        yield Footer()

    def on_mount(self) -> None:
        area = self.query_one(TextArea)
        end = (self.end_line - 1, len(self._lines[self.end_line - 1]))
        area.selection = Selection(start=end, end=(self.start_line - 1, 0))
        area.focus()
        self.call_after_refresh(self._scroll_to_range)

    def _scroll_to_range(self) -> None:
        area = self.query_one(TextArea)
        try:
            y = area.wrapped_document.location_to_offset((self.start_line - 1, 0)).y
        except Exception:
            y = self.start_line - 1
        area.scroll_to(y=max(0, y - 1), animate=False)

    def action_toggle_wrap(self) -> None:
        area = self.query_one(TextArea)
        area.soft_wrap = not area.soft_wrap
        self.call_after_refresh(self._scroll_to_range)
