"""The benchmarks' machine figures: busy cores, I/O wait and I/O pressure between two samples."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from cem_warehouse import machine_load
from cem_warehouse.machine_load import (
    MachineSample,
    cpu_jiffies,
    disk_counters,
    io_stall_microseconds,
    physical_disks,
)

STAT = """cpu  1000 50 300 5000 400 20 30 100 0 0
cpu0 500 25 150 2500 200 10 15 50 0 0
intr 12345
"""
PRESSURE = """some avg10=1.00 avg60=2.00 avg300=3.00 total=7000000
full avg10=0.50 avg60=1.00 avg300=1.50 total=3000000
"""

# fields after the name: reads, merged, sectors read, ms reading, writes, merged, sectors
# written, ms writing, in flight, ms doing I/O, weighted ms, then discards and flushes
DISKSTATS = """ 254       0 vda 1000 30 80000 25000 400 70 160000 3000 0 9000 28000 10 0 2048 15 0 0
 254       1 vda1 990 30 79000 24900 400 70 160000 3000 0 8900 27900 10 0 2048 15 0 0
   7       0 loop0 50 0 400 10 0 0 0 0 0 10 10
 254      16 vdb 10 0 8 5 2 0 16 1 0 6 6
"""


def test_cpu_time_is_split_into_busy_iowait_and_the_total_of_every_core():
    # busy = user + nice + system + irq + softirq; steal only in the total
    assert cpu_jiffies(STAT) == (1000 + 50 + 300 + 20 + 30, 400, 1400 + 5000 + 400 + 100)


def test_io_pressure_totals_are_read_for_some_and_full():
    assert io_stall_microseconds(PRESSURE) == (7_000_000, 3_000_000)
    assert io_stall_microseconds("\n" + PRESSURE + "\n") == (7_000_000, 3_000_000)
    assert io_stall_microseconds("") is None


def test_disk_counters_sum_the_physical_disks_only():
    # a partition (vda1) and a loop device repeat requests a physical disk already counts
    assert disk_counters(DISKSTATS, {"vda", "vdb"}) == (1010, 80008, 25005, 402, 160016)
    assert disk_counters(DISKSTATS, {"vda"}) == (1000, 80000, 25000, 400, 160000)
    assert disk_counters(DISKSTATS, {"sda"}) is None
    assert disk_counters("", {"vda"}) is None


def test_physical_disks_are_the_block_devices_with_a_device(tmp_path):
    (tmp_path / "vda" / "device").mkdir(parents=True)
    (tmp_path / "loop0").mkdir()
    (tmp_path / "dm-0").mkdir()
    assert physical_disks(tmp_path) == {"vda"}
    assert physical_disks(tmp_path / "missing") == set()


def test_disk_figures_are_taken_between_two_samples():
    before = MachineSample(taken_at=0.0, cpu=None, io_stalled_us=None, disk=(100, 2000, 500, 10, 0))
    after = MachineSample(
        taken_at=60.0, cpu=None, io_stalled_us=None, disk=(1100, 2_002_000, 25_500, 60, 1_000_000)
    )
    assert machine_load.load_between(before, after) == {
        "disk_reads": 1000,
        "disk_read_mb": 1024.0,  # 2,000,000 sectors of 512 bytes
        "disk_read_ms_mean": 25.0,
        "disk_writes": 50,
        "disk_write_mb": 512.0,
    }
    # no reads: no mean read time, rather than a division by zero
    idle = MachineSample(taken_at=1.0, cpu=None, io_stalled_us=None, disk=(100, 2000, 500, 10, 0))
    assert "disk_read_ms_mean" not in machine_load.load_between(before, idle)


def test_shares_are_taken_between_two_samples():
    before = MachineSample(taken_at=10.0, cpu=(1000, 100, 4000), io_stalled_us=(1_000_000, 0))
    after = MachineSample(taken_at=12.0, cpu=(1300, 500, 5000), io_stalled_us=(2_500_000, 500_000))
    assert machine_load.load_between(before, after) == {
        "cpu_busy_share": 0.3,
        "cpu_iowait_share": 0.4,
        "io_pressure_some_share": 0.75,
        "io_pressure_full_share": 0.25,
    }


def test_what_a_machine_cannot_measure_is_left_out_not_guessed(tmp_path, monkeypatch):
    monkeypatch.setattr(machine_load, "PROC_STAT", tmp_path / "missing_stat")
    monkeypatch.setattr(machine_load, "IO_PRESSURE", tmp_path / "missing_pressure")
    monkeypatch.setattr(machine_load, "DISK_STATS", tmp_path / "missing_diskstats")
    before = machine_load.sample()
    after = machine_load.sample()
    assert before.cpu is None and before.io_stalled_us is None and before.disk is None
    # what the process measures of itself stays; nothing from the missing files
    assert set(machine_load.load_between(before, after)) == {
        "python_cpu_seconds",
        "child_processes_cpu_seconds",
    }


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads Linux's /proc")
def test_a_busy_loop_shows_as_busy_cores_on_this_machine():
    before = machine_load.sample()
    deadline = before.taken_at + 0.5
    while machine_load.sample().taken_at < deadline:
        sum(range(10_000))
    figures = machine_load.load_between(before, machine_load.sample())
    # one of the machine's cores was kept busy for the whole interval (scheduling and the
    # jiffies' 10 ms grain take a little off it)
    assert figures["cpu_busy_share"] > 0.6 / (os.cpu_count() or 1)
    assert 0 <= figures["cpu_iowait_share"] <= 1


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads Linux's /proc")
def test_a_write_to_the_disk_shows_in_the_disk_figures(tmp_path):
    device = os.stat(tmp_path).st_dev
    if not Path(f"/sys/dev/block/{os.major(device)}:{os.minor(device)}").exists():
        pytest.skip("the temporary folder is not on a block device (tmpfs, overlay)")
    if not machine_load.physical_disks(machine_load.BLOCK_DEVICES):
        pytest.skip("no physical disk visible in /sys/block (a container hiding it)")
    before = machine_load.sample()
    with (tmp_path / "written").open("wb") as out:
        out.write(os.urandom(4_000_000))
        out.flush()
        os.fsync(out.fileno())  # past the page cache, onto the disk
    figures = machine_load.load_between(before, machine_load.sample())
    assert figures["disk_write_mb"] >= 3.9
    assert figures["disk_writes"] >= 1


def test_cpu_seconds_of_this_process_and_of_a_child_process_are_told_apart():
    before = machine_load.sample()
    # a child that keeps a core busy for about half a second, then this process for as long
    subprocess.run(
        [
            sys.executable,
            "-c",
            "import time\nend = time.process_time() + 0.5\n"
            "while time.process_time() < end: sum(range(10_000))",
        ],
        check=True,
    )
    middle = machine_load.sample()
    end = middle.process_cpu_s + 0.5
    while time.process_time() < end:
        sum(range(10_000))
    after = machine_load.sample()
    child_step = machine_load.load_between(before, middle)
    own_step = machine_load.load_between(middle, after)
    assert child_step["child_processes_cpu_seconds"] >= 0.45
    assert own_step["python_cpu_seconds"] >= 0.45
    assert own_step["child_processes_cpu_seconds"] == 0
