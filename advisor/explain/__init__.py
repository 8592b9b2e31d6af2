"""Explain a diagnosis in prose: what is probably going on, which fixes to try first and why, and how
to tell if a fix worked; never advice that is not in the KB or numbers that are not in the evidence.

    from advisor.explain import explain, stream_explain

    explanation = explain("runs/exp1")                                    # the deterministic composer
    explanation = explain(diagnosis, backend="openai", model="qwen2.5:7b-instruct")   # local Ollama by default
    explanation = explain("train.csv", backend="transformers", model_path="~/models/qwen2.5-0.5b-instruct")

    stream = stream_explain("runs/exp1", backend="openai", model="llama3.1")
    for piece in stream:          # checked text, a sentence at a time as the model writes it
        print(piece, end="")
    stream.result                 # the checked Explanation (what was removed or marked: .findings)

    print(render_text(explanation))       # a terminal: headings, then what the checker removed or marked
    render_markdown(explanation)          # the TUI's pane

Pieces: `models` (the grounding and the checker's findings), `grounding` (what a backend may see and
the prompt that carries it), `howto` (how to tell a fix worked, from advisor/howto.toml), `compose`
(the `none` backend's templated explanation), `check` (citations, actions and numbers held to the
grounding, sentence by sentence), `render` (text and Markdown), `backends` (none / openai /
transformers behind `ChatBackend`), `options` (keywords, environment, config file).
"""

from __future__ import annotations

from advisor.explain.backends import ChatBackend, make_backend
from advisor.explain.check import CheckResult, check_answer
from advisor.explain.core import Explanation, ExplanationStream, check_options, explain, stream_explain
from advisor.explain.grounding import Grounding, build_grounding, build_messages
from advisor.explain.models import CheckFinding
from advisor.explain.options import BACKENDS, ExplainOptions
from advisor.explain.render import render_markdown, render_text

__all__ = [
    "BACKENDS",
    "ChatBackend",
    "CheckFinding",
    "CheckResult",
    "ExplainOptions",
    "Explanation",
    "ExplanationStream",
    "Grounding",
    "build_grounding",
    "build_messages",
    "check_answer",
    "check_options",
    "explain",
    "make_backend",
    "render_markdown",
    "render_text",
    "stream_explain",
]
