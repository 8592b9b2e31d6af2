"""The Textual app: `AdvisorApp(target, kb_path, notes_path)` and `run_app(target, db)`.

The first screen paints at once with a loading state; the KB, the embedding model, reading the log,
detecting and ranking all happen in worker threads (see tui.screens.diagnosis).
"""

from __future__ import annotations

import os
import sys
import threading
from pathlib import Path
from typing import Callable, Iterable

from textual.app import App, SystemCommand
from textual.binding import Binding
from textual.screen import Screen

from advisor.models import AdvisorError
from advisor.notes import NotesStore, resolve_target
from tui.screens.diagnosis import DiagnosisScreen
from tui.session import LockedKB, Pipeline, demo_run_path, open_kb


class AdvisorApp(App):
    """train-advisor's TUI. `target`: a log file or probe run directory (default: the bundled demo run)."""

    CSS_PATH = str(Path(__file__).with_name("app.tcss"))  # absolute: subclasses elsewhere find it too
    TITLE = "train-advisor"
    HORIZONTAL_BREAKPOINTS = [(0, "-narrow"), (120, "-wide")]
    BINDINGS = [
        Binding("q", "quit", "Quit", show=False),
        Binding("question_mark,f1", "help", "Help"),
    ]

    def __init__(
        self,
        target: str | Path | None = None,
        kb_path: str | Path | None = None,
        notes_path: str | Path | None = None,
        *,
        pipeline: Pipeline | None = None,
        poll_interval: float = 1.0,
        kb=None,
    ):
        """`pipeline`: the advisor functions (tests swap them); `poll_interval`: seconds between
        reads of a live run store; `kb`: an already open KnowledgeBase (or LockedKB) to share."""
        super().__init__()
        self.target = str(target) if target is not None else demo_run_path()
        self.kb_path = kb_path
        self.notes = NotesStore(notes_path)
        self.pipeline = pipeline or Pipeline()
        self.poll_interval = poll_interval
        self._kb: LockedKB | None = None if kb is None else (kb if isinstance(kb, LockedKB) else LockedKB(kb))
        self._owns_kb = kb is None
        self._kb_lock = threading.Lock()
        self._kb_thread: threading.Thread | None = None  # opening (or building) the KB
        self._kb_error: BaseException | None = None
        self._main: DiagnosisScreen | None = None

    # ---- shared state -------------------------------------------------------------------------
    def get_kb(self, progress: Callable[[str], None] = lambda s: None, cancelled: Callable[[], bool] = lambda: False) -> LockedKB:
        """The KB, opened (and built on the very first run) once; blocking: call from a worker.

        The opening runs in a daemon thread of its own and this waits for it while `cancelled()` is
        false, so quitting during a first-run build does not wait for the build (see `run_app`)."""
        with self._kb_lock:
            if self._kb is not None:
                return self._kb
            if self._kb_thread is None or not self._kb_thread.is_alive():
                self._kb_error = None

                def opening() -> None:
                    try:
                        self._kb = open_kb(self.kb_path, progress)
                    except BaseException as exc:  # handed to the waiting worker
                        self._kb_error = exc

                self._kb_thread = threading.Thread(target=opening, name="train-advisor-kb", daemon=True)
                self._kb_thread.start()
            thread = self._kb_thread
        while thread.is_alive():
            if cancelled():
                raise AdvisorError("cancelled while opening the knowledge base")
            thread.join(0.1)
        if self._kb is None:
            raise self._kb_error or AdvisorError("the knowledge base could not be opened")
        return self._kb

    @property
    def kb_busy(self) -> bool:
        """The KB is still being opened or built (quitting now leaves the build to finish next time)."""
        return self._kb_thread is not None and self._kb_thread.is_alive()

    @property
    def main(self) -> DiagnosisScreen:
        assert self._main is not None
        return self._main

    def get_default_screen(self) -> Screen:
        self._main = DiagnosisScreen(self.target)
        return self._main

    def on_unmount(self) -> None:
        if self._kb is not None and self._owns_kb:
            try:
                self._kb.kb.close()
            except Exception:
                pass

    # ---- navigation ---------------------------------------------------------------------------
    def open_target(self, target: str) -> None:
        """Switch the main screen to another run or log."""
        while len(self.screen_stack) > 1:
            self.pop_screen()
        self.target = target
        self.main.open(target)

    def open_source(self, source: str, provenance) -> None:
        from tui.screens.source import SourceScreen

        if self._kb is None:
            self.notify("the knowledge base is still loading", severity="warning")
            return
        try:
            text = self._kb.source_text(source)
        except Exception as exc:
            self.notify(str(exc), title="No source text", severity="error")
            return
        self.push_screen(SourceScreen(provenance.file, text, provenance.start_line, provenance.end_line))

    def action_help(self) -> None:
        from tui.screens.help import HelpScreen

        if not isinstance(self.screen, HelpScreen):
            self.push_screen(HelpScreen())

    def action_runs(self) -> None:
        from tui.screens.runs import RunsScreen

        try:
            recent = self.notes.recent()
        except Exception as exc:
            self.notify(str(exc), severity="error")
            recent = []

        def done(path: str | None) -> None:
            if path:  # after the Runs screen is off the stack, not while it is being popped
                self.call_later(self.open_target, path)

        session = self.main.session
        self.push_screen(RunsScreen(recent, current=session.key if session is not None else None), done)

    def action_open_demo(self) -> None:
        self.open_target(demo_run_path())

    def get_system_commands(self, screen: Screen) -> Iterable[SystemCommand]:
        yield from super().get_system_commands(screen)
        main = self._main
        if main is None:
            return
        yield SystemCommand("Search the knowledge base", "Find entries by symptom, metric or error", main.action_search)
        yield SystemCommand("Describe what you see", "Re-rank the suggestions with your own words", main.action_describe)
        yield SystemCommand("Runs", "Runs and logs you opened; open another", self.action_runs)
        yield SystemCommand("Open the demo run", "The JEPA run shipped with train-advisor", self.action_open_demo)
        yield SystemCommand("Help", "Keys and what they do", self.action_help)
        if screen is main:
            yield SystemCommand("Explain the diagnosis", "Prose that cites the KB entries", main.action_explain)
            yield SystemCommand("Open the source", "The selected suggestion's document at its lines", main.action_open_source)
            yield SystemCommand("Note on the selected suggestion", "Mark it and write what happened", main.action_note)
            for status in ("tried", "helped", "did not help", "dismissed"):
                yield SystemCommand(f"Mark: {status}", f"Mark the selected suggestion {status}", lambda s=status: main.action_mark(s))
            yield SystemCommand("Clear the mark", "Forget the selected suggestion's mark", main.action_clear_mark)


NOT_A_TERMINAL = "the TUI needs a terminal (stdin and stdout are not one here); use `advisor diagnose RUN` for text or --json"


def run_app(target: str | None = None, db: str | None = None, notes: str | None = None, run: str | None = None) -> None:
    """Open the TUI on a run or log (None: the bundled demo run; `demo` or a recent run's name work
    too); `db`: the KB file. Raises AdvisorError when stdin or stdout is not a terminal; exits with
    the app's status when it ended on an error (a crash is never exit 0)."""
    if not (sys.stdin.isatty() and sys.stdout.isatty()):
        raise AdvisorError(NOT_A_TERMINAL)
    store = NotesStore(notes)
    app = AdvisorApp(target=resolve_target(target, store), kb_path=db, notes_path=notes, pipeline=Pipeline(run=run))
    app.run()
    code = app.return_code or 0
    if app.kb_busy:
        # q during the first-run build: the build thread (and its pools) would hold the exit until it
        # ends; the KB's completion marker makes the next start finish it.
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    if code:
        sys.exit(code)
