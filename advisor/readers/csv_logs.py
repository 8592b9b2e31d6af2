"""CSV logs: Keras CSVLogger (also `.log` files, `NA` cells, `\\r\\r\\n` line ends) and Lightning's
`metrics.csv` (sparse rows, `<name>_step`/`<name>_epoch` splits, `lightning_logs/version_N/`)."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pandas as pd

from advisor.models import AdvisorError, Run
from advisor.readers.base import Candidate, SNIFF_BYTES, mtime, relative
from advisor.readers.build import Column, Table, cells_column, skipped_columns_note, table_to_run
from advisor.roles import RoleOverrides

NAME = "csv"
# What pandas should take as "no value" (Keras writes NA). Literal nan/inf stay values.
NA_VALUES = ["", "NA", "N/A", "n/a", "null", "NULL", "None", "none", "<NA>", "#N/A", "-"]


def sniff(path: Path, text: str | None) -> bool:
    """Any text file that is not JSON is tried as CSV (the last reader asked)."""
    return text is not None and not text.startswith(("{", "["))


def find(root: Path, files: list[Path]) -> list[Candidate]:
    """Lightning's metrics.csv anywhere below root (one run per version directory)."""
    return [Candidate(NAME, f, relative(root, f.parent) if f.parent != root else relative(root, f), mtime(f))
            for f in files if f.name == "metrics.csv"]


def header_names_columns(path: Path) -> bool:
    """Whether the first line reads as column names (a table), not a line of a message log."""
    from advisor.readers.base import read_head

    text = read_head(path).decode("utf-8", errors="replace").lstrip("\ufeff")
    first = next((ln for ln in text.splitlines() if ln.strip()), "")
    sep = max([",", "\t", ";", "|"], key=first.count)
    fields = [f.strip().strip('"') for f in first.split(sep)]
    return len(fields) >= 2 and all(f and len(f) <= 200 and not f[0].isdigit() for f in fields)


def numeric_column(name: str, col: pd.Series, notes: list[str]) -> Column | None:
    """A column as floats with its missing mask; None when it is not numeric."""
    if pd.api.types.is_bool_dtype(col):
        return None
    if pd.api.types.is_numeric_dtype(col):
        values = col.to_numpy(dtype=np.float64, na_value=np.nan)
        return Column(values, np.isnan(values))
    # Text (a column holding "nan", or numbers too large for int64): cell by cell.
    return cells_column(name, col.to_numpy(dtype=object, na_value=None), len(col), notes)


def frame_to_table(df: pd.DataFrame, notes: list[str]) -> Table:
    columns: dict[str, Column] = {}
    non_numeric = []
    for name in df.columns:
        col = numeric_column(str(name), df[name], notes)
        if col is None:
            non_numeric.append(str(name))
        else:
            columns[str(name)] = col
    skipped_columns_note(non_numeric, notes)
    return Table(columns, len(df), notes)


def _is_number(s: str) -> bool:
    try:
        float(s)
        return True
    except ValueError:
        return False


def read_table(path: Path) -> Table:
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
                na_values=NA_VALUES,
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
        except (pd.errors.ParserError, UnicodeDecodeError, ValueError, OverflowError) as exc:
            first = (str(exc).splitlines() or [type(exc).__name__])[0]
            raise AdvisorError(f"{path} is not a CSV log this reader can parse ({first}).") from None
    bad_lines = [str(w.message).strip() for w in caught if "Skipping line" in str(w.message)]
    if bad_lines:
        msgs = [m for chunk in bad_lines for m in chunk.splitlines() if m.startswith("Skipping line")]
        notes.append(f"Skipped {len(msgs)} malformed CSV line(s) ({msgs[0].removeprefix('Skipping ').rstrip('.')}).")
    df.columns = [str(c).strip() for c in df.columns]
    df = df.loc[:, [c for c in dict.fromkeys(df.columns) if c and not c.startswith("Unnamed: ")]]
    return frame_to_table(df, notes)


def read(cand: Candidate, overrides: RoleOverrides) -> Run:
    return table_to_run(cand.path, read_table(cand.path), overrides, "csv")
