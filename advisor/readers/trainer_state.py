"""Hugging Face `trainer_state.json`: `log_history` rows (training, evaluation, a final summary);
`best_metric`, `best_model_checkpoint` and the run's settings go to `Run.meta`."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from advisor.models import AdvisorError, Run
from advisor.readers.base import Candidate, mtime, natural_key, relative
from advisor.roles import RoleOverrides

NAME = "trainer_state"
SUMMARY_KEYS = {"train_runtime", "train_samples_per_second", "train_steps_per_second", "total_flos", "train_loss"}
META_KEYS = ("best_metric", "best_model_checkpoint", "best_global_step", "global_step", "max_steps",
             "num_train_epochs", "logging_steps", "eval_steps", "save_steps", "train_batch_size", "epoch")


def find(root: Path, files: list[Path]) -> list[Candidate]:
    """The output dir's trainer_state.json, else its latest checkpoint's (it holds the whole history)."""
    by_output: dict[Path, list[Path]] = {}
    for f in files:
        if f.name == "trainer_state.json":
            out = f.parent.parent if re.fullmatch(r"checkpoint-\d+", f.parent.name) else f.parent
            by_output.setdefault(out, []).append(f)
    cands = []
    for out, group in by_output.items():
        top = [f for f in group if f.parent == out]
        chosen = top[0] if top else max(group, key=lambda f: natural_key(f.parent.name))
        cands.append(Candidate(NAME, chosen, relative(root, chosen), mtime(chosen)))
    return cands


def run_from_doc(path: Path, doc: dict, overrides: RoleOverrides) -> Run:
    from advisor.readers.json_logs import records_run

    history = [r for r in doc.get("log_history") or [] if isinstance(r, dict)]
    notes: list[str] = []
    rows = [r for r in history if not (SUMMARY_KEYS & set(r) and "loss" not in r and "eval_loss" not in r)]
    if len(rows) < len(history):
        keys = sorted(set().union(*(set(r) for r in history if r not in rows)) & SUMMARY_KEYS)
        notes.append(f"Skipped the final summary row ({', '.join(keys)}).")
    meta: dict[str, Any] = {}
    for key in META_KEYS:
        if doc.get(key) is not None:
            meta[key] = doc[key]
    best_step = doc.get("best_global_step")
    if best_step is None and isinstance(doc.get("best_model_checkpoint"), str):
        m = re.search(r"checkpoint-(\d+)", doc["best_model_checkpoint"])
        best_step = int(m.group(1)) if m else None
    if isinstance(best_step, (int, float)) and not isinstance(best_step, bool) and abs(best_step) < 2**63:
        meta["trainer_best_step"] = int(best_step)
    if not rows:
        raise AdvisorError(f"{path} is a trainer_state.json with an empty log_history.")
    return records_run(path, rows, notes, overrides, "trainer_state", meta)
