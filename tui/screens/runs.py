"""The runs and logs you opened: switch between them, or open another path."""

from __future__ import annotations

from pathlib import Path

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Input, Static


class RunsScreen(Screen[str | None]):
    """Dismisses with the path to open, or None. Rows are keyed by the run's notes key (what "forget"
    removes); each keeps the path it was last opened from (what "open" reads)."""

    BINDINGS = [
        Binding("escape", "cancel", "Back"),
        Binding("delete", "forget", "Forget"),
        Binding("slash", "focus_path", "Open path"),
    ]

    def __init__(self, recent: list, current: str | None = None):
        super().__init__()
        self.recent = recent
        self.current = current  # the notes key of the run on the main screen
        self._paths = {r.run: (r.path or r.run) for r in recent}

    def compose(self) -> ComposeResult:
        yield Static(Text("Runs and logs you opened  (enter: open · del: forget · /: type a path)", style="bold"), id="runs-title", markup=False)
        yield DataTable(cursor_type="row", id="runs-table")
        yield Input(placeholder="Open a run directory or log file: path, then enter", id="runs-path")
        yield Footer()

    def on_mount(self) -> None:
        table = self.query_one(DataTable)
        table.add_column(" ", width=1, key="cur")
        table.add_column("Run", key="label")
        table.add_column("Format", key="format")
        table.add_column("Opened", key="opened")
        table.add_column("Path", key="path")
        for r in self.recent:
            table.add_row(
                Text("●", style="bold #87d787") if r.run == self.current else Text(""),
                Text(r.label, style="bold"),
                Text(r.format or "", style="dim"),
                Text(r.opened.astimezone().strftime("%Y-%m-%d %H:%M"), style="dim"),
                Text(r.path or r.run),
                key=r.run,
            )
        if self.recent:
            table.focus()
        else:
            self.query_one("#runs-path", Input).focus()

    @on(DataTable.RowSelected, "#runs-table")
    def _open(self, event: DataTable.RowSelected) -> None:
        self.dismiss(self._paths.get(event.row_key.value, event.row_key.value))

    @on(Input.Submitted, "#runs-path")
    def _open_path(self, event: Input.Submitted) -> None:
        path = event.value.strip()
        if not path:
            return
        if not Path(path).expanduser().exists():
            self.notify(f"no such file or directory: {path}", severity="error")
            return
        self.dismiss(str(Path(path).expanduser()))

    def action_forget(self) -> None:
        table = self.query_one(DataTable)
        if not table.row_count:
            return
        key, _ = table.coordinate_to_cell_key(table.cursor_coordinate)
        self.app.notes.forget_recent(key.value)
        table.remove_row(key)

    def action_focus_path(self) -> None:
        self.query_one("#runs-path", Input).focus()

    def action_cancel(self) -> None:
        self.dismiss(None)
