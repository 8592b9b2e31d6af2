"""Every reader survives any bytes and any number: a Run or one AdvisorError line, never a warning or
an internal error. Hypothesis writes the files the way each source's writer would."""

from __future__ import annotations

import json
import math
import sqlite3
import time
import warnings
from pathlib import Path

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from advisor import runstore
from advisor.models import AdvisorError, Run
from advisor.readers import read_log

SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
# Every float, subnormals, ±1e308, NaN and ±Inf included, and integers far beyond float range.
floats = st.floats(allow_nan=True, allow_infinity=True, width=64)
extremes = st.sampled_from([1e308, -1e308, 5e-324, -5e-324, 2.2250738585072014e-308, math.inf, -math.inf, math.nan, 0.0, -0.0])
numbers = st.one_of(floats, extremes, st.integers(-(10**400), 10**400), st.integers(-(2**70), 2**70))


def read_cleanly(path: Path, **kw) -> Run | None:
    """read_log(path): a Run with float64 series, or an AdvisorError of one line; no warnings."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            run = read_log(path, **kw)
        except AdvisorError as exc:
            message = str(exc)
            assert message and "\n" not in message, message
            run = None
    loud = [w for w in caught if not issubclass(w.category, (DeprecationWarning, PendingDeprecationWarning))]
    assert not loud, [f"{w.category.__name__}: {w.message}" for w in loud]
    if run is not None:
        for s in run.series.values():
            assert s.values.dtype == np.float64 and s.steps.dtype == np.float64, s.name
            assert len(s.steps) == len(s.values) and np.all(np.diff(s.steps) > 0), s.name
            assert run.meta["run_id"]
    return run


def as_float(v) -> float:
    """What a reader should make of a number: itself, or ±Inf for an integer beyond float range."""
    try:
        return float(v)
    except OverflowError:
        return math.inf if v > 0 else -math.inf


def text_number(v) -> str:
    return repr(v) if isinstance(v, float) else str(v)


# ---- bytes ------------------------------------------------------------------------------------------

HEADS = {  # a file name and the first bytes a sniffer looks at, so garbage reaches every reader
    "log.csv": b"step,loss,val_loss\n",
    "history.jsonl": b'{"step": 1, "loss": 0.5}\n',
    "trainer_state.json": b'{"log_history": [',
    "events.out.tfevents.1.host": b"",
    "run-abc.wandb": b":W&B\xe1\xbe\x00",
    "store.db": b"SQLite format 3\x00",
    "wandb_export.csv": b'"Step","a - loss","a - loss__MIN"\n',
    "records.json": b"[",
}


@SETTINGS
@given(name=st.sampled_from(sorted(HEADS)), tail=st.binary(max_size=2048))
def test_any_bytes_read_or_fail_in_one_line(tmp_path_factory, name, tail):
    path = tmp_path_factory.mktemp("bytes") / name
    path.write_bytes(HEADS[name] + tail)
    read_cleanly(path)


@SETTINGS
@given(text=st.text(max_size=400), name=st.sampled_from(["log.csv", "h.jsonl", "t.log"]))
def test_any_text_reads_or_fails_in_one_line(tmp_path_factory, text, name):
    path = tmp_path_factory.mktemp("text") / name
    path.write_bytes(text.encode("utf-8", "replace"))
    read_cleanly(path)


# ---- numbers, written as each writer writes them ----------------------------------------------------

columns = st.lists(numbers, min_size=1, max_size=40)


@SETTINGS
@given(loss=columns, val=columns)
def test_csv_numbers(tmp_path_factory, loss, val):
    n = max(len(loss), len(val))
    rows = ["step,loss,val_loss"] + [f"{i},{text_number(loss[i]) if i < len(loss) else 'NA'},{text_number(val[i]) if i < len(val) else ''}"
                                     for i in range(n)]
    path = tmp_path_factory.mktemp("csv") / "log.csv"
    path.write_text("\n".join(rows) + "\n")
    run = read_cleanly(path)
    assert run is not None and len(run.series["loss"]) == len(loss)
    np.testing.assert_array_equal(run.series["loss"].values, np.array([as_float(v) for v in loss]))


@SETTINGS
@given(rows=st.lists(st.dictionaries(st.sampled_from(["loss", "val_loss", "lr", "grad_norm"]), numbers, min_size=1), min_size=1, max_size=40),
       steps=st.one_of(st.none(), st.lists(numbers, min_size=40, max_size=40)))
def test_jsonl_numbers(tmp_path_factory, rows, steps):
    lines = []
    for i, row in enumerate(rows):
        record = dict(row)
        record["step"] = steps[i] if steps is not None else i
        lines.append(json.dumps(record))  # Python's json writes NaN, Infinity and big integers as they are
    path = tmp_path_factory.mktemp("jsonl") / "history.jsonl"
    path.write_text("\n".join(lines) + "\n")
    run = read_cleanly(path)
    if steps is None:
        assert run is not None
        for name, s in run.series.items():
            logged = [(i, r[name]) for i, r in enumerate(rows) if name in r]
            assert list(s.steps) == [i for i, _ in logged]


@SETTINGS
@given(history=st.lists(st.dictionaries(st.sampled_from(["loss", "eval_loss", "grad_norm", "learning_rate", "epoch"]), numbers, min_size=1),
                        min_size=1, max_size=30),
       best=st.one_of(st.none(), numbers))
def test_trainer_state_numbers(tmp_path_factory, history, best):
    doc = {"log_history": [dict(r, step=i) for i, r in enumerate(history)], "best_global_step": best, "best_metric": best}
    path = tmp_path_factory.mktemp("hf") / "trainer_state.json"
    path.write_text(json.dumps(doc))
    read_cleanly(path)


@SETTINGS
@given(values=st.lists(st.one_of(st.floats(width=32, allow_nan=True, allow_infinity=True), extremes.map(lambda v: float(np.float32(v)) if abs(v) < 3e38 else v)),
                       min_size=1, max_size=30))
def test_tensorboard_numbers(tmp_path_factory, values):
    from tensorboard.compat.proto.event_pb2 import Event
    from tensorboard.compat.proto.summary_pb2 import Summary
    from tensorboard.summary.writer.event_file_writer import EventFileWriter

    logdir = tmp_path_factory.mktemp("tb")
    writer = EventFileWriter(str(logdir))
    for step, v in enumerate(values):
        writer.add_event(Event(step=step, wall_time=time.time(), summary=Summary(value=[Summary.Value(tag="train/loss", simple_value=v)])))
    writer.close()
    run = read_cleanly(logdir)
    assert run is not None and len(run.series["train/loss"]) == len(values)


@SETTINGS
@given(values=st.lists(st.one_of(floats, extremes), min_size=1, max_size=30), steps=st.lists(st.integers(-(2**62), 2**62), min_size=30, max_size=30))
def test_probe_store_numbers(tmp_path_factory, values, steps):
    d = tmp_path_factory.mktemp("probe")
    con = runstore.open_for_writing(d)
    runstore.write_readings(con, [(steps[i], "loss", v, 0.0) for i, v in enumerate(values)]
                            + [(steps[i], "grad/global_norm", v, 0.0) for i, v in enumerate(values)])
    runstore.write_meta(con, {"started": 1.0, "clip_value": values[0]})
    con.close()
    assert read_cleanly(d) is not None


@SETTINGS
@given(values=st.lists(numbers, min_size=1, max_size=30), garbage=st.lists(st.text(max_size=20), max_size=3))
def test_mlflow_file_store_numbers(tmp_path_factory, values, garbage):
    base = tmp_path_factory.mktemp("mlruns")
    run_dir = base / "1" / "abc123"
    (run_dir / "metrics").mkdir(parents=True)
    (base / "1" / "meta.yaml").write_text("name: exp\n")
    (run_dir / "meta.yaml").write_text("run_id: abc123\nrun_name: r\nlifecycle_stage: active\nstart_time: 1\n")
    lines = [f"{1000 + i} {text_number(v)} {i}" for i, v in enumerate(values)] + garbage
    (run_dir / "metrics" / "loss").write_text("\n".join(lines) + "\n")
    from advisor.readers import mlflow_runs

    real = mlflow_runs._mlflow_client
    mlflow_runs._mlflow_client = lambda: None  # the layout reader: the one that parses these lines itself
    try:
        read_cleanly(base)
    finally:
        mlflow_runs._mlflow_client = real


@SETTINGS
@given(values=st.lists(numbers, min_size=1, max_size=30))
def test_wandb_export_numbers(tmp_path_factory, values):
    lines = ['"Step","run a - loss","run a - loss__MAX"'] + [f'"{i}","{text_number(v)}",""' for i, v in enumerate(values)]
    path = tmp_path_factory.mktemp("export") / "export.csv"
    path.write_text("\n".join(lines) + "\n")
    run = read_cleanly(path)
    assert run is not None and len(run.series["loss"]) == len(values)


def test_an_mlflow_database_with_extreme_values(tmp_path):
    """The tables an MLflow SQLite store has, filled with what SQLite can hold (read without mlflow)."""
    from advisor.readers import mlflow_runs

    db = tmp_path / "mlflow.db"
    con = sqlite3.connect(db)
    con.executescript("CREATE TABLE experiments (experiment_id INTEGER, name TEXT);"
                      "CREATE TABLE runs (run_uuid TEXT, name TEXT, experiment_id INTEGER, start_time INTEGER, lifecycle_stage TEXT);"
                      "CREATE TABLE metrics (key TEXT, value FLOAT, timestamp INTEGER, run_uuid TEXT, step INTEGER, is_nan BOOLEAN);"
                      "CREATE TABLE params (key TEXT, value TEXT, run_uuid TEXT);")
    con.execute("INSERT INTO experiments VALUES (1, 'e')")
    con.execute("INSERT INTO runs VALUES ('r1', 'one', 1, 5, 'active')")
    values = [1e308, -1e308, 5e-324, math.inf, -math.inf, 0.0, 2.0]
    con.executemany("INSERT INTO metrics VALUES ('loss', ?, ?, 'r1', ?, 0)", [(v, i, i) for i, v in enumerate(values)])
    con.execute("INSERT INTO metrics VALUES ('loss', 0, 99, 'r1', 99, 1)")
    con.execute("INSERT INTO params VALUES ('max_grad_norm', 'not a number', 'r1')")
    con.commit()
    con.close()
    real = mlflow_runs._mlflow_client
    mlflow_runs._mlflow_client = lambda: None
    try:
        run = read_cleanly(db)
    finally:
        mlflow_runs._mlflow_client = real
    assert run is not None and list(run.series["loss"].values[:7]) == values and math.isnan(run.series["loss"].values[-1])


# ---- JSON Lines read in chunks --------------------------------------------------------------------------

json_cells = st.one_of(numbers, st.booleans(), st.none(), st.sampled_from(["1.5", "NA", "abc", "nan", "", "inf"]),
                       st.dictionaries(st.sampled_from(["a", "b"]), floats, max_size=2))
json_lines = st.one_of(st.dictionaries(st.sampled_from(["step", "_step", "loss", "val_loss", "lr", "epoch"]), json_cells, max_size=6).map(json.dumps),
                       st.sampled_from(["", "   ", "{not json", "[1, 2]", "3", '{"step": 1, "loss"', "null", '{"a": 1}, {"a": 2}']))


def run_or_error(path: Path) -> tuple:
    run = read_cleanly(path)
    if run is None:
        return ("error",)
    return (run.axis, run.skipped, run.meta["columns"],
            [(s.name, s.role, s.steps.tolist(), s.values.tobytes(), None if s.epochs is None else s.epochs.tobytes()) for s in run.series.values()])


@SETTINGS
@given(lines=st.lists(json_lines, min_size=1, max_size=40), chunk_bytes=st.sampled_from([1, 50, 400]), end=st.sampled_from(["\n", "", "\n\n", "\r\n"]))
def test_jsonl_read_in_chunks_gives_the_run_read_whole(tmp_path_factory, lines, chunk_bytes, end):
    from advisor.readers import json_logs

    path = tmp_path_factory.mktemp("jsonl") / "history.jsonl"
    path.write_text("\n".join(lines) + end)
    whole = run_or_error(path)
    default = json_logs.CHUNK_BYTES
    json_logs.CHUNK_BYTES = chunk_bytes
    try:
        assert run_or_error(path) == whole
    finally:
        json_logs.CHUNK_BYTES = default
