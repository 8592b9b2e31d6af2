"""What every detector shares: the run context, cleaned curves, robust statistics and signal building.

Detectors see a `Context`: the run's series grouped by role, each as a `Curve` (finite points only,
plus a reduced copy of at most MAX_POINTS buckets so a million-row log is judged in milliseconds),
the run's early region (first EARLY_FRACTION of the axis, where warm-up transients must not alarm)
and helpers to turn a window on the axis into a `Signal`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import cached_property
from typing import Callable, Iterable

import numpy as np
import pandas as pd

from advisor.models import SEVERITY_ORDER, Run, Series, Signal
from advisor.roles import RoleGuess, leaf, main_loss

# Above this many points a series is judged on bucketed copies (median for levels, max/min for peaks).
MAX_POINTS = 4000
# Warm-up: signals whose window lies inside the first 5% of the axis (or a series' first two points)
# are at most "low" — early transients are expected while optimiser state and statistics settle.
EARLY_FRACTION = 0.05
EARLY_POINTS = 2
MAD_TO_SIGMA = 1.4826  # MAD of a normal sample times this is its standard deviation

LOSS_ROLES = ("loss", "val_loss", "loss_component")


def plain(name: str) -> str:
    """A metric name as words for a search query: `train/relational` -> `relational`."""
    return leaf(name).replace("_", " ").replace("-", " ").strip() or name


def what(s: Series) -> str:
    """What a series is, in words, for summaries and queries."""
    return {
        "loss": "training loss",
        "val_loss": "validation loss",
        "loss_component": "loss component",
        "val_metric": "validation metric",
        "train_metric": "training metric",
        "grad_norm": "gradient norm",
        "usage": "codebook usage",
        "rank": "effective rank",
        "lr": "learning rate",
        "reward": "reward",
    }.get(s.role, "metric")


def lower(severity: str, steps: int = 1) -> str:
    names = ["low", "medium", "high"]
    return names[max(0, SEVERITY_ORDER[severity] - steps)]


def odd(n: int) -> int:
    n = max(1, int(n))
    return n if n % 2 else n + 1


def rolling_median(y: np.ndarray, window: int, center: bool = True) -> np.ndarray:
    if window <= 1 or len(y) == 0:
        return y.astype(np.float64, copy=True)
    return pd.Series(y).rolling(window, center=center, min_periods=1).median().to_numpy()


def smooth_keep_edges(y: np.ndarray, window: int) -> np.ndarray:
    """Centred rolling median; the first and last half-windows keep their raw values.

    Used to find a curve's best level: the middle is protected from one lucky point, and a best
    value at the very start (before a run went bad) is not averaged away with its neighbour.
    """
    if window <= 1 or len(y) < window:
        return y.astype(np.float64, copy=True)
    out = pd.Series(y).rolling(window, center=True, min_periods=window).median().to_numpy()
    return np.where(np.isnan(out), y, out)


def trailing(y: np.ndarray, window: int, how: str = "median", min_periods: int = 3) -> np.ndarray:
    """Statistic of the `window` points before each point (the point itself excluded); NaN where too few."""
    s = pd.Series(y).shift(1).rolling(window, min_periods=min(min_periods, window))
    return getattr(s, how)().to_numpy()


def forward_median(y: np.ndarray, window: int) -> np.ndarray:
    """Median of each point and the window-1 points after it."""
    return pd.Series(y[::-1]).rolling(window, min_periods=1).median().to_numpy()[::-1]


def noise_sigma(y: np.ndarray) -> float:
    """Robust point-to-point noise: the MAD of the residuals around a 5-point rolling median, as a std.

    Residuals (not first differences) so that a steadily falling curve is not mistaken for noise.
    """
    if len(y) < 5:
        return 0.0
    resid = y - rolling_median(y, 5)
    return float(MAD_TO_SIGMA * np.median(np.abs(resid - np.median(resid))))


# A loss that is negative at 5%+ of its points is not an error that falls towards zero (a policy-gradient
# surrogate, a shifted objective): "x times its level" means nothing for it, so ratio-based checks
# (spikes, divergence, blow-ups, oscillation, plateaus) leave it alone.
NEGATIVE_SHARE = 0.05


def crosses_zero(y: np.ndarray) -> bool:
    return len(y) >= 3 and float(np.mean(y < 0)) >= NEGATIVE_SHARE


def start_level(y: np.ndarray) -> float:
    """Where a curve starts: the median of its first points (3, or 5% of a long curve)."""
    k = max(3, len(y) // 20)
    return float(np.median(y[:k])) if len(y) else 0.0


def tail_level(y: np.ndarray, k_after: int) -> float:
    """A curve's end level: the median of its last few points (up to 5, at most half of those after its best)."""
    k = int(np.clip(k_after // 2, 1, 5))
    return float(np.median(y[-k:]))


def quantum(y: np.ndarray) -> float:
    """The log's rounding step: the smallest non-zero difference between values (0 if none)."""
    d = np.abs(np.diff(np.unique(y))) if len(y) > 1 else np.array([])
    d = d[d > 0]
    return float(d.min()) if len(d) else 0.0


def spearman(y: np.ndarray) -> float:
    """Rank correlation of y with its index (1 = steadily rising)."""
    n = len(y)
    if n < 3:
        return 0.0
    ranks = pd.Series(y).rank().to_numpy()
    if np.all(ranks == ranks[0]):
        return 0.0
    idx = np.arange(n, dtype=np.float64)
    with np.errstate(all="ignore"):
        c = np.corrcoef(ranks, idx)[0, 1]
    return float(c) if np.isfinite(c) else 0.0


def welch_t(a: np.ndarray, b: np.ndarray) -> float:
    """Welch's t of mean(b) - mean(a); 0 when neither varies and the means agree."""
    va, vb = float(np.var(a, ddof=1)) if len(a) > 1 else 0.0, float(np.var(b, ddof=1)) if len(b) > 1 else 0.0
    se = math.sqrt(va / max(len(a), 1) + vb / max(len(b), 1))
    diff = float(np.mean(b) - np.mean(a))
    if se == 0:
        return 0.0 if diff == 0 else math.copysign(math.inf, diff)
    return diff / se


def number(x, digits: int = 6) -> float | int | str | None:
    """A JSON-friendly number for Signal.numbers: `digits` significant digits, whole numbers (steps)
    kept exact, NaN/Inf kept as floats, booleans as 0/1."""
    if x is None or isinstance(x, str):
        return x
    if isinstance(x, (bool, np.bool_)):
        return int(x)
    if isinstance(x, (int, np.integer)):
        return int(x)
    x = float(x)
    if not math.isfinite(x) or x == 0 or (x.is_integer() and abs(x) < 2**53):
        return x
    return float(f"{x:.{digits}g}")


def fmt(x: float | None) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "n/a"
    if isinstance(x, float) and math.isinf(x):
        return "inf" if x > 0 else "-inf"
    ax = abs(x)
    if ax != 0 and (ax >= 1e5 or ax < 1e-3):
        return f"{x:.3g}"
    if float(x).is_integer() and ax < 1e5:
        return str(int(x))
    return f"{x:.4g}"


def pct(x: float) -> str:
    return f"{x * 100:+.1f}%" if math.isfinite(x) else "n/a"


@dataclass
class Curve:
    """One series with its non-finite points removed and (for long series) a bucketed copy."""

    series: Series
    steps: np.ndarray  # finite points only
    values: np.ndarray

    @property
    def name(self) -> str:
        return self.series.name

    @property
    def role(self) -> str:
        return self.series.role

    def __len__(self) -> int:
        return len(self.values)

    @cached_property
    def _buckets(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        n = len(self.values)
        if n <= MAX_POINTS:
            return self.steps, self.values, self.values, self.values
        size = math.ceil(n / MAX_POINTS)
        cut = (n // size) * size
        shape = (n // size, size)
        s = self.steps[:cut].reshape(shape)
        v = self.values[:cut].reshape(shape)
        steps, med, hi, lo = s[:, -1], np.median(v, axis=1), v.max(axis=1), v.min(axis=1)
        if cut < n:  # the remainder is a last, shorter bucket
            tail = self.values[cut:]
            steps = np.r_[steps, self.steps[-1]]
            med, hi, lo = np.r_[med, np.median(tail)], np.r_[hi, tail.max()], np.r_[lo, tail.min()]
        return steps, med, hi, lo

    @property
    def r_steps(self) -> np.ndarray:
        """Steps of the reduced copy (each bucket's last step)."""
        return self._buckets[0]

    @property
    def r_level(self) -> np.ndarray:
        """Reduced values for levels and trends (bucket medians)."""
        return self._buckets[1]

    @property
    def r_high(self) -> np.ndarray:
        """Reduced values for upward peaks (bucket maxima)."""
        return self._buckets[2]

    @property
    def r_low(self) -> np.ndarray:
        return self._buckets[3]

    @cached_property
    def bounded(self) -> bool:
        """A higher-is-better metric that lives in [0, 1] (accuracy, F1, IoU...)."""
        v = self.values
        return bool(self.series.higher_is_better and len(v) and v.min() >= 0 and v.max() <= 1)

    def oriented(self, y: np.ndarray) -> np.ndarray:
        """Values turned so that lower is better. Metrics in [0, 1] become their error (1 - v), so that
        relative changes read as a practitioner reads them: 98.9% -> 99.65% accuracy is a 68% error cut."""
        if not self.series.higher_is_better:
            return y
        return 1.0 - y if self.bounded else -y

    def unoriented(self, y: np.ndarray | float):
        if not self.series.higher_is_better:
            return y
        return 1.0 - y if self.bounded else -y


class Context:
    """One run as the detectors see it."""

    def __init__(self, run: Run) -> None:
        self.run = run
        self.series = [s for s in run.series.values() if len(s)]
        finite_starts = [float(np.nanmin(s.steps)) for s in self.series if np.isfinite(s.steps).any()]
        finite_ends = [float(np.nanmax(s.steps)) for s in self.series if np.isfinite(s.steps).any()]
        self.axis_start = min(finite_starts) if finite_starts else 0.0
        self.axis_end = max(finite_ends) if finite_ends else 0.0
        self.span = max(self.axis_end - self.axis_start, 0.0)
        self.early_end = self.axis_start + EARLY_FRACTION * self.span
        self._curves: dict[str, Curve] = {}

    def curve(self, s: Series) -> Curve:
        c = self._curves.get(s.name)
        if c is None:
            steps = np.asarray(s.steps, dtype=np.float64)
            values = np.asarray(s.values, dtype=np.float64)
            ok = np.isfinite(values) & np.isfinite(steps)
            steps, values = steps[ok], values[ok]
            if len(steps) > 1 and not bool(np.all(steps[1:] >= steps[:-1])):  # a Series built by hand, out of order
                order = np.argsort(steps, kind="stable")
                steps, values = steps[order], values[order]
            c = Curve(s, steps, values)
            self._curves[s.name] = c
        return c

    def with_role(self, *roles: str) -> list[Series]:
        return [s for s in self.series if s.role in roles]

    def get(self, name: str) -> Series | None:
        s = self.run.series.get(name)
        return s if s is not None and len(s) else None

    @cached_property
    def main_loss(self) -> Series | None:
        """The training loss detectors compare against: the plainest-named, then the longest."""
        cands = self.with_role("loss")
        if not cands:
            return None
        guesses = {s.name: RoleGuess(s.role) for s in cands}
        name = main_loss(guesses, "loss", {s.name: len(self.curve(s)) for s in cands})
        return self.run.series[name] if name else None

    def median_of(self, name: str, last: int | None = None, how: str = "median") -> float | None:
        """The median (or max) of another reading, over its last `last` points; None when it is absent."""
        s = self.get(name)
        if s is None:
            return None
        v = self.curve(s).values
        if last is not None:
            v = v[-max(1, int(last)):]
        if not len(v):
            return None
        return float(np.max(v) if how == "max" else np.median(v))

    def probes(self, suffix: str) -> list[Series]:
        """Probe readings whose name ends with /suffix (any family prefix or layer)."""
        tail = "/" + suffix
        return [s for s in self.series if s.role == "probe" and s.name.endswith(tail)]

    def is_early(self, step: float, s: Series | None = None) -> bool:
        if step <= self.early_end:
            return True
        if s is not None:
            c = self.curve(s)
            if len(c) > EARLY_POINTS and step <= c.steps[EARLY_POINTS - 1]:
                return True
        return False

    def epoch_at(self, s: Series, step: float) -> float | None:
        """The epoch at a step of a series (interpolated between its points), when the log knows epochs."""
        if s.epochs is None or len(s.epochs) == 0:
            return None
        ok = np.isfinite(s.epochs) & np.isfinite(s.steps)
        if not ok.any():
            return None
        return number(float(np.interp(step, s.steps[ok], s.epochs[ok])))

    def signal(
        self,
        kind: str,
        s: Series,
        start: float,
        end: float,
        severity: str,
        summary: str,
        query: str,
        value: float | None = None,
        threshold: float | None = None,
        numbers: dict | None = None,
        early_cap: bool = True,
    ) -> Signal:
        start, end = float(start), float(end)
        if end < start:
            start, end = end, start
        if early_cap and self.is_early(end, s):
            severity = "low"
        nums = {k: number(v) for k, v in (numbers or {}).items()}
        nums["role"] = s.role  # lets the matcher tell a stalled metric from a stalled loss
        return Signal(
            kind=kind,
            metric=s.name,
            start=number(start, 12),
            end=number(end, 12),
            start_epoch=self.epoch_at(s, start),
            end_epoch=self.epoch_at(s, end),
            severity=severity,
            value=None if value is None else number(value),
            threshold=None if threshold is None else number(threshold),
            numbers=nums,
            summary=summary,
            query=query,
        )


@dataclass(frozen=True)
class Detector:
    """One row of the registry: a signal kind, the function that finds it, its threshold and source."""

    kind: str
    fn: Callable[[Context], Iterable[Signal]]
    threshold: str
    reference: str
    inputs: str = "series"  # series | readings


@dataclass
class Episode:
    """A contiguous run of flagged points: indices into a curve's arrays."""

    first: int
    last: int
    members: list[int] = field(default_factory=list)


def episodes(flags: np.ndarray, max_gap: int = 1) -> list[Episode]:
    """Group flagged indices into episodes, bridging gaps of up to max_gap unflagged points."""
    idx = np.flatnonzero(flags)
    if len(idx) == 0:
        return []
    out: list[Episode] = []
    cur = Episode(int(idx[0]), int(idx[0]), [int(idx[0])])
    for i in idx[1:]:
        i = int(i)
        if i - cur.last <= max_gap + 1:
            cur.last = i
            cur.members.append(i)
        else:
            out.append(cur)
            cur = Episode(i, i, [i])
    out.append(cur)
    return out
