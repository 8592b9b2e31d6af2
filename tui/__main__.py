"""`python -m tui [RUN_OR_LOG] [--db KB] [--notes NOTES]`: the TUI without the `advisor` command."""

from __future__ import annotations

import argparse
import sys


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m tui", description="train-advisor's terminal UI")
    parser.add_argument("target", nargs="?", help="a log file or probe run directory (default: the bundled demo run)")
    parser.add_argument("--db", help="KB file (default: $TRAIN_ADVISOR_DB or the user data dir)")
    parser.add_argument("--notes", help="notes file (default: $TRAIN_ADVISOR_NOTES or the user data dir)")
    args = parser.parse_args(argv)
    from advisor.models import AdvisorError
    from tui.app import run_app

    try:
        run_app(args.target, db=args.db, notes=args.notes)
    except AdvisorError as exc:  # one line, exit 2, as the CLIs do
        print(f"python -m tui: error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None


if __name__ == "__main__":
    main()
