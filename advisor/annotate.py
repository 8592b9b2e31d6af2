"""`annotate`: mark a training log's own step axis with the symptoms found and the entries that address them."""

from __future__ import annotations

import csv
import json
import math
import os
import tempfile
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from advisor.models import SEVERITY_ORDER, AdvisorError, Annotation, Run, Signal, SuggestionRef
from kb import KnowledgeBase

SUGGESTIONS_PER_ANNOTATION = 3


def _json_number(v: Any) -> Any:
    if isinstance(v, float) and not math.isfinite(v):
        return None if math.isnan(v) else ("inf" if v > 0 else "-inf")
    if isinstance(v, (np.floating, np.integer)):
        return _json_number(v.item())
    return v


def annotation_for(signal: Signal, kb: KnowledgeBase, k: int = SUGGESTIONS_PER_ANNOTATION) -> Annotation:
    from advisor.matcher import suggestions_for_signal

    evidence = {"value": signal.value, "threshold": signal.threshold, **signal.numbers}
    return Annotation(
        signal=signal.kind,
        metric=signal.metric,
        start=signal.start,
        end=signal.end,
        start_epoch=signal.start_epoch,
        end_epoch=signal.end_epoch,
        severity=signal.severity,
        summary=signal.summary,
        evidence={key: _json_number(v) for key, v in evidence.items() if v is not None},
        suggestions=[
            SuggestionRef(id=e.id, source=e.source, title=e.title, score=round(score, 4))
            for e, score in suggestions_for_signal(signal, kb, k)
        ],
    )


def annotate_run(run: Run, kb: KnowledgeBase | str | Path | None = None) -> dict:
    from advisor.detectors import detect
    from advisor.diagnose import open_kb

    store = open_kb(kb)
    signals = detect(run)
    annotations = [annotation_for(s, store) for s in signals]
    annotations.sort(key=lambda a: (-SEVERITY_ORDER[a.severity], a.start, a.metric))
    return {
        "log": run.path,
        "format": run.format,
        "axis": run.axis,
        "series": [
            {
                "name": s.name,
                "role": s.role,
                "points": len(s),
                "first": _json_number(float(s.steps[0])) if len(s) else None,
                "last": _json_number(float(s.steps[-1])) if len(s) else None,
            }
            for s in run.series.values()
        ],
        "skipped": run.skipped,
        "annotations": [a.model_dump() for a in annotations],
    }


def annotate(path: str | Path, kb: KnowledgeBase | str | Path | None = None, roles_file: str | Path | None = None) -> dict:
    """Read a log, detect symptoms, and return the annotation document (`advisor annotate --json`)."""
    from advisor.logs import read_log

    return annotate_run(read_log(path, roles_file=roles_file), kb=kb)


# ---- writing the log back with annotations ------------------------------------------------


def _raw_rows(run: Run) -> Iterator[dict]:
    """The log's own rows where the format has rows; otherwise one row per step built from the series."""
    path = Path(run.path)
    if run.format == "jsonl" and path.is_file():
        with open(path, encoding="utf-8", errors="replace") as fh:
            for line in fh:
                line = line.strip()
                if not line:
                    continue
                try:
                    row = json.loads(line)
                except json.JSONDecodeError:
                    continue
                if isinstance(row, dict):
                    yield row
        return
    if run.format == "csv" and path.is_file():
        with open(path, encoding="utf-8", errors="replace", newline="") as fh:
            yield from csv.DictReader(line.replace("\r", "") for line in fh)
        return
    if run.format == "trainer_state" and path.is_file():
        yield from json.loads(path.read_text()).get("log_history", [])
        return
    by_step: dict[float, dict] = {}
    for s in run.series.values():
        for step, value in zip(s.steps.tolist(), s.values.tolist()):
            by_step.setdefault(step, {run.axis: step})[s.name] = _json_number(value)
    for step in sorted(by_step):
        yield by_step[step]


def _row_step(row: dict, axis: str, index: int) -> float | None:
    if axis == "row":
        return float(index)
    value = row.get(axis)
    try:
        return float(value) if value not in (None, "") else None
    except (TypeError, ValueError):
        return None


def write_annotated(run: Run, result: dict, out: str | Path) -> int:
    """Write the log's rows as JSON Lines with an `annotations` field on the rows each annotation covers.

    Written to a temporary file and moved into place, so an error never leaves a half-written OUT.
    Returns the number of rows written.
    """
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    spans = [(a["start"], a["end"], {k: a[k] for k in ("signal", "metric", "severity", "summary")} | {"suggestions": [s["id"] for s in a["suggestions"]]}) for a in result["annotations"]]
    fd, tmp = tempfile.mkstemp(prefix=out.name, dir=out.parent)
    rows = 0
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            for i, row in enumerate(_raw_rows(run)):
                step = _row_step(row, run.axis, i)
                marks = [info for start, end, info in spans if step is not None and start <= step <= end]
                record = {k: _json_number(v) for k, v in row.items()}
                if marks:
                    record["annotations"] = marks
                fh.write(json.dumps(record, ensure_ascii=False) + "\n")
                rows += 1
        os.replace(tmp, out)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return rows


# ---- human output -------------------------------------------------------------------------

SPARK = "▁▂▃▄▅▆▇█"


def sparkline(values: np.ndarray, width: int = 48, window: tuple[int, int] | None = None) -> str:
    """A one-line sparkline; points inside `window` (indices) are marked with a line underneath."""
    values = np.asarray(values, dtype=float)
    if len(values) == 0:
        return ""
    idx = np.linspace(0, len(values) - 1, num=min(width, len(values))).round().astype(int)
    picked = values[idx]
    finite = picked[np.isfinite(picked)]
    lo, hi = (finite.min(), finite.max()) if len(finite) else (0.0, 1.0)
    chars = []
    for v in picked:
        if not np.isfinite(v):
            chars.append("×")
        elif hi == lo:
            chars.append(SPARK[3])
        else:
            chars.append(SPARK[int((v - lo) / (hi - lo) * (len(SPARK) - 1))])
    line = "".join(chars)
    if window is None:
        return line
    marked = [window[0] <= i <= window[1] for i in idx]
    if not any(marked):  # a window narrower than one character still gets a mark
        marked[int(np.argmin(np.abs(idx - window[0])))] = True
    return line + "\n" + "".join("‾" if m else " " for m in marked)


def window_indices(steps: np.ndarray, start: float, end: float) -> tuple[int, int]:
    lo = int(np.searchsorted(steps, start, side="left"))
    hi = int(np.searchsorted(steps, end, side="right")) - 1
    return max(lo, 0), max(hi, lo)


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)


def render_text(run: Run, result: dict) -> str:
    lines = [f"{result['log']}  ({result['format']}, axis: {result['axis']}, {len(result['series'])} series)"]
    for note in result["skipped"]:
        lines.append(f"  note: {note}")
    if not result["annotations"]:
        lines.append("no symptoms found: the curves look healthy to the detectors")
    for a in result["annotations"]:
        epochs = f", epochs {_fmt(a['start_epoch'])}-{_fmt(a['end_epoch'])}" if a.get("start_epoch") is not None else ""
        lines.append("")
        lines.append(f"[{a['severity'].upper()}] {a['signal']} in {a['metric']} ({result['axis']} {_fmt(a['start'])}-{_fmt(a['end'])}{epochs})")
        lines.append(f"  {a['summary']}")
        series = run.series.get(a["metric"])
        if series is not None and len(series) > 1:
            spark = sparkline(series.values, window=window_indices(series.steps, a["start"], a["end"]))
            lines.extend("  " + part for part in spark.split("\n"))
        for s in a["suggestions"]:
            lines.append(f"  -> {s['title']} [{s['id']}] {s['score']:.2f}")
    return "\n".join(lines)


def render_markdown(run: Run, result: dict) -> str:
    out = [f"# Annotations for `{Path(result['log']).name}`", "", f"Format {result['format']}, step axis `{result['axis']}`.", ""]
    for note in result["skipped"]:
        out.append(f"> {note}")
    if not result["annotations"]:
        out.append("No symptoms found: the curves look healthy to the detectors.")
    for a in result["annotations"]:
        out.append(f"## {a['severity'].upper()}: {a['signal']} in `{a['metric']}`")
        out.append("")
        out.append(f"{result['axis']} {_fmt(a['start'])}–{_fmt(a['end'])}" + (f" (epochs {_fmt(a['start_epoch'])}–{_fmt(a['end_epoch'])})" if a.get("start_epoch") is not None else ""))
        out.append("")
        out.append(a["summary"])
        out.append("")
        if a["evidence"]:
            out.append("| evidence | value |")
            out.append("|---|---|")
            out.extend(f"| {k} | {_fmt(v)} |" for k, v in a["evidence"].items())
            out.append("")
        series = run.series.get(a["metric"])
        if series is not None and len(series) > 1:
            out.append("```")
            out.append(sparkline(series.values, window=window_indices(series.steps, a["start"], a["end"])))
            out.append("```")
            out.append("")
        for s in a["suggestions"]:
            out.append(f"- **{s['title']}** (`{s['id']}`, {s['score']:.2f})")
        out.append("")
    return "\n".join(out)


def plot(run: Run, result: dict, out: str | Path) -> Path:
    """Draw each annotated metric with its flagged windows shaded (matplotlib, no display needed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    metrics = list(dict.fromkeys(a["metric"] for a in result["annotations"] if a["metric"] in run.series))
    if not metrics:  # nothing flagged: show the main curves so the picture still says "healthy"
        metrics = [s.name for s in run.series.values() if s.role in ("loss", "val_loss")][:3] or list(run.series)[:3]
    if not metrics:
        raise AdvisorError("nothing to plot: the log has no series")
    colors = {"high": "#d62728", "medium": "#ff7f0e", "low": "#bcbd22"}
    fig, axes = plt.subplots(len(metrics), 1, figsize=(9, 2.3 * len(metrics)), sharex=True, squeeze=False)
    for ax, name in zip(axes[:, 0], metrics):
        s = run.series[name]
        ax.plot(s.steps, s.values, lw=1.2, color="#1f77b4")
        ax.set_ylabel(name, fontsize=8)
        for a in result["annotations"]:
            if a["metric"] == name:
                ax.axvspan(a["start"], a["end"], color=colors[a["severity"]], alpha=0.25)
                ax.text(a["start"], ax.get_ylim()[1], f" {a['signal']}", fontsize=7, va="top", color=colors[a["severity"]])
    axes[-1, 0].set_xlabel(result["axis"])
    fig.suptitle(Path(result["log"]).name, fontsize=10)
    fig.tight_layout()
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out
