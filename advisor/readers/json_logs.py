"""JSON Lines logs (W&B history exports and the like: sparse keys, `_step`/`step`/`global_step`), a
JSON array of records, and (handed to `trainer_state`) a Hugging Face trainer_state.json.

Speed: JSON Lines are read from the file a block of about CHUNK_BYTES at a time: its lines are parsed
with orjson, rows that share their keys become columns in one numpy call per group (`RecordColumns`),
and the block's dicts are freed before the next block, while they are still in the CPU cache (a
million-row log reads in about half the time of parsing it all first, and never holds the whole file). Lines orjson refuses (NaN/Infinity
literals, which Python's json writes by default) are parsed by the standard library, with those
literals kept as values rather than missing.
"""

from __future__ import annotations

import io
import json
import re
from itertools import chain
from operator import itemgetter
from pathlib import Path
from typing import Any, BinaryIO, Iterable, Iterator

import numpy as np
import orjson

from advisor.models import AdvisorError, Run
from advisor.readers.base import Candidate
from advisor.readers.build import Column, Table, cells_column, skipped_columns_note, table_to_run
from advisor.roles import RoleOverrides

NAME = "json"
_CONSTANTS = {"NaN": "nan", "Infinity": "inf", "-Infinity": "-inf"}
_NUMBER_TYPES = {float, int}
_BOM = b"\xef\xbb\xbf"
_NON_SPACE = re.compile(rb"[^ \t\n\r\x0b\x0c]")
# JSON Lines are parsed and turned into columns this many bytes at a time: the rows' dicts are used and
# freed while they are still in the CPU cache, which halves the time of a large log against one pass each.
CHUNK_BYTES = 1 << 20


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
    path = cand.path
    with open(path, "rb") as fh:
        head = fh.read(CHUNK_BYTES)
        if head.startswith(_BOM):
            head = head[len(_BOM):]
        line, line_end = _first_line(head)
        if line_end >= 0 and _NON_SPACE.search(head, line_end) is not None and isinstance(_loads_or_none(line), dict):
            return _jsonl_run(path, _blocks(fh, head), overrides)  # JSON Lines: read as a stream of blocks
        raw = head + fh.read()
    return _read_whole(path, raw, overrides)


def _read_whole(path: Path, raw: bytes, overrides: RoleOverrides) -> Run:
    """A JSON document (trainer_state.json, an array of records, one object), or JSON Lines whose first line is damaged."""
    from advisor.readers import trainer_state

    line, line_end = _first_line(raw)
    first = _loads_or_none(line)
    single_line = line_end < 0 or _NON_SPACE.search(raw, line_end) is None
    if not isinstance(first, dict) or single_line:
        try:
            doc = loads(raw)
        except (json.JSONDecodeError, RecursionError) as exc:
            if not single_line and sum(ln.lstrip().startswith(b"{") for ln in raw.split(b"\n")) > 1:
                return _jsonl_run(path, _blocks(io.BytesIO(raw), b""), overrides)  # JSON Lines whose first line is damaged
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
    return _jsonl_run(path, _blocks(io.BytesIO(raw), b""), overrides)


def _loads_or_none(line: bytes) -> Any:
    try:
        return loads(line) if line else None
    except (json.JSONDecodeError, RecursionError):
        return None


def _first_line(raw: bytes) -> tuple[bytes, int]:
    """The first line that is not blank, and where the line after it starts (-1 when none follows in `raw`)."""
    pos = 0
    while True:
        end = raw.find(b"\n", pos)
        line = raw[pos:] if end < 0 else raw[pos:end]
        if line.strip() or end < 0:
            return line.strip(), (end + 1 if end >= 0 else -1)
        pos = end + 1


def _blocks(fh: BinaryIO, head: bytes) -> Iterator[bytes]:
    """`head` and then the rest of `fh`, in blocks of whole lines (without their last line end) of about CHUNK_BYTES."""
    carry = head
    while True:
        block = fh.read(CHUNK_BYTES)
        if not block:
            carry = carry.rstrip()  # the final line end and any blank lines after it
            if carry:
                yield carry
            return
        if carry:
            block = carry + block
        cut = block.rfind(b"\n")
        if cut < 0:
            carry = block
            continue
        yield block[:cut]
        carry = block[cut + 1:]


def _jsonl_run(path: Path, blocks: Iterable[bytes], overrides: RoleOverrides) -> Run:
    """JSON Lines, parsed and turned into columns a block of lines at a time (see the module docstring)."""
    columns = RecordColumns()
    bad: list[int] = []  # file line numbers
    lines_before = lines_read = not_objects = 0
    for block in blocks:
        lines = block.split(b"\n")
        try:
            records = list(map(orjson.loads, lines))
            lines_read += len(lines)
        except orjson.JSONDecodeError:  # a blank or damaged line, or one that only the standard library reads
            records = []
            for i, ln in enumerate(lines, lines_before + 1):
                if not ln.strip():
                    continue
                lines_read += 1
                try:
                    records.append(loads(ln))
                except (json.JSONDecodeError, RecursionError):
                    bad.append(i)
        lines_before += len(lines)
        if records and set(map(type, records)) != {dict}:
            objects = [r for r in records if isinstance(r, dict)]
            not_objects += len(records) - len(objects)
            records = objects
        columns.add(records)
        del records, lines  # freed while this block's objects are still in cache
    notes: list[str] = []
    if bad or not_objects:
        if columns.n_rows < 0.5 * lines_read:
            raise AdvisorError(f"{path} is not JSON Lines: {len(bad) + not_objects} of {lines_read} lines are not JSON objects.")
        where = f" (line {', '.join(map(str, bad[:5]))}{', ...' if len(bad) > 5 else ''})" if bad else ""
        notes.append(f"Skipped {len(bad) + not_objects} line(s) that are not JSON objects{where}.")
    if not columns.n_rows:
        raise AdvisorError(f"{path} has no data rows.")
    return table_to_run(path, columns.table(notes), overrides, "jsonl")


def records_run(path: Path, records: list[dict], notes: list[str], overrides: RoleOverrides, fmt: str, meta: dict | None = None) -> Run:
    if not records:
        raise AdvisorError(f"{path} has no data rows.")
    return table_to_run(path, records_table(records, notes), overrides, fmt, meta)


def records_table(records: list[dict], notes: list[str]) -> Table:
    """Columns from row dicts: rows with the same keys become one float matrix in one numpy call."""
    columns = RecordColumns()
    columns.add(records)
    return columns.table(notes)


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


class RecordColumns:
    """Columns built from row dicts handed over in any number of batches (`add`), then `table`.

    Each batch is grouped by key set and each group becomes one float matrix in one numpy call; the
    batch's dicts can be freed as soon as `add` returns. Cells that are not plain numbers (null, text,
    objects, integers beyond float range) are kept one by one and judged per column at the end.
    """

    def __init__(self) -> None:
        self.n_rows = 0
        self.pieces: dict[str, list[tuple[np.ndarray, np.ndarray]]] = {}  # key -> (rows, values) blocks
        self.cells: dict[str, dict[int, Any]] = {}  # key -> {row: cell} of cells that are not plain numbers
        self.first: dict[str, tuple[int, int]] = {}  # key -> (first row with it, its place in that row)
        self.flatten = False
        self.rows_checked_for_nesting = 0

    def add(self, records: list[dict]) -> None:
        # Nested objects are looked for in the first 50 rows of the log, as a sample: W&B nests from the start.
        if self.rows_checked_for_nesting < 50:
            head = records[:50 - self.rows_checked_for_nesting]
            self.rows_checked_for_nesting += len(head)
            self.flatten = self.flatten or any(isinstance(v, dict) for r in head for v in r.values())
        if self.flatten:
            records = [_flatten(r) for r in records]
        pending = _by_length(records)
        while pending:
            idx, rows = pending.pop()
            try:
                self._add_group(tuple(rows[0]), idx, rows)
            except KeyError:  # rows of one length with different keys
                pending.extend(_by_keys(idx, rows))
        self.n_rows += len(records)

    def _add_group(self, keys: tuple, idx: np.ndarray, rows: list[dict]) -> None:
        """One group's cells into the columns; KeyError (before anything is stored) when a row lacks one of `keys`."""
        if not keys:
            return
        matrix = None
        # Types are checked on the ends of the group; anything fromiter cannot take (text, objects,
        # integers beyond float range) raises, and those columns go cell by cell below.
        sample = rows[:256] + rows[-256:] if len(rows) > 512 else rows
        if set(map(type, chain.from_iterable(map(dict.values, sample)))) <= _NUMBER_TYPES:
            try:
                cells_in_order = map(itemgetter(*keys), rows)  # rows may order their keys differently
                if len(keys) > 1:
                    cells_in_order = chain.from_iterable(cells_in_order)
                matrix = np.fromiter(cells_in_order, dtype=np.float64, count=len(rows) * len(keys)).reshape(len(rows), len(keys))
            except (OverflowError, ValueError, TypeError):
                matrix = None  # an integer beyond float range: cell by cell below
        by_key = None if matrix is not None else [[r[k] for r in rows] for k in keys]
        at = idx + self.n_rows
        first_row = int(at[0])
        for place, k in enumerate(keys):
            if k not in self.first or self.first[k][0] > first_row:
                self.first[k] = (first_row, place)
            pieces = self.pieces.setdefault(k, [])
            if matrix is not None:
                col = matrix[:, place]
                pieces.append((at, col))
                # fromiter reads null as NaN (and numeric text as its number), and the ends' type check
                # can miss such a cell in the middle; a parsed JSON number is never NaN, so look at those.
                odd = np.flatnonzero(np.isnan(col))
                if len(odd):
                    self.cells.setdefault(k, {}).update((int(at[i]), rows[i][k]) for i in odd.tolist())
            elif set(map(type, by_key[place])) <= {float}:
                pieces.append((at, np.array(by_key[place], dtype=np.float64)))
            else:
                self.cells.setdefault(k, {}).update(zip(at.tolist(), by_key[place]))

    def table(self, notes: list[str]) -> Table:
        n = self.n_rows
        columns: dict[str, Column] = {}
        non_numeric: list[str] = []
        for k in sorted(self.pieces, key=self.first.__getitem__):
            name = str(k)
            values = np.full(n, np.nan)
            missing = np.ones(n, dtype=bool)
            for rows, block in self.pieces[k]:
                values[rows] = block
                missing[rows] = False
            if k in self.cells:
                cells = self.cells[k]
                rows_k = np.fromiter(cells, dtype=np.int64, count=len(cells))
                missing[rows_k] = True  # judged below, whatever the fast path read there
                parsed = cells_column(name, cells.values(), len(rows_k), notes, int((~missing).sum()))
                if parsed is None:
                    non_numeric.append(name)
                    continue
                values[rows_k] = parsed.values
                missing[rows_k] = parsed.missing
            columns[name] = Column(values, missing)
        skipped_columns_note(non_numeric, notes)
        return Table(columns, n, notes)
