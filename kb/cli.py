"""`kb` — build, search and inspect the knowledge base. Each command is a few lines over kb.store."""

from __future__ import annotations

import json
import re
import sys

import click

from kb.errors import error_handler
from kb.errors import KBError
from kb.store import KnowledgeBase


handle_errors = error_handler("kb", (KBError,))


def _kb(ctx: click.Context) -> KnowledgeBase:
    kb = KnowledgeBase(ctx.obj.get("db"))
    kb.on_wait = lambda message: click.echo(f"kb: {message}", err=True)
    return kb


def _checked_text(text: str, what: str) -> str:
    """Command-line text arrives with undecodable bytes as surrogates; say so instead of failing later."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise KBError(f"{what} is not valid UTF-8 text") from None
    return text


_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


class _StdinQueries:
    """Non-empty stdin lines as queries. Lines that are not text (invalid UTF-8, control characters)
    are skipped: the first few are named on stderr once a line was answered, then one summary line;
    stdin with no line of text at all (a binary file) is one error line."""

    NAMED = 3

    def __init__(self, stdin) -> None:
        self.stdin = stdin
        self.skipped: list[str] = []
        self.told = 0
        self.answered = 0

    def _skip(self, n: int, why: str) -> None:
        self.skipped.append(f"stdin line {n}: {why}; skipped")
        if self.answered:
            self._tell()

    def _tell(self) -> None:
        while self.told < min(len(self.skipped), self.NAMED):
            click.echo(f"kb: warning: {self.skipped[self.told]}", err=True)
            self.told += 1

    def __iter__(self):
        stream = getattr(self.stdin, "buffer", None)
        for n, raw in enumerate(stream if stream is not None else self.stdin, 1):
            if isinstance(raw, bytes):
                try:
                    raw = raw.decode("utf-8-sig" if n == 1 else "utf-8")
                except UnicodeDecodeError as exc:
                    self._skip(n, f"not UTF-8 text (byte {exc.start + 1})")
                    continue
            line = raw.strip()
            if not line:
                continue
            try:
                line.encode("utf-8")
            except UnicodeEncodeError:  # a text stream that decoded bad bytes as surrogates
                self._skip(n, "not UTF-8 text")
                continue
            if _CONTROL.search(line):
                self._skip(n, "holds control characters, not text")
                continue
            self.answered += 1
            self._tell()
            yield line

    def finish(self) -> None:
        if self.skipped and not self.answered:
            raise KBError(f"stdin holds no lines of text to search for (is it a binary file?); {len(self.skipped)} line(s) skipped")
        self._tell()
        if len(self.skipped) > self.NAMED:
            click.echo(f"kb: warning: {len(self.skipped)} stdin lines were not text and were skipped", err=True)


def _print_hits(query: str, results: list[dict], as_json: bool) -> None:
    """results: KnowledgeBase.results dicts (plain, so a query loads no pydantic)."""
    if as_json:
        click.echo(json.dumps({"query": query, "results": results}, ensure_ascii=False))
        return
    if not results:
        click.echo(f"no entries match {query!r}")
        return
    for rank, r in enumerate(results, 1):
        p = r["provenance"]
        click.echo(f"{rank}. {click.style(r['title'], bold=True)}  [{r['source']}] {r['score']:.3f}")
        click.echo(f"   {r['id']}  ({p['file']}:{p['start_line']}-{p['end_line']})")
        if r["symptoms"]:
            click.echo(f"   symptom: {r['symptoms'][0]}")
        for step in r["steps"][:3]:
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
    for warning in report.warnings:
        click.echo(f"kb: warning: {warning}", err=True)
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
    """Add or update your own markdown documents: files, or folders (searched recursively).

    Each source is keyed by its path relative to the folder imported (or its file name); importing
    again updates only what changed, and files gone from a re-imported folder leave the KB.
    """
    report = _kb(ctx).import_paths([_checked_text(p, "a path") for p in paths])
    if as_json:
        click.echo(json.dumps(report.as_dict()))
        return
    for source, n in report.sources.items():
        where = report.paths.get(source)
        click.echo(f"imported {source}: {n} entries" + (f"  ({where})" if where else ""))
        skipped = report.skipped_sections.get(source)
        if skipped:
            click.echo(f"  left out {len(skipped)} boilerplate section(s): {', '.join(skipped)}")
    for source in report.unchanged:
        click.echo(f"unchanged {source}")
    for source in report.removed_sources:
        click.echo(f"removed {source}: its file is gone")
    for item in report.skipped:
        click.echo(f"skipped {item}")
    if report.sources:
        click.echo(f"embedded {report.embedded}, reused {report.reused} ({report.seconds:.1f} s)")


@cli.command()
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
@handle_errors
def sources(ctx, as_json: bool) -> None:
    """List the KB's sources: key, entries, where from, when imported."""
    rows = _kb(ctx).sources()
    if as_json:
        click.echo(json.dumps([r.model_dump() for r in rows], ensure_ascii=False))
        return
    width = max([len(r.source) for r in rows] + [6])
    for r in rows:
        when = r.imported.replace("T", " ").replace("+00:00", " UTC") if r.imported else ""
        click.echo(f"{r.source:<{width}}  {r.entries:>4}  {r.origin:<8}  {when:<23}  {r.file}")


@cli.command()
@click.argument("source")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
@handle_errors
def remove(ctx, source: str, as_json: bool) -> None:
    """Remove an imported source (or every source under a folder key), in one transaction."""
    removed = _kb(ctx).remove(_checked_text(source, "the source"))
    if as_json:
        click.echo(json.dumps({"removed": removed}))
        return
    for key, n in removed.items():
        click.echo(f"removed {key}: {n} entries")


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
        queries = _StdinQueries(sys.stdin)
        for line in queries:
            _print_hits(line, kb.results(line, k=k, source=source, mode=mode), as_json)
            sys.stdout.flush()
        queries.finish()
        return
    text = _checked_text(text, "the query").replace("\x00", " ")
    _print_hits(text, kb.results(text, k=k, source=source, mode=mode), as_json)


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
