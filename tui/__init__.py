"""train-advisor's terminal UI (Textual): ranked suggestions for a run, evidence, notes, search.

`advisor` (or `python -m tui`) opens it on the bundled demo run; `advisor tui RUN_OR_LOG` on your own.
Nothing imports `tui`; it imports `advisor` and `kb` and adds only presentation and interaction.
"""

from __future__ import annotations

__all__ = ["AdvisorApp", "run_app"]


def __getattr__(name: str):
    if name in __all__:
        from tui import app

        return getattr(app, name)
    raise AttributeError(f"module 'tui' has no attribute {name!r}")
