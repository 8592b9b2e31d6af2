"""One writer at a time for a KB file: an advisory lock on `<kb>.lock` held for a whole build or import.

SQLite's own lock covers one transaction, but a rebuild reads the imported documents, writes a new
file and renames it over the old one; an import committed in between would be lost. Every writer
(build, rebuild, import, remove, a note becoming an entry) holds this lock from its first read to its
last write, so writers queue instead of racing. The lock is released by the kernel when the process
dies, so a killed build never leaves it stuck.
"""

from __future__ import annotations

import os
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator

from kb.models import KBError

WAIT_SECONDS = 600.0  # a first build embeds for about a minute on a slow machine; a rebuild is faster


def lock_path(db: Path) -> Path:
    return db.with_name(db.name + ".lock")


def _writable_or_raise(db: Path) -> None:
    parent = db.parent
    if not parent.exists():
        try:
            parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise KBError(f"{parent}: cannot create the KB directory ({exc.strerror or exc})") from exc
    if db.exists() and not os.access(db, os.W_OK):
        raise KBError(f"{db}: the KB file is read-only; cannot build or import (use --db to pick another file)")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise KBError(f"{parent}: the KB directory is read-only; cannot build or import (use --db to pick another file)")


@contextmanager
def writer_lock(db: Path, wait: float = WAIT_SECONDS, on_wait: Callable[[str], None] | None = None) -> Iterator[None]:
    """Hold the KB's writer lock; wait (up to `wait` s) while another process builds or imports."""
    _writable_or_raise(db)
    path = lock_path(db)
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as exc:
        raise KBError(f"{path}: cannot create the KB lock file ({exc.strerror or exc}); is the directory writable?") from exc
    try:
        try:
            import fcntl
        except ImportError:  # Windows: no advisory locks here; SQLite's own locking still guards each transaction
            yield
            return
        deadline = time.monotonic() + wait
        told = False
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if not told and on_wait is not None:
                    on_wait(f"waiting for another `kb build`/`kb import` on {db} to finish…")
                    told = True
                if time.monotonic() > deadline:
                    raise KBError(f"{db}: another process has been writing the KB for over {wait:.0f} s; try again later") from None
                time.sleep(0.05)
        try:
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)
