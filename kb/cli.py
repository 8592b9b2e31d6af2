"""`kb` — build, search and inspect the knowledge base. Each command is a few lines over kb.store."""

from __future__ import annotations

import json
import os
import sys
from functools import wraps

import click

from kb.models import KBError
from kb.store import KnowledgeBase


def error_handler(prog: str, expected: tuple[type[BaseException], ...]):
    """A decorator for commands: expected errors become one line on stderr and exit status 2, never a traceback."""

    def fail(message: str) -> None:
        click.echo(f"{prog}: error: {message}", err=True)
        sys.exit(2)

    def decorate(fn):
        @wraps(fn)
        def wrapper(*args, **kwargs):
            try:
                return fn(*args, **kwargs)
            except expected as exc:
                fail(str(exc))
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


handle_errors = error_handler("kb", (KBError,))


def _kb(ctx: click.Context) -> KnowledgeBase:
    return KnowledgeBase(ctx.obj.get("db"))


def _print_hits(query: str, hits, as_json: bool) -> None:
    if as_json:
        click.echo(json.dumps({"query": query, "results": [h.entry.to_result(h.score) for h in hits]}, ensure_ascii=False))
        return
    if not hits:
        click.echo(f"no entries match {query!r}")
        return
    for rank, h in enumerate(hits, 1):
        e = h.entry
        p = e.provenance
        click.echo(f"{rank}. {click.style(e.title, bold=True)}  [{e.source}] {h.score:.3f}")
        click.echo(f"   {e.id}  ({p.file}:{p.start_line}-{p.end_line})")
        if e.symptoms:
            click.echo(f"   symptom: {e.symptoms[0]}")
        for step in e.steps[:3]:
            click.echo(f"   - {step}")


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--db", envvar="TRAIN_ADVISOR_DB", type=click.Path(dir_okay=False), help="KB file (default: user data dir; env TRAIN_ADVISOR_DB).")
@click.pass_context
def cli(ctx: click.Context, db: str | None) -> None:
    """Troubleshooting knowledge base for neural-network training."""
    ctx.obj = {"db": db}


@cli.command()
@click.option("--rebuild", is_flag=True, help="Recreate the KB file from scratch (keeps imported documents).")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
@handle_errors
def build(ctx, rebuild: bool, as_json: bool) -> None:
    """Parse the shipped documents and embed what changed."""
    report = _kb(ctx).build(rebuild=rebuild)
    if as_json:
        click.echo(json.dumps(report.as_dict()))
    else:
        counts = ", ".join(f"{k} {v}" for k, v in report.sources.items())
        click.echo(f"built {report.db}: {counts}; embedded {report.embedded}, unchanged {report.reused} ({report.seconds:.1f} s)")


@cli.command(name="import")
@click.argument("paths", nargs=-1, required=True)
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
@handle_errors
def import_(ctx, paths: tuple[str, ...], as_json: bool) -> None:
    """Add your own markdown troubleshooting documents."""
    report = _kb(ctx).import_paths(list(paths))
    if as_json:
        click.echo(json.dumps(report.as_dict()))
    else:
        for source, n in report.sources.items():
            click.echo(f"imported {source}: {n} entries")


@cli.command()
@click.argument("text")
@click.option("-k", "k", default=5, show_default=True, type=click.IntRange(1, 100))
@click.option("--source", help="Only entries from this source (catalog, guide, run, audit, ...).")
@click.option("--mode", type=click.Choice(["hybrid", "bm25", "dense"]), default="hybrid", show_default=True)
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
@handle_errors
def query(ctx, text: str, k: int, source: str | None, mode: str, as_json: bool) -> None:
    """Search for a symptom. TEXT '-' reads one query per line from stdin."""
    kb = _kb(ctx)
    if text == "-":
        for line in sys.stdin:
            line = line.strip()
            if line:
                _print_hits(line, kb.search(line, k=k, source=source, mode=mode), as_json)
                sys.stdout.flush()
        return
    _print_hits(text, kb.search(text, k=k, source=source, mode=mode), as_json)


@cli.command()
@click.argument("entry_id")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
@handle_errors
def show(ctx, entry_id: str, as_json: bool) -> None:
    """Show one entry."""
    e = _kb(ctx).get(entry_id)
    if as_json:
        click.echo(e.model_dump_json())
        return
    p = e.provenance
    click.echo(click.style(e.title, bold=True) + f"  [{e.source}/{e.kind}]" + (f"  status: {e.status}" if e.status else ""))
    click.echo(f"{e.id}  ({p.file}:{p.start_line}-{p.end_line})")
    click.echo("")
    click.echo(e.body)


@cli.command()
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
@handle_errors
def stats(ctx, as_json: bool) -> None:
    """Entries per source."""
    counts = _kb(ctx).stats()
    if as_json:
        click.echo(json.dumps(counts))
    else:
        for source, n in counts.items():
            click.echo(f"{source:<12} {n}")
        click.echo(f"{'total':<12} {sum(counts.values())}")


@cli.command()
@click.pass_context
@handle_errors
def export(ctx) -> None:
    """All entries as JSON Lines."""
    for e in _kb(ctx).entries():
        click.echo(e.model_dump_json())


def main() -> None:
    cli(prog_name="kb")


if __name__ == "__main__":
    main()
