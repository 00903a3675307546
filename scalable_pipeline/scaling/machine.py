"""CPU and memory as this process may use them: the host (psutil, CPU affinity), narrowed by the container's
cgroup v2 limits when there are any. Each figure comes with where it came from."""

import math
import os
import time
from dataclasses import dataclass
from pathlib import Path

import psutil

from scalable_pipeline.scaling.cgroups import CgroupV2

CGROUP_SOURCE = "cgroup v2"


@dataclass(frozen=True)
class Measured:
    value: float
    source: str


@dataclass(frozen=True)
class HostMemory:
    total_bytes: int
    available_bytes: int


def effective_cpus(host_cpus: int, cgroup_cpus: float | None) -> Measured:
    """The smaller of the host's CPUs and the container's quota (whole CPUs, at least one)."""
    if cgroup_cpus is not None and math.floor(cgroup_cpus) < host_cpus:
        return Measured(max(1, math.floor(cgroup_cpus)), f"{CGROUP_SOURCE} cpu.max")
    return Measured(host_cpus, "os (CPU affinity)")


def effective_memory(host: HostMemory, limit_bytes: int | None, in_use_bytes: int | None) -> tuple[Measured, Measured]:
    """(total bytes, use %) of the tighter of host and container: the one with less memory free."""
    host_free = host.available_bytes
    if limit_bytes is not None and (limit_bytes - (in_use_bytes or 0)) < host_free:
        total, free = min(limit_bytes, host.total_bytes), max(0, limit_bytes - (in_use_bytes or 0))
        used_percent = 100.0 * (1 - free / total) if total else 100.0
        return Measured(total, f"{CGROUP_SOURCE} memory.max"), Measured(used_percent, f"{CGROUP_SOURCE} memory.current")
    used_percent = 100.0 * (1 - host_free / host.total_bytes) if host.total_bytes else 100.0
    return Measured(host.total_bytes, "psutil"), Measured(used_percent, "psutil")


def cgroup_cpu_percent(usage_usec_delta: int, seconds: float, cpus: float) -> float:
    """CPU use of the container over ``seconds``, in % of the CPUs it may use."""
    return min(100.0, 100.0 * usage_usec_delta / 1e6 / (seconds * cpus)) if seconds > 0 and cpus > 0 else 0.0


@dataclass(frozen=True)
class CpuMark:
    """The CPU counters at one moment (``at``: ``time.monotonic()``): the host's busy and total CPU seconds over
    all its CPUs, the container's usage (None outside a cgroup) and this process's own CPU seconds."""

    at: float
    host_busy: float
    host_total: float
    container_usec: int | None
    own: float


def others_cpu_percent(before: CpuMark, after: CpuMark) -> float:
    """The host's CPU use between two marks by everything but this process, in % of all its CPUs."""
    total = after.host_total - before.host_total
    busy = (after.host_busy - before.host_busy) - (after.own - before.own)
    return min(100.0, max(0.0, 100.0 * busy / total)) if total > 0 else 0.0


@dataclass(frozen=True)
class Machine:
    """Reads the machine; ``cgroup_dir`` is injectable (tests point it at fake cgroup files)."""

    cgroup_dir: Path

    @property
    def cgroup(self) -> CgroupV2:
        return CgroupV2(self.cgroup_dir)

    def cpus(self) -> Measured:
        host = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
        return effective_cpus(host, self.cgroup.cpu_limit())

    def cpu_mark(self) -> CpuMark:
        host, own = psutil.cpu_times(), psutil.Process().cpu_times()
        # psutil's own accounting: guest time is already in user time, idle and iowait are not busy.
        total = sum(host) - getattr(host, "guest", 0.0) - getattr(host, "guest_nice", 0.0)
        busy = total - host.idle - getattr(host, "iowait", 0.0)
        return CpuMark(time.monotonic(), busy, total, self.cgroup.cpu_usage_usec(), own.user + own.system)

    def cpu_usage_between(self, before: CpuMark, after: CpuMark) -> Measured:
        """The CPU use of everything but this process between two marks: the busier of the host (psutil) and the
        container's quota (cgroup v2 ``cpu.stat``), so a process's own work never reads as the machine being busy."""
        host = others_cpu_percent(before, after)
        quota = self.cgroup.cpu_limit()
        if before.container_usec is None or after.container_usec is None or quota is None:
            return Measured(host, "psutil")
        others_usec = (after.container_usec - before.container_usec) - round((after.own - before.own) * 1e6)
        container = cgroup_cpu_percent(max(0, others_usec), after.at - before.at, quota)
        return Measured(container, f"{CGROUP_SOURCE} cpu.stat") if container > host else Measured(host, "psutil")

    def memory(self) -> tuple[Measured, Measured]:
        """(total bytes, use %)."""
        virtual = psutil.virtual_memory()
        host = HostMemory(int(virtual.total), int(virtual.available))
        return effective_memory(host, self.cgroup.memory_limit(), self.cgroup.memory_in_use())
