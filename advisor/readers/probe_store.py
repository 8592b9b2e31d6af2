"""The probe's run store (a directory holding run.db, or the .db file): readings become series with
role `probe`, user scalars (loss, lr, val_loss...) keep the role their names say."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np

from advisor import reading_names as rn
from advisor import runstore
from advisor.models import AdvisorError, Run
from advisor.readers.base import Candidate, mtime, relative
from advisor.readers.build import build_run, content_id
from advisor.roles import RoleGuess, RoleOverrides

NAME = "probe"
# First segments of the probe's reading families (its other readings are told by their suffix).
FAMILIES = {rn.ACT, rn.GRAD, rn.WEIGHT, rn.UPDATE, rn.GPU, rn.TIME, rn.NONFINITE, rn.LOGITS, rn.CODES, rn.ATTENTION,
            rn.EMBEDDINGS, rn.VIEWS, "system", "probe", "hardware", "memory", "amp"}
CLIP_KEYS = ("clip_value", "max_grad_norm", "gradient_clip_val", "clip_grad_norm")


def is_store(path: Path) -> bool:
    try:
        return runstore.is_run_store(path)
    except OSError:  # unreadable: not one we can read
        return False


def sniff(path: Path, head: bytes) -> bool:
    return head.startswith(b"SQLite format 3\x00") and is_store(path)


def find(root: Path, files: list[Path]) -> list[Candidate]:
    return [Candidate(NAME, f, relative(root, f.parent), mtime(f), names=(f.parent.name,))
            for f in files if f.name == runstore.STORE_NAME and is_store(f)]


def is_probe_reading(name: str) -> bool:
    """A reading the probe wrote rather than a scalar the user passed (`loss`, `lr`, `val_loss`)."""
    return rn.is_probe_reading(name) or ("/" in name and name.split("/", 1)[0] in FAMILIES)


def run_id(path: Path, meta: dict) -> str:
    """The store's own run id when the probe wrote one; else its start (stable while it grows); else its bytes."""
    if meta.get(rn.META_RUN_ID):
        return f"probe:{meta[rn.META_RUN_ID]}"
    if meta.get(rn.META_STARTED) is not None:
        key = f"{meta.get(rn.META_HOST, '')}|{meta[rn.META_STARTED]}|{meta.get('first_step', '')}"
        return "probe:" + hashlib.sha256(key.encode()).hexdigest()[:20]
    return content_id([runstore.store_path(path)])


def read(cand: Candidate, overrides: RoleOverrides) -> Run:
    path = cand.path
    try:
        readings = runstore.read_readings(path)
        meta = runstore.read_meta(path)
        live = runstore.run_state(path) == "live"  # a killed run (its writer gone) is not live
    except Exception as exc:  # sqlite3.DatabaseError, a damaged meta value...
        raise AdvisorError(f"{path} is a run store that cannot be read ({type(exc).__name__}: {exc}).") from None
    if not readings:
        raise AdvisorError(f"{runstore.store_path(path)} has no readings yet.")

    def role_of(name: str, guess: RoleGuess) -> RoleGuess:
        if name in overrides.roles or name in overrides.components:
            return guess
        if is_probe_reading(name) or guess.role == "other":
            return RoleGuess("probe")
        return guess

    per_tag = {n: (s.astype(np.float64), v) for n, (s, v) in readings.items()}
    run = build_run(path, "probe", per_tag, overrides, [], meta=meta, role_of=role_of)
    run.live = live
    run.meta["run_id"] = run_id(path, meta)
    for key in CLIP_KEYS:
        if key in meta and "clip_value" not in run.meta:
            try:
                run.meta["clip_value"] = float(meta[key])
            except (TypeError, ValueError):
                pass
    return run
