"""`annotate -o` and `--plot` write files safely: temp file + rename for regular files and new paths,
refusal for devices, FIFOs and directories, a symlink's target written (never the link replaced),
the user's umask kept; the plot copes with ±1e308 and says what it clipped."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest

from advisor.annotate import plot, robust_limits, write_annotated
from advisor.models import Annotation, AnnotationReport
from advisor.detectors import detect
from advisor.models import AdvisorError
from advisor.readers import read_log

import numpy as np


def log_with_extremes(tmp_path: Path) -> Path:
    rows = ["step,loss,val_loss"]
    for i in range(120):
        loss = 2.0 / (i + 1)
        loss = {40: 1e308, 41: -1e308, 42: 5e-324, 60: float("inf"), 61: float("nan")}.get(i, loss)
        rows.append(f"{i},{loss!r},{1e308 if i % 9 == 0 else 2.2 / (i + 1)!r}")
    path = tmp_path / "extremes.csv"
    path.write_text("\n".join(rows) + "\n")
    return path


@pytest.fixture
def annotated(tmp_path):
    run = read_log(log_with_extremes(tmp_path))
    signals = detect(run)
    result = AnnotationReport(log=run.path, format=run.format, axis=run.axis, annotations=[
        Annotation(signal=s.kind, metric=s.metric, start=s.start, end=s.end, severity=s.severity, summary=s.summary) for s in signals])
    return run, result


def leftovers(d: Path) -> list[str]:
    return [p.name for p in d.iterdir() if p.name.endswith(".tmp")]


def test_a_new_file_gets_the_users_umask(annotated, tmp_path):
    run, result = annotated
    old = os.umask(0o027)
    try:
        out = tmp_path / "new" / "annotated.jsonl"
        assert write_annotated(run, result, out) == 120
    finally:
        os.umask(old)
    assert stat.S_IMODE(out.stat().st_mode) == 0o640
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(rows) == 120 and any("annotations" in r for r in rows)
    assert leftovers(out.parent) == []


def test_an_existing_file_is_replaced_keeping_its_mode(annotated, tmp_path):
    run, result = annotated
    out = tmp_path / "out.jsonl"
    out.write_text("old\n")
    out.chmod(0o664)
    write_annotated(run, result, out)
    assert stat.S_IMODE(out.stat().st_mode) == 0o664 and out.read_text() != "old\n"


def test_a_symlink_is_followed_not_replaced(annotated, tmp_path):
    run, result = annotated
    target = tmp_path / "real.jsonl"
    target.write_text("old\n")
    link = tmp_path / "link.jsonl"
    link.symlink_to(target)
    write_annotated(run, result, link)
    assert link.is_symlink() and os.readlink(link) == str(target)
    assert target.read_text().count("\n") == 120
    assert leftovers(tmp_path) == []


@pytest.mark.parametrize("kind", ["fifo", "directory", "device", "dangling symlink", "read-only file"])
def test_refuses_what_is_not_a_regular_file(annotated, tmp_path, kind):
    run, result = annotated
    out = tmp_path / "out"
    if kind == "fifo":
        os.mkfifo(out)
    elif kind == "directory":
        out.mkdir()
    elif kind == "device":
        out = Path("/dev/null")
    elif kind == "dangling symlink":
        out.symlink_to(tmp_path / "missing")
    else:
        out.write_text("keep me\n")
        out.chmod(0o444)
        if os.access(out, os.W_OK):  # root can write anything: nothing to refuse
            pytest.skip("running as root")
    with pytest.raises(AdvisorError) as err:
        write_annotated(run, result, out)
    assert "\n" not in str(err.value)
    if kind == "fifo":
        assert stat.S_ISFIFO(out.stat().st_mode)
    if kind == "device":
        assert stat.S_ISCHR(os.stat("/dev/null").st_mode)
    assert leftovers(tmp_path) == []
    with pytest.raises(AdvisorError):
        plot(run, result, out if kind != "directory" else out)


def test_plot_with_extreme_values_and_an_unknown_extension(annotated, tmp_path):
    run, result = annotated
    out = plot(run, result, tmp_path / "p.png")
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    svg = plot(run, result, tmp_path / "p.svg").read_text()
    assert "above the axis" in svg and "NaN/Inf" in svg  # clipped and non-finite points are counted in the legend
    with pytest.raises(AdvisorError, match=r"\.txt is not an image format"):
        plot(run, result, tmp_path / "out.txt")
    assert not (tmp_path / "out.txt").exists()


def test_robust_limits_show_the_bulk_of_a_curve():
    values = np.r_[np.linspace(1.0, 0.1, 200), 1e30, np.nan, -np.inf]
    lo, hi = robust_limits(values)
    assert lo < 0.1 and 1.0 < hi < 2.0  # the spike is clipped, not the curve flattened under it
    assert robust_limits(np.array([1e308, -1e308, 0.0])) is not None
    assert robust_limits(np.array([np.nan, np.inf])) is None
