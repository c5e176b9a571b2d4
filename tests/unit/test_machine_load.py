"""The benchmarks' machine figures: busy cores, I/O wait and I/O pressure between two samples."""

from __future__ import annotations

import os
import sys

import pytest

from cem_warehouse import machine_load
from cem_warehouse.machine_load import MachineSample, cpu_jiffies, io_stall_microseconds

STAT = """cpu  1000 50 300 5000 400 20 30 100 0 0
cpu0 500 25 150 2500 200 10 15 50 0 0
intr 12345
"""
PRESSURE = """some avg10=1.00 avg60=2.00 avg300=3.00 total=7000000
full avg10=0.50 avg60=1.00 avg300=1.50 total=3000000
"""


def test_cpu_time_is_split_into_busy_iowait_and_the_total_of_every_core():
    # busy = user + nice + system + irq + softirq; steal only in the total
    assert cpu_jiffies(STAT) == (1000 + 50 + 300 + 20 + 30, 400, 1400 + 5000 + 400 + 100)


def test_io_pressure_totals_are_read_for_some_and_full():
    assert io_stall_microseconds(PRESSURE) == (7_000_000, 3_000_000)
    assert io_stall_microseconds("\n" + PRESSURE + "\n") == (7_000_000, 3_000_000)
    assert io_stall_microseconds("") is None


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
    before = machine_load.sample()
    after = machine_load.sample()
    assert before.cpu is None and before.io_stalled_us is None
    assert machine_load.load_between(before, after) == {}


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
