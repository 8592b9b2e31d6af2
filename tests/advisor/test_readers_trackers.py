"""Tracker sources written by the real libraries in the test: a W&B offline run, MLflow file and
SQLite stores, several TensorBoard runs from torch's SummaryWriter; and the W&B chart export."""

from __future__ import annotations

import math
import os
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest

from advisor.models import AdvisorError
from advisor.readers import list_runs, mlflow_runs, read_log, wandb_runs
from tracker_runs import export_csv, mlflow_stores, tensorboard_runs, wandb_run

# ---- W&B ----------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def wandb_dir(tmp_path_factory) -> tuple[Path, Path, Path]:
    pytest.importorskip("wandb")  # an optional extra: the reader says so when it is missing (tested below)
    base = tmp_path_factory.mktemp("wb")
    os.environ["WANDB_SILENT"] = "true"
    losses = [2.0 / (i + 1) for i in range(40)]
    losses[20] = math.nan
    first = wandb_run(base, "first-try", [1.0] * 30)
    os.utime(next(first.glob("run-*.wandb")), (1_000_000, 1_000_000))
    import wandb

    second = wandb_run(base, "warm-restart", losses, extra={"hist": wandb.Histogram(np.arange(10))})
    return base, first, second


@pytest.mark.slow
def test_wandb_offline_run_directory(wandb_dir):
    base, first, second = wandb_dir
    run = read_log(second)
    assert run.format == "wandb" and run.axis == "_step"
    loss = run.series["train/loss"]
    assert loss.role == "loss" and len(loss) == 40 and math.isnan(loss.values[20]) and loss.values[0] == 2.0
    assert run.series["val/loss"].role == "val_loss" and list(run.series["val/loss"].steps) == list(range(9, 40, 10))
    assert run.meta["run_name"] == "warm-restart" and run.meta["run_id"].startswith("wandb:")
    assert run.meta["clip_value"] == 1.0 and run.meta["finished"] is True
    assert "hist" not in run.series and any("non-scalar" in n and "hist" in n for n in run.skipped)
    assert read_log(next(second.glob("run-*.wandb"))).series["train/loss"].values[0] == 2.0  # the .wandb file itself


@pytest.mark.slow
def test_wandb_folder_of_runs_reads_the_newest_or_the_one_named(wandb_dir):
    base, first, second = wandb_dir
    run = read_log(base)
    assert run.meta["run_name"] == "warm-restart"
    assert any(first.name in n and "--run" in n for n in run.skipped)
    by_name = read_log(base, run="first-try")  # the display name, read from the run's records
    assert by_name.meta["run_name"] == "first-try" and by_name.series["train/loss"].values[-1] == 1.0
    run_id = by_name.meta["run_id"].removeprefix("wandb:")
    assert read_log(base, run=run_id).meta["run_name"] == "first-try"
    with pytest.raises(AdvisorError, match="no run named"):
        read_log(base, run="nope")


@pytest.mark.slow
def test_wandb_framing_scan_reads_what_the_sdk_reader_reads(wandb_dir, monkeypatch):
    _, _, second = wandb_dir
    sdk = read_log(second)
    monkeypatch.setattr(wandb_runs, "_scan_sdk", lambda path: None)  # as on SDKs without the Python reader
    own = read_log(second)
    assert set(own.series) == set(sdk.series)
    np.testing.assert_array_equal(own.series["train/loss"].values, sdk.series["train/loss"].values)


@pytest.mark.slow
def test_a_cut_wandb_log_reads_the_records_before_the_cut(wandb_dir, tmp_path):
    _, _, second = wandb_dir
    src = next(second.glob("run-*.wandb"))
    cut = tmp_path / src.name
    cut.write_bytes(src.read_bytes()[: src.stat().st_size * 2 // 3])
    run = read_log(cut)
    assert 0 < len(run.series["train/loss"]) < 40
    assert any("unfinished record" in n for n in run.skipped)


def test_without_wandb_installed_the_error_says_how_to_get_it(tmp_path, monkeypatch):
    log = tmp_path / "run-abc123.wandb"
    log.write_bytes(b":W&B\xe1\xbe\x00" + b"\x00" * 64)
    monkeypatch.setitem(sys.modules, "wandb", None)
    monkeypatch.setitem(sys.modules, "wandb.proto", None)
    with pytest.raises(AdvisorError, match=r"pip install 'train-advisor\[wandb\]'"):
        read_log(log)


# ---- the W&B chart export ---------------------------------------------------------------------------


def test_wandb_chart_export_picks_a_run_by_name(tmp_path):
    p = export_csv(tmp_path / "wandb_export_2026-01-01.csv")
    assert [c.label for c in list_runs(p)] == ["sweep-7 lr=3e-4", "sweep-8 lr=1e-3"]
    first = read_log(p)
    assert first.format == "wandb_export" and first.axis == "step"
    assert set(first.series) == {"train/loss"} and len(first.series["train/loss"]) == 50
    assert any("sweep-8 lr=1e-3" in n and "--run" in n for n in first.skipped)
    assert any("__MIN/__MAX" in n for n in first.skipped)
    other = read_log(p, run="sweep-8 lr=1e-3")
    assert len(other.series["train/loss"]) == 30 and other.series["train/loss"].values[0] == 1.5
    assert other.meta["run_name"] == "sweep-8 lr=1e-3" and other.meta["run_id"] != first.meta["run_id"]
    assert read_log(p, run="sweep-8").meta["run_name"] == "sweep-8 lr=1e-3"  # a unique partial name
    with pytest.raises(AdvisorError, match="matches 2 runs"):
        read_log(p, run="sweep")


# ---- MLflow -----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def ml_stores(tmp_path_factory) -> tuple[Path, Path]:
    pytest.importorskip("mlflow")
    return mlflow_stores(tmp_path_factory.mktemp("mlflow"))


def _check_baseline(run) -> None:
    assert run.format == "mlflow" and run.meta["run_name"] == "baseline"
    assert run.series["train/loss"].role == "loss" and len(run.series["train/loss"]) == 30
    val = run.series["val_loss"]
    assert val.role == "val_loss" and math.isnan(val.values[12]) and val.values[0] == pytest.approx(2.2)
    assert list(run.series["throughput"].values) == [3.0, 2.0, 1.0]
    assert any("throughput" in n and "without a step" in n for n in run.skipped)
    assert run.meta["clip_value"] == 0.5 and run.meta["run_id"].startswith("mlflow:")


@pytest.mark.slow
@pytest.mark.parametrize("store", ["file", "sqlite"])
@pytest.mark.parametrize("client", [True, False], ids=["mlflow-client", "layout"])
def test_mlflow_runs_by_name_and_id(ml_stores, monkeypatch, store, client):
    if not client:
        monkeypatch.setattr(mlflow_runs, "_mlflow_client", lambda: None)  # as where mlflow is not installed
    path = ml_stores[0] if store == "file" else ml_stores[1]
    newest = read_log(path)
    assert newest.meta["run_name"] == "bigger-lr" and any("baseline" in n for n in newest.skipped)
    baseline = read_log(path, run="baseline")
    _check_baseline(baseline)
    run_id = baseline.meta["mlflow_run_id"]
    assert read_log(path, run=run_id).meta["run_name"] == "baseline"
    if store == "file":  # a run's own directory reads alone
        run_dir = next(p for p in path.glob("*/*") if p.name == run_id)
        _check_baseline(read_log(run_dir))


# ---- TensorBoard: a log directory of several runs ----------------------------------------------------


def test_tensorboard_logdir_of_several_runs_picks_by_name(tmp_path):
    tensorboard_runs(tmp_path / "runs")
    newest = read_log(tmp_path / "runs")
    assert newest.series["train/loss"].values[0] == 3.0
    assert any("lr_1e-3" in n and "lr_3e-4" in n for n in newest.skipped)
    chosen = read_log(tmp_path / "runs", run="lr_1e-3")
    assert chosen.series["train/loss"].values[0] == 1.0 and chosen.format == "tensorboard"
    assert chosen.meta["run_id"].startswith("sha256:") and chosen.meta["run_id"] != newest.meta["run_id"]


# ---- identity ---------------------------------------------------------------------------------------


def test_run_id_follows_the_content_not_the_path(tmp_path):
    a = tmp_path / "a.csv"
    a.write_text("step,loss\n" + "".join(f"{i},{1 / (i + 1)}\n" for i in range(20)))
    b = tmp_path / "moved" / "a.csv"
    b.parent.mkdir()
    shutil.copy(a, b)
    assert read_log(a).meta["run_id"] == read_log(b).meta["run_id"]
    with open(b, "a") as fh:
        fh.write("20,0.01\n")
    assert read_log(a).meta["run_id"] != read_log(b).meta["run_id"]


def test_a_probe_store_keeps_its_own_run_id(tmp_path):
    from advisor import runstore

    con = runstore.open_for_writing(tmp_path / "run")
    runstore.write_readings(con, [(s, "loss", 1.0 / (s + 1), 0.0) for s in range(10)])
    runstore.write_meta(con, {"run_id": "0f3c", "started": 1.0})
    con.close()
    assert read_log(tmp_path / "run").meta["run_id"] == "probe:0f3c"
