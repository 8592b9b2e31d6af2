"""Weights & Biases: a local run directory (`wandb/run-*`, `wandb/offline-run-*`) and the CSV the W&B
UI exports from a chart.

A run directory keeps its history in the binary transaction log `run-<id>.wandb`: records of the
SDK's own protobuf messages. They are read with the SDK's record reader
(`wandb.sdk.internal.datastore.DataStore`) and decoded with its `Record` message; SDKs that no longer
ship that reader (0.30 and later moved it into their Go core) get the same scan of the documented
leveldb-log framing here, still decoded by the SDK's messages. The wandb package is an optional
dependency (`pip install 'train-advisor[wandb]'`), imported only when a W&B run is read.

A chart export has a `Step` column and `<run> - <metric>` columns (with `__MIN`/`__MAX` companions
on sampled charts); several runs in one file are several candidates, picked by run name.
"""

from __future__ import annotations

import re
import struct
import zlib
from pathlib import Path
from typing import Any, Iterator

from advisor.models import AdvisorError, Run
from advisor.readers.base import Candidate, mtime, relative
from advisor.readers.build import Column, Table, content_id, table_to_run
from advisor.roles import RoleOverrides

NAME = "wandb"
EXPORT = "wandb_export"
MAGIC = b":W&B"
RUN_FILE = re.compile(r"run-(?P<id>[A-Za-z0-9_-]+)\.wandb$")
EXPORT_AXES = {"step", "wall time", "relative time (process)", "relative time (wall)", "_step", "_runtime", "_timestamp", "epoch"}
BOUND_SUFFIXES = ("__MIN", "__MAX")
INSTALL_HINT = "reading a W&B run directory needs the wandb package: pip install 'train-advisor[wandb]'"


# ---- the run directory ------------------------------------------------------------------------------


def sniff(path: Path, head: bytes) -> bool:
    return head.startswith(MAGIC)


def _run_file(path: Path) -> Path:
    """The transaction log of a run directory (or the file itself)."""
    if path.is_file():
        return path
    logs = sorted(path.glob("run-*.wandb"))
    if not logs:
        raise AdvisorError(f"{path} is not a W&B run directory (no run-*.wandb file).")
    return logs[-1]


def find(root: Path, files: list[Path]) -> list[Candidate]:
    cands = []
    for f in files:
        m = RUN_FILE.fullmatch(f.name)
        if m:
            run_dir = f.parent
            cands.append(Candidate(NAME, run_dir, relative(root, run_dir), mtime(f), names=(m["id"], run_dir.name)))
    return cands


def file_candidates(path: Path) -> list[Candidate]:
    m = RUN_FILE.fullmatch(path.name)
    return [Candidate(NAME, path, path.parent.name if m else path.name, mtime(path), names=(m["id"],) if m else ())]


def describe(cand: Candidate) -> tuple[str, ...]:
    """The run's display name, read from its first records (only when a person picks a run by it)."""
    _record_class()  # a missing wandb package is said, not taken for "no such run"
    try:
        for record in _records(_run_file(cand.path), stop_after_run=True):
            if record.WhichOneof("record_type") == "run":
                return tuple(x for x in (record.run.display_name, record.run.run_id) if x)
    except AdvisorError:  # a damaged run answers to its directory name and id only
        pass
    return ()


def _record_class():
    try:
        from wandb.proto import wandb_internal_pb2
    except ImportError:
        raise AdvisorError(INSTALL_HINT) from None
    return wandb_internal_pb2.Record


def _scan_sdk(path: Path) -> Iterator[bytes] | None:
    """The SDK's own reader, where this wandb version ships it."""
    try:
        from wandb.sdk.internal.datastore import DataStore
    except ImportError:
        return None
    store = DataStore()
    store.open_for_scan(str(path))

    def scan() -> Iterator[bytes]:
        try:
            while True:
                data = store.scan_data()
                if data is None:
                    return
                yield data
        finally:
            store.close()

    return scan()


HEADER_LEN, BLOCK_LEN = 7, 32768
FULL, FIRST, MIDDLE, LAST = 1, 2, 3, 4


def _scan_framing(path: Path) -> Iterator[bytes]:
    """The leveldb-log framing the SDK writes (7-byte header, 32 KiB blocks, crc32 per chunk)."""
    with open(path, "rb") as fh:
        data = fh.read()
    ident, magic, version = struct.unpack("<4sHB", data[:HEADER_LEN])
    if ident != MAGIC or magic != 0xBEE1 or version != 0:
        raise AssertionError("invalid header")
    pos, pending = HEADER_LEN, b""
    while pos < len(data):
        if BLOCK_LEN - pos % BLOCK_LEN < HEADER_LEN:
            pos += BLOCK_LEN - pos % BLOCK_LEN  # block trailer padding
            continue
        if pos + HEADER_LEN > len(data):
            raise AssertionError("truncated record header")
        checksum, length, kind = struct.unpack("<IHB", data[pos:pos + HEADER_LEN])
        chunk = data[pos + HEADER_LEN:pos + HEADER_LEN + length]
        if len(chunk) < length or zlib.crc32(chunk, zlib.crc32(bytes([kind]))) & 0xFFFFFFFF != checksum:
            raise AssertionError("record checksum is invalid")
        pos += HEADER_LEN + length
        if kind == FULL:
            yield chunk
        elif kind == FIRST:
            pending = chunk
        elif kind == MIDDLE:
            pending += chunk
        elif kind == LAST:
            yield pending + chunk
            pending = b""
        else:
            raise AssertionError(f"unknown record type {kind}")


class _Truncated(Exception):
    pass


def _records(path: Path, stop_after_run: bool = False, problems: list[str] | None = None) -> Iterator[Any]:
    Record = _record_class()
    try:
        chunks = _scan_sdk(path)
        if chunks is None:
            chunks = _scan_framing(path)
        for data in chunks:
            record = Record()
            record.ParseFromString(data)
            yield record
            if stop_after_run and record.WhichOneof("record_type") == "run":
                return
    except AdvisorError:
        raise
    except Exception as exc:  # AssertionError from the reader on a damaged or still-growing file, DecodeError
        if problems is None:
            raise AdvisorError(f"{path} is not a readable W&B transaction log ({type(exc).__name__}: {exc}).") from None
        problems.append(f"{path.name} ends in a damaged or unfinished record ({exc}); read the records before it.")


def _item_name(item: Any) -> str:
    return "/".join(item.nested_key) if item.nested_key else item.key


def read(cand: Candidate, overrides: RoleOverrides) -> Run:
    from advisor.readers.json_logs import loads, records_run

    path = _run_file(cand.path)
    problems: list[str] = []
    rows: list[dict] = []
    meta: dict[str, Any] = {}
    non_scalar: set[str] = set()
    finished = False
    for record in _records(path, problems=problems):
        kind = record.WhichOneof("record_type")
        if kind == "history":
            row: dict[str, Any] = {}
            for item in record.history.item:
                name = _item_name(item)
                try:
                    value = loads(item.value_json)
                except Exception:
                    continue
                if isinstance(value, (dict, list)):  # histograms, media, tables
                    non_scalar.add(name)
                    continue
                row[name] = value
            if row:
                rows.append(row)
        elif kind == "run":
            r = record.run
            meta.update({"run_name": r.display_name, "project": r.project, "wandb_run_id": r.run_id})
            for u in r.config.update:
                _config_value(meta, u.key or "/".join(u.nested_key), u.value_json, loads)
        elif kind == "config":
            for u in record.config.update:
                _config_value(meta, u.key or "/".join(u.nested_key), u.value_json, loads)
        elif kind == "exit":
            finished = True
    if not rows:
        raise AdvisorError(f"{path} holds no history rows (nothing was logged with wandb.log).")
    notes = list(problems)
    if non_scalar:
        shown = sorted(non_scalar)
        notes.append(f"Skipped {len(shown)} non-scalar key(s) (histograms, media, tables): {', '.join(shown[:8])}"
                     + (f" and {len(shown) - 8} more." if len(shown) > 8 else "."))
    meta["finished"] = finished
    run = records_run(cand.path, rows, notes, overrides, NAME, meta)
    run.meta["run_id"] = f"wandb:{meta['wandb_run_id']}" if meta.get("wandb_run_id") else content_id([path])
    return run


def _config_value(meta: dict, key: str, value_json: str, loads) -> None:
    """Keep the gradient clipping setting from the config (the clip_pressure check uses it)."""
    from advisor.readers.probe_store import CLIP_KEYS

    if key.split("/")[-1] in CLIP_KEYS and "clip_value" not in meta:
        try:
            value = loads(value_json)
            if isinstance(value, dict) and "value" in value:  # config.yaml style {"value": ...}
                value = value["value"]
            meta["clip_value"] = float(value)
        except Exception:
            pass


# ---- the chart export ----------------------------------------------------------------------------


def _split_column(col: str) -> tuple[str, str, str] | None:
    """`<run> - <metric>[__MIN|__MAX]` -> (run, metric, bound)."""
    bound = ""
    for suffix in BOUND_SUFFIXES:
        if col.endswith(suffix):
            col, bound = col[: -len(suffix)], suffix
    if " - " not in col:
        return None
    run, metric = col.rsplit(" - ", 1)
    return (run.strip(), metric.strip(), bound) if run.strip() and metric.strip() else None


def _header(text: str) -> list[str]:
    import csv

    first = next((ln for ln in text.splitlines() if ln.strip()), "")
    try:
        return [c.strip() for c in next(csv.reader([first]))]
    except (csv.Error, StopIteration):
        return []


def sniff_export(path: Path, text: str | None) -> bool:
    """A CSV whose columns after the first are all `<run> - <metric>` (the first is the x axis)."""
    if text is None or text.startswith(("{", "[")):
        return False
    cols = _header(text)
    return len(cols) >= 2 and all(_split_column(c) is not None for c in cols[1:]) and _split_column(cols[0]) is None


def export_candidates(path: Path) -> list[Candidate]:
    from advisor.readers.base import read_head

    cols = _header(read_head(path).decode("utf-8", errors="replace").lstrip("\ufeff"))
    runs = list(dict.fromkeys(p[0] for p in map(_split_column, cols[1:]) if p))
    return [Candidate(EXPORT, path, run, mtime(path), key=run, order=i) for i, run in enumerate(runs)]


def read_export(cand: Candidate, overrides: RoleOverrides) -> Run:
    from advisor.readers.csv_logs import read_table

    table = read_table(cand.path)
    axis = next(iter(table.columns), None)
    cols = list(table.columns)
    columns: dict[str, Column] = {}
    bounds = 0
    for name in cols:
        parts = _split_column(name)
        if parts is None:
            if name == cols[0] or name.lower() in EXPORT_AXES:
                columns[name] = table.columns[name]
            continue
        run, metric, bound = parts
        if run != cand.key:
            continue
        if bound:
            bounds += 1
            continue
        columns[metric] = table.columns[name]
    notes = list(table.notes)
    if bounds:
        notes.append(f"Skipped {bounds} __MIN/__MAX column(s): the chart's bucket bounds, not values.")
    if axis is not None and axis in columns and axis.lower() == "step":
        columns["step"] = columns.pop(axis)  # W&B's "Step" is the step axis
    meta = {"run_name": cand.key, "run_id": f"{content_id([cand.path])}:{cand.key}"}
    return table_to_run(cand.path, Table(columns, table.n_rows, notes), overrides, EXPORT, meta)
