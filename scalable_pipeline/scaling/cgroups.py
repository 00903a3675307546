"""The container's own limits, read from cgroup v2 files (psutil sees the host, not the container).

``cpu.max`` is "<quota> <period>" or "max <period>"; ``memory.max`` is bytes or "max"; ``memory.current``
is the bytes in use, of which ``memory.stat``'s ``inactive_file`` is page cache the kernel reclaims first;
``cpu.stat``'s ``usage_usec`` is the CPU time used so far. A missing file or "max" means no limit.
"""

from dataclasses import dataclass
from pathlib import Path

CGROUP_V2_DIR = "/sys/fs/cgroup"


def _read(path: Path) -> str | None:
    try:
        return path.read_text().strip()
    except OSError:
        return None


def _field(text: str | None, name: str) -> int | None:
    """The integer value of ``name`` in a flat-keyed file such as ``cpu.stat`` or ``memory.stat``."""
    for line in (text or "").splitlines():
        key, _, value = line.partition(" ")
        if key == name and value.strip().isdigit():
            return int(value)
    return None


def parse_cpu_max(text: str | None) -> float | None:
    """CPUs the quota allows (quota / period), or None without a quota."""
    parts = (text or "").split()
    if len(parts) != 2 or parts[0] == "max" or not (parts[0].isdigit() and parts[1].isdigit()) or int(parts[1]) == 0:
        return None
    return int(parts[0]) / int(parts[1])


def parse_bytes(text: str | None) -> int | None:
    """Bytes in ``memory.max`` / ``memory.current``, or None for "max" or a missing file."""
    return int(text) if text and text.isdigit() else None


@dataclass(frozen=True)
class CgroupV2:
    """The cgroup v2 directory of this process (``/sys/fs/cgroup`` inside a container)."""

    directory: Path

    def cpu_limit(self) -> float | None:
        return parse_cpu_max(_read(self.directory / "cpu.max"))

    def cpu_usage_usec(self) -> int | None:
        return _field(_read(self.directory / "cpu.stat"), "usage_usec")

    def memory_limit(self) -> int | None:
        return parse_bytes(_read(self.directory / "memory.max"))

    def memory_in_use(self) -> int | None:
        """``memory.current`` less the inactive page cache (the working set, as container platforms count it)."""
        current = parse_bytes(_read(self.directory / "memory.current"))
        if current is None:
            return None
        inactive_file = _field(_read(self.directory / "memory.stat"), "inactive_file") or 0
        return max(0, current - inactive_file)
