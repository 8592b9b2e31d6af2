"""Reading log files of every supported format (CSV, JSON Lines, TensorBoard, trainer_state, probe store), messy ones included, into Runs."""

from __future__ import annotations

import json
import math
import os
import sqlite3
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import shared_path

from advisor import runstore
from advisor.detectors import detect
from advisor.readers import read_log
from advisor.models import AdvisorError


def write(path: Path, text: str, newline: str = "\n") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as fh:
        fh.write(text.replace("\n", newline))
    return path


def tb_events(logdir: Path, scalars: dict[str, list[tuple[int, float]]]) -> Path:
    """An event file written with tensorboard's own writer (no TensorFlow, no torch)."""
    from tensorboard.compat.proto.event_pb2 import Event
    from tensorboard.compat.proto.summary_pb2 import Summary
    from tensorboard.summary.writer.event_file_writer import EventFileWriter

    logdir.mkdir(parents=True, exist_ok=True)
    writer = EventFileWriter(str(logdir))
    rows = sorted((step, tag, value) for tag, points in scalars.items() for step, value in points)
    for step, tag, value in rows:
        writer.add_event(Event(step=step, wall_time=time.time(), summary=Summary(value=[Summary.Value(tag=tag, simple_value=value)])))
    writer.close()
    return logdir


# ---- CSV ------------------------------------------------------------------------------------------


def test_keras_csvlogger_with_crcrlf_line_ends():
    run = read_log(shared_path("real-logs", "keras-mnist-cnn.csv"))
    assert (run.format, run.axis) == ("csv", "epoch")
    assert set(run.series) == {"accuracy", "learning_rate", "loss", "val_accuracy", "val_loss"}
    val = run.series["val_loss"]
    assert len(val) == 30 and val.steps[0] == 0 and val.steps[-1] == 29
    assert val.epochs is not None and val.epochs[5] == 5
    assert run.series["val_accuracy"].higher_is_better
    assert run.skipped == []


def test_a_dot_log_file_that_is_csv():
    run = read_log(shared_path("real-logs", "keras-fer-resnet50.log"))
    assert run.format == "csv" and len(run.series["val_loss"]) == 17


def test_na_cells_are_missing_and_nan_inf_cells_are_values(tmp_path):
    p = write(tmp_path / "training.log", "epoch,loss,val_loss\n0,1.0,NA\n1,0.8,0.9\n2,nan,NA\n3,inf,0.7\n4,0.5,\n", "\r\r\n")
    run = read_log(p)
    loss, val = run.series["loss"], run.series["val_loss"]
    assert list(val.steps) == [1, 3] and list(val.values) == [0.9, 0.7]
    assert len(loss) == 5 and math.isnan(loss.values[2]) and math.isinf(loss.values[3])
    kinds = {s.kind for s in detect(run)}
    assert "nan_inf" in kinds


def test_lightning_metrics_csv_sparse_rows_and_step_epoch_split(tmp_path):
    rows = ["epoch,step,train_loss_step,train_loss_epoch,val_loss,val_acc"]
    step = 0
    for epoch in range(6):
        for _ in range(3):
            rows.append(f"{epoch},{step},{2.0 / (step + 1):.4f},,,")
            step += 1
        rows.append(f"{epoch},{step - 1},,{2.0 / step:.4f},,")
        rows.append(f"{epoch},{step - 1},,,{2.5 / step:.4f},{0.5 + epoch / 20:.3f}")
    p = write(tmp_path / "lightning_logs" / "version_0" / "metrics.csv", "\n".join(rows) + "\n")
    run = read_log(p)
    assert run.axis == "step"
    assert run.series["train_loss_step"].role == run.series["train_loss_epoch"].role == "loss"
    assert len(run.series["train_loss_step"]) == 18 and len(run.series["train_loss_epoch"]) == 6
    val = run.series["val_loss"]
    assert list(val.steps) == [2, 5, 8, 11, 14, 17] and list(val.epochs) == [0, 1, 2, 3, 4, 5]
    assert run.series["val_acc"].role == "val_metric"


def test_lightning_logs_directory_reads_the_newest_version_and_names_the_others(tmp_path):
    base = tmp_path / "lightning_logs"
    for v in (0, 1, 2):
        write(base / f"version_{v}" / "metrics.csv", "epoch,step,train_loss\n" + "".join(f"0,{i},{1 + v - i / 10}\n" for i in range(5)))
        os.utime(base / f"version_{v}" / "metrics.csv", (1_000_000 + v, 1_000_000 + v))
    run = read_log(tmp_path)
    assert run.path.endswith(os.path.join("version_2", "metrics.csv"))
    assert run.series["train_loss"].values[0] == 3
    assert any("version_0" in n and "version_1" in n and "newest" in n for n in run.skipped)


def test_real_lightning_csv_with_a_test_row():
    run = read_log(shared_path("real-logs", "lightning-chem-mse.csv"))
    assert run.series["Valid MSE"].role == "val_loss" and len(run.series["Valid MSE"]) == 100
    assert run.series["Train loss"].role == "loss" and list(run.series["Train loss"].steps) == [49, 99]


def test_non_numeric_columns_and_cells_are_skipped_with_a_note(tmp_path):
    p = write(tmp_path / "log.csv", "step,loss,run_name,acc\n1,1.0,a,0.1\n2,0.9,a,oops\n3,0.8,a,0.3\n4,0.7,a,0.4\n")
    run = read_log(p)
    assert "run_name" not in run.series and len(run.series["acc"]) == 3
    assert any("run_name" in n for n in run.skipped) and any("'acc'" in n for n in run.skipped)


def test_malformed_csv_lines_are_skipped_with_a_note(tmp_path):
    p = write(tmp_path / "log.csv", "step,loss\n1,1.0\n2,0.9,extra,fields\n3,0.8\n")
    run = read_log(p)
    assert list(run.series["loss"].steps) == [1, 3]
    assert any("malformed" in n for n in run.skipped)


# ---- resumed runs and repeated steps -----------------------------------------------------------------


def test_a_resume_that_goes_back_keeps_the_later_segment(tmp_path):
    first = "".join(f"{s},{10 - s / 100}\n" for s in range(0, 1000, 50))  # killed at 950
    second = "".join(f"{s},{5 - s / 1000}\n" for s in range(800, 1500, 100))  # resumed from 800
    run = read_log(write(tmp_path / "log.csv", "step,loss\n" + first + second))
    loss = run.series["loss"]
    assert np.all(np.diff(loss.steps) > 0)
    assert list(loss.steps[loss.steps >= 800]) == list(range(800, 1500, 100))  # 850, 900, 950 from the first try are gone
    assert loss.values[list(loss.steps).index(800)] == pytest.approx(4.2)
    assert any("goes back from 950 to 800" in n for n in run.skipped)


def test_a_repeated_step_keeps_the_last_written_value(tmp_path):
    lines = [json.dumps({"step": 1, "loss": 1.0}), json.dumps({"step": 2, "loss": 0.9}), json.dumps({"step": 2, "loss": 0.8}),
             json.dumps({"step": 2, "val_loss": 1.1}), json.dumps({"step": 3, "loss": 0.7})]
    run = read_log(write(tmp_path / "h.jsonl", "\n".join(lines) + "\n"))
    assert list(run.series["loss"].values) == [1.0, 0.8, 0.7]
    assert list(run.series["val_loss"].steps) == [2]
    assert any("more than once" in n for n in run.skipped)


def test_a_step_column_that_jumps_back_all_the_time_is_read_as_unordered(tmp_path):
    rows = "".join(f"{s},{1 / (s + 1)}\n{s // 10},{2 / (s + 1)}\n" for s in range(0, 400, 10))
    run = read_log(write(tmp_path / "log.csv", "step,loss\n" + rows))
    assert len(run.series["loss"]) > 30
    assert any("unordered" in n for n in run.skipped)


# ---- JSON Lines and JSON -----------------------------------------------------------------------------


def test_wandb_history_style_jsonl():
    run = read_log(shared_path("fixtures", "jepa_run.jsonl"))
    assert (run.format, run.axis) == ("jsonl", "step")
    usage = run.series["vq/usage"]
    assert len(usage) == 76 and usage.role == "usage"
    # epochs reach the per-100-step rows from the epoch rows around them (95 steps per epoch)
    at_3000 = float(usage.epochs[list(usage.steps).index(3000)])
    assert 31 < at_3000 < 32
    assert run.series["train/relational"].component_of == "train/total"


def test_jsonl_prefers_the_users_step_over_wandb_step_and_keeps_nan_literals(tmp_path):
    lines = []
    for i in range(20):
        row = {"_step": i, "_runtime": i * 1.5, "trainer/global_step": i * 10, "train/loss": 1 / (i + 1)}
        if i == 7:
            row["train/loss"] = float("nan")
        if i % 5 == 4:
            row = {"_step": i, "trainer/global_step": i * 10, "eval/loss": None if i == 9 else 0.5}
        lines.append(json.dumps(row))
    lines.append('{"_step": 20, "trainer/global_step": 200, "train/loss": Infinity, "note": "resumed here"}')
    lines.append('{"_step": 21, "trainer/global_st')  # the writer was killed mid-line
    run = read_log(write(tmp_path / "history.jsonl", "\n".join(lines) + "\n"))
    assert run.axis == "trainer/global_step"
    loss = run.series["train/loss"]
    assert math.isnan(loss.values[list(loss.steps).index(70)]) and math.isinf(loss.values[-1])
    assert list(run.series["eval/loss"].steps) == [40, 140, 190]  # null at step 90 is missing, not NaN
    assert any("not JSON objects" in n for n in run.skipped)
    assert "note" not in run.series


def test_json_array_of_records(tmp_path):
    p = write(tmp_path / "hist.json", json.dumps([{"step": i, "loss": 1 / (i + 1)} for i in range(10)]))
    run = read_log(p)
    assert run.format == "jsonl" and len(run.series["loss"]) == 10


# ---- Hugging Face trainer_state.json -----------------------------------------------------------------


def test_trainer_state_skips_the_summary_row_and_keeps_best_checkpoint():
    run = read_log(shared_path("real-logs", "hf-whisper-small-hi.json"))
    assert (run.format, run.axis) == ("trainer_state", "step")
    assert "train_loss" not in run.series and "train_runtime" not in run.series
    assert any("summary row" in n for n in run.skipped)
    assert run.meta["best_model_checkpoint"].endswith("checkpoint-4000") and run.meta["trainer_best_step"] == 4000
    assert run.series["eval_wer"].role == "val_metric" and not run.series["eval_wer"].higher_is_better
    assert list(run.series["eval_loss"].epochs) == pytest.approx([2.44, 4.89, 7.33, 9.78, 12.22])


def test_hf_output_dir_reads_the_latest_checkpoint(tmp_path):
    for step in (100, 200, 300):
        state = {"log_history": [{"step": s, "epoch": s / 100, "loss": 1 / s} for s in range(10, step + 1, 10)], "global_step": step}
        write(tmp_path / "out" / f"checkpoint-{step}" / "trainer_state.json", json.dumps(state))
    run = read_log(tmp_path / "out")
    assert run.series["loss"].steps[-1] == 300
    assert run.skipped == []  # checkpoints of one run are not "other runs"


# ---- TensorBoard -----------------------------------------------------------------------------------


def test_tensorboard_event_file_and_directory(tmp_path):
    d = tb_events(tmp_path / "run", {"train/loss": [(i, 2.0 / (i + 1)) for i in range(50)],
                                     "val/loss": [(i, 2.2 / (i + 1)) for i in range(0, 50, 10)], "epoch": [(i, i // 10) for i in range(50)]})
    run = read_log(d)
    assert (run.format, run.axis) == ("tensorboard", "step")
    assert run.series["train/loss"].role == "loss" and len(run.series["train/loss"]) == 50
    assert list(run.series["val/loss"].epochs) == [0, 1, 2, 3, 4]
    event_file = next(d.iterdir())
    assert set(read_log(event_file).series) == {"train/loss", "val/loss"}


def test_tensorboard_split_subdirectories_are_one_run(tmp_path):
    tb_events(tmp_path / "logs" / "train", {"epoch_loss": [(i, 1.0 / (i + 1)) for i in range(10)]})
    tb_events(tmp_path / "logs" / "validation", {"epoch_loss": [(i, 1.2 / (i + 1)) for i in range(10)]})
    run = read_log(tmp_path / "logs")
    assert run.series["train/epoch_loss"].role == "loss"
    assert run.series["validation/epoch_loss"].role == "val_loss"
    assert run.skipped == []


def test_several_tensorboard_runs_read_the_newest(tmp_path):
    for i, name in enumerate(["Jan01_run", "Jan02_run"]):
        d = tb_events(tmp_path / "runs" / name, {"loss": [(s, float(i)) for s in range(5)]})
        for f in d.iterdir():
            os.utime(f, (2_000_000 + i, 2_000_000 + i))
    run = read_log(tmp_path / "runs")
    assert run.series["loss"].values[0] == 1.0
    assert any("Jan01_run" in n for n in run.skipped)


# ---- the probe's run store ---------------------------------------------------------------------------


def _store(path: Path, finished: bool = True) -> Path:
    con = runstore.open_for_writing(path)
    rows = []
    for step in range(0, 100, 5):
        rows += [(step, "loss", 2.0 / (step + 1), 0.0), (step, "lr", 1e-3, 0.0), (step, "grad/global_norm", 1.0, 0.0),
                 (step, "embeddings/effective_rank", 10.0, 0.0), (step, "act/encoder.0/zero_fraction", 0.5, 0.0)]
    rows.append((50, "val_loss", 0.5, 0.0))
    runstore.write_readings(con, rows)
    meta = {"started": 1.0, "every": 5, "clip_value": 1.0}
    if finished:
        meta["finished"] = 2.0
    runstore.write_meta(con, meta)
    con.close()
    return path


def test_probe_run_store_directory_and_db_file(tmp_path):
    d = _store(tmp_path / "run")
    run = read_log(d)
    assert (run.format, run.axis, run.live) == ("probe", "step", False)
    assert run.series["loss"].role == "loss" and run.series["lr"].role == "lr" and run.series["val_loss"].role == "val_loss"
    assert run.series["grad/global_norm"].role == "probe"
    assert run.series["embeddings/effective_rank"].role == "probe"
    assert run.meta["every"] == 5 and run.meta["clip_value"] == 1.0
    assert read_log(d / "run.db").format == "probe"


def test_a_store_without_finished_is_live(tmp_path):
    assert read_log(_store(tmp_path / "run", finished=False)).live


# ---- roles file --------------------------------------------------------------------------------------


def test_roles_file_renames_roles_and_sets_the_clip_value(tmp_path):
    p = write(tmp_path / "log.csv", "it,objective_a,heldback score,ep\n" + "".join(f"{i},{1 / (i + 1)},{0.5 + i / 100},{i // 10}\n" for i in range(30)))
    roles = write(tmp_path / "roles.toml", '[roles]\n"heldback score" = "val_metric"\n"nope" = "lr"\n[higher_is_better]\n"heldback score" = true\n'
                                           '[settings]\nstep = "it"\nepoch = "ep"\nclip_value = 0.5\n')
    run = read_log(p, roles_file=roles)
    assert run.axis == "it"
    assert run.series["heldback score"].role == "val_metric" and run.series["heldback score"].higher_is_better
    assert run.series["objective_a"].epochs[-1] == 2
    assert run.meta["clip_value"] == 0.5
    assert any("'nope'" in n for n in run.skipped)


# ---- bad input ---------------------------------------------------------------------------------------


def test_bad_inputs_raise_one_sentence(tmp_path):
    cases = {
        "missing": tmp_path / "nope.csv",
        "empty": write(tmp_path / "empty.csv", ""),
        "header only": write(tmp_path / "header.csv", "step,loss\n"),
        "binary": tmp_path / "weights.bin",
        "text": write(tmp_path / "notes.txt", "Epoch 1/10\nsome words here\nmore words\n"),
        "sqlite": tmp_path / "other.db",
        "json": write(tmp_path / "config.json", '"just a string"'),
        "no header": write(tmp_path / "raw.csv", "1,0.5\n2,0.4\n"),
        "empty dir": tmp_path / "emptydir",
        "bad jsonl": write(tmp_path / "bad.jsonl", "{not json\n{also not\n[1, 2]\n"),
        "bad trainer state": write(tmp_path / "trainer_state.json", '{"log_history": []}'),
    }
    (tmp_path / "weights.bin").write_bytes(bytes(range(256)) * 64)
    con = sqlite3.connect(tmp_path / "other.db")
    con.execute("CREATE TABLE t (x)")
    con.commit()
    con.close()
    (tmp_path / "emptydir").mkdir()
    for label, path in cases.items():
        with pytest.raises(AdvisorError) as err:
            read_log(path)
        message = str(err.value)
        assert message.endswith(".") and "\n" not in message, (label, message)


def test_an_empty_probe_store_is_an_error(tmp_path):
    con = runstore.open_for_writing(tmp_path / "run")
    con.close()
    with pytest.raises(AdvisorError, match="no readings"):
        read_log(tmp_path / "run")


def test_a_one_row_log_is_read_with_a_note_and_stays_quiet(tmp_path):
    run = read_log(write(tmp_path / "one.csv", "epoch,loss,val_loss\n0,1.0,1.2\n"))
    assert any("too little" in n for n in run.skipped)
    assert detect(run) == []


def test_a_tensorboard_file_that_is_corrupt_has_no_scalars(tmp_path):
    p = tmp_path / "events.out.tfevents.123.host"
    p.write_bytes(b"\x00" * 64)
    with pytest.raises(AdvisorError):
        read_log(p)


def test_jsonl_rows_with_other_keys_or_key_orders_land_in_the_right_columns(tmp_path):
    rows = [{"step": 1, "loss": 1.0, "a": 10.0}, {"step": 2, "loss": 0.9, "b": 20.0}, {"loss": 0.8, "a": 11.0, "step": 3},
            {"b": 21.0, "step": 4, "loss": 0.7}, {"step": 5, "loss": None, "a": "12"}, {"step": 6, "loss": 0.5}]
    run = read_log(write(tmp_path / "h.jsonl", "\n".join(json.dumps(r) for r in rows) + "\n"))
    assert list(run.series["a"].steps) == [1, 3, 5] and list(run.series["a"].values) == [10.0, 11.0, 12.0]
    assert list(run.series["b"].steps) == [2, 4] and list(run.series["b"].values) == [20.0, 21.0]
    assert list(run.series["loss"].steps) == [1, 2, 3, 4, 6]
    assert run.meta["columns"][:2] == ["step", "loss"]


def test_a_fifo_is_refused_not_waited_on(tmp_path):
    fifo = tmp_path / "log.csv"
    os.mkfifo(fifo)
    with pytest.raises(AdvisorError, match="not a regular file"):
        read_log(fifo)


def _per_line_run(path: Path):
    """The straightforward reading of JSON Lines: each line parsed alone, each column cell by cell."""
    from advisor.readers.build import Table, cells_column, skipped_columns_note, table_to_run
    from advisor.roles import RoleOverrides

    literals = {"NaN": "nan", "Infinity": "inf", "-Infinity": "-inf"}
    records, bad = [], []
    for i, line in enumerate(path.read_text().split("\n"), 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line, parse_constant=literals.__getitem__)
        except json.JSONDecodeError:
            bad.append(i)
            continue
        records.append(record)
    notes = [f"Skipped {len(bad)} line(s) that are not JSON objects (line {', '.join(map(str, bad))})."]
    names = list(dict.fromkeys(k for r in records for k in r))  # the log's order: first row, then place in it
    columns, non_numeric = {}, []
    for name in names:
        column = cells_column(name, [r.get(name) for r in records], len(records), notes)
        if column is None:
            non_numeric.append(name)
        else:
            columns[name] = column
    skipped_columns_note(non_numeric, notes)
    return table_to_run(path, Table(columns, len(records), notes), RoleOverrides(), "jsonl")


@pytest.mark.parametrize("chunk_bytes", [64, 4096, None])
def test_irregular_jsonl_reads_as_the_per_line_parse_does_in_any_chunk_size(tmp_path, monkeypatch, chunk_bytes):
    from advisor.readers import json_logs

    if chunk_bytes:
        monkeypatch.setattr(json_logs, "CHUNK_BYTES", chunk_bytes)
    rng = np.random.default_rng(3)
    lines = []
    for i in range(3000):
        row = {"step": i, "loss": float(2 * np.exp(-i / 800) + 0.05 * rng.standard_normal())}
        if i >= 10:
            row["lr"] = 1e-3 * min(1.0, i / 100)  # a key that appears late
        if i % 7 == 3:
            row = dict(reversed(list(row.items())))  # another key order
        if i % 250 == 0 and i:
            row["val_loss"] = row["loss"] + 0.1
            row["phase"] = "eval"  # text: a column that is skipped
        if i % 97 == 5 and 1000 < i < 2000:  # odd cells in the middle of rows that are numbers at both ends
            row["grad_norm"] = [None, "NaN", "12.5", float("nan"), "inf"][(i // 97) % 5]  # Python's json writes NaN as it is
        elif i % 3 == 0:
            row["grad_norm"] = 1.0 + (i % 11) / 10
        if i % 5 == 1:
            row["loss_scale"] = {2201: 10**400, 2206: "n/a"}.get(i, 65536.0)  # an integer beyond float range
        if i == 1202:
            row["lr"] = "warmup over"  # one bad cell in a numeric column
        lines.append(json.dumps(row))
    lines[1500] = "this line is not JSON"
    lines.append('{"step": 3000, "loss": 0.')  # the writer was killed mid-line
    path = write(tmp_path / "history.jsonl", "\n".join(lines))

    run, expected = read_log(path), _per_line_run(path)
    assert run.axis == expected.axis == "step"
    assert run.meta["columns"] == expected.meta["columns"] == ["step", "loss", "grad_norm", "loss_scale", "lr", "val_loss"]
    assert list(run.series) == list(expected.series)
    for name, s in expected.series.items():
        got = run.series[name]
        assert (got.role, got.higher_is_better, got.component_of) == (s.role, s.higher_is_better, s.component_of), name
        np.testing.assert_array_equal(got.steps, s.steps, err_msg=name)
        np.testing.assert_array_equal(got.values, s.values, err_msg=name)
    assert run.skipped == expected.skipped
    assert "(line 1501, 3001)" in run.skipped[0] and any("phase" in n for n in run.skipped)
    assert np.isinf(run.series["grad_norm"].values).any() and np.isnan(run.series["grad_norm"].values).any()
    assert np.isinf(run.series["loss_scale"].values).sum() == 1
