"""How many threads a command computes with: the cores this process may use that nothing
else is using now.

A user's machine always has another process. Kernels that split work over every core
then wait, spinning, for the thread whose core another process holds: on a 2-core
machine beside two busy processes, PyTorch on 2 threads took 6.2x as long an epoch as
on the quiet machine and 2.0x its CPU time, where 1 thread costs about 2-3x the time
and no extra CPU (docs/benchmarks.md, "Threads on a shared machine").

So training, `run`, `bench` and the page take, in this order:

1. the count the user gives (`--threads N`, or the environment's ``NETSPEC_THREADS``);
2. else the usable cores (the affinity mask, capped by a cgroup CPU quota) less the cores
   other processes keep busy, measured over a tenth of a second from ``/proc/stat`` (the
   one-minute load average where there is no ``/proc``), and at least one.

Each caller says in its log what was chosen and why (`ThreadChoice.describe`).

>>> choice = ThreadChoice(threads=1, cores=2, busy=1.8, given=None)
>>> choice.describe()
'threads: 1 (2 cores, 1.8 busy with other work)'
>>> fit_threads(cores=2, busy=0.3), fit_threads(cores=8, busy=2.6), fit_threads(cores=2, busy=5)
(2, 5, 1)
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass
from pathlib import Path

from netspec.errors import UsageError

ENV = "NETSPEC_THREADS"
SAMPLE_S = 0.1  # how long the other processes' CPU use is measured
_PROC_STAT = Path("/proc/stat")
_LOADAVG = Path("/proc/loadavg")
_CGROUP_V2 = Path("/sys/fs/cgroup/cpu.max")
_CGROUP_V1 = (
    Path("/sys/fs/cgroup/cpu/cpu.cfs_quota_us"),
    Path("/sys/fs/cgroup/cpu/cpu.cfs_period_us"),
)


@dataclass(frozen=True)
class ThreadChoice:
    """The thread count, and what it was chosen from (for the run's log and settings)."""

    threads: int
    cores: int  # usable by this process: affinity, capped by the CPU quota
    busy: float  # cores' worth of other processes' work when measured
    given: str | None  # "--threads 3" or "NETSPEC_THREADS=3" when the user chose

    def describe(self) -> str:
        if self.given is not None:
            return f"threads: {self.threads} ({self.given})"
        return (
            f"threads: {self.threads} ({self.cores} core{'s' * (self.cores != 1)}, "
            f"{self.busy:.1f} busy with other work)"
        )


def fit_threads(cores: int, busy: float) -> int:
    """The cores left free by `busy` cores' worth of other work, rounded, at least one."""
    return max(1, min(cores, math.floor(cores - busy + 0.5)))


def choose_threads(
    given: int | None = None, flag: str = "--threads", *, quick: bool = False
) -> ThreadChoice:
    """The thread count for this command: `given` (a flag's value), ``NETSPEC_THREADS``,
    or the free cores measured now (``quick``: from the tasks runnable this instant, for a
    command that must start at once, instead of a tenth of a second's CPU counters)."""
    cores = usable_cores()
    if given is not None:
        return ThreadChoice(_positive(given, flag), cores, 0.0, f"{flag} {given}")
    text = os.environ.get(ENV, "").strip()
    if text:
        if not text.isdigit():
            raise UsageError(f"{ENV}={text!r}: expected a positive whole number of threads")
        return ThreadChoice(_positive(int(text), ENV), cores, 0.0, f"{ENV}={text}")
    busy = runnable_now(cores) if quick else busy_cores(cores)
    return ThreadChoice(fit_threads(cores, busy), cores, busy, None)


def _positive(n: int, where: str) -> int:
    if n < 1:
        raise UsageError(f"{where} {n}: expected a positive number of threads", hint="e.g. 2")
    return n


def usable_cores() -> int:
    """The CPUs this process may run on (its affinity mask), capped by a cgroup quota."""
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cores = os.cpu_count() or 1
    quota = cgroup_quota()
    return max(1, min(cores, math.ceil(quota)) if quota is not None else cores)


def cgroup_quota() -> float | None:
    """The cgroup's CPU quota in cores (v2 ``cpu.max``, else v1's quota and period), or
    None when there is none or it cannot be read."""
    try:
        fields = _CGROUP_V2.read_text().split()
        if len(fields) == 2 and fields[0] != "max":
            return max(int(fields[0]) / int(fields[1]), 0.01)
        if fields:
            return None
    except (OSError, ValueError, ZeroDivisionError):
        pass
    try:
        quota, period = (int(p.read_text()) for p in _CGROUP_V1)
    except (OSError, ValueError):
        return None
    return max(quota / period, 0.01) if quota > 0 and period > 0 else None


def busy_cores(cores: int, sample_s: float = SAMPLE_S) -> float:
    """Cores' worth of work other processes did over ``sample_s`` (this one sleeps through
    it): from ``/proc/stat``'s counters, else the one-minute load average."""
    first = _cpu_times()
    if first is not None:
        time.sleep(sample_s)
        second = _cpu_times()
        if second is not None:
            total = second[0] - first[0]
            idle = second[1] - first[1]
            if total > 0:
                machine = os.cpu_count() or cores
                return max(0.0, min(float(cores), machine * (total - idle) / total))
    try:
        return max(0.0, min(float(cores), os.getloadavg()[0]))
    except OSError:
        return 0.0


def runnable_now(cores: int) -> float:
    """Other tasks runnable this instant (``/proc/loadavg``'s running count, less this
    process), else the one-minute load average; at most ``cores``."""
    try:
        running = _LOADAVG.read_text().split()[3].partition("/")[0]
        return float(max(0, min(cores, int(running) - 1)))
    except (OSError, IndexError, ValueError):
        try:
            return max(0.0, min(float(cores), os.getloadavg()[0]))
        except OSError:
            return 0.0


def _cpu_times() -> tuple[int, int] | None:
    """All CPUs' (total, idle) jiffies from ``/proc/stat``'s first line, idle counting
    I/O wait; None where it cannot be read."""
    try:
        with _PROC_STAT.open() as f:
            fields = f.readline().split()
        values = [int(v) for v in fields[1:9]]
    except (OSError, ValueError):
        return None
    if len(values) < 5 or fields[0] != "cpu":
        return None
    return sum(values), values[3] + values[4]
