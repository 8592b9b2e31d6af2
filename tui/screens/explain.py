"""The diagnosis explained in prose (advisor.explain), streamed as it is written."""

from __future__ import annotations

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import Screen
from textual.widgets import Footer, Markdown, Static
from textual.worker import get_current_worker


def _markdown(result) -> str:
    """The explanation as Markdown: fixes as headings, what the checker removed at the end."""
    try:
        from advisor.explain.render import render_markdown
    except ImportError:  # an older explain package: its text, and its notes in italics
        text = result.text
        if result.notes:
            text += "\n\n---\n\n" + "\n".join(f"*{n}*" for n in result.notes)
        return text
    return render_markdown(result)


class ExplainScreen(Screen):
    """Backend: $TRAIN_ADVISOR_LLM_BACKEND or the config file, else the offline composer."""

    BINDINGS = [
        Binding("escape", "app.pop_screen", "Back"),
        Binding("q", "app.pop_screen", "Back", show=False),
    ]

    def __init__(self, diagnosis, describe: str | None = None):
        super().__init__()
        self.diagnosis = diagnosis
        self.describe = describe
        self.text = ""

    def compose(self) -> ComposeResult:
        yield Static(Text("Explanation", style="bold") + Text("  (citations are KB entry ids; nothing beyond the KB)", style="dim"), id="explain-title", markup=False)
        with VerticalScroll(id="explain-body"):
            yield Markdown("*writing…*", id="explain-md")
        yield Footer()

    def on_mount(self) -> None:
        body = self.query("#explain-body")
        if not body:  # pushed while the app was quitting: nothing was composed
            return
        body.first().focus()
        self.write()

    @work(thread=True, exclusive=True, group="explain")
    def write(self) -> None:
        worker = get_current_worker()
        try:
            from advisor.explain import stream_explain

            stream = stream_explain(self.diagnosis, describe=self.describe, backend=None)
            pieces = []
            for i, piece in enumerate(stream):
                if worker.is_cancelled:
                    stream.close()
                    return
                pieces.append(piece)
                if i % 8 == 0:
                    self.app.call_from_thread(self._show, "".join(pieces))
            result = stream.result
            text = _markdown(result)
        except Exception as exc:  # AdvisorError and friends: one line, no traceback
            text = f"**Could not explain:** {exc}"
        if not worker.is_cancelled:
            self.app.call_from_thread(self._show, text)

    def _show(self, text: str) -> None:
        self.text = text
        self.query_one("#explain-md", Markdown).update(text)
