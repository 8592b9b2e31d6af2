"""Pilot tests for what a person relies on at a glance (issues 10 and 11): keys pressed fast never
crash the app, every mark moves the ranking as `advisor diagnose` ranks it, dismissed entries come
back, ★ stays until the entry is looked at, the cursor stays on its entry, a stopped run says so,
the detail pane leads with what was seen and the fix, and data with ±1e308/NaN/inf is drawn.

The reader, matcher, notes and KB are the real ones (the shipped KB, real embeddings); the detectors
are the fixed set of tests/tui/test_tui.py where a flow must not depend on detector thresholds.
"""

from __future__ import annotations

import shutil
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest
from textual.app import App, ComposeResult

from advisor import runstore
from advisor.models import Evidence, Suggestion
from advisor.notes import NotesStore
from kb.models import Provenance
from test_tui import SIZE, make_app, rows, screen_text, wait_for, wait_loaded, _write_live_store  # noqa: F401
from test_tui import _quiet_env, notes_path  # noqa: F401  (the same fixtures: quiet LLM settings, a private notes file)
from tui.session import KB_EMPTY
from tui.widgets.detail import SuggestionDetail
from tui.widgets.spark import render_spark
from tui.widgets.suggestions import SuggestionTable


# ---- keys pressed fast ---------------------------------------------------------------------------
async def test_keys_pressed_fast_never_crash(built_kb_path, notes_path):
    app = make_app(built_kb_path, notes_path)
    async with app.run_test(size=SIZE) as pilot:
        main = await wait_loaded(pilot)
        first = main.session.suggestions[0]
        # the note modal saved (twice) before it painted; esc while it is being pushed; help and back
        await pilot.press("n", "enter", "enter")
        await pilot.press("n", "escape", "escape", "escape")
        await pilot.press("question_mark", "escape", "n", "enter", "escape")
        # a terminal delivers a burst of keys before the first is handled: two saves, and esc after
        # save, in one tick (the modal used to pop the main screen too: ScreenStackError)
        for burst in (("action_save", "action_save"), ("action_cancel", "action_save", "action_cancel")):
            await pilot.press("n")
            await wait_for(pilot, lambda: type(app.screen).__name__ == "NoteScreen", what="the note modal")
            modal = app.screen
            for action in burst:
                getattr(modal, action)()
            await wait_for(pilot, lambda: app.screen is main, what="the modal closed once")
        await app.workers.wait_for_complete()
        await wait_for(pilot, lambda: app.screen is main, what="back on the main screen")
        assert NotesStore(notes_path).get_one(main.session.key, first.id).status == "tried"
    assert not app.return_code  # run_test re-raises a crash; a crash would also set it to 1


# ---- marks ---------------------------------------------------------------------------------------
async def test_marks_rerank_as_diagnose_does_and_dismissed_entries_come_back(built_kb_path, notes_path):
    pytest.importorskip("advisor.detectors")
    from advisor.diagnose import diagnose
    from tui.app import AdvisorApp
    from test_tui import shared_kb

    app = AdvisorApp(kb_path=built_kb_path, notes_path=notes_path, kb=shared_kb(built_kb_path))
    async with app.run_test(size=SIZE) as pilot:
        main = await wait_loaded(pilot)
        first = main.session.suggestions[0]
        before = first.score
        # did not help: lowered on this run, the cursor stays on it where it went
        gen = main.generation
        await pilot.press("u")
        await wait_for(pilot, lambda: main.generation > gen, what="re-rank after did not help")
        lowered = main.session.suggestion(first.id)
        assert lowered is None or lowered.score < before
        assert rows(app)[0] != first.id
        if lowered is not None:
            assert main.query_one(SuggestionTable).current_id == first.id
        # the TUI's ranking is the one `advisor diagnose` gives with the same notes
        expected = diagnose(main.session.target, kb=shared_kb(built_kb_path).kb, notes=NotesStore(notes_path))
        assert [s.id for s in expected.suggestions] == [s.id for s in main.session.suggestions]

        # dismiss the top entry: gone; X lists it; x restores it
        top = main.session.suggestions[0]
        main.query_one(SuggestionTable).move_cursor(row=0)
        await wait_for(pilot, lambda: main._shown_id == top.id)
        gen = main.generation
        await pilot.press("x")
        await wait_for(pilot, lambda: main.generation > gen, what="re-rank after dismiss")
        assert top.id not in rows(app)
        await pilot.press("X")
        await wait_for(pilot, lambda: top.id in rows(app), what="the dismissed entry listed")
        table = main.query_one(SuggestionTable)
        assert rows(app)[-1] == top.id and str(table.get_cell(top.id, "strength")) == "dismissed"
        assert "dismissed" in str(table.border_title)
        table.move_cursor(row=len(rows(app)) - 1)
        await wait_for(pilot, lambda: main._shown_id == top.id)
        assert "dismissed on this run" in str(main.query_one("#detail-head").render())
        gen = main.generation
        await pilot.press("x")
        await wait_for(pilot, lambda: main.generation > gen, what="re-rank after restore")
        assert top.id in [s.id for s in main.session.suggestions]
        assert NotesStore(notes_path).dismissed(main.session.key) == set()
        await pilot.press("X")
        await pilot.pause(0.1)
        assert rows(app) == [s.id for s in main.session.suggestions]


# ---- the list and the detail pane ----------------------------------------------------------------
async def test_list_shows_strength_and_the_detail_leads_with_what_was_seen(built_kb_path, notes_path):
    app = make_app(built_kb_path, notes_path)
    async with app.run_test(size=(120, 40)) as pilot:
        main = await wait_loaded(pilot)
        table = main.query_one(SuggestionTable)
        text = screen_text(app)
        for s in main.session.suggestions[:5]:
            assert str(table.get_cell(s.id, "strength")) in ("strong", "likely", "possible")
            if len(s.title) <= table.columns["title"].width:
                assert s.title in text  # titles in full where they fit
        assert "Score" not in text and f"{main.session.suggestions[0].score:.2f}" not in text.split("Source")[0]
        detail = main.query_one(SuggestionDetail)
        sug = main.session.suggestions[0]
        # what was seen, then the fix, then the plot, then the provenance (top to bottom)
        seen = detail.query_one("#seen")
        fix = detail.query_one("#fix-md")
        plots = detail.query_one("#evidence")
        prov = detail.query_one("#provenance")
        assert seen.region.y < fix.region.y < plots.region.y < prov.region.y or not sug.evidence
        assert sug.evidence[0].summary in "\n".join(str(w.render()) for w in detail.query(".ev-seen"))
        # detector fields hidden until i
        numbers = list(detail.query(".ev-numbers"))
        assert numbers and not any(w.display for w in numbers)
        await pilot.press("i")
        await pilot.pause(0.1)
        assert all(w.display for w in detail.query(".ev-numbers"))
        # enter moves the keys to the detail pane and the screen says so; esc comes back
        await pilot.press("enter")
        await pilot.pause(0.1)
        assert detail.has_focus and "esc: back to the list" in screen_text(app)
        await pilot.press("escape")
        await pilot.pause(0.1)
        assert table.has_focus and "esc: back to the list" not in screen_text(app)


class _TableApp(App):
    def compose(self) -> ComposeResult:
        yield SuggestionTable()


def _sug(i: int) -> Suggestion:
    return Suggestion(id=f"guide/{i:03d}", source="guide", title=f"Entry number {i}", score=1.0 / i, severity="low",
                      provenance=Provenance(file="g.md", start_line=1, end_line=2), matched_by=["search"],
                      evidence=[Evidence(signal="spike", metric="loss")])


async def test_cursor_stays_on_its_entry_when_rows_move():
    app = _TableApp()
    async with app.run_test(size=(100, 20)) as pilot:
        table = app.query_one(SuggestionTable)
        a, b, c, d = (_sug(i) for i in range(1, 5))
        table.show([a, b, c], {})
        table.move_cursor(row=1)
        await pilot.pause()
        assert table.current_id == b.id
        table.show([d, c, a, b], {}, new_ids={d.id})  # b moved from row 1 to row 3
        await pilot.pause()
        assert table.current_id == b.id and table.cursor_row == 3
        assert str(table.get_cell(d.id, "title")).startswith("★")
        table.seen(d.id)
        assert not str(table.get_cell(d.id, "title")).startswith("★")
        table.show([a, c, d], {})  # b gone: the cursor stays on its row
        assert table.cursor_row == 2


# ---- live runs -----------------------------------------------------------------------------------
async def test_star_stays_until_viewed_and_the_cursor_does_not_jump(built_kb_path, notes_path, tmp_path):
    import math

    run_dir = tmp_path / "live-run"
    con = _write_live_store(run_dir)
    app = make_app(built_kb_path, notes_path, target=str(run_dir), poll_interval=0.2)
    async with app.run_test(size=SIZE) as pilot:
        main = await wait_loaded(pilot)
        session = main.session
        assert session.live and not session.new_ids  # nothing is new on the first look
        table = main.query_one(SuggestionTable)
        table.move_cursor(row=1)
        await pilot.pause(0.1)
        watched = table.current_id
        runstore.write_readings(con, [(s, "train/loss", math.nan, time.time()) for s in range(60, 70)])
        await wait_for(pilot, lambda: session.new_ids, what="a new suggestion")
        new = next(iter(session.new_ids))
        assert str(table.get_cell(new, "title")).startswith("★")
        assert table.current_id == watched  # rows moved, the cursor did not leave its entry
        old = [i for i in rows(app) if i not in session.new_ids]
        assert not any(str(table.get_cell(i, "title")).startswith("★") for i in old)
        await pilot.pause(0.5)  # still starred a while later: only looking clears it
        assert new in session.new_ids
        table.move_cursor(row=rows(app).index(new))
        await wait_for(pilot, lambda: main._shown_id == new)
        assert new not in session.new_ids
        assert not str(table.get_cell(new, "title")).startswith("★")
    con.close()


async def test_a_run_whose_writer_died_is_shown_stopped(built_kb_path, notes_path, tmp_path):
    run_dir = tmp_path / "killed-run"
    code = textwrap.dedent(
        f"""
        import time
        from advisor import runstore
        con = runstore.open_for_writing({str(run_dir)!r})
        runstore.begin_writing(con)
        runstore.write_readings(con, [(s, "train/relational", 0.2 + 0.01 * s, time.time()) for s in range(40)])
        """
    )
    subprocess.run([sys.executable, "-c", code], check=True)  # the writer exits without finishing
    assert runstore.run_state(run_dir) == "stopped"
    app = make_app(built_kb_path, notes_path, target=str(run_dir), poll_interval=0.2)
    async with app.run_test(size=SIZE) as pilot:
        main = await wait_loaded(pilot)
        assert main.session.state == "stopped" and not main.session.live
        text = screen_text(app)
        assert "stopped" in text and "● live" not in text


# ---- data ----------------------------------------------------------------------------------------
def test_sparkline_draws_any_float():
    values = [1e308, -1e308, float("nan"), float("inf"), -float("inf"), 5e-324, 0.0, 1.0]
    spark, ruler = render_spark(list(range(len(values))), values, 24, (1, 3))
    assert len(spark.plain) == 24 and "×" in spark.plain
    spark, _ = render_spark([-1e308, 0.0, 1e308], [1.0, 2.0, 3.0], 16)
    assert len(spark.plain) == 16


async def test_a_log_with_extreme_values_opens(built_kb_path, notes_path, tmp_path):
    log = tmp_path / "extreme.csv"
    rows_ = ["step,train/loss,train/relational"]
    for s in range(40):
        loss = {10: "1e308", 11: "-1e308", 12: "nan", 13: "inf", 14: "-inf"}.get(s, str(5.0 - 0.1 * s))
        rows_.append(f"{s},{loss},{0.2 + 0.01 * s}")
    log.write_text("\n".join(rows_) + "\n")
    app = make_app(built_kb_path, notes_path, target=str(log))
    async with app.run_test(size=SIZE) as pilot:
        main = await wait_loaded(pilot)
        nan = next(s for s in main.session.suggestions if any(e.signal == "nan_inf" for e in s.evidence))
        main.query_one(SuggestionTable).move_cursor(row=rows(app).index(nan.id))
        await wait_for(pilot, lambda: main._shown_id == nan.id)
        await pilot.press("i")
        await pilot.pause(0.2)
        assert main.query_one(SuggestionDetail).query(".ev-spark")
    assert not app.return_code


# ---- the knowledge base --------------------------------------------------------------------------
async def test_an_empty_kb_says_why(kb_copy, notes_path):
    con = sqlite3.connect(kb_copy)
    with con:
        con.execute("DELETE FROM entries")
    con.close()
    from kb import KnowledgeBase
    from tui.app import AdvisorApp
    from tui.session import LockedKB

    app = AdvisorApp(kb_path=kb_copy, notes_path=notes_path, kb=LockedKB(KnowledgeBase(kb_copy)))
    async with app.run_test(size=SIZE) as pilot:
        main = await wait_loaded(pilot)
        assert not main.session.suggestions
        await wait_for(pilot, lambda: "kb build" in screen_text(app), what="the reason on screen")
        assert KB_EMPTY in main.session.notes_text


# ---- a real terminal -----------------------------------------------------------------------------
def test_not_a_terminal_is_one_line_and_exit_2(tmp_path):
    advisor = Path(sys.executable).with_name("advisor")
    started = time.monotonic()
    done = subprocess.run([str(advisor), "tui"], stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=60,
                          env={"PATH": "/usr/bin:/bin", "TRAIN_ADVISOR_NOTES": str(tmp_path / "n.db"), "HOME": str(tmp_path)})
    assert done.returncode == 2, done
    assert done.stderr.count("\n") == 1 and "needs a terminal" in done.stderr
    assert time.monotonic() - started < 30


def _tmux(tmp_path, name: str, command: str):
    tmux = shutil.which("tmux")
    if tmux is None:
        pytest.skip("tmux is not installed")
    sock = ["-L", name]
    subprocess.run([tmux, *sock, "new-session", "-d", "-s", name, "-x", "80", "-y", "24", command], check=True)

    def capture() -> str:
        return subprocess.run([tmux, *sock, "capture-pane", "-p", "-t", name], capture_output=True, text=True).stdout

    def send(*keys: str) -> None:
        subprocess.run([tmux, *sock, "send-keys", "-t", name, *keys], check=True)

    def close() -> None:
        subprocess.run([tmux, *sock, "kill-server"], capture_output=True)

    return capture, send, close


def _wait_file(path: Path, timeout: float) -> str | None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists() and path.read_text().strip():
            return path.read_text().strip()
        time.sleep(0.1)
    return None


def test_a_crash_exits_non_zero(tmp_path):
    rc = tmp_path / "rc"
    script = tmp_path / "crash.py"
    script.write_text(textwrap.dedent(
        """
        import tui.app
        def broken(self):
            raise RuntimeError("boom")
        tui.app.AdvisorApp.get_default_screen = broken
        tui.app.run_app()
        """
    ))
    cmd = f"env TERM=xterm-256color TRAIN_ADVISOR_NOTES={tmp_path / 'n.db'} {sys.executable} {script} 2>/dev/null; echo $? > {rc}; sleep 5"
    capture, send, close = _tmux(tmp_path, f"tui-crash-{id(tmp_path)}", cmd)
    try:
        assert _wait_file(rc, 60) not in (None, "0")
    finally:
        close()


def test_q_during_the_first_kb_build_quits_promptly(tmp_path):
    rc = tmp_path / "rc"
    db = tmp_path / "new-kb.db"
    env = f"env TERM=xterm-256color HF_HUB_OFFLINE=1 TRAIN_ADVISOR_DB={db} TRAIN_ADVISOR_NOTES={tmp_path / 'n.db'}"
    cmd = f"{env} {sys.executable} -m tui; echo $? > {rc}; sleep 5"
    capture, send, close = _tmux(tmp_path, f"tui-build-{id(tmp_path)}", cmd)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and "building the knowledge base" not in capture():
            time.sleep(0.1)
        assert "building the knowledge base" in capture(), capture()
        send("q")
        quit_at = time.monotonic()
        assert _wait_file(rc, 20) == "0"
        assert time.monotonic() - quit_at < 8
    finally:
        close()
