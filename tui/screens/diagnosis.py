"""The main screen: the run's ranked suggestions, the selected one in detail, marks and notes,
describe-what-you-see, and live updates while a probe run is still being written.

Every mark re-ranks through the analysis service (advisor.analysis via Session.rerank), so what the
list shows is what `advisor diagnose` and `explain` rank. Dismissed entries can be listed (X) and
restored (x or c on one)."""

from __future__ import annotations

import threading
import time
from pathlib import Path

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Container, Vertical
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Input, Static
from textual.worker import get_current_worker

from tui.session import Session
from tui.widgets.detail import SuggestionDetail
from tui.widgets.suggestions import SuggestionTable


class DiagnosisScreen(Screen):
    BINDINGS = [
        Binding("n", "note", "Note"),
        Binding("h", "mark('helped')", "Helped"),
        Binding("t", "mark('tried')", "Tried", show=False),
        Binding("u", "mark('did not help')", "No help", show=False),
        Binding("x", "mark('dismissed')", "Dismiss"),
        Binding("X", "toggle_dismissed", "Show dismissed", show=False),
        Binding("c", "clear_mark", "Clear mark", show=False),
        Binding("i", "toggle_internals", "Detector fields", show=False),
        Binding("d", "describe", "Describe"),
        Binding("slash", "search", "Search"),
        Binding("o", "open_source", "Source"),
        Binding("r", "runs", "Runs"),
        Binding("e", "explain", "Explain", show=False),
        Binding("j", "move(1)", "Down", show=False),
        Binding("k", "move(-1)", "Up", show=False),
        Binding("space", "move(1)", "Next", show=False),
        Binding("pageup", "scroll_detail(-1)", "Scroll up", show=False),
        Binding("pagedown", "scroll_detail(1)", "Scroll down", show=False),
        Binding("escape", "leave_describe", "Back", show=False),
    ]

    def __init__(self, target: str):
        super().__init__()
        self.target = target
        self.session: Session | None = None
        self.session_lock = threading.Lock()
        self.status = "starting…"
        self.error: str | None = None
        self._shown_id: str | None = None
        self.generation = 0  # bumped each time a ranking is shown (tests and the benchmark wait on it)
        self.show_dismissed = False

    # ---- layout -------------------------------------------------------------------------------
    def compose(self) -> ComposeResult:
        yield Static("", id="runbar", markup=False)
        with Container(id="main"):
            with Vertical(id="left"):
                table = SuggestionTable(id="suggestions")
                table.border_title = "Suggestions"
                yield table
            yield SuggestionDetail(id="detail")
        yield Input(placeholder="What do you see? e.g. val loss goes up after epoch 20 (enter)", id="describe")
        yield Footer(compact=True)

    def on_mount(self) -> None:
        self.query_one("#describe", Input).display = False
        self.query_one(SuggestionTable).focus()
        self.open(self.target)

    # ---- loading ------------------------------------------------------------------------------
    def open(self, target: str) -> None:
        """Load a run or log (replacing the one shown); the work happens in a thread worker."""
        self.workers.cancel_group(self, "live")
        self.target = target
        self.session = None
        self.error = None
        self._shown_id = None
        self.query_one(SuggestionTable).show([], {})
        self.query_one(SuggestionTable).loading = True
        self._set_status("loading…")
        self.run_worker(self.query_one(SuggestionDetail).show_message(f"Opening {target}…"), group="detail")
        self.load(target)

    @work(thread=True, exclusive=True, group="load")
    def load(self, target: str) -> None:
        worker = get_current_worker()

        def progress(message: str) -> None:
            if not worker.is_cancelled:
                self.app.call_from_thread(self._set_status, message)

        try:
            progress("opening the knowledge base…")
            kb = self.app.get_kb(progress, cancelled=lambda: worker.is_cancelled)
            session = Session(target, kb, notes=self.app.notes, pipeline=self.app.pipeline)
            session.load(progress)
        except Exception as exc:
            if not worker.is_cancelled:
                self.app.call_from_thread(self._failed, target, exc)
            return
        if not worker.is_cancelled:
            self.app.call_from_thread(self._loaded, session)

    def _set_status(self, message: str) -> None:
        self.status = message
        self._render_runbar()

    def _failed(self, target: str, exc: Exception) -> None:
        self.error = f"{type(exc).__name__}: {exc}" if not str(exc) else str(exc)
        self.query_one(SuggestionTable).loading = False
        self._set_status("could not open")
        self.run_worker(
            self.query_one(SuggestionDetail).show_message(
                f"Could not open {target}:\n{self.error}\n\nr: open another run · /: search the knowledge base"
            ),
            group="detail",
        )
        self.notify(self.error, title="Could not open the run", severity="error")

    def _loaded(self, session: Session) -> None:
        self.session = session
        self.query_one(SuggestionTable).loading = False
        self.status = "ready"
        self.refresh_suggestions()
        self.generation += 1
        if session.following:
            self.follow(session)

    # ---- rendering ----------------------------------------------------------------------------
    def _render_runbar(self) -> None:
        t = Text()
        t.append(" train-advisor ", style="bold reverse")
        t.append(" ")
        t.append(Path(self.target).name or str(self.target), style="bold")
        s = self.session
        if s is not None and s.run is not None:
            t.append(f"  {s.run.format}", style="dim")
            t.append(f"  {len(s.signals)} signal{'s' if len(s.signals) != 1 else ''}")
            t.append(f"  {len(s.suggestions)} suggestion{'s' if len(s.suggestions) != 1 else ''}")
        if s is not None and s.live:
            t.append("  ● live", style="bold #87d787")
        elif s is not None and s.state == "stopped":
            t.append("  ■ stopped", style="bold #ff8787")
            t.append(" (no writes for a while, its process gone)", style="dim")
        elif s is not None and s.finished:
            t.append("  finished", style="dim")
        if self.status != "ready":
            t.append(f"  {self.status}", style="italic #9e9e9e")
        self.query_one("#runbar", Static).update(t)

    def refresh_suggestions(self, keep: str | None = None) -> None:
        s = self.session
        table = self.query_one(SuggestionTable)
        if s is None:
            return
        dismissed = s.dismissed() if self.show_dismissed else []
        table.show(s.suggestions, s.marks(), s.new_ids, keep=keep, dismissed=dismissed)
        title = f"Suggestions for “{s.describe}” + the run's signals" if s.describe else "Suggestions"
        if self.show_dismissed:
            title += f" (+{len(dismissed)} dismissed: X hides)"
        table.border_title = Text(title)
        self._render_runbar()
        if not s.suggestions and not dismissed:
            lines = ["No suggestions."]
            lines += [f"note: {n}" for n in s.notes_text]
            if not s.signals:
                lines.append("The detectors found no symptoms in this run. d: describe what you see · /: search")
            self._shown_id = None
            self.run_worker(self.query_one(SuggestionDetail).show_message("\n".join(lines)), group="detail")
        else:
            self.show_detail(force=True)

    def show_detail(self, force: bool = False) -> None:
        s = self.session
        if s is None:
            return
        entry_id = self.query_one(SuggestionTable).current_id
        if entry_id is None or (entry_id == self._shown_id and not force):
            return
        sug = s.suggestion(entry_id)
        dismissed = sug is None
        if dismissed:
            sug = next((d for d in s.dismissed() if d.id == entry_id), None)
            if sug is None:
                return
        same = entry_id == self._shown_id
        self._shown_id = entry_id
        try:
            entry = s.kb.get(entry_id)
        except Exception:
            entry = None
        mark = s.marks().get(entry_id)
        new_evidence = set(s.new_evidence)
        if entry_id in s.new_ids or new_evidence:
            # looked at: no longer new (the plot keeps its NEW badge while it is on screen)
            s.viewed(entry_id)
            self.query_one(SuggestionTable).seen(entry_id)
        self.run_worker(
            self.query_one(SuggestionDetail).show(
                sug, entry=entry, run=s.run, signals=s.signals, mark=mark, new_evidence=new_evidence, keep_scroll=same, dismissed=dismissed
            ),
            group="detail",
        )

    @on(DataTable.RowHighlighted, "#suggestions")
    def _highlighted(self, event: DataTable.RowHighlighted) -> None:
        self.show_detail()

    @on(DataTable.RowSelected, "#suggestions")
    def _selected(self, event: DataTable.RowSelected) -> None:
        self.query_one(SuggestionDetail).focus()

    # ---- live ---------------------------------------------------------------------------------
    @work(thread=True, exclusive=True, group="live")
    def follow(self, session: Session) -> None:
        """Poll the run store every `app.poll_interval` seconds; hand changes to the UI."""
        worker = get_current_worker()
        while not worker.is_cancelled and session.following:
            deadline = time.monotonic() + self.app.poll_interval
            while time.monotonic() < deadline:
                if worker.is_cancelled:
                    return
                time.sleep(0.05)
            try:
                with self.session_lock:
                    changed = session.poll()
            except Exception as exc:  # a half-written store: try again next time
                self.app.call_from_thread(self._set_status, f"live: {exc}")
                continue
            if changed and not worker.is_cancelled:
                self.app.call_from_thread(self._live_update, session)

    def _live_update(self, session: Session) -> None:
        if session is not self.session:
            return
        self.refresh_suggestions()
        self.generation += 1
        if session.last_new:
            n = len(session.last_new)
            self.notify(f"{n} new suggestion{'s' if n != 1 else ''} from new evidence", title="Live")

    # ---- re-ranking ---------------------------------------------------------------------------
    @work(thread=True, exclusive=True, group="rank")
    def rerank(self, describe=None, keep_describe: bool = False, remember=None) -> None:
        """Rank again in a thread; `remember`: a mark whose note the KB should keep first (Session.remember)."""
        worker = get_current_worker()
        s = self.session
        if s is None:
            return
        try:
            s.remember(remember)
        except Exception as exc:  # the mark is saved; only the KB's copy of its note failed
            self.app.call_from_thread(self.notify, str(exc), title="Note not kept in the KB", severity="warning")
        try:
            with self.session_lock:
                if keep_describe:
                    s.rerank()
                else:
                    s.rerank(describe=describe)
        except Exception as exc:
            if not worker.is_cancelled:
                self.app.call_from_thread(self.notify, str(exc), title="Ranking failed", severity="error")
            return
        if not worker.is_cancelled:
            self.app.call_from_thread(self._reranked, s, not keep_describe)

    def _reranked(self, session: Session, to_top: bool = False) -> None:
        if session is not self.session:
            return
        self.status = "ready"
        top = session.suggestions[0].id if to_top and session.suggestions else None
        self.refresh_suggestions(keep=top)
        self.generation += 1

    # ---- actions ------------------------------------------------------------------------------
    def _current(self):
        """The selected suggestion (a dismissed one too, when they are shown)."""
        if self.session is None:
            return None
        entry_id = self.query_one(SuggestionTable).current_id
        if not entry_id:
            return None
        found = self.session.suggestion(entry_id)
        if found is None and self.show_dismissed:
            found = next((d for d in self.session.dismissed() if d.id == entry_id), None)
        return found

    def _is_dismissed(self, entry_id: str) -> bool:
        return self.session is not None and self.session.suggestion(entry_id) is None

    def action_move(self, delta: int) -> None:
        table = self.query_one(SuggestionTable)
        if table.row_count:
            table.move_cursor(row=max(0, min(table.row_count - 1, table.cursor_row + delta)))

    def action_scroll_detail(self, direction: int) -> None:
        detail = self.query_one(SuggestionDetail)
        if direction > 0:
            detail.scroll_page_down()
        else:
            detail.scroll_page_up()

    def action_mark(self, status: str) -> None:
        sug = self._current()
        if sug is None or self.session is None:
            self.notify("no suggestion selected", severity="warning")
            return
        if status == "dismissed" and self._is_dismissed(sug.id):
            self.action_clear_mark()  # x on a dismissed entry brings it back
            return
        saved = self.session.mark(sug.id, status)
        self.notify(f"{status}: {sug.title}")
        # every mark can move entries (dismissed: gone; did not help: lowered): rank again, stay on it
        self.rerank(keep_describe=True, remember=saved)

    def action_clear_mark(self) -> None:
        sug = self._current()
        if sug is None or self.session is None or self.session.notes is None:
            return
        restored = self._is_dismissed(sug.id)
        old = self.session.notes.get_one(self.session.key, sug.id)
        self.session.notes.clear(self.session.key, sug.id)
        if restored:
            self.notify(f"restored: {sug.title}")
        # a cleared mark keeps no note: the KB's copy of a "helped" note goes too
        self.rerank(keep_describe=True, remember=old.model_copy(update={"note": ""}) if old is not None and old.note else None)

    def action_toggle_dismissed(self) -> None:
        if self.session is None:
            return
        self.show_dismissed = not self.show_dismissed
        n = len(self.session.dismissed())
        if self.show_dismissed and not n:
            self.notify("nothing dismissed on this run")
        self.refresh_suggestions()

    def action_toggle_internals(self) -> None:
        shown = self.query_one(SuggestionDetail).toggle_internals()
        self.notify("detector fields shown under each plot" if shown else "detector fields hidden")

    def action_note(self) -> None:
        sug = self._current()
        if sug is None or self.session is None:
            self.notify("no suggestion selected", severity="warning")
            return
        from tui.screens.note import NoteScreen

        mark = self.session.marks().get(sug.id)
        session = self.session

        def done(result) -> None:
            if result is None or session is not self.session:
                return
            status, note = result
            saved = session.mark(sug.id, status, note=note)
            self.rerank(keep_describe=True, remember=saved)
            self.notify(f"{status}: {sug.title}" + (" (note saved)" if note else ""))

        self.app.push_screen(NoteScreen(sug.title, mark.status if mark else None, mark.note if mark else ""), done)

    def action_describe(self) -> None:
        box = self.query_one("#describe", Input)
        box.display = True
        if self.session is not None and self.session.describe and not box.value:
            box.value = self.session.describe
        box.focus()

    def action_leave_describe(self) -> None:
        """esc: close the describe box, or go back to the list from the detail pane."""
        box = self.query_one("#describe", Input)
        box.display = False
        self.query_one(SuggestionTable).focus()

    @on(Input.Submitted, "#describe")
    def _describe_submitted(self, event: Input.Submitted) -> None:
        if self.session is None:
            self.notify("the run is still loading", severity="warning")
            return
        self.status = "re-ranking…"
        self._render_runbar()
        self.rerank(event.value)
        self.query_one("#describe", Input).display = False
        self.query_one(SuggestionTable).focus()

    def action_search(self) -> None:
        from tui.screens.search import SearchScreen

        self.app.push_screen(SearchScreen())

    def action_open_source(self) -> None:
        sug = self._current()
        if sug is None:
            return
        self.app.open_source(sug.source, sug.provenance)

    def action_runs(self) -> None:
        self.app.action_runs()

    def action_explain(self) -> None:
        s = self.session
        if s is None:
            self.notify("the run is still loading", severity="warning")
            return
        try:
            import advisor.explain  # noqa: F401
        except ImportError:
            self.notify("explanations are not available in this installation", severity="warning")
            return
        from advisor.models import Diagnosis
        from tui.screens.explain import ExplainScreen

        diagnosis = Diagnosis(path=s.target, describe=s.describe, suggestions=s.suggestions, signals=s.signals, notes=s.notes_text)
        self.app.push_screen(ExplainScreen(diagnosis, describe=s.describe))
