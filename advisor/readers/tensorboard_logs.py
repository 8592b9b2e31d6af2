"""TensorBoard event files, a run directory of them (with its `train/`, `validation/` split
subdirectories), or a log directory holding several runs (one sub-directory each). Read with
tensorboard's own EventAccumulator, keeping every scalar (no TensorFlow needed)."""

from __future__ import annotations

import logging
import math
import os
from pathlib import Path

import numpy as np

from advisor.models import AdvisorError, Run
from advisor.readers.base import Candidate, SPLIT_DIRS, mtime, natural_key, relative
from advisor.readers.build import build_run
from advisor.roles import RoleOverrides

NAME = "tensorboard"


def sniff(path: Path, head: bytes) -> bool:
    return "tfevents" in path.name or b"brain.Event" in head[:256]


def find(root: Path, files: list[Path]) -> list[Candidate]:
    """One candidate per directory of event files; split subdirectories belong to their parent run."""
    event_dirs: dict[Path, float] = {}
    for f in files:
        if "tfevents" in f.name:
            event_dirs[f.parent] = max(event_dirs.get(f.parent, 0.0), mtime(f))
    runs: dict[Path, float] = {}
    for d, when in event_dirs.items():
        run_dir = d.parent if d.name.lower() in SPLIT_DIRS and d != root else d
        runs[run_dir] = max(runs.get(run_dir, 0.0), when)
    return [Candidate(NAME, d, relative(root, d), when, names=(d.name,)) for d, when in runs.items()]


def event_files(path: Path) -> list[Path]:
    if not path.is_dir():
        return [path]
    return sorted(f for f in path.rglob("*tfevents*") if f.is_file()
                  and (f.parent == path or (f.parent.parent == path and f.parent.name.lower() in SPLIT_DIRS)))


def read(cand: Candidate, overrides: RoleOverrides) -> Run:
    from tensorboard.backend.event_processing import event_accumulator as ea

    path = cand.path
    logging.getLogger("tensorboard").setLevel(logging.ERROR)
    dirs = sorted({f.parent for f in event_files(path)}, key=lambda d: natural_key(str(d))) if path.is_dir() else [path]
    guidance = {ea.SCALARS: 0, ea.TENSORS: 0, ea.HISTOGRAMS: 1, ea.IMAGES: 1, ea.AUDIO: 1, ea.COMPRESSED_HISTOGRAMS: 1}
    per_tag: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for d in dirs:
        prefix = ""
        if path.is_dir() and d != path:
            prefix = str(d.relative_to(path)).replace(os.sep, "/") + "/"
        acc = ea.EventAccumulator(str(d), size_guidance=guidance)
        try:
            acc.Reload()
            tags = acc.Tags()
            for tag in tags.get("scalars", []):
                events = acc.Scalars(tag)
                per_tag[prefix + tag] = (np.array([e.step for e in events], dtype=np.float64),
                                         np.array([e.value for e in events], dtype=np.float64))
            for tag in tags.get("tensors", []):
                try:
                    plugin = acc.SummaryMetadata(tag).plugin_data.plugin_name
                except Exception:
                    plugin = ""
                if plugin != "scalars":
                    continue
                from tensorboard.util import tensor_util

                events = acc.Tensors(tag)
                vals = []
                for e in events:
                    arr = np.asarray(tensor_util.make_ndarray(e.tensor_proto))
                    try:
                        vals.append(float(arr.reshape(-1)[0]) if arr.size else math.nan)
                    except (TypeError, ValueError, OverflowError):
                        vals.append(math.nan)
                per_tag[prefix + tag] = (np.array([e.step for e in events], dtype=np.float64), np.array(vals, dtype=np.float64))
        except Exception as exc:  # corrupt or truncated records: tensorboard raises many kinds
            raise AdvisorError(f"{d} is not a readable TensorBoard event log ({type(exc).__name__}: {exc}).") from None
    if not per_tag:
        raise AdvisorError(f"{path} has no scalar data in its TensorBoard events.")
    return build_run(path, "tensorboard", per_tag, overrides, [])
