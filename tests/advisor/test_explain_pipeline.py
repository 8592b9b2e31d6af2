"""`explain` end to end on the real KB (shipped documents, real embeddings) and the shipped demo run:
the ranking comes from the one analysis service (the user's marks included), `advisor explain demo`
cites the run analysis, and the CLI's text and JSON modes hold a hostile model's answer."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from advisor import demo_run_path
from advisor.analysis import notes_key
from advisor.cli import cli
from advisor.explain import explain
from advisor.explain.render import HEADING_CHECKED
from advisor.models import MATCHED_BY
from advisor.notes import NotesStore
from advisor.readers import read_log

PROBLEM_1 = "run/problem-1-relational-loss-not-scale-invariant"


@pytest.fixture
def env(kb_copy, tmp_path, monkeypatch):
    """The real KB and a private notes file, as the API and the CLI find them."""
    monkeypatch.setenv("TRAIN_ADVISOR_DB", str(kb_copy))
    monkeypatch.setenv("TRAIN_ADVISOR_NOTES", str(tmp_path / "notes.db"))
    return {"kb": kb_copy, "notes": NotesStore(tmp_path / "notes.db")}


def test_explain_demo_json_cites_the_run_analysis(env):
    res = CliRunner().invoke(cli, ["explain", "demo", "--json"])
    assert res.exit_code == 0, res.output
    data = json.loads(res.output)
    assert data["citations"][0] == PROBLEM_1 and data["fallback"] is False and data["model"] is None
    assert data["findings"] == [], "the composer's own text passes the checker on real entries"
    res = CliRunner().invoke(cli, ["explain", "demo"])
    assert res.exit_code == 0 and res.output.startswith("Fixes to try first\n")
    assert HEADING_CHECKED not in res.output


def test_the_real_matcher_emits_only_declared_matched_by_values(env):
    e = explain("demo")
    from advisor.analysis import analyse

    diagnosis = analyse(read_log(demo_run_path()), kb=env["kb"])
    used = {m for s in diagnosis.suggestions for m in s.matched_by}
    assert used and used <= set(MATCHED_BY), used - set(MATCHED_BY)
    assert {"link+search", "linked-fix"} & used, "the demo exercises the phrases issue 13 found missing"
    assert "the run analysis names it as a fix for a problem found here" in e.text


def test_explain_honours_dismissals_and_did_not_help(env):
    notes: NotesStore = env["notes"]
    key = notes_key(read_log(demo_run_path()))
    before = explain("demo").suggestions
    assert before[0] == PROBLEM_1
    notes.set(key, PROBLEM_1, "dismissed")
    after = explain("demo")
    assert PROBLEM_1 not in after.suggestions and PROBLEM_1 not in after.text
    notes.clear(key, PROBLEM_1)
    notes.set(key, PROBLEM_1, "did not help")
    lowered = explain("demo").suggestions
    assert lowered[0] != PROBLEM_1 and (PROBLEM_1 not in lowered or lowered.index(PROBLEM_1) > 0)


def test_cli_text_and_json_hold_a_hostile_model(env):
    from test_explain_check import PATTERNS, HostileServer

    server = HostileServer()
    server.thread.start()
    try:
        for name in ("rm-home", "everything-at-once"):
            server.pattern = p = PATTERNS[name]
            args = ["explain", "demo", "--llm", "openai", "--base-url", server.url, "--model", "test-model"]
            text = CliRunner().invoke(cli, args)
            assert text.exit_code == 0, text.output
            body, _, footer = text.output.partition(HEADING_CHECKED)
            for bad in p.never_shown:
                assert bad not in body, (name, bad)
            assert footer and "IGNORE" not in footer
            data = json.loads(CliRunner().invoke(cli, [*args, "--json"]).output)
            assert data["model"] == "test-model" and data["fallback"] is p.fallback
            for bad in p.never_shown:
                assert bad not in data["text"], (name, bad)
            assert data["citations"] and set(data["citations"]) <= set(data["suggestions"])
    finally:
        server.httpd.shutdown()
        server.httpd.server_close()


def test_cli_rejects_bad_explain_options_before_diagnosing(env, monkeypatch):
    import advisor.diagnose

    def no_diagnosis(*a, **k):
        raise AssertionError("diagnosed before the options were checked")

    monkeypatch.setattr(advisor.diagnose, "diagnose", no_diagnosis)
    res = CliRunner().invoke(cli, ["explain", "demo", "--llm", "openai"])
    assert res.exit_code == 2 and "No model is configured" in res.output and "Traceback" not in res.output
