"""Mark a suggestion and write a note about it."""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Input, RadioButton, RadioSet, Static

from advisor.notes import STATUSES


class NoteScreen(ModalScreen[tuple[str, str] | None]):
    """Returns (status, note), or None when cancelled."""

    BINDINGS = [
        Binding("escape", "cancel", "Cancel"),
        Binding("ctrl+s", "save", "Save"),
    ]

    def __init__(self, title: str, status: str | None = None, note: str = ""):
        super().__init__()
        self.entry_title = title
        self.status = status if status in STATUSES else "tried"
        self.note = note
        self._answered = False

    def compose(self) -> ComposeResult:
        with Vertical(id="note-box"):
            yield Static(Text(self.entry_title, style="bold"), markup=False, id="note-title")
            with RadioSet(id="note-status"):
                for s in STATUSES:
                    yield RadioButton(s, value=(s == self.status), name=s)
            yield Input(self.note, placeholder="What you did, what happened…", id="note-input")
            yield Static("enter: save · esc: cancel · tab: choose the mark (arrows, space)", id="note-hint", markup=False)

    def on_mount(self) -> None:
        self.query_one("#note-input", Input).focus()

    def on_radio_set_changed(self, event: RadioSet.Changed) -> None:
        self.status = event.pressed.name or self.status

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        self.action_save()

    def _close(self, result) -> None:
        """Dismiss once, and only while this screen is the active one: keys pressed fast (enter
        twice, esc during the push) must not dismiss a screen that is not on top (ScreenStackError)."""
        if self._answered or not self.is_current:
            return
        self._answered = True
        self.dismiss(result)

    def action_save(self) -> None:
        self._close((self.status, self.query_one("#note-input", Input).value.strip()))

    def action_cancel(self) -> None:
        self._close(None)
