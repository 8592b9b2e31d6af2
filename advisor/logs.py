"""Read a training log into a `Run`: one `Series` per metric on the log's own step axis.

Formats, recognised by content (not only by extension):

- CSV: Keras CSVLogger (also `.log` files; `NA` cells; `\\r\\r\\n` line ends), Lightning CSVLogger
  `metrics.csv` (sparse rows, `<name>_step`/`<name>_epoch` splits, `lightning_logs/version_N/`).
- JSON Lines: W&B history exports and similar (sparse keys; `_step`/`step`/`global_step`); a JSON
  array of records reads the same way.
- TensorBoard event files or directories (tensorboard's EventAccumulator; no TensorFlow needed).
- Hugging Face `trainer_state.json` (`log_history`; `best_metric`, `best_model_checkpoint` go to meta).
- The probe's run store (a directory holding run.db, or the .db file).

Messy logs: missing cells are simply absent from a series; `nan`/`inf` written in the log are kept as
NaN/Inf values (the `nan_inf` detector reports them). A step written twice keeps its last-written
value; a resumed run whose step goes back keeps the later segment for the steps it overlaps. A
directory with several runs reads the newest and names the others in `Run.skipped`.

Column roles (loss, val_loss, loss_component, grad_norm, ...) come from the names (advisor.roles);
`roles_file` points at a TOML file that overrides them and can name the step/epoch columns, a
gradient clip value and columns to ignore (format in advisor.roles' docstring).

Errors: a path that is missing, empty, binary, of an unknown format or without numeric data raises
`AdvisorError` with one sentence. A log with a single data row is read (a Run whose `skipped` says it
is too short to judge); the detectors need more points and stay silent on it.
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from advisor import runstore
from advisor.models import AdvisorError, Run, Series
from advisor.roles import RoleGuess, RoleOverrides, assign_roles, load_roles_file

KNOWN_FORMATS = "CSV, JSON Lines, TensorBoard event files, trainer_state.json or a probe run store"
# Cells that mean "no value here" (Keras writes NA). Literal nan/inf are values, not missing.
MISSING_TOKENS = ["", "NA", "N/A", "n/a", "null", "NULL", "None", "none", "<NA>", "#N/A", "-"]
LITERAL_NAN = {"nan", "-nan", "+nan", "nan(ind)", "-nan(ind)"}
SNIFF_BYTES = 1 << 16
# More backward jumps than this (and more than 1% of rows) means the step column mixes conventions
# rather than a few resumes: the rows are then treated as unordered instead of dropping segments.
MAX_RESUMES = 10
SPLIT_DIRS = {"train", "training", "validation", "valid", "val", "eval", "evaluation", "test"}


def read_log(path: str | Path, roles_file: str | Path | None = None) -> Run:
    """Read any supported log (file or directory) into a Run. Raises AdvisorError on unusable input."""
    overrides = load_roles_file(roles_file)
    p = Path(path).expanduser()
    if not p.exists():
        raise AdvisorError(f"{p} does not exist.")
    notes: list[str] = []
    if p.is_dir():
        p, fmt, notes = _resolve_directory(p)
    else:
        fmt = detect_format(p)
    reader = _READERS[fmt]
    run = reader(p, overrides)
    run.skipped[:0] = notes
    if overrides.source:
        present = set(run.series) | {run.axis} | set(run.meta.get("columns", []))
        named = set(overrides.roles) | set(overrides.components) | set(overrides.higher_is_better)
        named |= {c for c in (overrides.step, overrides.epoch) if c}
        for col in sorted(named - present):
            run.skipped.append(f"The roles file names column {col!r}, which is not in the log.")
    run.meta.update(overrides.settings())
    return run


# ---- format detection -------------------------------------------------------------------------


def detect_format(path: Path) -> str:
    """csv | jsonl | tensorboard | trainer_state | probe for a file, by its content."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(SNIFF_BYTES)
    except OSError as exc:
        raise AdvisorError(f"{path} cannot be read: {exc.strerror or exc}.") from None
    if not head.strip():
        raise AdvisorError(f"{path} is empty.")
    if head.startswith(b"SQLite format 3\x00"):
        if runstore.is_run_store(path):
            return "probe"
        raise AdvisorError(f"{path} is an SQLite database but not a probe run store (no readings/meta tables).")
    if "tfevents" in path.name or b"brain.Event" in head[:256]:
        return "tensorboard"
    if head.startswith(b"\xef\xbb\xbf"):
        head = head[3:]
    if b"\x00" in head or _binary_share(head) > 0.1:
        raise AdvisorError(f"{path} is a binary file, not a training log ({KNOWN_FORMATS}).")
    text = head.decode("utf-8", errors="replace").lstrip()
    if text.startswith("{") or text.startswith("["):
        return "json"
    return "csv"


def _binary_share(head: bytes) -> float:
    """Share of control bytes (other than whitespace) in the sniffed head."""
    if not head:
        return 0.0
    arr = np.frombuffer(head, dtype=np.uint8)
    control = (arr < 32) & ~np.isin(arr, [9, 10, 12, 13])
    return float(control.mean())


# ---- directories ------------------------------------------------------------------------------


@dataclass
class _Candidate:
    path: Path  # what to read (a file, or a TensorBoard directory)
    fmt: str
    label: str  # how to name it to a person
    mtime: float


def _natural_key(s: str) -> list:
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", s)]


SKIP_DIRS = {"__pycache__", "node_modules", "site-packages", ".git", ".venv", "venv"}
MAX_DEPTH = 6


def _files_under(root: Path) -> list[Path]:
    """Files up to MAX_DEPTH levels below root, skipping hidden, cache and environment directories."""
    out: list[Path] = []
    base_depth = len(root.parts)
    for dirpath, dirnames, filenames in os.walk(root):
        here = Path(dirpath)
        depth = len(here.parts) - base_depth
        dirnames[:] = [] if depth >= MAX_DEPTH else sorted(d for d in dirnames if not d.startswith(".") and d not in SKIP_DIRS)
        out.extend(here / f for f in sorted(filenames))
    return out


def _looks_like_log_json(path: Path) -> bool:
    """A top-level .json worth reading: a trainer_state-like document or an array of records."""
    with open(path, "rb") as fh:
        head = fh.read(SNIFF_BYTES).lstrip()
    return head.startswith(b"[") or b'"log_history"' in head


def _resolve_directory(root: Path) -> tuple[Path, str, list[str]]:
    """The one run to read in a directory, and a note naming the others when there are several."""
    if runstore.is_run_store(root):
        return root, "probe", []
    cands: list[_Candidate] = []
    files = _files_under(root)

    def rel(p: Path) -> str:
        return str(p.relative_to(root)) if p != root else "."

    # probe run stores
    for f in files:
        if f.name == runstore.STORE_NAME and runstore.is_run_store(f):
            cands.append(_Candidate(f, "probe", rel(f.parent), f.stat().st_mtime))
    # TensorBoard: directories holding event files; split subdirectories (train/validation) belong to their parent run
    event_dirs: dict[Path, float] = {}
    for f in files:
        if "tfevents" in f.name:
            event_dirs[f.parent] = max(event_dirs.get(f.parent, 0.0), f.stat().st_mtime)
    tb_runs: dict[Path, float] = {}
    for d, mtime in event_dirs.items():
        run_dir = d.parent if d.name.lower() in SPLIT_DIRS and d != root else d
        tb_runs[run_dir] = max(tb_runs.get(run_dir, 0.0), mtime)
    for d, mtime in tb_runs.items():
        cands.append(_Candidate(d, "tensorboard", rel(d), mtime))
    # Hugging Face: the output dir's trainer_state.json, else the latest checkpoint's (it holds the whole history)
    states = [f for f in files if f.name == "trainer_state.json"]
    by_output: dict[Path, list[Path]] = {}
    for f in states:
        out = f.parent.parent if re.fullmatch(r"checkpoint-\d+", f.parent.name) else f.parent
        by_output.setdefault(out, []).append(f)
    for out, group in by_output.items():
        top = [f for f in group if f.parent == out]
        chosen = top[0] if top else max(group, key=lambda f: _natural_key(f.parent.name))
        cands.append(_Candidate(chosen, "trainer_state", rel(chosen), chosen.stat().st_mtime))
    # CSV / JSON Lines logs: Lightning's metrics.csv anywhere; other .csv/.jsonl/.log at the top level
    for f in files:
        if f.name == "metrics.csv" or (f.parent == root and f.suffix.lower() in (".csv", ".jsonl", ".log", ".json") and f.name != "trainer_state.json"):
            try:
                fmt = detect_format(f)
                if f.suffix.lower() == ".json" and not _looks_like_log_json(f):
                    continue
            except (AdvisorError, OSError):
                continue
            cands.append(_Candidate(f, fmt, rel(f.parent) if f.name == "metrics.csv" and f.parent != root else rel(f), f.stat().st_mtime))
    if not cands:
        raise AdvisorError(f"{root} holds no training log this reader knows ({KNOWN_FORMATS}).")
    if len(cands) == 1:
        return cands[0].path, cands[0].fmt, []
    # Several runs: read the newest (by modification time, then by name: version_10 after version_9).
    cands.sort(key=lambda c: (c.mtime, _natural_key(c.label)))
    chosen, others = cands[-1], cands[:-1]
    listed = ", ".join(c.label for c in reversed(others[-8:]))
    more = f" and {len(others) - 8} more" if len(others) > 8 else ""
    note = (f"{root} holds {len(cands)} runs; read the newest, {chosen.label} "
            f"(not read: {listed}{more}; pass a run's own path to read it).")
    return chosen.path, chosen.fmt, [note]


# ---- a table of rows (CSV, JSON Lines, trainer_state) -------------------------------------------


@dataclass
class _Column:
    values: np.ndarray  # float64; NaN where missing or where the log wrote nan
    missing: np.ndarray  # bool: no value in this row


@dataclass
class _Table:
    columns: dict[str, _Column]
    n_rows: int
    notes: list[str] = field(default_factory=list)


def _numeric_column(name: str, col: pd.Series, notes: list[str]) -> _Column | None:
    """A column as floats with its missing mask; None when it is not numeric."""
    if pd.api.types.is_bool_dtype(col):
        return None
    if pd.api.types.is_numeric_dtype(col):
        values = col.to_numpy(dtype=np.float64, na_value=np.nan)
        return _Column(values, np.isnan(values))
    # Text (a CSV column holding "nan", JSON values mixed with strings): parse cell by cell.
    as_text = col.astype("string").str.strip().str.lower()
    missing = (col.isna() | (as_text == "").fillna(True)).to_numpy(dtype=bool)
    literal_nan = as_text.isin(LITERAL_NAN).fillna(False).to_numpy(dtype=bool)
    values = pd.to_numeric(as_text, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
    bad = np.isnan(values) & ~missing & ~literal_nan
    present = int((~missing).sum())
    if present and bad.sum() > 0.5 * present:
        return None
    if bad.any():
        notes.append(f"Column {name!r} had {int(bad.sum())} cell(s) that are not numbers; they were skipped.")
        missing = missing | bad
    return _Column(values, missing)


def _frame_to_table(df: pd.DataFrame, notes: list[str]) -> _Table:
    columns: dict[str, _Column] = {}
    non_numeric = []
    for name in df.columns:
        col = _numeric_column(str(name), df[name], notes)
        if col is None:
            non_numeric.append(str(name))
        else:
            columns[str(name)] = col
    if non_numeric:
        shown = ", ".join(non_numeric[:8]) + (f" and {len(non_numeric) - 8} more" if len(non_numeric) > 8 else "")
        notes.append(f"Skipped non-numeric column(s): {shown}.")
    return _Table(columns, len(df), notes)


def _read_csv_table(path: Path) -> _Table:
    with open(path, "rb") as fh:
        head = fh.read(SNIFF_BYTES).decode("utf-8", errors="replace").lstrip("\ufeff")
    first_line = next((ln for ln in head.splitlines() if ln.strip()), "")
    sep = max([",", "\t", ";", "|"], key=first_line.count)
    if first_line.count(sep) == 0:
        sep = ","
    header = [h.strip() for h in first_line.split(sep)]
    if header and all(_is_number(h) for h in header if h):
        raise AdvisorError(f"{path} looks like CSV without a header row; column names are needed to know what each column is.")
    notes: list[str] = []
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            df = pd.read_csv(
                path,
                sep=sep,
                keep_default_na=False,
                na_values=MISSING_TOKENS,
                on_bad_lines="warn",
                skip_blank_lines=True,
                index_col=False,
                encoding="utf-8",
                encoding_errors="replace",
                low_memory=False,
                skipinitialspace=True,
            )
        except pd.errors.EmptyDataError:
            raise AdvisorError(f"{path} is empty.") from None
        except (pd.errors.ParserError, UnicodeDecodeError, ValueError) as exc:
            raise AdvisorError(f"{path} is not a CSV log this reader can parse ({str(exc).splitlines()[0]}).") from None
    bad_lines = [str(w.message).strip() for w in caught if "Skipping line" in str(w.message)]
    if bad_lines:
        msgs = [m for chunk in bad_lines for m in chunk.splitlines() if m.startswith("Skipping line")]
        notes.append(f"Skipped {len(msgs)} malformed CSV line(s) ({msgs[0].removeprefix('Skipping ').rstrip('.')}).")
    df.columns = [str(c).strip() for c in df.columns]
    df = df.loc[:, [c for c in df.columns if c and not c.startswith("Unnamed: ")]]
    return _frame_to_table(df, notes)


def _is_number(s: str) -> bool:
    try:
        float(s)
        return True
    except ValueError:
        return False


_CONSTANTS = {"NaN": "nan", "Infinity": "inf", "-Infinity": "-inf"}


def _parse_constant(token: str) -> str:
    # Keep the log's own NaN/Infinity as text so they stay distinguishable from missing keys (null).
    return _CONSTANTS.get(token, token)


def _read_json_any(path: Path, overrides: RoleOverrides) -> Run:
    """A .json/.jsonl file: trainer_state.json, a JSON array of records, or JSON Lines."""
    text = path.read_bytes().decode("utf-8", errors="replace").lstrip("\ufeff")
    lines = [ln for ln in text.splitlines() if ln.strip()]
    first_is_object = False
    if lines:
        try:
            first_is_object = isinstance(json.loads(lines[0], parse_constant=_parse_constant), dict)
        except json.JSONDecodeError:
            first_is_object = False
    if not first_is_object or len(lines) == 1:
        try:
            doc = json.loads(text, parse_constant=_parse_constant)
        except json.JSONDecodeError as exc:
            if len(lines) > 1 and sum(ln.lstrip().startswith("{") for ln in lines) > 1:
                return _read_jsonl(path, lines, overrides)  # JSON Lines whose first line is damaged
            if not first_is_object:
                raise AdvisorError(f"{path} is not valid JSON or JSON Lines (line {exc.lineno}: {exc.msg}).") from None
            doc = None
        if isinstance(doc, dict) and "log_history" in doc:
            return _trainer_state_run(path, doc, overrides)
        if isinstance(doc, list):
            records = [r for r in doc if isinstance(r, dict)]
            notes = [] if len(records) == len(doc) else [f"Skipped {len(doc) - len(records)} array item(s) that are not objects."]
            return _records_run(path, records, notes, overrides, "jsonl")
        if isinstance(doc, dict):
            return _records_run(path, [doc], [], overrides, "jsonl")
        if doc is not None:
            raise AdvisorError(f"{path} holds JSON that is not a training log (expected objects with metric values).")
    return _read_jsonl(path, lines, overrides)


def _read_jsonl(path: Path, lines: list[str], overrides: RoleOverrides) -> Run:
    notes: list[str] = []
    try:
        records = json.loads("[" + ",".join(lines) + "]", parse_constant=_parse_constant)
        bad: list[int] = []
    except json.JSONDecodeError:
        records, bad = [], []
        for i, ln in enumerate(lines, 1):
            try:
                records.append(json.loads(ln, parse_constant=_parse_constant))
            except json.JSONDecodeError:
                bad.append(i)
    objects = [r for r in records if isinstance(r, dict)]
    not_objects = len(records) - len(objects)
    if bad or not_objects:
        if len(objects) < 0.5 * len(lines):
            raise AdvisorError(f"{path} is not JSON Lines: {len(bad) + not_objects} of {len(lines)} lines are not JSON objects.")
        where = f" (line {', '.join(map(str, bad[:5]))}{', ...' if len(bad) > 5 else ''})" if bad else ""
        notes.append(f"Skipped {len(bad) + not_objects} line(s) that are not JSON objects{where}.")
    return _records_run(path, objects, notes, overrides, "jsonl")


def _records_run(path: Path, records: list[dict], notes: list[str], overrides: RoleOverrides, fmt: str, meta: dict | None = None) -> Run:
    if not records:
        raise AdvisorError(f"{path} has no data rows.")
    if any(isinstance(v, dict) for r in records[:50] for v in r.values()):
        df = pd.json_normalize(records, sep="/")
    else:
        df = pd.DataFrame.from_records(records)
    table = _frame_to_table(df, notes)
    return _table_to_run(path, table, overrides, fmt, meta)


def _read_csv(path: Path, overrides: RoleOverrides) -> Run:
    return _table_to_run(path, _read_csv_table(path), overrides, "csv")


# ---- Hugging Face trainer_state.json ----------------------------------------------------------

SUMMARY_KEYS = {"train_runtime", "train_samples_per_second", "train_steps_per_second", "total_flos", "train_loss"}


def _trainer_state_run(path: Path, doc: dict, overrides: RoleOverrides) -> Run:
    history = [r for r in doc.get("log_history") or [] if isinstance(r, dict)]
    notes: list[str] = []
    rows = [r for r in history if not (SUMMARY_KEYS & set(r) and "loss" not in r and "eval_loss" not in r)]
    if len(rows) < len(history):
        keys = sorted(set().union(*(set(r) for r in history if r not in rows)) & SUMMARY_KEYS)
        notes.append(f"Skipped the final summary row ({', '.join(keys)}).")
    meta: dict[str, Any] = {}
    for key in ("best_metric", "best_model_checkpoint", "best_global_step", "global_step", "max_steps",
                "num_train_epochs", "logging_steps", "eval_steps", "save_steps", "train_batch_size", "epoch"):
        if doc.get(key) is not None:
            meta[key] = doc[key]
    best_step = doc.get("best_global_step")
    if best_step is None and isinstance(doc.get("best_model_checkpoint"), str):
        m = re.search(r"checkpoint-(\d+)", doc["best_model_checkpoint"])
        best_step = int(m.group(1)) if m else None
    if best_step is not None:
        meta["trainer_best_step"] = int(best_step)
    if not rows:
        raise AdvisorError(f"{path} is a trainer_state.json with an empty log_history.")
    return _records_run(path, rows, notes, overrides, "trainer_state", meta)


# ---- from a table to a Run ----------------------------------------------------------------------

STEP_PRIORITY = ["step", "global_step", "trainer/global_step", "train/global_step", "globalstep", "iteration", "iter", "_step"]


def _pick_axis(names: list[str], roles: dict[str, RoleGuess], overrides: RoleOverrides, columns: dict[str, _Column]) -> tuple[str | None, str | None]:
    """(step column, epoch column) of a table; either may be None."""
    def usable(n: str) -> bool:
        return n in columns and (~columns[n].missing).any()

    step = overrides.step if overrides.step and usable(overrides.step) else None
    if step is None:
        steps = [n for n in names if roles[n].role == "step" and usable(n)]
        ranked = sorted(steps, key=lambda n: (STEP_PRIORITY.index(n.lower()) if n.lower() in STEP_PRIORITY else len(STEP_PRIORITY) - 1.5, names.index(n)))
        # W&B's own `_step` counts log calls; a user's step column says more, so `_step` comes last.
        step = ranked[0] if ranked else None
    epoch = overrides.epoch if overrides.epoch and usable(overrides.epoch) else None
    if epoch is None:
        epochs = [n for n in names if roles[n].role == "epoch" and usable(n)]
        epoch = min(epochs, key=lambda n: (n.lower() != "epoch", names.index(n))) if epochs else None
    return step, epoch


def resume_keep(steps: np.ndarray) -> tuple[np.ndarray, list[tuple[float, float, int]]]:
    """Rows to keep when the step goes back (a resumed run): the later segment wins where they overlap.

    Returns (keep mask, [(step before the jump, step after it, rows dropped)]). With more than
    MAX_RESUMES jumps the column is taken as unordered and nothing is dropped (keep all, no resumes).
    """
    n = len(steps)
    keep = np.ones(n, dtype=bool)
    if n < 2:
        return keep, []
    starts = np.flatnonzero(steps[1:] < steps[:-1]) + 1
    if len(starts) == 0:
        return keep, []
    if len(starts) > MAX_RESUMES and len(starts) > 0.01 * n:
        return keep, [(math.nan, math.nan, -1)]
    bounds = np.r_[0, starts]
    seg = np.zeros(n, dtype=np.int64)
    seg[starts] = 1
    seg = np.cumsum(seg)
    seg_min = np.minimum.reduceat(steps, bounds)
    suffix_min = np.minimum.accumulate(seg_min[::-1])[::-1]
    later_min = np.r_[suffix_min[1:], np.inf]
    keep = steps < later_min[seg]
    resumes = []
    for j, s in enumerate(starts):
        dropped = int((~keep[bounds[j]:s]).sum())
        resumes.append((float(steps[s - 1]), float(steps[s]), dropped))
    return keep, resumes


def last_per_step(steps: np.ndarray, values: np.ndarray) -> tuple[np.ndarray, np.ndarray, int]:
    """Sort by step; where a step repeats, keep the last-written value. Returns (steps, values, repeats)."""
    if len(steps) < 2 or bool(np.all(steps[1:] > steps[:-1])):
        return steps, values, 0
    order = np.argsort(steps, kind="stable")
    s, v = steps[order], values[order]
    last = np.r_[s[1:] != s[:-1], True]
    return s[last], v[last], int((~last).sum())


def _fmt_step(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else f"{x:g}"


def _table_to_run(path: Path, table: _Table, overrides: RoleOverrides, fmt: str, meta: dict | None = None) -> Run:
    notes = table.notes
    names = [n for n in table.columns if n not in overrides.ignore]
    if not names:
        raise AdvisorError(f"{path} has no numeric columns, so it is not a training log this reader understands ({KNOWN_FORMATS}).")
    roles = assign_roles(names, overrides)
    step_col, epoch_col = _pick_axis(names, roles, overrides, table.columns)
    n = table.n_rows
    axis_cols = {c for c in (step_col, epoch_col) if c}
    metric_names = [c for c in names if c not in axis_cols and roles[c].role not in ("step", "epoch")]
    data_rows = np.zeros(n, dtype=bool)
    for c in metric_names:
        data_rows |= ~table.columns[c].missing
    if not metric_names or not data_rows.any():
        raise AdvisorError(f"{path} has no data rows with metric values.")

    if step_col:
        axis_name = step_col
        axis = _filled_axis(table.columns[step_col], notes, step_col)
    elif epoch_col:
        axis_name = "epoch"
        axis = _filled_axis(table.columns[epoch_col], notes, epoch_col)
    else:
        axis_name = "row"
        axis = np.arange(n, dtype=np.float64)
    bad_axis = ~np.isfinite(axis)
    if bad_axis.any():
        notes.append(f"Skipped {int(bad_axis.sum())} row(s) whose {axis_name} is not a finite number.")
    finite_rows = np.flatnonzero(~bad_axis)
    finite_keep, resumes = resume_keep(axis[finite_rows])
    keep = np.zeros(n, dtype=bool)
    keep[finite_rows] = finite_keep
    if resumes and resumes[0][2] == -1:
        notes.append(f"The {axis_name} column goes backwards many times; rows were taken as unordered and the last value per {axis_name} kept.")
    else:
        for before, after, dropped in resumes:
            if dropped:
                notes.append(f"The {axis_name} goes back from {_fmt_step(before)} to {_fmt_step(after)} (a resumed run); "
                             f"kept the later rows and dropped {dropped} earlier row(s) they overlap.")

    epoch_map: tuple[np.ndarray, np.ndarray] | None = None
    if epoch_col and step_col:
        e = table.columns[epoch_col]
        rows = keep & ~e.missing & np.isfinite(e.values)
        if rows.any():
            es, ev, _ = last_per_step(axis[rows], e.values[rows])
            epoch_map = (es, ev)

    run = Run(path=str(path), format=fmt, axis=axis_name, meta=dict(meta or {}))
    repeats = 0
    for c in metric_names:
        col = table.columns[c]
        rows = keep & ~col.missing
        if not rows.any():
            continue
        steps, values, rep = last_per_step(axis[rows], col.values[rows])
        repeats += rep
        g = roles[c]
        epochs = None
        if axis_name == "epoch":
            epochs = steps.copy()
        elif epoch_map is not None:
            epochs = np.interp(steps, epoch_map[0], epoch_map[1])
        run.series[c] = Series(name=c, role=g.role, steps=steps, values=values, epochs=epochs,
                               higher_is_better=g.higher_is_better, component_of=g.component_of)
    if repeats:
        notes.append(f"{repeats} value(s) were written more than once for the same {axis_name}; kept the last-written one.")
    for s in run.series.values():  # a component whose total is not in the log has nothing to be a part of
        if s.component_of and s.component_of not in run.series:
            s.component_of = None
    run.meta.setdefault("rows", int((keep & data_rows).sum()))
    run.meta.setdefault("columns", names)
    if len(np.unique(axis[keep & data_rows])) <= 1:
        notes.append("Only one row of data: too little to judge a training curve.")
    run.skipped = notes
    return run


def _filled_axis(col: _Column, notes: list[str], name: str) -> np.ndarray:
    """The axis column with gaps filled from the row before (rows logged between two steps)."""
    values = np.where(col.missing, np.nan, col.values)
    gaps = ~np.isfinite(values)
    if gaps.any() and (~gaps).any():
        filled = pd.Series(values).ffill().bfill().to_numpy()
        notes.append(f"{int(gaps.sum())} row(s) had no {name} value; they took the {name} of the row before.")
        return filled
    return values


# ---- TensorBoard ----------------------------------------------------------------------------------


def _read_tensorboard(path: Path, overrides: RoleOverrides) -> Run:
    from tensorboard.backend.event_processing import event_accumulator as ea

    logging.getLogger("tensorboard").setLevel(logging.ERROR)
    if path.is_dir():
        # the run's own events and its split subdirectories (Keras writes train/ and validation/)
        dirs = sorted({f.parent for f in path.rglob("*tfevents*") if f.is_file()
                       and (f.parent == path or (f.parent.parent == path and f.parent.name.lower() in SPLIT_DIRS))},
                      key=lambda d: _natural_key(str(d)))
    else:
        dirs = [path]
    guidance = {ea.SCALARS: 0, ea.TENSORS: 0, ea.HISTOGRAMS: 1, ea.IMAGES: 1, ea.AUDIO: 1, ea.COMPRESSED_HISTOGRAMS: 1}
    per_tag: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    notes: list[str] = []
    for d in dirs:
        prefix = ""
        if path.is_dir() and d != path:
            prefix = str(d.relative_to(path)).replace(os.sep, "/") + "/"
        acc = ea.EventAccumulator(str(d), size_guidance=guidance)
        try:
            acc.Reload()
        except Exception as exc:  # corrupt or truncated records
            raise AdvisorError(f"{d} is not a readable TensorBoard event log ({type(exc).__name__}: {exc}).") from None
        tags = acc.Tags()
        for tag in tags.get("scalars", []):
            events = acc.Scalars(tag)
            per_tag[prefix + tag] = (np.array([e.step for e in events], dtype=np.float64),
                                     np.array([e.value for e in events], dtype=np.float64))
        for tag in tags.get("tensors", []):
            try:
                plugin = acc.SummaryMetadata(tag).plugin_data.plugin_name
            except Exception:
                plugin = ""
            if plugin != "scalars":
                continue
            from tensorboard.util import tensor_util

            events = acc.Tensors(tag)
            vals = []
            for e in events:
                arr = tensor_util.make_ndarray(e.tensor_proto)
                vals.append(float(arr.reshape(-1)[0]) if arr.size else math.nan)
            per_tag[prefix + tag] = (np.array([e.step for e in events], dtype=np.float64), np.array(vals, dtype=np.float64))
    if not per_tag:
        raise AdvisorError(f"{path} has no scalar data in its TensorBoard events.")
    return _tag_series_run(path, per_tag, notes, overrides, "tensorboard")


def _tag_series_run(path: Path, per_tag: dict[str, tuple[np.ndarray, np.ndarray]], notes: list[str], overrides: RoleOverrides, fmt: str,
                    meta: dict | None = None, role_of=None) -> Run:
    """A Run from per-name (steps in write order, values) pairs, e.g. TensorBoard tags or probe readings."""
    names = [n for n in per_tag if n not in overrides.ignore]
    roles = assign_roles(names, overrides)
    if role_of is not None:
        roles = {n: role_of(n, roles[n]) for n in names}
    epoch_tag = overrides.epoch if overrides.epoch in per_tag else next((n for n in names if roles[n].role == "epoch"), None)
    epoch_map = None
    if epoch_tag:
        s, v = per_tag[epoch_tag]
        ok = np.isfinite(v)
        if ok.any():
            es, ev, _ = last_per_step(s[ok], v[ok])
            epoch_map = (es, ev)
    run = Run(path=str(path), format=fmt, axis="step", meta=dict(meta or {}))
    resumed, repeats = 0, 0
    for n in names:
        g = roles[n]
        if g.role in ("step", "epoch"):
            continue
        steps, values = per_tag[n]
        if len(steps) == 0:
            continue
        keep, resumes = resume_keep(steps)
        if resumes and resumes[0][2] != -1:
            resumed += sum(r[2] for r in resumes)
        steps, values, rep = last_per_step(steps[keep], values[keep])
        repeats += rep
        epochs = np.interp(steps, *epoch_map) if epoch_map is not None else None
        run.series[n] = Series(name=n, role=g.role, steps=steps, values=values, epochs=epochs,
                               higher_is_better=g.higher_is_better, component_of=g.component_of)
    if resumed:
        notes.append(f"The step went back in some series (a resumed run); kept the later values and dropped {resumed} earlier one(s) they overlap.")
    if repeats:
        notes.append(f"{repeats} value(s) were written more than once for the same step; kept the last-written one.")
    for s in run.series.values():
        if s.component_of and s.component_of not in run.series:
            s.component_of = None
    if not run.series:
        raise AdvisorError(f"{path} has no metric series.")
    if all(len(s) <= 1 for s in run.series.values()):
        notes.append("Only one step of data: too little to judge a training curve.")
    run.skipped = notes
    return run


# ---- the probe's run store ----------------------------------------------------------------------

# First path segments of readings the probe writes; anything else is a user scalar (loss, lr, val_loss...).
PROBE_PREFIXES = {"act", "grad", "weight", "update", "gpu", "time", "nonfinite", "logits", "codes", "attention",
                  "embeddings", "views", "system", "probe", "hardware", "memory"}
# Last segments of the probe's family readings, whatever the user named the family (`views/...`).
PROBE_SUFFIXES = {"effective_rank", "effective_rank_ratio", "top1_variance_share", "top5_variance_share",
                  "offdiag_cov_energy", "dim_std_mean", "dead_dim_share", "l2norm_std", "l2norm_std_ref",
                  "mean_pairwise_cosine", "norm_max_median", "norm_cv", "dim", "cosine", "entropy", "entropy_ratio",
                  "top_class_share", "confidence", "num_classes", "accuracy", "usage_share", "perplexity",
                  "perplexity_ratio", "zero_fraction", "dead_unit_share", "saturation_fraction", "sample_similarity",
                  "std", "mean", "norm", "nonfinite"}


def is_probe_reading(name: str) -> bool:
    parts = name.split("/")
    return len(parts) > 1 and (parts[0] in PROBE_PREFIXES or parts[-1] in PROBE_SUFFIXES)


def _read_probe(path: Path, overrides: RoleOverrides) -> Run:
    try:
        readings = runstore.read_readings(path)
        meta = runstore.read_meta(path)
    except Exception as exc:  # sqlite3.DatabaseError and friends
        raise AdvisorError(f"{path} is a run store that cannot be read ({exc}).") from None
    if not readings:
        raise AdvisorError(f"{runstore.store_path(path)} has no readings yet.")

    def role_of(name: str, guess: RoleGuess) -> RoleGuess:
        if name in overrides.roles or name in overrides.components:
            return guess
        if is_probe_reading(name) or guess.role == "other":
            return RoleGuess("probe")
        return guess

    per_tag = {n: (s.astype(np.float64), v) for n, (s, v) in readings.items()}
    run = _tag_series_run(runstore.store_path(path), per_tag, [], overrides, "probe", meta, role_of)
    run.path = str(path)
    run.live = "finished" not in meta
    for key in ("clip_value", "max_grad_norm", "gradient_clip_val", "clip_grad_norm"):
        if key in meta and "clip_value" not in run.meta:
            try:
                run.meta["clip_value"] = float(meta[key])
            except (TypeError, ValueError):
                pass
    return run


_READERS = {
    "csv": _read_csv,
    "json": _read_json_any,
    "jsonl": _read_json_any,
    "trainer_state": _read_json_any,
    "tensorboard": _read_tensorboard,
    "probe": _read_probe,
}
