"""A cold `kb query` loads what a query needs: no pydantic, no parser (ftfy, markdown-it), no torch;
the Python API still returns the pydantic Hit/Entry contract, and both give the same results."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from kb import KnowledgeBase

HEAVY = ("pydantic", "ftfy", "markdown_it", "torch", "sentence_transformers", "kb.build", "kb.parse", "kb.models")

PROBE = """
import sys, runpy
sys.argv = ["kb", "query", {query!r}, "-k", "3"{extra}]
try:
    runpy.run_module("kb.cli", run_name="__main__")
except SystemExit as exc:
    assert not exc.code, exc.code
loaded = [m for m in {heavy!r} if m in sys.modules]
print("LOADED=" + ",".join(loaded), file=sys.stderr)
"""


def _cold(db, query: str, *extra: str) -> tuple[str, list[str]]:
    code = PROBE.format(query=query, extra="".join(f", {e!r}" for e in extra), heavy=HEAVY)
    env = {**os.environ, "TRAIN_ADVISOR_DB": str(db)}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert out.returncode == 0, out.stderr
    line = [ln for ln in out.stderr.splitlines() if ln.startswith("LOADED=")][-1]
    return out.stdout, [m for m in line[len("LOADED="):].split(",") if m]


def test_cold_query_loads_no_pydantic_parser_or_torch(built_kb_path):
    KnowledgeBase(built_kb_path).stats()  # an up-to-date index: no rewrite on this open
    stdout, loaded = _cold(built_kb_path, "loss becomes nan after a few hundred steps")
    assert loaded == []
    assert "guide/001-loss-becomes-nan" in stdout
    stdout, loaded = _cold(built_kb_path, "loss becomes nan after a few hundred steps", "--json")
    assert loaded == []
    assert json.loads(stdout)["results"][0]["id"] == "guide/001-loss-becomes-nan"


def test_cli_results_are_the_api_hits(kb):
    from kb.models import Hit

    for text in ("val loss goes up after epoch 20", "train/grad_norm 3e4 then nan", "codebook usage drops to a few codes"):
        hits = kb.search(text, k=5)
        assert all(isinstance(h, Hit) for h in hits)
        assert kb.results(text, k=5) == [h.entry.to_result(h.score) for h in hits]
