"""One error handler for both CLIs (`kb`, `advisor`): every failure is one line on stderr and exit 2.

It lives here, not in kb/cli.py, so `advisor` can use it without importing the `kb` command group.
"""

from __future__ import annotations

import os
import sqlite3
import sys
from functools import wraps


class KBError(Exception):
    """Every error the kb package raises on purpose; the CLI turns it into one line and exit 2.
    (Defined here, not in kb.models, so the query path raises it without importing pydantic.)"""


def sqlite_message(exc: sqlite3.Error, path: object = None) -> str:
    """A sqlite error -> a sentence a user can act on (the file, what is wrong, what to do)."""
    text = str(exc)
    where = f"{path}: " if path else ""
    low = text.lower()
    if "malformed" in low or "not a database" in low or "disk i/o error" in low or "file is encrypted" in low:
        return f"{where}the database file is damaged ({text}); run `kb build --rebuild` to recreate it"
    if "readonly" in low or "read-only" in low:
        return f"{where}cannot write: the file or its directory is read-only ({text})"
    if "locked" in low or "busy" in low:
        return f"{where}the database is busy in another process ({text}); try again"
    if "unable to open" in low:
        return f"{where}cannot open the database file ({text}); check that its directory exists and is writable"
    return f"{where}database error: {text}"


def error_handler(prog: str, expected: tuple[type[BaseException], ...]):
    """A decorator for commands: expected errors become one line on stderr and exit status 2, never a traceback."""
    import click

    def fail(message: str) -> None:
        message = "; ".join(part.strip() for part in str(message).splitlines() if part.strip())  # one line, always
        click.echo(f"{prog}: error: {message}", err=True)
        sys.exit(2)

    def decorate(fn):
        @wraps(fn)
        def wrapper(*args, **kwargs):
            try:
                return fn(*args, **kwargs)
            except expected as exc:
                fail(str(exc))
            except sqlite3.Error as exc:
                fail(sqlite_message(exc))
            except OSError as exc:
                fail(f"{exc.strerror or exc}: {exc.filename or ''}".rstrip(": "))
            except KeyboardInterrupt:
                fail("interrupted")
            except Exception as exc:  # a bug of ours: still one line; TRAIN_ADVISOR_DEBUG=1 shows the traceback
                if os.environ.get("TRAIN_ADVISOR_DEBUG"):
                    raise
                fail(f"internal error: {exc.__class__.__name__}: {exc} (set TRAIN_ADVISOR_DEBUG=1 for details)")

        return wrapper

    return decorate
