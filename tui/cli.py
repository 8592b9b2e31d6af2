"""The `advisor` program: the advisor's commands (advisor/cli.py) plus `advisor tui`, registered here
because the TUI sits above the advisor and the advisor never imports it."""

from __future__ import annotations

import click

from advisor import demo_run_path
from advisor.cli import cli, handle_errors


@cli.command()
@click.argument("target", required=False)
@click.option("--run", "run_name", metavar="NAME", help="Which run to open when the source holds several (a directory, a W&B export, an MLflow store).")
@click.pass_context
@handle_errors
def tui(ctx, target: str | None, run_name: str | None) -> None:
    """Open the TUI on a run or log (default: the bundled demo run)."""
    from tui.app import run_app

    run_app(target or demo_run_path(), db=ctx.obj["db"], run=run_name)


def main() -> None:
    cli(prog_name="advisor")


if __name__ == "__main__":
    main()
