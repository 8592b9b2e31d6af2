"""train-advisor's advisor: evidence from live runs and logs in, ranked evidence-linked fixes out.

Heavy pieces (torch for the probe, the KB for matching) load on first use, so
`import advisor` stays cheap in a training script and on the command line.
"""

from __future__ import annotations

from typing import Any

__all__ = ["Probe", "annotate", "demo_run_path", "diagnose", "explain", "read_log"]

_LAZY = {
    "Probe": ("advisor.probe", "Probe"),
    "annotate": ("advisor.annotate", "annotate"),
    "diagnose": ("advisor.diagnose", "diagnose"),
    "explain": ("advisor.explain", "explain"),
    "read_log": ("advisor.readers", "read_log"),
}


def demo_run_path() -> str:
    """The JEPA run log shipped with the package: what `advisor` with no arguments opens."""
    from importlib import resources

    return str(resources.files("advisor") / "data" / "demo_jepa_run.jsonl")


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        module, attr = _LAZY[name]
        return getattr(importlib.import_module(module), attr)
    raise AttributeError(f"module 'advisor' has no attribute {name!r}")
