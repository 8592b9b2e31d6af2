"""JSON Lines logs (W&B history exports and the like: sparse keys, `_step`/`step`/`global_step`), a
JSON array of records, and (handed to `trainer_state`) a Hugging Face trainer_state.json.

Speed: lines are parsed with orjson and rows that share their keys are turned into columns in one
numpy call per group, so a million-row log costs about as much as parsing it. Lines orjson refuses
(NaN/Infinity literals, which Python's json writes by default) are parsed by the standard library,
with those literals kept as values rather than missing.
"""

from __future__ import annotations

import json
from itertools import chain
from operator import itemgetter
from pathlib import Path
from typing import Any

import numpy as np
import orjson

from advisor.models import AdvisorError, Run
from advisor.readers.base import Candidate
from advisor.readers.build import Column, Table, cells_column, skipped_columns_note, table_to_run
from advisor.roles import RoleOverrides

NAME = "json"
_CONSTANTS = {"NaN": "nan", "Infinity": "inf", "-Infinity": "-inf"}
_NUMBER = (float, int)


def sniff(path: Path, text: str | None) -> bool:
    return text is not None and text.startswith(("{", "["))


def _parse_constant(token: str) -> str:
    # Keep the log's own NaN/Infinity as text so they stay distinguishable from missing keys (null).
    return _CONSTANTS.get(token, token)


def loads(data: bytes | str) -> Any:
    """One JSON document: orjson, or the standard library for what orjson refuses (NaN, huge ints)."""
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError:
        if isinstance(data, bytes):
            data = data.decode("utf-8", errors="replace")
        return json.loads(data, parse_constant=_parse_constant)


def read(cand: Candidate, overrides: RoleOverrides) -> Run:
    """A .json/.jsonl file: trainer_state.json, a JSON array of records, or JSON Lines."""
    from advisor.readers import trainer_state

    path = cand.path
    raw = path.read_bytes()
    if raw.startswith(b"\xef\xbb\xbf"):
        raw = raw[3:]
    lines = raw.split(b"\n")
    while lines and not lines[-1].strip():  # the final newline
        lines.pop()
    while lines and not lines[0].strip():
        lines.pop(0)  # blank lines inside are dropped only if parsing meets one (`_jsonl_run`)
    first: Any = None
    try:
        first = loads(lines[0]) if lines else None
    except (json.JSONDecodeError, RecursionError):
        first = None
    if not isinstance(first, dict) or len(lines) == 1:
        try:
            doc = loads(raw)
        except (json.JSONDecodeError, RecursionError) as exc:
            if len(lines) > 1 and sum(ln.lstrip().startswith(b"{") for ln in lines) > 1:
                return _jsonl_run(path, lines, overrides)  # JSON Lines whose first line is damaged
            if not isinstance(first, dict):
                where = f"line {exc.lineno}: {exc.msg}" if isinstance(exc, json.JSONDecodeError) else "nested too deeply"
                raise AdvisorError(f"{path} is not valid JSON or JSON Lines ({where}).") from None
            doc = None
        if isinstance(doc, dict) and "log_history" in doc:
            return trainer_state.run_from_doc(path, doc, overrides)
        if isinstance(doc, list):
            records = [r for r in doc if isinstance(r, dict)]
            notes = [] if len(records) == len(doc) else [f"Skipped {len(doc) - len(records)} array item(s) that are not objects."]
            return records_run(path, records, notes, overrides, "jsonl")
        if isinstance(doc, dict):
            return records_run(path, [doc], [], overrides, "jsonl")
        if doc is not None:
            raise AdvisorError(f"{path} holds JSON that is not a training log (expected objects with metric values).")
    return _jsonl_run(path, lines, overrides)


def _jsonl_run(path: Path, lines: list[bytes], overrides: RoleOverrides) -> Run:
    notes: list[str] = []
    records: list | None = None
    bad: list[int] = []
    try:
        records = list(map(orjson.loads, lines))
    except orjson.JSONDecodeError:
        lines = [ln for ln in lines if ln.strip()]  # a blank line inside, or lines orjson refuses
        try:
            records = list(map(orjson.loads, lines))
        except orjson.JSONDecodeError:
            records = None
    if records is None:
        records = []
        for i, ln in enumerate(lines, 1):
            if not ln.strip():
                continue
            try:
                records.append(loads(ln))
            except (json.JSONDecodeError, RecursionError):
                bad.append(i)
    objects = records if set(map(type, records)) == {dict} else [r for r in records if isinstance(r, dict)]
    not_objects = len(records) - len(objects)
    if bad or not_objects:
        if len(objects) < 0.5 * len(lines):
            raise AdvisorError(f"{path} is not JSON Lines: {len(bad) + not_objects} of {len(lines)} lines are not JSON objects.")
        where = f" (line {', '.join(map(str, bad[:5]))}{', ...' if len(bad) > 5 else ''})" if bad else ""
        notes.append(f"Skipped {len(bad) + not_objects} line(s) that are not JSON objects{where}.")
    return records_run(path, objects, notes, overrides, "jsonl")


def records_run(path: Path, records: list[dict], notes: list[str], overrides: RoleOverrides, fmt: str, meta: dict | None = None) -> Run:
    if not records:
        raise AdvisorError(f"{path} has no data rows.")
    return table_to_run(path, records_table(records, notes), overrides, fmt, meta)


def _flatten(record: dict, prefix: str = "", out: dict | None = None) -> dict:
    """Nested objects as `outer/inner` keys (W&B and json_normalize style)."""
    out = {} if out is None else out
    for k, v in record.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict) and v:
            _flatten(v, key + "/", out)
        else:
            out[key] = v
    return out


def _pick(rows: list, idx: np.ndarray) -> list:
    return [rows[int(idx[0])]] if len(idx) == 1 else list(itemgetter(*idx.tolist())(rows))


def _fill_group(keys: tuple, idx: np.ndarray, rows: list[dict], n: int, values: dict, missing: dict, cells: dict, first: dict) -> None:
    """Put one group's cells into the columns; KeyError when a row lacks one of `keys`."""
    for k in keys:
        if k not in values:
            values[k] = np.full(n, np.nan)
            missing[k] = np.ones(n, dtype=bool)
        first[k] = min(first.get(k, n), int(idx[0]))
    if not keys:
        return
    # Types are checked on the ends of the group; anything fromiter cannot take (null, text,
    # objects, integers beyond float range) raises, and those columns go cell by cell below.
    sample = rows[:256] + rows[-256:] if len(rows) > 512 else rows
    matrix = None
    if set(map(type, chain.from_iterable(map(dict.values, sample)))) <= {float, int}:
        try:
            cells_in_order = map(itemgetter(*keys), rows)  # rows may order their keys differently
            if len(keys) > 1:
                cells_in_order = chain.from_iterable(cells_in_order)
            matrix = np.fromiter(cells_in_order, dtype=np.float64, count=len(rows) * len(keys)).reshape(len(rows), len(keys))
        except (OverflowError, ValueError, TypeError):
            matrix = None  # an integer beyond float range: cell by cell below
    if matrix is not None:
        for j, k in enumerate(keys):
            values[k][idx] = matrix[:, j]
            missing[k][idx] = False
        return
    for j, k in enumerate(keys):
        col = [r[k] for r in rows]
        if set(map(type, col)) <= {float}:
            values[k][idx] = col
            missing[k][idx] = False
        else:
            cells.setdefault(k, {}).update(zip(idx.tolist(), col))


def _by_length(records: list[dict]) -> list[tuple[np.ndarray, list[dict]]]:
    """Rows grouped by how many keys they have: (row indices, rows). Rows of one length usually log
    the same keys; `_by_keys` splits a group where they do not (reading it raises KeyError)."""
    n = len(records)
    lengths = np.fromiter(map(len, records), dtype=np.int64, count=n)
    groups = []
    for length in np.unique(lengths).tolist():
        idx = np.flatnonzero(lengths == length)
        groups.append((idx, records if len(idx) == n else _pick(records, idx)))
    return groups


def _by_keys(idx: np.ndarray, rows: list[dict]) -> list[tuple[np.ndarray, list[dict]]]:
    keysets = list(map(frozenset, rows))
    groups = {k: i for i, k in enumerate(dict.fromkeys(keysets))}
    ids = np.fromiter(map(groups.__getitem__, keysets), dtype=np.int64, count=len(rows))
    out = []
    for g in range(len(groups)):
        sub = np.flatnonzero(ids == g)
        out.append((idx[sub], _pick(rows, sub)))
    return out


def records_table(records: list[dict], notes: list[str]) -> Table:
    """Columns from row dicts: rows with the same keys become one float matrix in one numpy call."""
    if any(isinstance(v, dict) for r in records[:50] for v in r.values()):
        records = [_flatten(r) for r in records]
    n = len(records)
    values: dict[str, np.ndarray] = {}
    missing: dict[str, np.ndarray] = {}
    cells: dict[str, dict[int, Any]] = {}  # cells that are not plain numbers, by key and row
    first: dict[str, int] = {}  # the first row that has each key: columns keep the log's order
    pending = _by_length(records)
    while pending:
        idx, rows = pending.pop()
        try:
            _fill_group(tuple(rows[0]), idx, rows, n, values, missing, cells, first)
        except KeyError:  # rows of one length with different keys
            pending.extend(_by_keys(idx, rows))
    columns: dict[str, Column] = {}
    non_numeric: list[str] = []
    for k in sorted(values, key=first.__getitem__):
        name = str(k)
        if k in cells:
            rows_k = np.fromiter(cells[k], dtype=np.int64, count=len(cells[k]))
            parsed = cells_column(name, cells[k].values(), len(rows_k), notes, int((~missing[k]).sum()))
            if parsed is None:
                non_numeric.append(name)
                continue
            values[k][rows_k] = parsed.values
            missing[k][rows_k] = parsed.missing
        columns[name] = Column(values[k], missing[k])
    skipped_columns_note(non_numeric, notes)
    return Table(columns, n, notes)
