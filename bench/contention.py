"""Other load on the machine: the CPU that processes outside the benchmark use while a run lasts,
and the wait for the machine to go quiet before one. A run measured beside other work is
flagged, since its numbers say as much about the neighbour as about the server."""

from __future__ import annotations

import contextlib
import os
import time

from bench.layout import log

# A run during which other processes used more CPU than this (in cores) is flagged.
CONTENDED_CORES = 0.10
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def _machine_busy_ticks() -> int:
    """CPU ticks spent running anything (all cores), from /proc/stat."""
    with open("/proc/stat") as f:
        fields = [int(x) for x in f.readline().split()[1:]]
    user, nice, system, _idle, _iowait, irq, softirq = fields[:7]
    return user + nice + system + irq + softirq


def _is_shared_service(pid: str, comm: str) -> bool:
    """The Redis on 6379 and PostgreSQL: part of the system under test in distributed runs."""
    if comm.startswith(("postgres", "postmaster")):
        return True
    if comm == "redis-server":
        with contextlib.suppress(OSError), open(f"/proc/{pid}/cmdline", "rb") as f:
            return b":6379" in f.read()
    return False


def _our_ticks() -> int:
    """CPU ticks of this script and every process below it (servers, workers, wrk), plus
    the shared Redis and PostgreSQL (other users of them are not told apart).

    A child's ticks count in its own /proc entry while it lives and in its parent's
    cutime/cstime once reaped, so a wrk that ran and ended inside a window is counted once.
    """
    table: dict[int, tuple[int, int]] = {}
    services: set[int] = set()
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat") as f:
                head, tail = f.read().rsplit(")", 1)
            rest = tail.split()
        except (OSError, ValueError):
            continue
        ppid = int(rest[1])
        ticks = int(rest[11]) + int(rest[12]) + int(rest[13]) + int(rest[14])
        table[int(entry.name)] = (ppid, ticks)
        if _is_shared_service(entry.name, head.split("(", 1)[-1]):
            services.add(int(entry.name))
    ours = {os.getpid()} | services
    changed = True
    while changed:
        changed = False
        for pid, (ppid, _) in table.items():
            if ppid in ours and pid not in ours:
                ours.add(pid)
                changed = True
    return sum(table[pid][1] for pid in ours if pid in table)


class OtherLoad:
    """Measures the CPU used by processes outside this benchmark over a window."""

    def __init__(self) -> None:
        self.t0 = time.monotonic()
        self.busy0 = _machine_busy_ticks()
        self.ours0 = _our_ticks()

    def cores(self) -> float:
        wall = time.monotonic() - self.t0
        busy = _machine_busy_ticks() - self.busy0
        ours = _our_ticks() - self.ours0
        return max(0.0, (busy - ours) / CLOCK_TICKS / max(wall, 1e-3))


class WaitBudget:
    """How long, in all, the benchmark may still wait for the machine to go quiet."""

    left: float = 0.0


def wait_quiet(max_wait: float) -> float:
    """Wait until other processes use under CONTENDED_CORES; return the last level seen."""
    max_wait = min(max_wait, WaitBudget.left)
    started = time.monotonic()
    deadline = started + max_wait
    announced = False
    while True:
        sample = OtherLoad()
        time.sleep(1.0)
        level = sample.cores()
        if level <= CONTENDED_CORES or time.monotonic() >= deadline:
            WaitBudget.left = max(0.0, WaitBudget.left - (time.monotonic() - started))
            if announced:
                log(f"other load now {level:.2f} cores: going on")
            return level
        if not announced:
            log(f"other processes use {level:.2f} cores: waiting up to {max_wait:.0f}s")
            announced = True
