"""What the machine was doing while a benchmark step ran: busy, waiting on the disk, or idle.

The same build can take 33 s or 160 s on this kind of machine depending on how much of
the warehouse the operating system still holds in memory (docs/operations/marts.md,
"Reading from disk"). A ratio is only comparable with another when both runs were bound by
the same thing, so `cem bench marts` prints, per step, the share of all cores' time that was
busy, the share spent waiting on I/O, Linux's I/O pressure (the share of the step's
wall time in which some task, or every task, stalled on I/O), and what the disks did: reads
and writes, megabytes, and how long a read took on average; and the CPU seconds of the
process itself and of its finished child processes (a build's dbt CLI), whose Python
competes with PostgreSQL for the same cores. A one-day build that reads 2 GB
at 25 ms a read was bound by a slow or throttled disk, not by the warehouse's SQL
(docs/operations/marts.md, "Stop 44").

The CPU seconds come from the process's own accounting (``resource``), the rest is
read from ``/proc/stat``, ``/proc/pressure/io`` and ``/proc/diskstats``; where a file is
missing (not Linux, an older kernel, a container hiding it) the figures it gives are left
out, never guessed.
"""

from __future__ import annotations

import resource
import time
from dataclasses import dataclass
from pathlib import Path

PROC_STAT = Path("/proc/stat")
IO_PRESSURE = Path("/proc/pressure/io")
DISK_STATS = Path("/proc/diskstats")
BLOCK_DEVICES = Path("/sys/block")
SECTOR_BYTES = 512  # /proc/diskstats counts 512-byte sectors whatever the device's own size


@dataclass(frozen=True)
class MachineSample:
    taken_at: float  # time.perf_counter()
    # jiffies summed over every core: (busy, iowait, total); None without /proc/stat
    cpu: tuple[int, int, int] | None
    # microseconds any / every non-idle task stalled on I/O; None without PSI
    io_stalled_us: tuple[int, int] | None
    # summed over the physical disks: (reads, sectors read, ms spent reading, writes,
    # sectors written); None without /proc/diskstats
    disk: tuple[int, int, int, int, int] | None = None
    # CPU seconds (user + system) of this process and of its finished child processes
    # (a build's dbt CLI, a subprocess of its own): the Python side of a step, which
    # competes with PostgreSQL for the same cores
    process_cpu_s: float | None = None
    children_cpu_s: float | None = None


def cpu_jiffies(stat_text: str) -> tuple[int, int, int] | None:
    """(busy, iowait, total) from the aggregate ``cpu`` line of /proc/stat.

    Busy is user, nice, system, irq and softirq; steal (time the hypervisor gave to another
    guest) counts in the total only, as neither work nor idle. Guest time is already inside
    user and nice, so it is not added again.
    """
    for line in stat_text.splitlines():
        fields = line.split()
        if fields and fields[0] == "cpu":
            values = [int(value) for value in fields[1:9]]
            values += [0] * (8 - len(values))  # older kernels list fewer columns
            user, nice, system, idle, iowait, irq, softirq, steal = values
            busy = user + nice + system + irq + softirq
            return busy, iowait, busy + idle + iowait + steal
    return None


def io_stall_microseconds(pressure_text: str) -> tuple[int, int] | None:
    """(some, full) cumulative stall totals from /proc/pressure/io."""
    totals: dict[str, int] = {}
    for line in pressure_text.splitlines():
        if not line.strip():
            continue
        kind, *fields = line.split()
        for field in fields:
            name, _, value = field.partition("=")
            if name == "total":
                totals[kind] = int(value)
    if "some" not in totals:
        return None
    return totals["some"], totals.get("full", 0)


def physical_disks(block_devices: Path) -> set[str]:
    """Whole disks backed by a device (``/sys/block/<name>/device``): not partitions, which
    would count a disk's requests twice, nor loop, RAM or device-mapper disks, whose
    requests reach a physical disk and are counted there."""
    try:
        return {entry.name for entry in block_devices.iterdir() if (entry / "device").exists()}
    except OSError:
        return set()


def disk_counters(diskstats_text: str, disks: set[str]) -> tuple[int, int, int, int, int] | None:
    """(reads, sectors read, ms reading, writes, sectors written) of ``disks``, summed."""
    totals = [0, 0, 0, 0, 0]
    found = False
    for line in diskstats_text.splitlines():
        fields = line.split()
        if len(fields) < 10 or fields[2] not in disks:
            continue
        found = True
        # after major, minor and name: reads, reads merged, sectors read, ms reading,
        # writes, writes merged, sectors written
        for position, column in enumerate((3, 5, 6, 7, 9)):
            totals[position] += int(fields[column])
    return (totals[0], totals[1], totals[2], totals[3], totals[4]) if found else None


def _read(path: Path) -> str | None:
    try:
        return path.read_text()
    except OSError:
        return None


def sample() -> MachineSample:
    stat = _read(PROC_STAT)
    pressure = _read(IO_PRESSURE)
    diskstats = _read(DISK_STATS)
    return MachineSample(
        taken_at=time.perf_counter(),
        cpu=cpu_jiffies(stat) if stat else None,
        io_stalled_us=io_stall_microseconds(pressure) if pressure else None,
        disk=disk_counters(diskstats, physical_disks(BLOCK_DEVICES)) if diskstats else None,
        process_cpu_s=time.process_time(),
        children_cpu_s=_children_cpu_seconds(),
    )


def _children_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def load_between(before: MachineSample, after: MachineSample) -> dict[str, float]:
    """Shares (0-1) of the time between two samples, and the disks' work in it; only what
    both samples could measure."""
    figures: dict[str, float] = {}
    if before.cpu and after.cpu:
        busy, iowait, total = (
            end - start for start, end in zip(before.cpu, after.cpu, strict=True)
        )
        if total > 0:
            figures["cpu_busy_share"] = round(busy / total, 3)
            figures["cpu_iowait_share"] = round(iowait / total, 3)
    wall_us = (after.taken_at - before.taken_at) * 1_000_000
    if before.io_stalled_us and after.io_stalled_us and wall_us > 0:
        some, full = (
            end - start
            for start, end in zip(before.io_stalled_us, after.io_stalled_us, strict=True)
        )
        figures["io_pressure_some_share"] = round(min(1.0, some / wall_us), 3)
        figures["io_pressure_full_share"] = round(min(1.0, full / wall_us), 3)
    if before.disk and after.disk:
        reads, sectors_read, ms_reading, writes, sectors_written = (
            end - start for start, end in zip(before.disk, after.disk, strict=True)
        )
        figures["disk_reads"] = reads
        figures["disk_read_mb"] = round(sectors_read * SECTOR_BYTES / 1_000_000, 1)
        if reads > 0:
            # time from a read's issue to its completion, queueing included
            figures["disk_read_ms_mean"] = round(ms_reading / reads, 2)
        figures["disk_writes"] = writes
        figures["disk_write_mb"] = round(sectors_written * SECTOR_BYTES / 1_000_000, 1)
    if before.process_cpu_s is not None and after.process_cpu_s is not None:
        figures["python_cpu_seconds"] = round(after.process_cpu_s - before.process_cpu_s, 2)
    if before.children_cpu_s is not None and after.children_cpu_s is not None:
        figures["child_processes_cpu_seconds"] = round(
            after.children_cpu_s - before.children_cpu_s, 2
        )
    return figures
