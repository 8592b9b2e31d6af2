"""Snapshots of the TUI's screens at 80x24 (and one wide layout), on fixed data: a made-up run, fixed
signals and suggestions, and a small in-memory KB, so they change only when the UI does.

Update with `pytest tests/tui/test_tui_snapshots.py --snapshot-update` and look at the SVGs in
tests/tui/__snapshots__/test_tui_snapshots/ before committing them.
"""

from __future__ import annotations

import time
from datetime import datetime, timezone

import numpy as np
import pytest

from advisor.models import AdvisorError, Evidence, Run, Series, Signal, Suggestion
from advisor.notes import NotesStore, RecentRun
from kb.models import Entry, Hit, Provenance
from tui.app import AdvisorApp
from tui.session import LockedKB, Pipeline

SOURCE_LINES = [f"line {i}: text of the fake troubleshooting guide" for i in range(1, 81)]
SOURCE_LINES[19:26] = [
    "### Loss becomes NaN",
    "",
    "**Symptoms**: loss jumps to `nan` after a [red]spike[/red]",
    "",
    "1. Lower the learning rate 10x",
    "2. Clip gradients at 1.0",
    "3. Check for log(0)",
]
SOURCE_TEXT = "\n".join(SOURCE_LINES)


def _entry(i: int, eid: str, title: str, source: str, **kw) -> Entry:
    return Entry(id=eid, source=source, title=title, provenance=Provenance(file=f"{source}-doc.md", start_line=20 + i, end_line=26 + i), **kw)


ENTRIES = [
    _entry(
        0,
        "guide/001-loss-becomes-nan",
        "Loss becomes NaN",
        "guide",
        section="Numerical issues",
        symptoms=["Loss jumps to nan after a [red]spike[/red]", "Gradients overflow in fp16"],
        causes=["Learning rate too high", "log(0) in the loss"],
        steps=["Lower the learning rate 10x", "Clip gradients at 1.0", "Check for log(0)"],
        diagnosis_code=["for n, p in model.named_parameters():\n    if p.grad is not None and not p.grad.isfinite().all():\n        print(n)"],
    ),
    _entry(
        1,
        "run/problem-1-relational-loss-not-scale-invariant",
        "Relational loss not scale-invariant",
        "run",
        symptoms=["Relational term grows from 0.35 to 0.85 while InfoNCE falls"],
        root_cause="The relational loss scales with the embedding norm.",
        steps=["Remove the relational loss", "Or normalise it by the embedding scale"],
        expected_outcome="Total loss falls with InfoNCE again.",
    ),
    _entry(2, "catalog/044-loss-curve-shows-sudden-jumps-or-drops", "Loss curve shows sudden jumps or drops", "catalog",
           symptoms=["Step changes in the loss curve"], steps=["Look for data order effects", "Check LR schedule restarts"]),
    _entry(3, "catalog/018-embedding-dimensions-used-unevenly", "Embedding dimensions used unevenly", "catalog",
           symptoms=["A few dimensions carry most variance"], steps=["Add a variance term (VICReg)"]),
    _entry(4, "guide/012-validation-loss-increasing-while-training-loss-decreases",
           "Validation loss increasing while training loss decreases", "guide",
           symptoms=["val loss goes up, train loss goes down"], steps=["Early stopping", "More augmentation", "Weight decay"]),
    _entry(5, "audit/002-gradient-explosion", "Gradient explosion", "audit",
           symptoms=["grad norm spikes above the clip value"], steps=["Clip at 1.0", "Warm up the learning rate"]),
]
BY_ID = {e.id: e for e in ENTRIES}

STEPS = np.arange(0, 2000, 20, dtype=float)
LOSS = 5.0 * np.exp(-STEPS / 900) + 0.3
LOSS[90:] = np.nan
REL = 0.35 + 0.5 * (STEPS / STEPS[-1]) ** 2
USAGE = np.clip(0.6 - 0.5 * (STEPS > 800) * (STEPS - 800) / 1200, 0.05, None)

SIGNALS = [
    Signal(kind="nan_inf", metric="train/loss", start=1800, end=1980, severity="high", value=10, numbers={"first_bad_step": 1800},
           summary="train/loss is NaN from step 1800 (10 points)", query="loss becomes nan"),
    Signal(kind="component_growth", metric="train/relational", start=1000, end=1980, severity="medium", value=2.4, threshold=1.5,
           numbers={"share": 0.13}, summary="train/relational grew 2.4x while the total fell", query="loss term grows"),
    Signal(kind="usage_collapse", metric="vq/usage", start=800, end=1980, severity="low", value=0.1, threshold=0.2,
           summary="codebook usage fell to 10%", query="codebook collapse"),
]


def _suggestion(entry_id: str, score: float, signals: list[Signal], matched_by=("link",)) -> Suggestion:
    e = BY_ID[entry_id]
    order = {"high": 0, "medium": 1, "low": 2}
    return Suggestion(
        id=e.id, source=e.source, title=e.title, score=score,
        severity=min((s.severity for s in signals), key=order.__getitem__, default="low"),
        evidence=[Evidence.from_signal(s) for s in signals], steps=e.steps, symptoms=e.symptoms,
        provenance=e.provenance, expected_outcome=e.expected_outcome, matched_by=list(matched_by),
    )


class FakeKB:
    def get(self, entry_id):
        return BY_ID[entry_id]

    def search(self, text, k=5, source=None, mode="hybrid"):
        words = set(text.lower().split())
        scored = [(len(words & set(e.search_text().lower().split())), e) for e in ENTRIES]
        scored = [(s, e) for s, e in scored if s]
        scored.sort(key=lambda se: (-se[0], se[1].id))
        return [Hit(entry=e, score=round(s / 10, 3)) for s, e in scored[:k]]

    def source_text(self, source):
        return SOURCE_TEXT

    def stats(self):
        out: dict[str, int] = {}
        for e in ENTRIES:
            out[e.source] = out.get(e.source, 0) + 1
        return out

    def close(self):
        pass


class FixedPipeline(Pipeline):
    def read_log(self, target):
        if "missing" in target:
            raise AdvisorError(f"{target} does not exist.")
        return Run(path=target, format="jsonl", axis="step", series={
            "train/loss": Series("train/loss", "loss", STEPS, LOSS),
            "train/relational": Series("train/relational", "loss_component", STEPS, REL),
            "vq/usage": Series("vq/usage", "usage", STEPS, USAGE),
        })

    def detect(self, run):
        return list(SIGNALS)

    def rank(self, signals, kb, describe=None, history=None, dismissed=(), top=10, run=None, demoted=None):
        nan, comp, usage = SIGNALS
        out = [
            _suggestion("guide/001-loss-becomes-nan", 1.15, [nan]),
            _suggestion("run/problem-1-relational-loss-not-scale-invariant", 0.86, [comp]),
            _suggestion("audit/002-gradient-explosion", 0.71, [nan, comp], ("link", "search")),
            _suggestion("catalog/044-loss-curve-shows-sudden-jumps-or-drops", 0.52, [usage]),
            _suggestion("catalog/018-embedding-dimensions-used-unevenly", 0.31, [usage], ("search",)),
        ]
        if describe:
            out.insert(0, _suggestion("guide/012-validation-loss-increasing-while-training-loss-decreases", 1.3, [], ("describe",)))
        return [s for s in out if s.id not in set(dismissed)][:top]

    def run_state(self, target, run=None):
        return None


class FixedNotes(NotesStore):
    def recent(self, limit=20):
        return [
            RecentRun(run="/home/me/runs/demo_run.jsonl", label="demo_run.jsonl", format="jsonl", opened=datetime(2025, 3, 1, 9, 30, tzinfo=timezone.utc)),
            RecentRun(run="/home/me/runs/jepa-7b", label="jepa-7b", format="probe", opened=datetime(2025, 2, 27, 18, 5, tzinfo=timezone.utc)),
            RecentRun(run="/home/me/logs/metrics.csv", label="metrics.csv", format="csv", opened=datetime(2025, 2, 20, 8, 0, tzinfo=timezone.utc)),
        ]


class SnapApp(AdvisorApp):
    def get_kb(self, progress=lambda s: None, cancelled=lambda: False):
        if self._kb is None:
            self._kb = LockedKB(FakeKB())
        return self._kb


@pytest.fixture
def make(tmp_path, monkeypatch):
    monkeypatch.setenv("TZ", "UTC")
    time.tzset()

    def factory(target="runs/demo_run.jsonl"):
        app = SnapApp(target=target, notes_path=tmp_path / "notes.db", pipeline=FixedPipeline())
        app.notes = FixedNotes(tmp_path / "notes.db")
        return app

    yield factory
    monkeypatch.delenv("TZ")
    time.tzset()


async def settle(pilot):
    app = pilot.app
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and app.main.generation < 1 and app.main.error is None:
        await pilot.pause(0.05)
    await app.workers.wait_for_complete()
    await pilot.pause(0.1)
    for box in app.query("Input"):
        box.cursor_blink = False


async def still(pilot):
    """After key presses: let workers finish and stop cursors blinking on every screen."""
    await pilot.app.workers.wait_for_complete()
    await pilot.pause(0.2)
    for box in pilot.app.screen.query("Input"):
        box.cursor_blink = False
    for area in pilot.app.screen.query("TextArea"):
        area.cursor_blink = False
    await pilot.pause()


def test_main_screen(snap_compare, make):
    assert snap_compare(make(), terminal_size=(80, 24), run_before=settle)


def test_main_screen_marked_with_note(snap_compare, make):
    async def run_before(pilot):
        await settle(pilot)
        await pilot.press("down", "h", "down", "n", *"halved the lr", "enter")
        await still(pilot)
        pilot.app.clear_notifications()
        await pilot.press("up")
        await still(pilot)

    assert snap_compare(make(), terminal_size=(80, 24), run_before=run_before)


def test_note_modal(snap_compare, make):
    async def run_before(pilot):
        await settle(pilot)
        await pilot.press("n", *"clipped at 1.0")
        await still(pilot)

    assert snap_compare(make(), terminal_size=(80, 24), run_before=run_before)


def test_describe(snap_compare, make):
    async def run_before(pilot):
        await settle(pilot)
        await pilot.press("d", *"val loss goes up after epoch 20", "enter")
        await still(pilot)

    assert snap_compare(make(), terminal_size=(80, 24), run_before=run_before)


def test_search(snap_compare, make):
    async def run_before(pilot):
        await settle(pilot)
        await pilot.press("slash", *"loss nan")
        await pilot.pause(0.4)
        await still(pilot)

    assert snap_compare(make(), terminal_size=(80, 24), run_before=run_before)


def test_entry_screen(snap_compare, make):
    async def run_before(pilot):
        await settle(pilot)
        await pilot.press("slash", *"loss nan")
        await pilot.pause(0.4)
        await still(pilot)
        await pilot.press("down", "enter")
        await still(pilot)

    assert snap_compare(make(), terminal_size=(80, 24), run_before=run_before)


def test_source_screen(snap_compare, make):
    async def run_before(pilot):
        await settle(pilot)
        await pilot.press("o")
        await still(pilot)

    assert snap_compare(make(), terminal_size=(80, 24), run_before=run_before)


def test_help_screen(snap_compare, make):
    async def run_before(pilot):
        await settle(pilot)
        await pilot.press("question_mark")
        await still(pilot)

    assert snap_compare(make(), terminal_size=(80, 24), run_before=run_before)


def test_runs_screen(snap_compare, make):
    async def run_before(pilot):
        await settle(pilot)
        await pilot.press("r")
        await still(pilot)

    assert snap_compare(make(), terminal_size=(80, 24), run_before=run_before)


def test_unreadable_run(snap_compare, make):
    async def run_before(pilot):
        await settle(pilot)
        pilot.app.clear_notifications()
        await still(pilot)

    assert snap_compare(make("runs/missing.csv"), terminal_size=(80, 24), run_before=run_before)


def test_wide_layout(snap_compare, make):
    assert snap_compare(make(), terminal_size=(140, 36), run_before=settle)


def test_dismissed_listed(snap_compare, make):
    """x dismisses the first entry, X lists it again (dimmed, "dismissed", restorable)."""

    async def run_before(pilot):
        await settle(pilot)
        await pilot.press("x")
        await still(pilot)
        await pilot.press("X")
        await still(pilot)
        pilot.app.clear_notifications()
        await still(pilot)

    assert snap_compare(make(), terminal_size=(80, 24), run_before=run_before)


def test_detail_focused_with_detector_fields(snap_compare, make):
    """enter: the keys go to the detail pane (its title says so); i shows the detector's fields."""

    async def run_before(pilot):
        await settle(pilot)
        await pilot.press("down", "enter", "i")
        await still(pilot)
        pilot.app.clear_notifications()
        await still(pilot)

    assert snap_compare(make(), terminal_size=(120, 40), run_before=run_before)
