"""`advisor annotate/diagnose/explain --run` and the TUI on tracker sources written by the real
libraries: a W&B folder of runs, a W&B chart export, MLflow (file store and SQLite), TensorBoard."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tracker_runs import export_csv, mlflow_stores, tensorboard_runs, wandb_run


@pytest.fixture(scope="module")
def sources(tmp_path_factory) -> dict[str, Path]:
    pytest.importorskip("wandb")
    pytest.importorskip("mlflow")
    base = tmp_path_factory.mktemp("sources")
    os.environ["WANDB_SILENT"] = "true"
    wandb_run(base / "wb", "first-try", [1.0 / (i + 1) for i in range(30)])
    wandb_run(base / "wb", "second-try", [2.0 - i / 30 for i in range(30)])
    mlruns, db = mlflow_stores(base / "ml")
    return {"wandb": base / "wb", "export": export_csv(base / "wandb_export.csv"), "mlruns": mlruns, "mlflow.db": db,
            "tensorboard": tensorboard_runs(base / "runs")}


def advisor(*args, env):
    return subprocess.run([sys.executable, "-m", "advisor.cli", *args], capture_output=True, text=True, env=env, timeout=300)


@pytest.fixture
def env(built_kb_path, tmp_path):
    return dict(os.environ, TRAIN_ADVISOR_DB=str(built_kb_path), TRAIN_ADVISOR_NOTES=str(tmp_path / "notes.db"))


CASES = [("wandb", "first-try", "wandb"), ("export", "sweep-8 lr=1e-3", "wandb_export"), ("mlruns", "baseline", "mlflow"),
         ("mlflow.db", "baseline", "mlflow"), ("tensorboard", "lr_3e-4", "tensorboard")]


@pytest.mark.slow
@pytest.mark.parametrize("source,run,fmt", CASES, ids=[c[0] for c in CASES])
def test_annotate_and_diagnose_pick_the_run(sources, env, source, run, fmt):
    res = advisor("annotate", str(sources[source]), "--run", run, "--json", env=env)
    assert res.returncode == 0, res.stderr
    doc = json.loads(res.stdout)
    assert doc["format"] == fmt and doc["series"]
    assert any("--run" in n for n in doc["skipped"]) or source == "tensorboard" and doc["skipped"]
    res = advisor("diagnose", str(sources[source]), "--run", run, "--json", env=env)
    assert res.returncode == 0, res.stderr
    assert "suggestions" in json.loads(res.stdout)


@pytest.mark.slow
def test_explain_picks_the_run_and_a_wrong_name_is_one_line(sources, env):
    res = advisor("explain", str(sources["mlflow.db"]), "--run", "bigger-lr", "--json", env=env)
    assert res.returncode == 0, res.stderr
    bad = advisor("annotate", str(sources["wandb"]), "--run", "no-such-run", env=env)
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1 and "no run named 'no-such-run'" in bad.stderr
    assert "its runs: wandb/offline-run-" in bad.stderr


@pytest.mark.slow
async def test_the_tui_opens_the_chosen_run(sources, built_kb_path, tmp_path):
    from tui.app import AdvisorApp
    from tui.session import Pipeline

    app = AdvisorApp(target=str(sources["mlruns"]), kb_path=built_kb_path, notes_path=tmp_path / "notes.db", pipeline=Pipeline(run="baseline"))
    async with app.run_test(size=(100, 30)) as pilot:
        for _ in range(600):
            session = app.main.session
            if app.main.error is not None or (session is not None and session.run is not None and app.main.generation >= 1):
                break
            await pilot.pause(0.05)
        assert app.main.error is None, app.main.error
        run = app.main.session.run
        assert run.format == "mlflow" and run.meta["run_name"] == "baseline"
