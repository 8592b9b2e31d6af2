"""Pilot tests for the TUI's flows: open the demo, walk the suggestions, mark and note (and see the
note after a restart), search and open a result and its source, describe a symptom and see the
ranking change, follow a run store that a thread appends to, switch runs, help and the palette.

The log reader, matcher and KB are the real ones; the detectors are replaced by a small fixed set
(`FixedDetect`) so the flows do not depend on detector thresholds. `test_real_pipeline_*` use the
whole advisor pipeline when it is installed.
"""

from __future__ import annotations

import asyncio
import math
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from advisor import runstore
from advisor.models import Signal
from advisor.notes import NotesStore, run_key
from tui.app import AdvisorApp
from tui.screens.diagnosis import DiagnosisScreen
from tui.session import Pipeline, demo_run_path
from tui.widgets.detail import SuggestionDetail
from tui.widgets.suggestions import SuggestionTable

ROOT = Path(__file__).resolve().parents[2]
SIZE = (80, 24)


class FixedDetect(Pipeline):
    """The real reader and matcher; signals from a few fixed rules (deterministic)."""

    def detect(self, run):
        out = []
        rel = run.series.get("train/relational")
        if rel is not None and len(rel) > 3:
            mid = len(rel) // 2
            out.append(
                Signal(
                    kind="component_growth",
                    metric="train/relational",
                    start=float(rel.steps[mid]),
                    end=float(rel.steps[-1]),
                    severity="high",
                    value=3.2,
                    threshold=2.0,
                    numbers={"share": 0.41},
                    summary="train/relational grew 3.2x while the total fell [red]literal[/red]",
                    query="one loss term grows while the total loss decreases",
                )
            )
        usage = run.series.get("vq/usage")
        if usage is not None and len(usage) > 10:
            out.append(
                Signal(
                    kind="usage_collapse",
                    metric="vq/usage",
                    start=float(usage.steps[5]),
                    end=float(usage.steps[9]),
                    severity="medium",
                    value=0.12,
                    summary="codebook usage fell to 12%",
                    query="codebook usage collapses",
                )
            )
        for name, s in sorted(run.series.items()):
            bad = ~np.isfinite(s.values)
            if bad.any():
                i = int(np.argmax(bad))
                out.append(
                    Signal(
                        kind="nan_inf",
                        metric=name,
                        start=float(s.steps[i]),
                        end=float(s.steps[-1]),
                        severity="high",
                        summary=f"{name} became NaN at step {s.steps[i]:g}",
                        query="loss becomes nan",
                    )
                )
        return out


# ---- helpers ------------------------------------------------------------------------------------
def screen_text(app) -> str:
    """What the terminal shows, as plain text."""
    strips = app.screen._compositor.render_strips()
    return "\n".join("".join(seg.text for seg in strip) for strip in strips)


async def wait_for(pilot, condition, timeout: float = 15.0, what: str = "condition") -> None:
    """Poll with plain sleeps: Pilot's pause waits for every widget of the screen to answer, and a
    widget the app removes meanwhile (the detail pane rebuilds its evidence) never does."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            await asyncio.sleep(0.05)
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}\n{screen_text(pilot.app)}")


async def wait_loaded(pilot, generation: int = 1) -> DiagnosisScreen:
    main = pilot.app.main
    await wait_for(pilot, lambda: main.generation >= generation or main.error is not None, what="the ranking")
    assert main.error is None, main.error
    # the detail pane's rebuild finished before the next key (Pilot waits on every widget it sees)
    await wait_for(pilot, lambda: not [w for w in pilot.app.workers if w.group == "detail" and w.is_running], what="the detail pane")
    return main


def rows(app) -> list[str]:
    table = app.main.query_one(SuggestionTable)
    return [str(k.value) for k in table.rows]


def other_run(tmp_path, name: str) -> Path:
    """Another run of the demo's kind: its log without the last row (a copy would be the same run:
    notes are keyed by a log's content)."""
    lines = Path(demo_run_path()).read_text().splitlines(keepends=True)
    path = tmp_path / name
    path.write_text("".join(lines[:-1]))
    return path


_SHARED: dict = {}


def shared_kb(kb_path):
    """One open KB (and its search cache) for all the apps in this module: each test then pays
    for the searches that are new to it only."""
    if kb_path not in _SHARED:
        from kb import KnowledgeBase
        from tui.session import LockedKB

        _SHARED[kb_path] = LockedKB(KnowledgeBase(kb_path))
    return _SHARED[kb_path]


def make_app(kb_path, notes_path, target=None, **kwargs) -> AdvisorApp:
    kwargs.setdefault("pipeline", FixedDetect())
    kwargs.setdefault("kb", shared_kb(kb_path))
    return AdvisorApp(target=target, kb_path=kb_path, notes_path=notes_path, **kwargs)


@pytest.fixture
def notes_path(tmp_path) -> Path:
    return tmp_path / "notes.db"


@pytest.fixture(autouse=True)
def _quiet_env(monkeypatch, tmp_path):
    monkeypatch.setenv("TRAIN_ADVISOR_LLM_BACKEND", "none")
    monkeypatch.setenv("TRAIN_ADVISOR_NOTES", str(tmp_path / "default-notes.db"))


# ---- flows --------------------------------------------------------------------------------------
async def test_first_screen_paints_before_the_run_is_read(built_kb_path, notes_path):
    gate = threading.Event()

    class Slow(FixedDetect):
        def read_log(self, target):
            gate.wait(10)
            return super().read_log(target)

    app = make_app(built_kb_path, notes_path, pipeline=Slow())
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause(0.2)
        text = screen_text(app)
        assert "demo_jepa_run.jsonl" in text and "reading" in text
        assert app.main.query_one(SuggestionTable).loading
        assert app.main.session is None
        gate.set()
        await wait_loaded(pilot)
        assert not app.main.query_one(SuggestionTable).loading


async def test_open_demo_and_move_through_suggestions(built_kb_path, notes_path):
    app = make_app(built_kb_path, notes_path)
    async with app.run_test(size=SIZE) as pilot:
        main = await wait_loaded(pilot)
        session = main.session
        assert session.target == demo_run_path()
        assert len(session.suggestions) >= 3
        assert rows(app) == [s.id for s in session.suggestions]
        text = screen_text(app)
        assert "demo_jepa_run.jsonl" in text and "2 signals" in text
        first, second, third = session.suggestions[:3]
        assert first.title[:20] in text
        detail = main.query_one(SuggestionDetail)
        # the detail pane: evidence with its numbers and window, a sparkline, the entry and its source
        assert main._shown_id == first.id
        await pilot.press("down")
        await wait_for(pilot, lambda: main._shown_id == second.id, what="second suggestion")
        await pilot.press("space")
        await wait_for(pilot, lambda: main._shown_id == third.id, what="third suggestion")
        await pilot.press("k")
        await wait_for(pilot, lambda: main._shown_id == second.id, what="back to the second")
        evidence = [str(w.render()) for w in detail.query(".ev-text")]
        assert any("component_growth" in e and "train/relational" in e for e in evidence)
        assert detail.query(".ev-spark")
        # entry text is literal: the summary's [red] is shown as typed
        assert "[red]literal[/red]" in "\n".join(evidence)
        prov = str(detail.query_one("#provenance").render())
        assert second.provenance.file in prov and f"{second.provenance.start_line}" in prov
        # the source opens at the entry's lines
        await pilot.press("o")
        await wait_for(pilot, lambda: type(app.screen).__name__ == "SourceScreen", what="source screen")
        area = app.screen.query_one("#source-text")
        assert area.selection.end[0] == second.provenance.start_line - 1
        assert f"lines {second.provenance.start_line}" in screen_text(app)
        await pilot.press("escape")
        assert app.screen is main


async def test_mark_and_note_survive_restart(built_kb_path, notes_path):
    app = make_app(built_kb_path, notes_path)
    async with app.run_test(size=SIZE) as pilot:
        main = await wait_loaded(pilot)
        first, second = main.session.suggestions[:2]
        key = main.session.key
        await pilot.press("h")  # helped
        await pilot.press("down")
        await wait_for(pilot, lambda: main._shown_id == second.id)
        await pilot.press("n")
        await wait_for(pilot, lambda: type(app.screen).__name__ == "NoteScreen", what="note screen")
        await pilot.press(*"lowered lr to 3e-4")
        await pilot.press("enter")
        await wait_for(pilot, lambda: app.screen is main)
        await wait_for(pilot, lambda: "lowered lr" in str(main.query_one("#detail-head").render()), what="note in detail")
        # dismiss the third: it drops out of the ranking
        third = main.session.suggestions[2]
        await pilot.press("down")
        await wait_for(pilot, lambda: main._shown_id == third.id)
        gen = main.generation
        await pilot.press("x")
        await wait_for(pilot, lambda: main.generation > gen, what="re-rank after dismiss")
        assert third.id not in rows(app)

    store = NotesStore(notes_path)
    marks = {n.entry_id: n for n in store.get(key)}
    assert marks[first.id].status == "helped"
    assert marks[second.id].status == "tried" and marks[second.id].note == "lowered lr to 3e-4"
    assert marks[second.id].signal_kinds  # the kinds of its evidence: history for later runs
    assert store.dismissed(key) == {third.id}
    assert [r["entry_id"] for r in store.export(key)] == [first.id, second.id, third.id]

    # a new app instance on the same notes file: the marks and the note are there
    app2 = make_app(built_kb_path, notes_path)
    async with app2.run_test(size=SIZE) as pilot:
        main = await wait_loaded(pilot)
        assert third.id not in rows(app2)
        table = main.query_one(SuggestionTable)
        assert str(table.get_cell(first.id, "mark")).startswith("✓")
        assert str(table.get_cell(second.id, "mark")) == "◐✎"
        table.move_cursor(row=rows(app2).index(second.id))
        await wait_for(pilot, lambda: main._shown_id == second.id)
        head = str(main.query_one("#detail-head").render())
        assert "tried" in head and "lowered lr to 3e-4" in head
        # clear the mark
        await pilot.press("c")
        await wait_for(pilot, lambda: NotesStore(notes_path).get_one(key, second.id) is None, what="the mark cleared")


async def test_helped_boosts_the_entry_on_a_later_run_with_the_same_signals(built_kb_path, notes_path, tmp_path):
    log = other_run(tmp_path, "other_run.jsonl")
    app = make_app(built_kb_path, notes_path)
    async with app.run_test(size=SIZE) as pilot:
        main = await wait_loaded(pilot)
        last = main.session.suggestions[-1]
        before = last.score
        table = main.query_one(SuggestionTable)
        table.move_cursor(row=len(rows(app)) - 1)
        await wait_for(pilot, lambda: main._shown_id == last.id)
        await pilot.press("h")
        await pilot.pause(0.1)
        app.open_target(str(log))
        await wait_loaded(pilot, generation=2)
        boosted = main.session.suggestion(last.id)
        assert boosted is not None and boosted.score > before
        assert "history" in boosted.matched_by


async def test_search_as_you_type_and_open_a_result(built_kb_path, notes_path, monkeypatch):
    app = make_app(built_kb_path, notes_path)
    async with app.run_test(size=SIZE) as pilot:
        await wait_loaded(pilot)
        searched: list[str] = []
        kb = app.get_kb()
        real = kb.search

        def counting(text, *a, **kw):
            searched.append(text)
            return real(text, *a, **kw)

        monkeypatch.setattr(kb, "search", counting)
        await pilot.press("slash")
        await wait_for(pilot, lambda: type(app.screen).__name__ == "SearchScreen", what="search screen")
        search = app.screen
        await pilot.press(*"loss becomes nan")
        await wait_for(pilot, lambda: search.hits and searched and searched[-1] == "loss becomes nan", what="results")
        assert len(searched) < len("loss becomes nan")  # debounced: not one search per key
        assert search.hits[0].entry.id == "guide/001-loss-becomes-nan"
        assert "Loss becomes NaN" in screen_text(app)
        await pilot.press("down", "enter")
        await wait_for(pilot, lambda: type(app.screen).__name__ == "EntryScreen", what="entry screen")
        assert app.screen.entry.id == "guide/001-loss-becomes-nan"
        text = screen_text(app)
        assert "Loss becomes NaN" in text and "Symptoms" in text
        await pilot.press("o")
        await wait_for(pilot, lambda: type(app.screen).__name__ == "SourceScreen", what="source")
        assert "guide-troubleshooting.md" in screen_text(app)
        await pilot.press("escape", "escape")
        assert app.screen is search
        await pilot.press("escape")
        assert app.screen is app.main


async def test_describe_reranks(built_kb_path, notes_path):
    app = make_app(built_kb_path, notes_path)
    async with app.run_test(size=SIZE) as pilot:
        main = await wait_loaded(pilot)
        before = rows(app)
        await pilot.press("d")
        await pilot.press(*"val loss goes up after epoch 20")
        gen = main.generation
        await pilot.press("enter")
        await wait_for(pilot, lambda: main.generation > gen, what="re-rank")
        after = rows(app)
        assert after != before
        assert "guide/012-validation-loss-increasing-while-training-loss-decreases" in after
        assert any("describe" in s.matched_by for s in main.session.suggestions[:3])
        assert main.session.describe == "val loss goes up after epoch 20"
        assert "val loss goes up" in screen_text(app)
        assert main.session.last_rank_s < 1.0
        # an empty description goes back to the run's signals alone
        await pilot.press("d", "ctrl+u", "enter")
        await wait_for(pilot, lambda: main.generation > gen + 1, what="re-rank without description")
        assert rows(app) == before


def _write_live_store(run_dir: Path):
    con = runstore.open_for_writing(run_dir)
    runstore.begin_writing(con)  # as the probe does: this process writes it
    runstore.write_meta(con, {"started": time.time(), "every": 1})
    now = time.time()
    runstore.write_readings(con, [(s, "train/loss", 5.0 - 0.01 * s, now) for s in range(60)])
    runstore.write_readings(con, [(s, "train/relational", 0.2 + 0.01 * s, now) for s in range(60)])
    return con


async def test_follow_a_live_run_store(built_kb_path, notes_path, tmp_path):
    run_dir = tmp_path / "live-run"
    con = _write_live_store(run_dir)
    started = threading.Event()

    def trainer():
        started.wait(10)
        for s in range(60, 80):
            loss = math.nan if s >= 70 else 4.0
            runstore.write_readings(con, [(s, "train/loss", loss, time.time()), (s, "train/relational", 0.8, time.time())])
            time.sleep(0.02)

    thread = threading.Thread(target=trainer, daemon=True)
    thread.start()
    app = make_app(built_kb_path, notes_path, target=str(run_dir), poll_interval=0.2)
    async with app.run_test(size=SIZE) as pilot:
        main = await wait_loaded(pilot)
        session = main.session
        assert session.live and "● live" in screen_text(app)
        assert "guide/001-loss-becomes-nan" not in rows(app)
        started.set()
        await wait_for(pilot, lambda: "guide/001-loss-becomes-nan" in rows(app), what="the NaN suggestion")
        assert "guide/001-loss-becomes-nan" in session.new_ids
        assert ("nan_inf", "train/loss") in session.new_evidence
        cell = main.query_one(SuggestionTable).get_cell("guide/001-loss-becomes-nan", "title")
        assert str(cell).startswith("★")
        # the UI stayed responsive while the worker polled
        await pilot.press("down")
        thread.join(5)
        runstore.write_meta(con, {"finished": time.time()})
        await wait_for(pilot, lambda: not session.live, what="the run to finish")
        await wait_for(pilot, lambda: "finished" in screen_text(app), what="finished in the run bar")
    con.close()


async def test_live_run_without_readings_yet(built_kb_path, notes_path, tmp_path):
    run_dir = tmp_path / "fresh-run"
    con = runstore.open_for_writing(run_dir)
    runstore.begin_writing(con)
    runstore.write_meta(con, {"started": time.time()})
    app = make_app(built_kb_path, notes_path, target=str(run_dir), poll_interval=0.2)
    async with app.run_test(size=SIZE) as pilot:
        main = await wait_loaded(pilot)
        assert main.session.live and not main.session.suggestions
        assert "waiting for the probe" in screen_text(app)
        now = time.time()
        runstore.write_readings(con, [(s, "train/relational", 0.2 + 0.01 * s, now) for s in range(20)])
        await wait_for(pilot, lambda: rows(app), what="first suggestions")
        assert "waiting for the probe" not in screen_text(app)
    con.close()


async def test_runs_screen_switches_runs(built_kb_path, notes_path, tmp_path):
    log = other_run(tmp_path, "my_run.jsonl")
    app = make_app(built_kb_path, notes_path)
    async with app.run_test(size=SIZE) as pilot:
        main = await wait_loaded(pilot)
        await pilot.press("r")
        await wait_for(pilot, lambda: type(app.screen).__name__ == "RunsScreen", what="runs screen")
        assert "demo_jepa_run.jsonl" in screen_text(app)
        await pilot.press("slash")
        app.screen.query_one("#runs-path").value = str(log)
        # enter, without Pilot's wait on the widgets of the screen it closes (they never answer)
        await app.screen.query_one("#runs-path").action_submit()
        await wait_loaded(pilot, generation=2)
        assert app.screen is main and main.session.target == str(log)
        assert "my_run.jsonl" in screen_text(app)
        # both are remembered; open the demo again from the list (r, without Pilot's wait on the
        # widgets of the Runs screen that just closed)
        main.action_runs()
        await wait_for(pilot, lambda: type(app.screen).__name__ == "RunsScreen")
        assert [r.label for r in app.screen.recent] == ["my_run.jsonl", "demo_jepa_run.jsonl"]
        await pilot.press("down")
        # enter, without Pilot's wait on the widgets of the screen it closes (they never answer)
        app.screen.query_one("#runs-table").action_select_cursor()
        await wait_loaded(pilot, generation=3)
        assert main.session.target == run_key(demo_run_path())
        # let the closed Runs screen finish leaving, then the detail pane's re-render that the main
        # screen starts on resuming, before the app shuts down (a prune racing either raises)
        await wait_for(pilot, lambda: app.screen is main, what="the main screen")
        await app.workers.wait_for_complete()
        await pilot.pause()


async def test_unreadable_target_shows_an_error_and_stays_usable(built_kb_path, notes_path, tmp_path):
    app = make_app(built_kb_path, notes_path, target=str(tmp_path / "missing.csv"))
    async with app.run_test(size=SIZE) as pilot:
        main = app.main
        await wait_for(pilot, lambda: main.error is not None, what="the error")
        assert "does not exist" in main.error
        assert "Could not open" in screen_text(app)
        await pilot.press("slash")
        await wait_for(pilot, lambda: type(app.screen).__name__ == "SearchScreen")


async def test_help_palette_and_explain(built_kb_path, notes_path):
    app = make_app(built_kb_path, notes_path)
    async with app.run_test(size=SIZE) as pilot:
        main = await wait_loaded(pilot)
        await pilot.press("question_mark")
        await wait_for(pilot, lambda: type(app.screen).__name__ == "HelpScreen", what="help")
        assert "did not help" in screen_text(app)
        await pilot.press("escape")
        assert app.screen is main
        await pilot.press("ctrl+p")
        await wait_for(pilot, lambda: type(app.screen).__name__ == "CommandPalette", what="palette")
        await pilot.press(*"search the knowledge")
        await pilot.pause(0.5)
        await pilot.press("enter")
        await wait_for(pilot, lambda: type(app.screen).__name__ == "SearchScreen", what="search from the palette")
        await pilot.press("escape")
        pytest.importorskip("advisor.explain")
        await pilot.press("e")
        await wait_for(pilot, lambda: type(app.screen).__name__ == "ExplainScreen", what="explain")
        screen = app.screen
        await wait_for(pilot, lambda: screen.text and screen.text != "*writing…*", timeout=30, what="the explanation")
        assert "Could not explain" not in screen.text
        assert main.session.suggestions[0].id in screen.text


async def test_wide_terminal_puts_the_detail_beside_the_list(built_kb_path, notes_path):
    app = make_app(built_kb_path, notes_path)
    async with app.run_test(size=(140, 36)) as pilot:
        main = await wait_loaded(pilot)
        table, detail = main.query_one(SuggestionTable), main.query_one(SuggestionDetail)
        assert detail.region.x > table.region.x and detail.region.y == table.region.y


# ---- the whole advisor pipeline -----------------------------------------------------------------
async def test_real_pipeline_on_the_demo(built_kb_path, notes_path):
    pytest.importorskip("advisor.detectors")
    app = AdvisorApp(kb_path=built_kb_path, notes_path=notes_path, kb=shared_kb(built_kb_path))
    async with app.run_test(size=SIZE) as pilot:
        main = await wait_loaded(pilot)
        assert main.session.signals and main.session.suggestions
        assert rows(app) == [s.id for s in main.session.suggestions]
        assert main.query_one(SuggestionDetail).query(".ev-text")


async def test_real_pipeline_follows_a_live_run(built_kb_path, notes_path, tmp_path):
    pytest.importorskip("advisor.detectors")
    run_dir = tmp_path / "live-real"
    con = _write_live_store(run_dir)
    app = AdvisorApp(target=str(run_dir), kb_path=built_kb_path, notes_path=notes_path, poll_interval=0.2, kb=shared_kb(built_kb_path))
    async with app.run_test(size=SIZE) as pilot:
        main = await wait_loaded(pilot)
        assert main.session.live
        assert "guide/001-loss-becomes-nan" not in rows(app)

        def trainer():
            for s in range(60, 70):
                runstore.write_readings(con, [(s, "train/loss", math.nan, time.time()), (s, "train/relational", 0.8, time.time())])

        threading.Thread(target=trainer, daemon=True).start()
        await wait_for(pilot, lambda: "guide/001-loss-becomes-nan" in rows(app), what="the NaN suggestion")
    con.close()


# ---- a real terminal ----------------------------------------------------------------------------
def test_tmux_smoke(built_kb_path, tmp_path):
    """tmux runs `python -m tui`, keys are sent, the screen shows ranked suggestions."""
    tmux = shutil.which("tmux")
    if tmux is None:
        pytest.skip("tmux is not installed")
    pytest.importorskip("advisor.detectors")
    name = f"tui-smoke-{os.getpid()}"
    env_args = [
        "env",
        f"TRAIN_ADVISOR_DB={built_kb_path}",
        f"TRAIN_ADVISOR_NOTES={tmp_path / 'notes.db'}",
        "HF_HUB_OFFLINE=1",
        "TERM=xterm-256color",
    ]
    cmd = " ".join([*env_args, sys.executable, "-m", "tui"])
    sock = ["-L", name]
    subprocess.run([tmux, *sock, "new-session", "-d", "-s", name, "-x", "80", "-y", "24", "-c", str(ROOT), cmd], check=True)

    def capture() -> str:
        return subprocess.run([tmux, *sock, "capture-pane", "-p", "-t", name], capture_output=True, text=True).stdout

    try:
        deadline = time.monotonic() + 30
        screen = ""
        while time.monotonic() < deadline:
            screen = capture()
            if "Suggestions" in screen and " 1 " in screen and "signal" in screen:
                break
            time.sleep(0.2)
        assert "Suggestions" in screen and "demo_jepa_run.jsonl" in screen, screen
        subprocess.run([tmux, *sock, "send-keys", "-t", name, "?"], check=True)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and "did not help" not in (screen := capture()):
            time.sleep(0.2)
        assert "did not help" in screen, screen
        subprocess.run([tmux, *sock, "send-keys", "-t", name, "Escape"], check=True)
        time.sleep(0.3)
        subprocess.run([tmux, *sock, "send-keys", "-t", name, "q"], check=True)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            alive = subprocess.run([tmux, *sock, "has-session", "-t", name], capture_output=True).returncode == 0
            if not alive:
                break
            time.sleep(0.2)
        assert not alive, "q did not quit the app"
    finally:
        subprocess.run([tmux, *sock, "kill-server"], capture_output=True)
