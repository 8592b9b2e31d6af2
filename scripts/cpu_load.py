"""CPU load beside a benchmark (issue 15), shared by scripts/bench_query.py and scripts/bench_annotate.py.

`Load` runs CPU-bound worker processes as a training job's DataLoader workers are: PyTorch sets one
thread in each worker, so each burner limits its BLAS to one thread before it starts (N workers are N
runnable threads). `Load(heavy=True)` keeps the BLAS default (OpenBLAS: a thread per core), a harsher
load than the issue's definition, for comparison only. Workers stop when the `with` block ends, and
never run past `seconds` whatever happens to the parent.

`ReferenceTask` is a plain pure-Python CPU-bound loop calibrated to a given length: timed beside the
measurement under the same load, its slowdown is the scheduler's share (what the machine costs any
single-threaded code), so the part of a loaded figure that is the code shows as the excess over it.
"""

from __future__ import annotations

import multiprocessing as mp
import statistics
import time

WORKERS = 2


def _burn(stop, deadline: float, single_thread: bool) -> None:
    """Numpy matmuls (augmentation, collation) and Python arithmetic (decoding) until stopped or the deadline."""
    import numpy as np

    if single_thread:
        from threadpoolctl import threadpool_limits

        threadpool_limits(limits=1)  # kept for the life of the worker, as torch.set_num_threads(1) in a DataLoader worker
    a = np.random.default_rng(0).standard_normal((256, 256))
    x = 0
    while not stop.is_set() and time.monotonic() < deadline:
        a = np.tanh(a @ a.T / 256.0)
        for i in range(20_000):
            x = (x * 31 + i) % 1_000_003


class Load:
    """`workers` busy processes for the duration of a `with` block, never longer than `seconds`."""

    def __init__(self, workers: int = WORKERS, seconds: float = 300.0, heavy: bool = False):
        self.workers, self.seconds, self.heavy = workers, seconds, heavy
        self.ctx = mp.get_context("spawn")  # a fresh interpreter: no state (threads, BLAS pools) copied from the benchmark
        self.stop = self.ctx.Event()
        self.procs: list = []

    def describe(self) -> str:
        threads = "multi-threaded BLAS (library default)" if self.heavy else "one thread each, as DataLoader workers"
        return f"{self.workers} CPU-bound worker processes, {threads}"

    def __enter__(self) -> "Load":
        self.stop.clear()
        deadline = time.monotonic() + self.seconds
        self.procs = [self.ctx.Process(target=_burn, args=(self.stop, deadline, not self.heavy), daemon=True) for _ in range(self.workers)]
        for p in self.procs:
            p.start()
        time.sleep(1.0)  # the interpreters start and reach full speed
        return self

    def __exit__(self, *exc) -> None:
        self.stop.set()
        for p in self.procs:
            p.join(timeout=5)
            if p.is_alive():
                p.terminate()
                p.join(timeout=5)
        self.procs = []


def _spin(iterations: int) -> int:
    x = 0
    for i in range(iterations):
        x = (x * 31 + i) % 1_000_003
    return x


class ReferenceTask:
    """A pure-Python CPU-bound loop of about `seconds` (calibrated on creation; create it before any load)."""

    def __init__(self, seconds: float):
        n = 10_000
        while True:  # grow until one run is long enough to time, then scale to the wanted length
            dt = min(self._timed(n) for _ in range(3))  # the fastest of three: a hiccup of other work does not count
            if dt >= min(seconds, 0.005):
                break
            n *= 4
        self.iterations = max(1, int(n * seconds / dt))
        self.seconds = min(self._timed(self.iterations) for _ in range(3))

    @staticmethod
    def _timed(iterations: int) -> float:
        t0 = time.perf_counter()
        _spin(iterations)
        return time.perf_counter() - t0

    def run(self) -> float:
        """Wall seconds of one run."""
        return self._timed(self.iterations)


def slowdown(quiet: list[float], loaded: list[float]) -> float:
    """Loaded over quiet, medians of each."""
    return statistics.median(loaded) / statistics.median(quiet)
