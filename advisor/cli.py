"""`advisor` — annotate logs, diagnose runs, explain, keep notes; with no command, open the TUI.

Each command is a few lines over the Python API (advisor.annotate, advisor.diagnose, advisor.explain).
The `advisor` program is assembled in tui/cli.py, which adds the `tui` command: the advisor never
imports the TUI (tests/test_layering.py checks it).
"""

from __future__ import annotations

import json

import click

from advisor import demo_run_path
from advisor.models import AdvisorError
from advisor.numbers import format_number
from kb.errors import error_handler
from kb.models import KBError

handle_errors = error_handler("advisor", (AdvisorError, KBError))


def _open_kb(db: str | None):
    from advisor.diagnose import open_kb

    return open_kb(db)


def _notes_store():
    """The user's notes (tried / helped / dismissed): they move the ranking."""
    from advisor.notes import NotesStore

    return NotesStore()


def _target(target: str | None) -> str | None:
    """What was typed (a path, `demo`, the name of a run opened before) -> the path to read."""
    from advisor.notes import resolve_target

    return resolve_target(target)


@click.group(invoke_without_command=True, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--db", envvar="TRAIN_ADVISOR_DB", type=click.Path(dir_okay=False), help="KB file (env TRAIN_ADVISOR_DB).")
@click.pass_context
def cli(ctx: click.Context, db: str | None) -> None:
    """Ranked, evidence-linked fixes for training runs that go wrong.

    With no command, opens the TUI on the bundled demo run.
    """
    ctx.obj = {"db": db}
    if ctx.invoked_subcommand is None:
        # the `tui` command is registered by the tui package (tui/cli.py), which sits above the advisor
        tui = cli.get_command(ctx, "tui")
        if tui is None:
            click.echo(ctx.get_help())
            return
        ctx.invoke(tui, target=None)


@cli.command()
@click.argument("log")
@click.option("--json", "as_json", is_flag=True, help="The annotation document as JSON.")
@click.option("--markdown", "as_markdown", is_flag=True, help="A markdown report.")
@click.option("-o", "--output", type=click.Path(dir_okay=False), help="Write the log's rows as JSON Lines with an `annotations` field.")
@click.option("--plot", type=click.Path(dir_okay=False), help="Draw the flagged metrics with their windows shaded (PNG).")
@click.option("--roles", type=click.Path(exists=True, dir_okay=False), help="TOML file overriding inferred column roles.")
@click.option("--run", "run_name", metavar="NAME", help="Which run to read when the source holds several (a directory, a W&B export, an MLflow store).")
@click.pass_context
@handle_errors
def annotate(ctx, log: str, as_json: bool, as_markdown: bool, output: str | None, plot: str | None, roles: str | None, run_name: str | None) -> None:
    """Mark a training log with the symptoms found and the KB entries that address them."""
    from advisor.annotate import annotate_run, plot as draw, render_markdown, render_text, write_annotated
    from advisor.readers import read_log

    if as_json and as_markdown:
        raise AdvisorError("choose one of --json and --markdown")
    run = read_log(_target(log), roles_file=roles, run=run_name)
    result = annotate_run(run, kb=_open_kb(ctx.obj["db"]))
    if output:
        rows = write_annotated(run, result, output)
        click.echo(f"wrote {rows} rows to {output}", err=True)
    if plot:
        click.echo(f"wrote {draw(run, result, plot)}", err=True)
    if as_json:
        click.echo(result.model_dump_json())
    elif as_markdown:
        click.echo(render_markdown(run, result))
    else:
        click.echo(render_text(run, result))


@cli.command()
@click.argument("target", required=False)
@click.option("--describe", help="What you see, in your own words; alone, it works as a symptom search.")
@click.option("--top", default=10, show_default=True, type=click.IntRange(1, 50))
@click.option("--roles", type=click.Path(exists=True, dir_okay=False), help="TOML file overriding inferred column roles.")
@click.option("--run", "run_name", metavar="NAME", help="Which run to read when the source holds several (a directory, a W&B export, an MLflow store).")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
@handle_errors
def diagnose(ctx, target: str | None, describe: str | None, top: int, roles: str | None, run_name: str | None, as_json: bool) -> None:
    """Rank fixes for a run or log (a probe run directory, CSV, JSONL, TensorBoard, trainer_state.json)."""
    from advisor.diagnose import diagnose as run_diagnosis

    result = run_diagnosis(_target(target), describe=describe, kb=_open_kb(ctx.obj["db"]), roles_file=roles, top=top, notes=_notes_store(), run=run_name)
    if as_json:
        data = {
            "path": result.path,
            "describe": result.describe,
            "suggestions": [
                {
                    "id": s.id,
                    "source": s.source,
                    "title": s.title,
                    "score": s.score,
                    "severity": s.severity,
                    "evidence": [e.model_dump(include={"signal", "metric", "value", "threshold", "step", "end_step", "summary"}) for e in s.evidence],
                    "steps": s.steps,
                    "expected_outcome": s.expected_outcome,
                    "provenance": s.provenance.model_dump(),
                }
                for s in result.suggestions
            ],
            "signals": [s.model_dump() for s in result.signals],
            "notes": result.notes,
        }
        click.echo(json.dumps(data, ensure_ascii=False))
        return
    for note in result.notes:
        click.echo(f"note: {note}")
    if result.signals:
        click.echo(f"{len(result.signals)} signal(s):")
        for s in result.signals:
            click.echo(f"  [{s.severity}] {s.kind} in {s.metric} ({format_number(s.start)}-{format_number(s.end)}): {s.summary}")
        click.echo("")
    if not result.suggestions:
        click.echo("no suggestions")
    for rank, s in enumerate(result.suggestions, 1):
        p = s.provenance
        click.echo(f"{rank}. {click.style(s.title, bold=True)}  [{s.source}] {s.strength}, {s.severity}, {len(s.evidence)} signal(s)")
        click.echo(f"   {s.id}  ({p.file}:{p.start_line}-{p.end_line})")
        for e in s.evidence[:3]:
            click.echo(f"   evidence: {e.summary}")
        for step in s.steps[:3]:
            click.echo(f"   - {step}")
        if s.expected_outcome:
            click.echo(f"   expected: {s.expected_outcome}")


@cli.command()
@click.argument("target", required=False)
@click.option("--describe", help="What you see, in your own words.")
@click.option("--llm", "backend", default=None, help="none (offline composer, the default), openai, or transformers (env TRAIN_ADVISOR_LLM_BACKEND or config).")
@click.option("--base-url", help="OpenAI-compatible endpoint (env OPENAI_BASE_URL).")
@click.option("--model", help="Model name for the endpoint (env TRAIN_ADVISOR_LLM_MODEL).")
@click.option("--model-path", type=click.Path(), help="Local model directory for --llm transformers.")
@click.option("--timeout", type=float, help="Seconds to wait for the endpoint.")
@click.option("--max-tokens", type=int, help="Longest answer to ask the model for.")
@click.option("--run", "run_name", metavar="NAME", help="Which run to read when the source holds several (a directory, a W&B export, an MLflow store).")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
@handle_errors
def explain(ctx, target, describe, backend, base_url, model, model_path, timeout, max_tokens, run_name, as_json) -> None:
    """Explain a diagnosis in prose, citing KB entries; never advice that is not in the KB."""
    from advisor.diagnose import diagnose as run_diagnosis
    from advisor.explain import check_options, render_text
    from advisor.explain import explain as run_explain

    options = {
        k: v
        for k, v in {"base_url": base_url, "model": model, "model_path": model_path, "timeout": timeout, "max_tokens": max_tokens}.items()
        if v is not None
    }
    check_options(backend, **options)  # bad options fail now, not after the diagnosis
    diagnosis = run_diagnosis(_target(target), describe=describe, kb=_open_kb(ctx.obj["db"]), notes=_notes_store(), run=run_name)
    result = run_explain(diagnosis, describe=describe, backend=backend, **options)
    if as_json:
        click.echo(result.model_dump_json())
    else:
        click.echo(render_text(result), nl=False)


@cli.command()
@click.argument("target")
@click.option("--json", "as_json", is_flag=True)
@handle_errors
def notes(target: str, as_json: bool) -> None:
    """What you marked (tried, helped, did not help, dismissed) on a run, with your notes.

    TARGET: the run's path (relative works), `demo`, or the name of a run you opened."""
    from advisor.notes import NotesStore, notes_key_of

    store = NotesStore()
    rows = store.export(notes_key_of(target, store))
    if as_json:
        click.echo(json.dumps(rows, ensure_ascii=False, default=str))
        return
    if not rows:
        click.echo(f"no notes for {target}")
    for r in rows:
        click.echo(f"{r['entry_id']}: {r['status']}" + (f" — {r['note']}" if r.get("note") else ""))


def main() -> None:
    cli(prog_name="advisor")


if __name__ == "__main__":
    main()
