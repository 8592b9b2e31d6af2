"""MLflow runs: the file store (`mlruns/<experiment>/<run>/metrics/<key>`, lines of `timestamp value
step`) and a SQLite tracking database (`mlflow.db`). Each run is a candidate, picked by run id or name.

Runs are found from the layout (cheap: no mlflow import); their metric histories are read through
mlflow's own client where mlflow is installed (`pip install 'train-advisor[mlflow]'`), else straight
from the files or tables. A metric logged without a step (all at step 0) is read in logging order.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import sqlite3
import warnings
from pathlib import Path
from typing import Iterator

import numpy as np

from advisor.models import AdvisorError, Run
from advisor.readers.base import Candidate
from advisor.readers.build import build_run
from advisor.roles import RoleOverrides

NAME = "mlflow"
RUN_TABLES = {"runs", "metrics", "experiments"}


# ---- finding runs -----------------------------------------------------------------------------------


def _simple_yaml(path: Path) -> dict[str, str]:
    """The flat `key: value` lines of an MLflow meta.yaml (no YAML library needed for these)."""
    out: dict[str, str] = {}
    try:
        for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
            if ":" in line and not line.startswith((" ", "-")):
                k, v = line.split(":", 1)
                out[k.strip()] = v.strip().strip("'\"")
    except OSError:
        pass
    return out


def _file_run(meta_file: Path) -> Candidate | None:
    run_dir = meta_file.parent
    if not (run_dir / "metrics").is_dir():
        return None
    meta = _simple_yaml(meta_file)
    if meta.get("lifecycle_stage") == "deleted":
        return None
    run_id = meta.get("run_id") or run_dir.name
    name = meta.get("run_name") or _tag(run_dir, "mlflow.runName") or run_id
    exp_meta = _simple_yaml(run_dir.parent / "meta.yaml")
    exp = exp_meta.get("name", run_dir.parent.name)
    try:
        started = float(meta.get("start_time", "")) / 1000.0
    except ValueError:
        started = meta_file.stat().st_mtime
    return Candidate(NAME, run_dir, f"{exp}/{name}", started, names=(name, run_id), key=run_id)


def _tag(run_dir: Path, tag: str) -> str:
    try:
        return (run_dir / "tags" / tag).read_text(encoding="utf-8", errors="replace").strip()
    except OSError:
        return ""


def find(root: Path, files: list[Path]) -> list[Candidate]:
    """Run directories of a file store anywhere below root (a run dir holds meta.yaml and metrics/)."""
    cands = []
    if (root / "meta.yaml").is_file() and (root / "metrics").is_dir():
        c = _file_run(root / "meta.yaml")
        return [c] if c else []
    for f in files:
        if f.name == "meta.yaml" and ".trash" not in f.parts:
            c = _file_run(f)
            if c:
                cands.append(c)
    return cands


def sniff(path: Path, head: bytes) -> bool:
    if not head.startswith(b"SQLite format 3\x00"):
        return False
    try:
        with contextlib.closing(_connect(path)) as con:
            names = {r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    except sqlite3.Error:
        return False
    return RUN_TABLES <= names


def _connect(path: Path) -> sqlite3.Connection:
    return sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10)


def file_candidates(path: Path) -> list[Candidate]:
    """Every live run of a tracking database, newest first."""
    try:
        with contextlib.closing(_connect(path)) as con:
            rows = con.execute(
                "SELECT r.run_uuid, r.name, r.start_time, e.name FROM runs r LEFT JOIN experiments e "
                "ON r.experiment_id = e.experiment_id WHERE r.lifecycle_stage != 'deleted' ORDER BY r.start_time DESC"
            ).fetchall()
    except sqlite3.Error as exc:
        raise AdvisorError(f"{path} is an MLflow database that cannot be read ({exc}).") from None
    if not rows:
        raise AdvisorError(f"{path} is an MLflow tracking database with no runs.")
    return [Candidate(NAME, path, f"{exp}/{name or run_id}", (start or 0) / 1000.0, names=(name or run_id, run_id), key=run_id, order=i)
            for i, (run_id, name, start, exp) in enumerate(rows)]


# ---- reading one run ----------------------------------------------------------------------------------


@contextlib.contextmanager
def _quiet_mlflow() -> Iterator[None]:
    """mlflow refuses to open a file store without this variable (MLflow 3), and logs at INFO."""
    old = os.environ.get("MLFLOW_ALLOW_FILE_STORE")
    os.environ["MLFLOW_ALLOW_FILE_STORE"] = "true"
    level = logging.getLogger("mlflow").level
    logging.getLogger("mlflow").setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        logging.getLogger("mlflow").setLevel(level)
        if old is None:
            os.environ.pop("MLFLOW_ALLOW_FILE_STORE", None)
        else:
            os.environ["MLFLOW_ALLOW_FILE_STORE"] = old


def _mlflow_client():
    try:
        from mlflow.tracking import MlflowClient
    except ImportError:
        return None
    return MlflowClient


History = dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]  # key -> (steps, values, timestamps)


def _client_history(uri: str, run_id: str) -> tuple[History, dict[str, str]]:
    Client = _mlflow_client()
    with _quiet_mlflow():
        client = Client(tracking_uri=uri)
        run = client.get_run(run_id)
        history: History = {}
        for key in run.data.metrics:
            points = client.get_metric_history(run_id, key)
            history[key] = (np.array([m.step for m in points], dtype=np.float64),
                            np.array([m.value for m in points], dtype=np.float64),
                            np.array([m.timestamp for m in points], dtype=np.float64))
        return history, dict(run.data.params)


def _file_history(run_dir: Path) -> tuple[History, dict[str, str]]:
    history: History = {}
    metrics = run_dir / "metrics"
    for f in sorted(p for p in metrics.rglob("*") if p.is_file()):
        steps, values, times = [], [], []
        for line in f.read_text(encoding="utf-8", errors="replace").splitlines():
            parts = line.split()
            if len(parts) < 2:
                continue
            try:
                t, v = float(parts[0]), float(parts[1])
                s = float(parts[2]) if len(parts) > 2 else 0.0
            except ValueError:
                continue
            steps.append(s), values.append(v), times.append(t)
        history[f.relative_to(metrics).as_posix()] = (np.array(steps), np.array(values), np.array(times))
    params = {}
    if (run_dir / "params").is_dir():
        for p in (run_dir / "params").rglob("*"):
            if p.is_file():
                params[p.relative_to(run_dir / "params").as_posix()] = p.read_text(encoding="utf-8", errors="replace").strip()
    return history, params


def _db_history(path: Path, run_id: str) -> tuple[History, dict[str, str]]:
    with contextlib.closing(_connect(path)) as con:
        rows = con.execute("SELECT key, step, value, timestamp, is_nan FROM metrics WHERE run_uuid = ? "
                           "ORDER BY key, timestamp, step", (run_id,)).fetchall()
        params = dict(con.execute("SELECT key, value FROM params WHERE run_uuid = ?", (run_id,)).fetchall())
    grouped: dict[str, list] = {}
    for key, step, value, ts, is_nan in rows:
        grouped.setdefault(key, []).append((step, math.nan if is_nan else value, ts))
    history = {k: tuple(np.array(col, dtype=np.float64) for col in zip(*pts)) for k, pts in grouped.items()}
    return history, params  # type: ignore[return-value]


def read(cand: Candidate, overrides: RoleOverrides) -> Run:
    is_db = cand.path.is_file()
    try:
        if _mlflow_client() is not None:
            uri = f"sqlite:///{cand.path.resolve()}" if is_db else cand.path.resolve().parent.parent.as_uri()
            history, params = _client_history(uri, cand.key)
        elif is_db:
            history, params = _db_history(cand.path, cand.key)
        else:
            history, params = _file_history(cand.path)
    except AdvisorError:
        raise
    except Exception as exc:  # mlflow's MlflowException, sqlite errors, unreadable files
        first = (str(exc).splitlines() or [""])[0][:200]
        raise AdvisorError(f"MLflow run {cand.label} in {cand.path} cannot be read ({type(exc).__name__}: {first}).") from None
    notes: list[str] = []
    series: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    no_step = []
    for key, (steps, values, times) in history.items():
        if len(steps) > 1 and np.all(steps == steps[0]):
            order = np.argsort(times, kind="stable")
            steps, values = np.arange(len(steps), dtype=np.float64), values[order]
            no_step.append(key)
        series[key] = (steps, values)
    if not series:
        raise AdvisorError(f"MLflow run {cand.label} has no metrics.")
    if no_step:
        notes.append(f"{', '.join(sorted(no_step))} logged without a step; read in logging order (one step per value).")
    meta: dict = {"run_name": cand.names[0] if cand.names else cand.label, "mlflow_run_id": cand.key, "run_id": f"mlflow:{cand.key}"}
    from advisor.readers.probe_store import CLIP_KEYS

    for key in CLIP_KEYS:
        if key in params:
            try:
                meta["clip_value"] = float(params[key])
                break
            except ValueError:
                pass
    return build_run(cand.path, NAME, series, overrides, notes, meta=meta)
