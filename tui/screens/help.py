"""What every key does, and how the pieces fit."""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Static

INTRO = (
    "Ranked fixes for the run you opened, each with the evidence from your run (metric, numbers, "
    "steps, a sparkline with the window marked) and the source document it came from."
)

KEYS: list[tuple[str, list[tuple[str, str]]]] = [
    (
        "Suggestions",
        [
            ("↑ ↓  j k", "move through the suggestions"),
            ("space", "next suggestion (walk-through)"),
            ("t", "mark tried"),
            ("h", "mark helped (raises it on later runs with the same signals)"),
            ("u", "mark did not help (lowers it, here and on later runs)"),
            ("x", "dismiss: out of this run's ranking (x again: back)"),
            ("X", "show or hide the dismissed entries, to restore one"),
            ("c", "clear the mark (restores a dismissed entry)"),
            ("n", "write a note (and choose the mark)"),
            ("o", "open the source document at the entry's lines"),
            ("enter", "move the keys to the detail pane (esc: back to the list)"),
            ("pgup pgdn", "scroll the detail pane"),
            ("i", "show the detector's fields under each evidence plot"),
            ("d", "describe what you see; re-rank with it and the run's signals"),
            ("e", "explain the diagnosis in prose"),
        ],
    ),
    (
        "Anywhere",
        [
            ("/", "search the knowledge base (↓ to the results, enter opens)"),
            ("r", "runs and logs you opened; open another (/ to type a path)"),
            ("ctrl+p", "command palette"),
            ("? f1", "this help"),
            ("esc", "back"),
            ("q", "quit (back, on other screens)"),
        ],
    ),
]

LEGEND = (
    "Strength: strong (two independent lines of support, e.g. linked to the signal and found by search, "
    "or helped before), likely (one curated link or your own marks), possible (found by search or your "
    "words alone).  Marks: ◐ tried · ✓ helped · ✗ did not help · – dismissed · ✎ has a note.  ★ new "
    "since you last looked (while following a live run).  Notes are kept per run, under the run's own "
    "identity, so moving its directory keeps them (`advisor notes RUN --json` exports them)."
)


def help_text() -> Text:
    t = Text()
    t.append("train-advisor\n", style="bold reverse")
    t.append(INTRO + "\n")
    for title, rows in KEYS:
        t.append(f"\n{title}\n", style="bold underline")
        for key, does in rows:
            t.append(f"  {key:<11}", style="bold #ffd75f")
            t.append(does + "\n")
    t.append("\n" + LEGEND, style="dim")
    return t


class HelpScreen(ModalScreen):
    BINDINGS = [
        Binding("escape", "dismiss", "Close"),
        Binding("q", "dismiss", "Close", show=False),
        Binding("question_mark", "dismiss", "Close", show=False),
    ]

    def compose(self) -> ComposeResult:
        with VerticalScroll(id="help-box"):
            yield Static(help_text(), markup=False, id="help-text")

    def on_mount(self) -> None:
        self.query_one("#help-box").focus()

    def action_dismiss(self) -> None:
        self.dismiss(None)
