"""`annotate`: mark a training log's own step axis with the symptoms found and the entries that address them."""

from __future__ import annotations

import csv
import json
import math
import os
import secrets
import stat
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np

from advisor.models import SEVERITY_ORDER, AdvisorError, Annotation, AnnotationReport, Run, SeriesSummary, Signal, SuggestionRef
from advisor.numbers import format_number
from advisor.sparkline import spark
from kb import KnowledgeBase

SUGGESTIONS_PER_ANNOTATION = 3


def _json_number(v: Any) -> Any:
    if isinstance(v, float) and not math.isfinite(v):
        return None if math.isnan(v) else ("inf" if v > 0 else "-inf")
    if isinstance(v, (np.floating, np.integer)):
        return _json_number(v.item())
    return v


def annotation_for(signal: Signal, kb: KnowledgeBase, k: int = SUGGESTIONS_PER_ANNOTATION, run: Run | None = None) -> Annotation:
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
            for e, score in suggestions_for_signal(signal, kb, k, run=run)
        ],
    )


def annotate_run(run: Run, kb: KnowledgeBase | str | Path | None = None) -> AnnotationReport:
    """The signals of an already-read run, each with the entries that address it (`advisor annotate`)."""
    from advisor.analysis import detect_signals, open_kb

    store = open_kb(kb)
    signals, remarks = detect_signals(run)
    annotations = [annotation_for(s, store, run=run) for s in signals]
    annotations.sort(key=lambda a: (-SEVERITY_ORDER[a.severity], a.start, a.metric))
    return AnnotationReport(
        log=run.path,
        format=run.format,
        axis=run.axis,
        series=[
            SeriesSummary(
                name=s.name,
                role=s.role,
                points=len(s),
                first=_json_number(float(s.steps[0])) if len(s) else None,
                last=_json_number(float(s.steps[-1])) if len(s) else None,
            )
            for s in run.series.values()
        ],
        skipped=list(run.skipped),
        notes=[r for r in remarks if r not in run.skipped],
        annotations=annotations,
    )


def annotate(path: str | Path, kb: KnowledgeBase | str | Path | None = None, roles_file: str | Path | None = None,
             run: str | None = None) -> AnnotationReport:
    """Read a log, detect symptoms, and return the annotation report (`advisor annotate --json`)."""
    from advisor.readers import read_log

    return annotate_run(read_log(path, roles_file=roles_file, run=run), kb=kb)


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
            for row in csv.DictReader(line.replace("\r", "") for line in fh):
                yield {key: _csv_cell(value) for key, value in row.items()}
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


MISSING_CELLS = frozenset({"", "na", "nan", "null", "none"})  # how CSV loggers write a missing value


def _csv_cell(value: str | None) -> Any:
    """A CSV cell as the number it holds (written back as a JSON number), None when missing, else the text."""
    if value is None or value.strip().lower() in MISSING_CELLS:
        return None
    text = value.strip()
    try:
        return int(text)
    except ValueError:
        pass
    try:
        return float(text)
    except ValueError:
        return value


def _row_step(row: dict, axis: str, index: int) -> float | None:
    if axis == "row":
        return float(index)
    value = row.get(axis)
    try:
        return float(value) if value not in (None, "") else None
    except (TypeError, ValueError):
        return None


def output_path(out: str | Path) -> Path:
    """The file to write for OUT: a new path, a regular file, or the regular file a symlink points at.

    Refuses directories, devices, FIFOs and sockets (replacing `/dev/null` or a pipe with a file would
    break the user's system or plumbing), dangling symlinks and read-only files, each in one line.
    """
    p = Path(out).expanduser()
    try:
        st = p.stat()  # follows symlinks
    except FileNotFoundError:
        if p.is_symlink():
            raise AdvisorError(f"{p} is a symlink to a missing file; give the file path itself.") from None
        return p
    except OSError as exc:
        raise AdvisorError(f"{p} cannot be written: {exc.strerror or exc}.") from None
    if stat.S_ISDIR(st.st_mode):
        raise AdvisorError(f"{p} is a directory; give a file path to write to.")
    if not stat.S_ISREG(st.st_mode):
        raise AdvisorError(f"{p} is not a regular file (a device, FIFO or socket); refusing to replace it.")
    if not os.access(p, os.W_OK):
        raise AdvisorError(f"{p} is read-only; refusing to replace it.")
    return p.resolve() if p.is_symlink() else p


def write_atomically(out: str | Path, write: Callable[[Path], None]) -> Path:
    """Write through a temporary file beside the target and rename it into place (never half-written).

    `write(tmp)` fills the temporary file. The result has the mode the user's umask gives a new file,
    or the mode of the file it replaces. Returns the path written (a symlink's target).
    """
    target = output_path(out)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f".{target.name}.{secrets.token_hex(4)}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)  # the umask applies, as for any new file
    except OSError as exc:
        raise AdvisorError(f"{target} cannot be written: {exc.strerror or exc}.") from None
    os.close(fd)
    try:
        write(tmp)
        if target.exists():
            os.chmod(tmp, stat.S_IMODE(target.stat().st_mode))
        os.replace(tmp, target)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise AdvisorError(f"{target} cannot be written: {exc.strerror or exc}.") from None
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return target


def write_annotated(run: Run, result: AnnotationReport, out: str | Path) -> int:
    """Write the log's rows as JSON Lines with an `annotations` field on the rows each annotation covers.

    Written through `write_atomically`, so an error never leaves a half-written OUT.
    Returns the number of rows written.
    """
    spans = [(a.start, a.end, a.model_dump(include={"signal", "metric", "severity", "summary"}) | {"suggestions": [s.id for s in a.suggestions]})
             for a in result.annotations]
    rows = 0

    def write(tmp: Path) -> None:
        nonlocal rows
        with open(tmp, "w", encoding="utf-8") as fh:
            for i, row in enumerate(_raw_rows(run)):
                step = _row_step(row, run.axis, i)
                marks = [info for start, end, info in spans if step is not None and start <= step <= end]
                record = {k: _json_number(v) for k, v in row.items()}
                if marks:
                    record["annotations"] = marks
                fh.write(json.dumps(record, ensure_ascii=False) + "\n")
                rows += 1

    write_atomically(out, write)
    return rows


# ---- human output -------------------------------------------------------------------------

SPARK_WIDTH = 48


def sparkline(steps, values, width: int = SPARK_WIDTH, window: tuple[float, float] | None = None) -> str:
    """The shared sparkline (advisor.sparkline) as two lines of text: the curve and the window's ruler."""
    return spark(steps, values, width=width, window=window).text()


def render_text(run: Run, result: AnnotationReport) -> str:
    lines = [f"{result.log}  ({result.format}, axis: {result.axis}, {len(result.series)} series)"]
    for note in result.skipped + result.notes:
        lines.append(f"  note: {note}")
    for a in result.annotations:
        epochs = f", epochs {format_number(a.start_epoch)}-{format_number(a.end_epoch)}" if a.start_epoch is not None else ""
        lines.append("")
        lines.append(f"[{a.severity.upper()}] {a.signal} in {a.metric} ({result.axis} {format_number(a.start)}-{format_number(a.end)}{epochs})")
        lines.append(f"  {a.summary}")
        series = run.series.get(a.metric)
        if series is not None and len(series) > 1:
            lines.extend("  " + part for part in sparkline(series.steps, series.values, window=(a.start, a.end)).split("\n"))
        for s in a.suggestions:
            lines.append(f"  -> {s.title} [{s.id}] {s.score:.2f}")
    return "\n".join(lines)


def render_markdown(run: Run, result: AnnotationReport) -> str:
    out = [f"# Annotations for `{Path(result.log).name}`", "", f"Format {result.format}, step axis `{result.axis}`.", ""]
    for note in result.skipped + result.notes:
        out.append(f"> {note}")
    for a in result.annotations:
        out.append(f"## {a.severity.upper()}: {a.signal} in `{a.metric}`")
        out.append("")
        out.append(f"{result.axis} {format_number(a.start)}–{format_number(a.end)}" + (f" (epochs {format_number(a.start_epoch)}–{format_number(a.end_epoch)})" if a.start_epoch is not None else ""))
        out.append("")
        out.append(a.summary)
        out.append("")
        if a.evidence:
            out.append("| evidence | value |")
            out.append("|---|---|")
            out.extend(f"| {k} | {format_number(v)} |" for k, v in a.evidence.items())
            out.append("")
        series = run.series.get(a.metric)
        if series is not None and len(series) > 1:
            out.append("```")
            out.append(sparkline(series.steps, series.values, window=(a.start, a.end)))
            out.append("```")
            out.append("")
        for s in a.suggestions:
            out.append(f"- **{s.title}** (`{s.id}`, {s.score:.2f})")
        out.append("")
    return "\n".join(out)


PLOT_FORMATS = ("png", "pdf", "svg", "svgz", "eps", "ps", "jpg", "jpeg", "tif", "tiff", "webp")
# Axis limits past these are clipped: matplotlib's tick and transform arithmetic overflows near ±1e308.
PLOT_LIMIT = 1e300


def robust_limits(values: np.ndarray) -> tuple[float, float] | None:
    """y limits that show the bulk of a curve: its finite range, or the 1st-99th percentile range
    (padded) when a few points lie far outside it, as one spike of 1e30 would flatten the rest."""
    finite = values[np.isfinite(values)]
    finite = finite[np.abs(finite) < PLOT_LIMIT]
    if len(finite) == 0:
        return None
    with np.errstate(all="ignore"):
        lo, hi = float(finite.min()), float(finite.max())
        q_lo, q_hi = (float(q) for q in np.percentile(finite, [1, 99]))
        bulk = q_hi - q_lo
        if np.isfinite(bulk) and bulk > 0 and (hi - q_hi > 3 * bulk or q_lo - lo > 3 * bulk):
            lo, hi = q_lo - 0.5 * bulk, q_hi + 0.5 * bulk
        pad = 0.05 * (hi - lo) if hi > lo else max(abs(lo) * 0.05, 1e-12)
        lo, hi = lo - pad, hi + pad
    if not (np.isfinite(lo) and np.isfinite(hi)) or lo >= hi:
        mid = float(np.median(finite))
        return mid - 1.0, mid + 1.0
    return lo, hi


def plot(run: Run, result: AnnotationReport, out: str | Path) -> Path:
    """Draw each annotated metric with its flagged windows shaded (matplotlib, no display needed).

    The y axis shows the bulk of each curve (`robust_limits`); points beyond it, and NaN/Inf points,
    are drawn as markers on the edge and counted in the legend, so nothing is hidden.
    """
    suffix = Path(out).suffix.lower().lstrip(".")
    if suffix not in PLOT_FORMATS:
        raise AdvisorError(f"--plot {out}: {'.' + suffix if suffix else 'no extension'} is not an image format; use one of "
                           + ", ".join("." + f for f in PLOT_FORMATS[:4]) + ".")
    output_path(out)  # refuse a device, FIFO or directory before drawing
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    metrics = list(dict.fromkeys(a.metric for a in result.annotations if a.metric in run.series))
    if not metrics:  # nothing flagged: show the main curves so the picture still says "healthy"
        metrics = [s.name for s in run.series.values() if s.role in ("loss", "val_loss")][:3] or list(run.series)[:3]
    if not metrics:
        raise AdvisorError("nothing to plot: the log has no series")
    colors = {"high": "#d62728", "medium": "#ff7f0e", "low": "#bcbd22"}
    fig, axes = plt.subplots(len(metrics), 1, figsize=(9, 2.3 * len(metrics)), sharex=True, squeeze=False)
    try:
        with np.errstate(all="ignore"):
            x_all = np.concatenate([run.series[m].steps for m in metrics]).astype(np.float64)
            x_lim = robust_limits(x_all)
            for ax, name in zip(axes[:, 0], metrics):
                _plot_series(ax, run.series[name], x_lim)
                ax.set_ylabel(name, fontsize=8)
                for a in result.annotations:
                    if a.metric == name and np.isfinite(a.start) and np.isfinite(a.end):
                        start, end = (float(np.clip(v, -PLOT_LIMIT, PLOT_LIMIT)) for v in (a.start, a.end))
                        ax.axvspan(start, end, color=colors[a.severity], alpha=0.25)
                        ax.text(start, ax.get_ylim()[1], f" {a.signal}", fontsize=7, va="top", color=colors[a.severity])
            axes[-1, 0].set_xlabel(result.axis)
            fig.suptitle(Path(result.log).name, fontsize=10)
            fig.tight_layout()
            return write_atomically(out, lambda tmp: fig.savefig(tmp, dpi=110, format=suffix))
    finally:
        plt.close(fig)


def _plot_series(ax, s, x_lim: tuple[float, float] | None) -> None:
    steps = np.clip(np.nan_to_num(s.steps.astype(np.float64), nan=0.0), -PLOT_LIMIT, PLOT_LIMIT)
    values = s.values.astype(np.float64)
    y_lim = robust_limits(values) or (-1.0, 1.0)
    finite = np.isfinite(values)
    ax.plot(steps, np.where(finite, np.clip(values, *y_lim), np.nan), lw=1.2, color="#1f77b4")
    above, below = finite & (values > y_lim[1]), finite & (values < y_lim[0])
    bad = ~finite
    if above.any():
        ax.plot(steps[above], np.full(above.sum(), y_lim[1]), "^", ms=4, color="#9467bd", label=f"{int(above.sum())} above the axis")
    if below.any():
        ax.plot(steps[below], np.full(below.sum(), y_lim[0]), "v", ms=4, color="#9467bd", label=f"{int(below.sum())} below the axis")
    if bad.any():
        ax.plot(steps[bad], np.full(bad.sum(), y_lim[1]), "x", ms=5, color="#d62728", label=f"{int(bad.sum())} NaN/Inf")
    if above.any() or below.any() or bad.any():
        ax.legend(fontsize=6, loc="upper right")
    ax.set_ylim(*y_lim)
    if x_lim is not None:
        ax.set_xlim(*x_lim)
