"""What every benchmark reports, in one shape: ``make bench`` (``benchmarks/run.py``) collects it.

A benchmark script prints its own readable output and, for each case, one line
``BENCH_RESULT {json}`` (``emit``). The runner starts every ``bench_*.py`` in its own process (so
one script's memory never inflates another's peak), parses those lines and prints one table:
case, ours, baseline measured in the same run, ratio, target, pass/fail, peak RSS.

Targets are ratios or bounds checked here, never in a timed unit test: a slow machine makes a
benchmark report "fail", it never makes CI red.
"""

from __future__ import annotations

import json
import os
import resource
import sys
import threading
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Iterator

if TYPE_CHECKING:
    import dagster as dg

PREFIX = "BENCH_RESULT "


@dataclass(frozen=True)
class Result:
    """One case: our number, the baseline measured in the same run, and the target they must meet."""

    benchmark: str  # the script, e.g. "volatility"
    case: str  # e.g. "backfill 5000 x 2520, ten columns"
    ours: float
    baseline: float | None  # None when the target is an absolute bound (e.g. requests == floor)
    unit: str  # "s", "MiB", "requests", "ms/symbol", ...
    target: str  # human-readable, e.g. "ratio <= 1.0" or "<= 10 s"
    passed: bool
    peak_rss_mib: float

    @property
    def ratio(self) -> float | None:
        if self.baseline in (None, 0):
            return None
        return self.ours / self.baseline


def emit(result: Result) -> Result:
    """Print ``result`` for the runner (one line, after the script's own output)."""
    print(PREFIX + json.dumps(asdict(result)), flush=True)
    return result


def parse(line: str) -> Result | None:
    if not line.startswith(PREFIX):
        return None
    return Result(**json.loads(line[len(PREFIX) :]))


def timed(fn) -> float:  # noqa: ANN001 - a zero-argument callable
    """Wall seconds ``fn()`` took."""
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


def rss_mib() -> float:
    """The process's resident size now (Linux ``/proc/self/statm``; elsewhere the lifetime peak)."""
    try:
        with open("/proc/self/statm") as handle:
            pages = int(handle.read().split()[1])
        return pages * os.sysconf("SC_PAGE_SIZE") / 2**20
    except (OSError, ValueError, IndexError):
        return peak_rss_mib()


def peak_rss_mib() -> float:
    """The process's resident high-water mark so far (children not included)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 1024


@dataclass
class Peak:
    """Filled by ``measure_peak``: the resident size before the block and its high-water mark."""

    before_mib: float = 0.0
    peak_mib: float = 0.0
    seconds: float = 0.0

    @property
    def above_mib(self) -> float:
        """How much the block needed above what was resident when it started."""
        return max(0.0, self.peak_mib - self.before_mib)


@contextmanager
def measure_peak(interval: float = 0.005) -> Iterator[Peak]:
    """Sample the resident size while the block runs (native allocations included: DuckDB, Arrow).

    ``ru_maxrss`` only knows the process-lifetime peak, so a block after a bigger one would
    report the earlier peak; a sampling thread sees this block's own high-water mark.
    """
    peak = Peak(before_mib=rss_mib())
    peak.peak_mib = peak.before_mib
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            peak.peak_mib = max(peak.peak_mib, rss_mib())
            done.wait(interval)

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    started = time.perf_counter()
    try:
        yield peak
    finally:
        peak.seconds = time.perf_counter() - started
        done.set()
        thread.join()
        peak.peak_mib = max(peak.peak_mib, rss_mib())


def step_seconds(instance: "dg.DagsterInstance", run_id: str) -> dict[str, float]:
    """STEP_START -> STEP_SUCCESS (or failure) of each step of a run, from its event log."""
    starts, seconds = {}, {}
    for entry in instance.all_logs(run_id):
        event = entry.dagster_event
        if event is None or not entry.step_key:
            continue
        if event.event_type_value == "STEP_START":
            starts[entry.step_key] = entry.timestamp
        elif event.event_type_value in ("STEP_SUCCESS", "STEP_FAILURE") and entry.step_key in starts:
            seconds[entry.step_key] = entry.timestamp - starts[entry.step_key]
    return seconds
