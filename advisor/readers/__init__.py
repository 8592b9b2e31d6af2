"""Read a training log or tracked run into a `Run`: one `Series` per metric on the log's own step axis.

Sources, recognised by content (not only by extension), one module each:

| module | source |
|---|---|
| `csv_logs` | Keras CSVLogger (also `.log`), Lightning `metrics.csv` |
| `json_logs` | JSON Lines (W&B history style), a JSON array of records |
| `trainer_state` | Hugging Face `trainer_state.json` |
| `tensorboard_logs` | event files, a run directory, a log directory of several runs |
| `probe_store` | the probe's run store (`run.db`) |
| `wandb_runs` | a W&B run directory (`run-*.wandb`) and a W&B chart CSV export |
| `mlflow_runs` | an MLflow file store (`mlruns/`) and SQLite tracking database |

Every reader ends in `advisor.readers.build.build_run`. A source holding several runs (a directory,
a W&B export, an MLflow store) reads the one named by `run=` (label, run name or run id), else the
newest (the first, for runs of one file), and names the others in `Run.skipped`.

Messy logs: missing cells are absent from a series; `nan`/`inf` written in the log are kept as values
(the `nan_inf` detector reports them). A step written twice keeps its last-written value; a resumed
run whose step goes back keeps the later segment for the steps it overlaps.

`Run.meta["run_id"]` is a stable identity (notes are keyed by it): the tracker's own run id (W&B,
MLflow, the probe), else a hash of the log's bytes.

Errors: a path that is missing, empty, binary, of an unknown format or without numeric data raises
`AdvisorError` with one sentence. A log with a single data row is read (a Run whose `skipped` says it
is too short to judge); the detectors need more points and stay silent on it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from advisor import runstore
from advisor.models import AdvisorError, Run
from advisor.readers import csv_logs, json_logs, mlflow_runs, probe_store, tensorboard_logs, trainer_state, wandb_runs
from advisor.readers.base import Candidate, files_under, mtime, natural_key, read_head, relative, text_head
from advisor.readers.build import KNOWN_FORMATS, content_id
from advisor.roles import RoleOverrides, load_roles_file

__all__ = ["KNOWN_FORMATS", "Candidate", "detect_format", "list_runs", "read_log"]


@dataclass(frozen=True)
class Reader:
    """One source in the registry: how to recognise its files, find its runs, and read one."""

    name: str
    read: Callable[[Candidate, RoleOverrides], Run]
    sniff_binary: Callable[[Path, bytes], bool] | None = None  # on the raw head (SQLite, event files)
    sniff_text: Callable[[Path, str | None], bool] | None = None  # on the head as text (None: binary)
    runs_in_file: Callable[[Path], list[Candidate]] | None = None  # several runs in one file
    find: Callable[[Path, list[Path]], list[Candidate]] | None = None  # runs in a directory tree
    describe: Callable[[Candidate], tuple[str, ...]] | None = None  # costly extra names (read on demand)


# Asked in this order; the first whose sniff says yes reads the file.
REGISTRY: tuple[Reader, ...] = (
    Reader(probe_store.NAME, probe_store.read, sniff_binary=probe_store.sniff, find=probe_store.find),
    Reader(mlflow_runs.NAME, mlflow_runs.read, sniff_binary=mlflow_runs.sniff, runs_in_file=mlflow_runs.file_candidates,
           find=mlflow_runs.find),
    Reader(tensorboard_logs.NAME, tensorboard_logs.read, sniff_binary=tensorboard_logs.sniff, find=tensorboard_logs.find),
    Reader(wandb_runs.NAME, wandb_runs.read, sniff_binary=wandb_runs.sniff, runs_in_file=wandb_runs.file_candidates,
           find=wandb_runs.find, describe=wandb_runs.describe),
    Reader(trainer_state.NAME, json_logs.read, find=trainer_state.find),
    Reader(json_logs.NAME, json_logs.read, sniff_text=json_logs.sniff),
    Reader(wandb_runs.EXPORT, wandb_runs.read_export, sniff_text=wandb_runs.sniff_export, runs_in_file=wandb_runs.export_candidates),
    Reader(csv_logs.NAME, csv_logs.read, sniff_text=csv_logs.sniff, find=csv_logs.find),
)
READERS = {r.name: r for r in REGISTRY}
LOG_SUFFIXES = (".csv", ".jsonl", ".log", ".json", ".tsv", ".txt")


def read_log(path: str | Path, roles_file: str | Path | None = None, run: str | None = None) -> Run:
    """Read any supported log (file or directory) into a Run; `run` picks one run of a multi-run source.

    Raises AdvisorError on unusable input.
    """
    overrides = load_roles_file(roles_file)
    p = Path(path).expanduser()
    if not p.exists():
        raise AdvisorError(f"{p} does not exist.")
    cands = list_runs(p)
    chosen, note = _choose(p, cands, run)
    result = READERS[chosen.reader].read(chosen, overrides)
    if note:
        result.skipped.insert(0, note)
    if overrides.source:
        present = set(result.series) | {result.axis} | set(result.meta.get("columns", []))
        named = set(overrides.roles) | set(overrides.components) | set(overrides.higher_is_better)
        named |= {c for c in (overrides.step, overrides.epoch) if c}
        for col in sorted(named - present):
            result.skipped.append(f"The roles file names column {col!r}, which is not in the log.")
    result.meta.update(overrides.settings())
    if not result.meta.get("run_id"):
        result.meta["run_id"] = _content_identity(chosen)
    return result


def detect_format(path: Path) -> str:
    """The registry name of the reader a file goes to, by its content."""
    return _file_reader(Path(path)).name


def list_runs(path: str | Path) -> list[Candidate]:
    """Every run a file or directory holds, each with the reader that reads it."""
    p = Path(path).expanduser()
    if p.is_dir():
        return _directory_runs(p)
    if p.exists() and not p.is_file():  # a FIFO would block the read; a device is no log
        raise AdvisorError(f"{p} is not a regular file (a device, FIFO or socket); give a log file or directory.")
    reader = _file_reader(p)
    if reader.runs_in_file is not None:
        return reader.runs_in_file(p)
    return [Candidate(reader.name, p, p.name, mtime(p))]


def _file_reader(path: Path) -> Reader:
    head = read_head(path)
    if not head.strip():
        raise AdvisorError(f"{path} is empty.")
    for reader in REGISTRY:
        if reader.sniff_binary is not None and reader.sniff_binary(path, head):
            return reader
    if head.startswith(b"SQLite format 3\x00"):
        raise AdvisorError(f"{path} is an SQLite database but neither a probe run store nor an MLflow tracking database.")
    text = text_head(head)
    if text is None:
        raise AdvisorError(f"{path} is a binary file, not a training log ({KNOWN_FORMATS}).")
    for reader in REGISTRY:
        if reader.sniff_text is not None and reader.sniff_text(path, text):
            return reader
    raise AdvisorError(f"{path} is not a training log this reader knows ({KNOWN_FORMATS}).")


def _looks_like_log_json(path: Path) -> bool:
    """A top-level .json worth reading: an array of records (trainer_state files are found by name)."""
    return read_head(path).lstrip().startswith(b"[")


def _directory_runs(root: Path) -> list[Candidate]:
    if probe_store.is_store(root):
        return [Candidate(probe_store.NAME, root, root.name, mtime(runstore.store_path(root)))]
    files = files_under(root)
    cands: list[Candidate] = []
    for reader in REGISTRY:
        if reader.find is not None:
            cands.extend(reader.find(root, files))
    # Other logs at the top level (.csv, .jsonl, .log, an array .json, an MLflow .db): by content.
    claimed = {c.path for c in cands}
    for f in files:
        if f.parent != root or f in claimed or f.name in ("trainer_state.json", "metrics.csv"):
            continue
        if f.suffix.lower() not in LOG_SUFFIXES + (".db",):
            continue
        try:
            reader = _file_reader(f)
            if f.suffix.lower() == ".json" and reader.name == json_logs.NAME and not _looks_like_log_json(f):
                continue
            if f.suffix.lower() == ".db" and reader.name != mlflow_runs.NAME:
                continue
            if reader.name == csv_logs.NAME and not csv_logs.header_names_columns(f):
                continue  # a text log of messages (W&B's debug.log), not a table
            cands.extend(reader.runs_in_file(f) if reader.runs_in_file else [Candidate(reader.name, f, relative(root, f), mtime(f))])
        except (AdvisorError, OSError):
            continue
    if not cands:
        raise AdvisorError(f"{root} holds no training log this reader knows ({KNOWN_FORMATS}).")
    return cands


def _choose(root: Path, cands: list[Candidate], run: str | None) -> tuple[Candidate, str]:
    """The run to read and, when the source holds several, a note naming the others."""
    if run is not None:
        chosen = _match(root, cands, run)
    elif len(cands) == 1:
        return cands[0], ""
    else:  # the newest (modification time, then version_10 after version_9); the first of one file
        chosen = max(cands, key=lambda c: (c.mtime, -c.order, natural_key(c.label)))
    if len(cands) == 1:
        return chosen, ""
    others = [c for c in sorted(cands, key=lambda c: (c.mtime, -c.order, natural_key(c.label)), reverse=True) if c is not chosen]
    listed = ", ".join(c.label for c in others[:8])
    more = f" and {len(others) - 8} more" if len(others) > 8 else ""
    how = "the one asked for" if run is not None else "the newest" if len({c.path for c in cands}) > 1 else "the first"
    note = (f"{root} holds {len(cands)} runs; read {how}, {chosen.label} "
            f"(not read: {listed}{more}; choose one with --run NAME).")
    return chosen, note


def _match(root: Path, cands: list[Candidate], run: str) -> Candidate:
    """A run by label, name or id: exact first, then case-insensitive, then a unique partial match."""
    def names(c: Candidate) -> tuple[str, ...]:
        return (c.label, *c.names)

    for test in (lambda n: n == run, lambda n: n.lower() == run.lower()):
        hits = [c for c in cands if any(test(n) for n in names(c))]
        if len(hits) >= 1:
            return max(hits, key=lambda c: (c.mtime, -c.order))
    extra = {id(c): READERS[c.reader].describe(c) for c in cands if READERS[c.reader].describe is not None}
    hits = [c for c in cands if run in extra.get(id(c), ()) or run.lower() in (n.lower() for n in extra.get(id(c), ()))]
    if not hits:
        hits = [c for c in cands if any(run.lower() in n.lower() for n in names(c))]
    if len(hits) == 1:
        return hits[0]
    listed = ", ".join(c.label for c in sorted(cands, key=lambda c: natural_key(c.label))[:12])
    if hits:
        raise AdvisorError(f"--run {run!r} matches {len(hits)} runs in {root}: {', '.join(c.label for c in hits[:8])}; be more specific.")
    raise AdvisorError(f"{root} holds no run named {run!r}; its runs: {listed}.")


def _content_identity(cand: Candidate) -> str:
    p = cand.path
    if p.is_dir():
        files = tensorboard_logs.event_files(p) if cand.reader == tensorboard_logs.NAME else [f for f in p.rglob("*") if f.is_file()]
        return content_id(files)
    return content_id([p])
