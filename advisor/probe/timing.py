"""Time on the probe's side: the overhead budget that spaces sampled steps out (Probe(max_overhead=...))
and the step-time readings of sampled steps."""

from __future__ import annotations

import math
import time

from advisor import reading_names as rn


class OverheadBudget:
    """Credit earned by training time (a `share` of it), spent by the probe's own time."""

    def __init__(self, share: float) -> None:
        self.share = share
        self.credit = 0.0
        self.sample_cost: float | None = None  # seconds the last sampled step cost
        self.last_exit: float | None = None  # perf_counter when the last step() returned (or the probe was made)
        self.hook_seconds = 0.0  # activation hook time already accounted for

    def affordable(self) -> bool:
        return self.sample_cost is None or self.credit >= self.sample_cost

    def settle(self, entered: float, sampled: bool, hook_seconds: float) -> float:
        """Account for a step() call entered at `entered` and returning now; the seconds it spent."""
        left = time.perf_counter()
        hook_delta, self.hook_seconds = hook_seconds - self.hook_seconds, hook_seconds
        spent = left - entered + hook_delta
        if self.last_exit is not None:  # training time since the last call, hooks excluded
            self.credit += self.share * max(entered - self.last_exit - hook_delta, 0.0)
        self.credit -= spent
        if sampled:
            self.sample_cost = spent
        if self.sample_cost is not None:  # no hoarding: credit beyond one sampled step is not kept
            self.credit = min(self.credit, self.sample_cost)
        self.last_exit = left
        return spent


class StepTimes:
    """`time/step_s` (mean over the steps since the last sampled one) and `time/data_wait_share`, from
    the step_time/data_time the user passes or else the wall clock between sampled calls."""

    def __init__(self) -> None:
        self.calls = 0  # step() calls since the last sampled one
        self._start: float | None = None
        self._step_time = [0.0, 0]
        self._data_time = [0.0, 0]

    def readings(self, wall: float, sampled: bool, step_time: float | None, data_time: float | None) -> dict[str, float]:
        self.calls += 1
        if step_time is not None:
            self._step_time[0] += float(step_time)
            self._step_time[1] += 1
        if data_time is not None:
            self._data_time[0] += float(data_time)
            self._data_time[1] += 1
        if not sampled:
            return {}
        out: dict[str, float] = {}
        user_total, user_n = self._step_time
        if user_n:
            per_step, total = user_total / user_n, user_total
        elif self._start is not None:
            # Wall time from the previous sampled call to this one spans the calls counted since.
            total = wall - self._start
            per_step = total / self.calls
        else:
            per_step = total = math.nan
        if not math.isnan(per_step):
            out[rn.TIME_STEP_S] = per_step
        data_total, data_n = self._data_time
        if data_n and total and not math.isnan(total):
            out[rn.TIME_DATA_WAIT_SHARE] = min(data_total / total, 1.0)
        self._start = wall
        self.calls = 0
        self._step_time = [0.0, 0]
        self._data_time = [0.0, 0]
        return out
