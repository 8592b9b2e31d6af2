"""From named series to a `Run`: the one builder every reader ends in, and the table it starts from.

A reader hands over either a table (rows with a step column, as CSV, JSON Lines, trainer_state and
W&B history have) or per-name (steps, values) pairs (TensorBoard tags, probe readings, MLflow metric
histories). Both end in `build_run`, which sorts each series by step, keeps the last value written
for a repeated step, maps steps to epochs, assigns roles and writes the notes a person reads.

Numbers: values may be anything a float can hold (±1e308, denormals, NaN, ±Inf); integers too large
for a float become ±Inf. Nothing here warns or raises on them.
"""

from __future__ import annotations

import hashlib
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable

import numpy as np

from advisor.models import AdvisorError, Run, Series
from advisor.numbers import format_number
from advisor.roles import RoleGuess, RoleOverrides, assign_roles

KNOWN_FORMATS = ("CSV, JSON Lines, TensorBoard event files, trainer_state.json, a probe run store, "
                 "a W&B run or chart export, or an MLflow run")
# Cells that mean "no value here" (Keras writes NA). Literal nan/inf are values, not missing.
MISSING_TOKENS = frozenset({"", "na", "n/a", "null", "none", "<na>", "#n/a", "-"})
LITERAL_NAN = frozenset({"nan", "-nan", "+nan", "nan(ind)", "-nan(ind)"})
# More backward jumps than this (and more than 1% of rows) means the step column mixes conventions
# rather than a few resumes: the rows are then treated as unordered instead of dropping segments.
MAX_RESUMES = 10
STEP_PRIORITY = ["step", "global_step", "trainer/global_step", "train/global_step", "globalstep", "iteration", "iter", "_step"]
HASH_SPAN = 1 << 20  # bytes hashed at each end of a file for its content identity


# ---- a table of rows ------------------------------------------------------------------------------


@dataclass
class Column:
    values: np.ndarray  # float64; NaN where missing or where the log wrote nan
    missing: np.ndarray  # bool: no value in this row


@dataclass
class Table:
    columns: dict[str, Column]
    n_rows: int
    notes: list[str] = field(default_factory=list)


def to_float(v: Any) -> float | None:
    """One cell as a float; None when it is not a number. Text follows the log conventions above."""
    if isinstance(v, bool) or v is None:
        return None
    if isinstance(v, float):
        return v
    if isinstance(v, int):
        try:
            return float(v)
        except OverflowError:  # an integer beyond float range
            return math.inf if v > 0 else -math.inf
    if isinstance(v, (bytes, bytearray)):
        v = v.decode("utf-8", errors="replace")
    if isinstance(v, str):
        s = v.strip().lower()
        if s in LITERAL_NAN:
            return math.nan
        try:
            return float(s)
        except ValueError:
            return None
    if isinstance(v, (np.floating, np.integer)):
        return to_float(v.item())
    return None


def is_missing_cell(v: Any) -> bool:
    if v is None:
        return True
    if isinstance(v, float):
        return False
    return isinstance(v, str) and v.strip().lower() in MISSING_TOKENS


def cells_column(name: str, cells: Iterable[Any], n: int, notes: list[str], numbers_elsewhere: int = 0) -> Column | None:
    """A column from arbitrary cells (text, numbers, JSON values); None when most present cells are not numbers.

    `numbers_elsewhere` counts this column's numbers read by a faster path, which count as present.
    """
    values = np.full(n, np.nan)
    missing = np.ones(n, dtype=bool)
    bad = 0
    for i, cell in enumerate(cells):
        if is_missing_cell(cell):
            continue
        f = to_float(cell)
        if f is None:
            bad += 1
            continue
        values[i] = f
        missing[i] = False
    present = int((~missing).sum()) + bad + numbers_elsewhere
    if present == 0:
        return Column(values, missing)
    if bad > 0.5 * present:
        return None
    if bad:
        notes.append(f"Column {name!r} had {bad} cell(s) that are not numbers; they were skipped.")
    return Column(values, missing)


def skipped_columns_note(non_numeric: list[str], notes: list[str]) -> None:
    if non_numeric:
        shown = ", ".join(non_numeric[:8]) + (f" and {len(non_numeric) - 8} more" if len(non_numeric) > 8 else "")
        notes.append(f"Skipped non-numeric column(s): {shown}.")


# ---- resumed runs and repeated steps ----------------------------------------------------------------


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


# ---- the builder ----------------------------------------------------------------------------------


def build_run(
    path: Path | str,
    fmt: str,
    series: dict[str, tuple[np.ndarray, np.ndarray]],
    overrides: RoleOverrides,
    notes: list[str],
    *,
    axis: str = "step",
    context_names: list[str] | None = None,
    epoch: tuple[np.ndarray, np.ndarray] | None = None,
    epoch_name: str | None = None,
    role_of: Callable[[str, RoleGuess], RoleGuess] | None = None,
    resolve_resumes: bool = True,
    meta: dict[str, Any] | None = None,
) -> Run:
    """A Run from per-name (steps in write order, values) pairs.

    `context_names` are all the log's names, axis columns included, so roles are inferred with the
    whole log in view; `epoch` is an (steps, epochs) map, or the epoch series is found by role among
    `series`. `resolve_resumes=False` when the caller has already dropped rows overlapped by a resume.
    """
    names = [n for n in (context_names if context_names is not None else list(series)) if n not in overrides.ignore]
    roles = assign_roles(names, overrides)
    if role_of is not None:
        roles = {n: role_of(n, roles[n]) for n in names}
    with np.errstate(all="ignore"):
        if epoch is None:
            epoch_name = epoch_name or (overrides.epoch if overrides.epoch in series else
                                        next((n for n in names if n in series and roles[n].role == "epoch"), None))
            if epoch_name:
                s, v = series[epoch_name]
                ok = np.isfinite(v) & np.isfinite(s)
                if ok.any():
                    epoch = last_per_step(s[ok], v[ok])[:2]
        run = Run(path=str(path), format=fmt, axis=axis, meta=dict(meta or {}))
        resumed, repeats = 0, 0
        epochs_at: dict[int, tuple[np.ndarray, np.ndarray]] = {}  # id(steps) -> (steps, epochs): series that share a steps array share its epochs
        for n in names:
            if n not in series or roles[n].role in ("step", "epoch") or n == epoch_name:
                continue
            steps, values = series[n]
            finite = np.isfinite(steps)
            if not finite.all():
                steps, values = steps[finite], values[finite]
            if len(steps) == 0:
                continue
            if resolve_resumes:
                keep, resumes = resume_keep(steps)
                if resumes and resumes[0][2] != -1:
                    resumed += sum(r[2] for r in resumes)
                steps, values = steps[keep], values[keep]
            steps, values, rep = last_per_step(steps, values)
            repeats += rep
            g = roles[n]
            epochs = None
            if axis == "epoch":
                epochs = steps.copy()
            elif epoch is not None:
                if id(steps) not in epochs_at:
                    epochs_at[id(steps)] = (steps, _interp(steps, epoch[0], epoch[1]))
                epochs = epochs_at[id(steps)][1]
            run.series[n] = Series(name=n, role=g.role, steps=steps, values=values, epochs=epochs,
                                   higher_is_better=g.higher_is_better, component_of=g.component_of)
    if resumed:
        notes.append(f"The {axis} went back in some series (a resumed run); kept the later values and dropped {resumed} earlier one(s) they overlap.")
    if repeats:
        notes.append(f"{repeats} value(s) were written more than once for the same {axis}; kept the last-written one.")
    for s in run.series.values():  # a component whose total is not in the log has nothing to be a part of
        if s.component_of and s.component_of not in run.series:
            s.component_of = None
    if not run.series:
        raise AdvisorError(f"{path} has no metric series.")
    if all(len(s) <= 1 for s in run.series.values()):
        notes.append("Only one point of data per series: too little to judge a training curve.")
    run.skipped = notes
    return run


def _interp(x: np.ndarray, xp: np.ndarray, fp: np.ndarray) -> np.ndarray:
    """np.interp that never overflows into NaN between huge epoch values (it holds the nearer one)."""
    out = np.interp(x, xp, fp)
    bad = ~np.isfinite(out)
    if bad.any():
        idx = np.clip(np.searchsorted(xp, x[bad]), 0, len(xp) - 1)
        out[bad] = fp[idx]
    return out


def pick_axis(names: list[str], roles: dict[str, RoleGuess], overrides: RoleOverrides, columns: dict[str, Column]) -> tuple[str | None, str | None]:
    """(step column, epoch column) of a table; either may be None."""
    def usable(n: str) -> bool:
        return n in columns and bool((~columns[n].missing & np.isfinite(columns[n].values)).any())

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


def table_to_run(path: Path | str, table: Table, overrides: RoleOverrides, fmt: str, meta: dict | None = None) -> Run:
    """A Run from a table of rows: choose the step axis, drop rows a resume overlaps, then `build_run`."""
    notes = table.notes
    names = [n for n in table.columns if n not in overrides.ignore]
    if not names:
        raise AdvisorError(f"{path} has no numeric columns, so it is not a training log this reader understands ({KNOWN_FORMATS}).")
    roles = assign_roles(names, overrides)
    step_col, epoch_col = pick_axis(names, roles, overrides, table.columns)
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
                notes.append(f"The {axis_name} goes back from {format_number(before)} to {format_number(after)} (a resumed run); "
                             f"kept the later rows and dropped {dropped} earlier row(s) they overlap.")

    epoch_map = None
    if epoch_col and step_col:
        e = table.columns[epoch_col]
        rows = keep & ~e.missing & np.isfinite(e.values)
        if rows.any():
            epoch_map = last_per_step(axis[rows], e.values[rows])[:2]
    series = {}
    steps_of: list[tuple[np.ndarray, np.ndarray]] = []  # (rows, their steps): columns logged on the same rows share one steps array
    for c in metric_names:
        col = table.columns[c]
        rows = keep & ~col.missing
        if not rows.any():
            continue
        steps = next((s for r, s in steps_of if np.array_equal(r, rows)), None)
        if steps is None:
            steps = axis[rows]
            steps_of.append((rows, steps))
        series[c] = (steps, col.values[rows])
    meta = dict(meta or {})
    meta.setdefault("rows", int((keep & data_rows).sum()))
    meta.setdefault("columns", names)
    return build_run(path, fmt, series, overrides, notes, axis=axis_name, context_names=names, epoch=epoch_map,
                     resolve_resumes=False, meta=meta)


def _filled_axis(col: Column, notes: list[str], name: str) -> np.ndarray:
    """The axis column with gaps filled from the row before (rows logged between two steps)."""
    values = np.where(col.missing, np.nan, col.values)
    gaps = ~np.isfinite(values)
    if gaps.any() and (~gaps).any():
        idx = np.where(~gaps, np.arange(len(values)), 0)
        np.maximum.accumulate(idx, out=idx)
        filled = values[idx]
        first = int(np.argmax(~gaps))
        filled[:first] = values[first]  # leading gaps take the first value
        notes.append(f"{int(gaps.sum())} row(s) had no {name} value; they took the {name} of the row before.")
        return filled
    return values


# ---- identity -------------------------------------------------------------------------------------


def content_id(paths: Iterable[Path]) -> str:
    """A stable identity for a log from its bytes (size and the first/last MiB of each file), not its path."""
    h = hashlib.sha256()
    for p in sorted(Path(x) for x in paths):
        try:
            size = p.stat().st_size
            with open(p, "rb") as fh:
                h.update(str(size).encode())
                h.update(fh.read(HASH_SPAN))
                if size > 2 * HASH_SPAN:
                    fh.seek(size - HASH_SPAN)
                    h.update(fh.read(HASH_SPAN))
                elif size > HASH_SPAN:
                    h.update(fh.read())
        except OSError:
            h.update(os.fsencode(p.name))
    return "sha256:" + h.hexdigest()[:20]
