"""What every reader shares: the run candidates a source holds, and sniffing a file's first bytes."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from advisor.models import AdvisorError

SNIFF_BYTES = 1 << 16
SKIP_DIRS = {"__pycache__", "node_modules", "site-packages", ".git", ".venv", "venv"}
MAX_DEPTH = 6
# Subdirectories that hold one split of a run (Keras writes train/ and validation/ event files).
SPLIT_DIRS = {"train", "training", "validation", "valid", "val", "eval", "evaluation", "test"}


@dataclass
class Candidate:
    """One run a source holds: what to read, with which reader, and the names a person may pick it by."""

    reader: str  # registry name of the reader that reads it
    path: Path  # the file or directory to read
    label: str  # how to name it to a person
    mtime: float = 0.0  # newest first when nothing is chosen
    names: tuple[str, ...] = ()  # other names it answers to (run id, display name)
    key: Any = None  # the reader's own handle inside a multi-run file (a run id, a column prefix)
    order: int = 0  # position inside its file, for runs of one file (the first is the default)


def read_head(path: Path) -> bytes:
    try:
        with open(path, "rb") as fh:
            return fh.read(SNIFF_BYTES)
    except IsADirectoryError:
        raise AdvisorError(f"{path} is a directory.") from None
    except OSError as exc:
        raise AdvisorError(f"{path} cannot be read: {exc.strerror or exc}.") from None


def binary_share(head: bytes) -> float:
    """Share of control bytes (other than whitespace) in the sniffed head."""
    if not head:
        return 0.0
    arr = np.frombuffer(head, dtype=np.uint8)
    control = (arr < 32) & ~np.isin(arr, [9, 10, 12, 13])
    return float(control.mean())


def text_head(head: bytes) -> str | None:
    """The head as text, or None when it is binary."""
    if head.startswith(b"\xef\xbb\xbf"):
        head = head[3:]
    if b"\x00" in head or binary_share(head) > 0.1:
        return None
    return head.decode("utf-8", errors="replace").lstrip()


def natural_key(s: str) -> list:
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", s)]


def files_under(root: Path) -> list[Path]:
    """Files up to MAX_DEPTH levels below root, skipping hidden, cache and environment directories."""
    out: list[Path] = []
    base_depth = len(root.parts)
    for dirpath, dirnames, filenames in os.walk(root):
        here = Path(dirpath)
        depth = len(here.parts) - base_depth
        dirnames[:] = [] if depth >= MAX_DEPTH else sorted(d for d in dirnames if not d.startswith(".") and d not in SKIP_DIRS)
        out.extend(here / f for f in sorted(filenames))
    return out


def mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except OSError:
        return 0.0


def relative(root: Path, p: Path) -> str:
    return str(p.relative_to(root)) if p != root else "."
