"""`advisor annotate` / `diagnose` / `explain` / `notes` on real material: the JEPA run, renamed columns, bad input."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from advisor import demo_run_path
from advisor.annotate import annotate, sparkline
from advisor.diagnose import diagnose
from advisor.models import AnnotationReport

DEMO = demo_run_path()

RENAMES = {
    "train/infonce": "loss/contrastive_term",
    "train/sigreg": "loss/sigreg_term",
    "train/invariance": "loss/invariance_term",
    "train/relational": "loss/relational_term",
    "train/total": "loss/total",
    "val/loss": "validation_loss",
    "grad_norm/mean": "gradnorm_avg",
    "grad_norm/max": "gradnorm_peak",
    "vq/usage": "codebook_utilization",
    "rank/context": "eff_rank_ctx",
    "rank/target": "eff_rank_tgt",
}


def by_signal(result, kind, metric=None):
    found = [a for a in result["annotations"] if a["signal"] == kind and (metric is None or a["metric"] == metric)]
    assert found, (kind, metric, [(a["signal"], a["metric"]) for a in result["annotations"]])
    return found[0]


def check_jepa_findings(result, names):
    ids = lambda a: [s["id"] for s in a["suggestions"]]  # noqa: E731
    growth = by_signal(result, "component_growth", names["train/relational"])
    assert growth["start_epoch"] <= 12 and growth["end_epoch"] >= 70
    assert "run/problem-1-relational-loss-not-scale-invariant" in ids(growth)
    spike = by_signal(result, "grad_spike", names["grad_norm/max"])
    assert 33 <= spike["start_epoch"] and spike["end_epoch"] <= 42
    assert "guide/008-exploding-gradients" in ids(spike)
    usage = [a for a in result["annotations"] if a["metric"] == names["vq/usage"] and a["signal"] in ("level_shift", "usage_collapse")]
    assert any(a["start"] <= 3000 <= a["end"] + 100 for a in usage)
    assert any("run/problem-2-vq-refresh-introduces-discontinuity" in ids(a) for a in usage)
    over = by_signal(result, "overfitting", names["val/loss"])
    assert 67 <= over["evidence"]["best_epoch"] <= 69
    assert {"guide/012-validation-loss-increasing-while-training-loss-decreases", "run/fix-1-3-increase-early-stopping-patience"} & set(ids(over))
    flat = by_signal(result, "plateau", names["val/loss"])
    assert 45 <= flat["start_epoch"] <= 55
    for a in result["annotations"]:  # healthy effective ranks: no collapse alarm
        assert not (a["metric"] in (names["rank/context"], names["rank/target"]) or a["signal"] in ("low_rank", "representation_collapse"))


def test_jepa_run_findings_in_the_right_windows(kb):
    report = annotate(DEMO, kb=kb)
    assert isinstance(report, AnnotationReport)
    result = report.model_dump()
    assert result["axis"] == "step" and result["format"] == "jsonl"
    assert {s["name"] for s in result["series"]} >= set(RENAMES)
    check_jepa_findings(result, {k: k for k in RENAMES})
    a = result["annotations"][0]
    assert set(a) == {"signal", "metric", "start", "end", "start_epoch", "end_epoch", "severity", "summary", "evidence", "suggestions"}
    assert set(a["suggestions"][0]) == {"id", "source", "title", "score"}


def test_jepa_run_with_every_column_renamed(kb, tmp_path):
    renamed = tmp_path / "renamed.jsonl"
    with open(DEMO) as src, open(renamed, "w") as dst:
        for line in src:
            row = json.loads(line)
            dst.write(json.dumps({RENAMES.get(k, k): v for k, v in row.items()}) + "\n")
    check_jepa_findings(annotate(renamed, kb=kb).model_dump(), RENAMES)


def test_diagnose_demo_ranks_the_analysis_fixes(kb):
    result = diagnose(DEMO, kb=kb)
    ids = [s.id for s in result.suggestions]
    assert ids[0] == "run/problem-1-relational-loss-not-scale-invariant"
    assert "run/fix-1-1-remove-or-drastically-reduce-relational-loss" in ids[:5]
    fix = next(s for s in result.suggestions if s.id == "run/fix-1-1-remove-or-drastically-reduce-relational-loss")
    assert fix.evidence[0].metric == "train/relational" and fix.evidence[0].step == 950
    patience = next(s for s in result.suggestions if s.id == "run/fix-1-3-increase-early-stopping-patience")
    assert "8.0-8.1" in patience.expected_outcome
    sources = {s.source for s in result.suggestions}
    assert {"run", "guide"} <= sources


def test_sparkline_marks_the_window():
    """The text sparkline is the TUI's (advisor.sparkline): columns by step, the window bracketed on the
    ruler with the first and last step at its ends, × for a non-finite point."""
    line, ruler = sparkline(list(range(9)), [1, 2, 3, 4, 5, 4, 3, 2, 1], width=9, window=(2, 4)).split("\n")
    assert line == "▁▃▅▆█▆▅▃▁"
    assert ruler == "0 └─┘   8"
    line, ruler = sparkline([0, 1, 2], [1.0, float("nan"), 2.0], width=9).split("\n")
    assert line == "▁▁▁▁×▁▁▁█" and ruler.startswith("0") and ruler.endswith("2")
    line, _ = sparkline([0, 1, 2], [-1e308, 1e308, float("inf")], width=8).split("\n")
    assert line[0] == "▁" and "█" in line and line[-1] == "×"


def advisor_cli(*args, env_extra, stdin=None):
    env = dict(os.environ, **env_extra)
    return subprocess.run([sys.executable, "-m", "advisor.cli", *args], capture_output=True, text=True, env=env, input=stdin, timeout=300)


@pytest.fixture
def cli_env(built_kb_path, tmp_path):
    return {"TRAIN_ADVISOR_DB": str(built_kb_path), "TRAIN_ADVISOR_NOTES": str(tmp_path / "notes.db")}


def test_cli_annotate_outputs(cli_env, tmp_path):
    out_rows = tmp_path / "annotated.jsonl"
    png = tmp_path / "plot.png"
    res = advisor_cli("annotate", DEMO, "--json", "-o", str(out_rows), "--plot", str(png), env_extra=cli_env)
    assert res.returncode == 0, res.stderr
    doc = json.loads(res.stdout)
    assert doc["annotations"]
    rows = [json.loads(line) for line in out_rows.read_text().splitlines()]
    assert len(rows) == sum(1 for line in open(DEMO) if line.strip())
    marked = [r for r in rows if "annotations" in r]
    assert marked and all(isinstance(r["annotations"], list) for r in marked)
    growth_rows = [r for r in marked if any(a["signal"] == "component_growth" for a in r["annotations"])]
    assert min(r["step"] for r in growth_rows) == 950
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000
    text = advisor_cli("annotate", DEMO, env_extra=cli_env)
    assert "component_growth" in text.stdout and "▁" in text.stdout and "└" in text.stdout
    md = advisor_cli("annotate", DEMO, "--markdown", env_extra=cli_env)
    assert md.stdout.startswith("# Annotations") and "| evidence | value |" in md.stdout


def test_cli_diagnose_json_and_describe(cli_env):
    res = advisor_cli("diagnose", DEMO, "--json", env_extra=cli_env)
    assert res.returncode == 0, res.stderr
    doc = json.loads(res.stdout)
    first = doc["suggestions"][0]
    assert {"id", "source", "title", "score", "severity", "evidence"} <= set(first)
    assert {"signal", "metric", "value", "threshold", "step", "summary"} <= set(first["evidence"][0])
    assert doc["signals"]
    alone = json.loads(advisor_cli("diagnose", "--describe", "my loss turns into nan after a few hundred steps", "--json", env_extra=cli_env).stdout)
    assert alone["suggestions"][0]["id"] == "guide/001-loss-becomes-nan" and alone["signals"] == []


def test_cli_explain_and_notes(cli_env):
    res = advisor_cli("explain", DEMO, "--json", env_extra=cli_env)
    assert res.returncode == 0, res.stderr
    doc = json.loads(res.stdout)
    assert doc["backend"] == "none" and doc["citations"] and doc["fallback"] is False
    assert "run/problem-1-relational-loss-not-scale-invariant" in doc["citations"]
    from advisor.analysis import notes_key
    from advisor.notes import NotesStore
    from advisor.readers import read_log

    store = NotesStore(cli_env["TRAIN_ADVISOR_NOTES"])
    key = notes_key(read_log(DEMO))  # the run's stable identity (a content hash for a log), not its path
    store.set(key, "run/fix-1-2-disable-vq-refresh", "helped", note="usage stable at 20%", signal_kinds=["level_shift"])
    notes = json.loads(advisor_cli("notes", DEMO, "--json", env_extra=cli_env).stdout)
    assert notes[0]["entry_id"] == "run/fix-1-2-disable-vq-refresh" and notes[0]["status"] == "helped"
    store.set(key, "run/problem-1-relational-loss-not-scale-invariant", "dismissed")
    ranked = json.loads(advisor_cli("diagnose", DEMO, "--json", env_extra=cli_env).stdout)
    assert "run/problem-1-relational-loss-not-scale-invariant" not in [s["id"] for s in ranked["suggestions"]]


@pytest.mark.parametrize(
    "content, message",
    [
        (b"", "empty"),
        (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", "binary"),
        (b"step,loss\n", "no data rows"),
    ],
)
def test_cli_bad_logs_exit_2_with_one_line(cli_env, tmp_path, content, message):
    bad = tmp_path / "bad.csv"
    bad.write_bytes(content)
    out = tmp_path / "out.jsonl"
    res = advisor_cli("annotate", str(bad), "-o", str(out), env_extra=cli_env)
    assert res.returncode == 2, res.stdout
    assert len(res.stderr.strip().splitlines()) == 1 and "Traceback" not in res.stderr
    assert message in res.stderr
    assert not out.exists()
    missing = advisor_cli("diagnose", str(tmp_path / "missing.csv"), env_extra=cli_env)
    assert missing.returncode == 2 and "Traceback" not in missing.stderr


def test_cli_one_row_log_says_not_enough_data(cli_env, tmp_path):
    one = tmp_path / "one.csv"
    one.write_text("epoch,loss,val_loss\n0,2.3,2.4\n")
    res = advisor_cli("diagnose", str(one), "--json", env_extra=cli_env)
    assert res.returncode == 0, res.stderr
    doc = json.loads(res.stdout)
    assert doc["signals"] == [] and any("not enough data" in n or "too little" in n for n in doc["notes"])


def test_annotated_csv_rows_keep_numbers_as_numbers(kb, tmp_path):
    """`-o` on a Keras CSV log writes numbers as JSON numbers and `NA` cells as null, not as strings."""
    from advisor.annotate import annotate_run, write_annotated
    from advisor.readers import read_log

    log = tmp_path / "training.log"
    rows = ["epoch,accuracy,loss,val_loss"] + [f"{e},{0.5 + e / 100:.4f},{1.0 / (e + 1):.6f},{'NA' if e == 3 else f'{1.2 / (e + 1):.6f}'}"
                                              for e in range(12)]  # fmt: skip
    log.write_text("\n".join(rows) + "\n")
    run = read_log(log)
    out = tmp_path / "annotated.jsonl"
    assert write_annotated(run, annotate_run(run, kb=kb), out) == 12
    written = [json.loads(line) for line in out.read_text().splitlines()]
    assert written[0]["epoch"] == 0 and isinstance(written[0]["epoch"], int)
    assert written[5]["loss"] == pytest.approx(1 / 6, abs=1e-6) and isinstance(written[5]["loss"], float)
    assert written[3]["val_loss"] is None


def test_extreme_values_annotate_without_a_warning(kb, tmp_path):
    """±1e308, Inf, NaN and subnormals in a log: annotate and its text output raise and print no warning."""
    import warnings

    from advisor.annotate import annotate_run, render_text
    from advisor.readers import read_log

    rows = ["step,loss,val_loss,grad_norm"]
    for i in range(60):
        values = [1.0 / (i + 1), 1.2 / (i + 1), 0.5]
        if i in (10, 30):
            values = [1e308, -1e308, float("inf")]
        if i == 40:
            values = [float("nan"), 5e-324, 1e308]
        rows.append(f"{i}," + ",".join(repr(v) for v in values))
    log = tmp_path / "extreme.csv"
    log.write_text("\n".join(rows) + "\n")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        run = read_log(log)
        report = annotate_run(run, kb=kb)
        text = render_text(run, report)
    assert report.annotations and "×" in text


def test_cli_diagnose_text_says_strength_not_score(cli_env):
    res = advisor_cli("diagnose", DEMO, env_extra=cli_env)
    assert res.returncode == 0, res.stderr
    first = next(line for line in res.stdout.splitlines() if line.startswith("1. "))
    assert any(word in first for word in ("strong", "likely", "possible")) and "score" not in first, first
