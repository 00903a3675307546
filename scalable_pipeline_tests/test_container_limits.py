"""Container limits: CPU and memory from cgroup v2 files (fake ones in tmp_path), the smaller of host and
container, and the source recorded in the chunk plan's resource snapshot."""

import psutil
import pytest

from scalable_pipeline.scaling.cgroups import CgroupV2, parse_bytes, parse_cpu_max
from scalable_pipeline.scaling.decision import CHUNK_MEMORY_OVERHEAD
from scalable_pipeline.scaling.machine import (
    CpuMark,
    HostMemory,
    Machine,
    Measured,
    cgroup_cpu_percent,
    effective_cpus,
    effective_memory,
    others_cpu_percent,
)
from scalable_pipeline.scaling.resource import CPU_READING_SECONDS, CPU_SAMPLE_SECONDS, CpuReadings, ScalingResource
from scalable_pipeline_tests.conftest import PEAK_PARTITION, materialization_metadata, materialize_hour

GIB = 1024**3


def fake_cgroup(directory, cpu_max="max 100000", memory_max="max", memory_current="0", inactive_file=0, usage_usec=0):
    files = {
        "cpu.max": cpu_max,
        "memory.max": memory_max,
        "memory.current": memory_current,
        "memory.stat": f"anon 1234\nfile 5678\ninactive_file {inactive_file}\n",
        "cpu.stat": f"usage_usec {usage_usec}\nuser_usec 1\nsystem_usec 2\n",
    }
    for name, text in files.items():
        (directory / name).write_text(text + "\n")
    return directory


@pytest.mark.parametrize(
    "text, cpus", [("200000 100000", 2.0), ("150000 100000", 1.5), ("max 100000", None), ("", None), (None, None), ("x y", None)]
)
def test_cpu_max(text, cpus):
    assert parse_cpu_max(text) == cpus


@pytest.mark.parametrize("text, value", [("1073741824", GIB), ("max", None), (None, None)])
def test_memory_bytes(text, value):
    assert parse_bytes(text) == value


def test_cgroup_files_are_read(tmp_path):
    cgroup = CgroupV2(fake_cgroup(tmp_path, "150000 100000", str(2 * GIB), str(GIB), inactive_file=GIB // 4, usage_usec=42))
    assert cgroup.cpu_limit() == 1.5
    assert cgroup.memory_limit() == 2 * GIB
    assert cgroup.memory_in_use() == GIB - GIB // 4  # the inactive page cache is reclaimable, not in use
    assert cgroup.cpu_usage_usec() == 42


def test_no_cgroup_v2_files_means_no_limits(tmp_path):
    cgroup = CgroupV2(tmp_path)
    assert (cgroup.cpu_limit(), cgroup.memory_limit(), cgroup.memory_in_use(), cgroup.cpu_usage_usec()) == (None,) * 4


@pytest.mark.parametrize(
    "host, quota, cpus, source",
    [
        (8, 1.5, 1, "cgroup v2 cpu.max"),  # whole CPUs within the quota
        (8, 0.5, 1, "cgroup v2 cpu.max"),  # at least one
        (2, 4.0, 2, "os (CPU affinity)"),  # the host is the smaller
        (2, None, 2, "os (CPU affinity)"),
    ],
)
def test_cpus_are_the_smaller_of_host_and_quota(host, quota, cpus, source):
    measured = effective_cpus(host, quota)
    assert (measured.value, measured.source) == (cpus, source)


def test_memory_is_the_tighter_of_host_and_container():
    host = HostMemory(total_bytes=24 * GIB, available_bytes=20 * GIB)
    total, used = effective_memory(host, limit_bytes=2 * GIB, in_use_bytes=GIB + GIB // 2)
    assert (total.value, total.source) == (2 * GIB, "cgroup v2 memory.max")
    assert (used.value, used.source) == (75.0, "cgroup v2 memory.current")
    unlimited_total, unlimited_used = effective_memory(host, limit_bytes=None, in_use_bytes=GIB)
    assert (unlimited_total.value, unlimited_total.source) == (24 * GIB, "psutil")
    assert unlimited_used.value == pytest.approx(100 * 4 / 24)
    roomy_total, _ = effective_memory(host, limit_bytes=64 * GIB, in_use_bytes=GIB)  # the host has less free
    assert roomy_total.source == "psutil"


def test_container_cpu_use_is_relative_to_its_quota():
    assert cgroup_cpu_percent(usage_usec_delta=150_000, seconds=0.1, cpus=1.5) == pytest.approx(100.0)
    assert cgroup_cpu_percent(usage_usec_delta=75_000, seconds=0.2, cpus=1.5) == pytest.approx(25.0)
    assert cgroup_cpu_percent(usage_usec_delta=10, seconds=0.0, cpus=1.5) == 0.0


def test_machine_reads_a_container_smaller_than_this_host(tmp_path):
    assert psutil.virtual_memory().available > GIB  # the fake container must be the tighter one
    machine = Machine(fake_cgroup(tmp_path, "100000 100000", str(GIB), str(GIB // 4)))
    total, used = machine.memory()
    assert (total.value, used.value, total.source) == (GIB, 25.0, "cgroup v2 memory.max")
    assert (machine.cpus().value, machine.cpus().source) == (1, "cgroup v2 cpu.max")


def test_chunk_plan_is_sized_from_the_container_and_names_the_source(tmp_path, instance):
    cgroup_dir = fake_cgroup(tmp_path, "100000 100000", str(GIB), str(GIB // 2))
    scaling = ScalingResource(cgroup_dir=str(cgroup_dir), cpu_usage_percent=10, queue_length=0)
    meta = materialization_metadata(materialize_hour(PEAK_PARTITION, instance, scaling=scaling), "chunk_partitions")
    snapshot = meta["resource_snapshot"]
    assert snapshot["memory_total_bytes"] == GIB and snapshot["memory_usage_percent"] == 50.0
    assert snapshot["sources"]["memory_total_bytes"] == "cgroup v2 memory.max"
    assert snapshot["sources"]["memory_usage_percent"] == "cgroup v2 memory.current"
    assert snapshot["sources"]["available_workers"] == "executor and pool; 1 CPU(s) from cgroup v2 cpu.max"
    # half of the container's 1 GiB is free, half of that budgeted over the slots, at 4x the bytes per record
    free_budget = GIB / 2 * scaling.memory_budget_fraction / snapshot["available_workers"]
    assert meta["memory_bound_rows"] == pytest.approx(free_budget / (meta["bytes_per_record"] * CHUNK_MEMORY_OVERHEAD), rel=1e-3)


class FakeCpu:
    """A machine whose CPU marks and readings follow a fake clock (``now``), counting the readings."""

    def __init__(self):
        self.now, self.slept, self.read_from = 1000.0, [], []

    def sleep(self, seconds):
        self.slept.append(round(seconds, 6))
        self.now += seconds

    def mark(self, machine):
        return CpuMark(self.now, 0.0, 0.0, None, 0.0)

    def between(self, machine, before, after):
        self.read_from.append(before.at)
        return Measured(50.0, "psutil")


@pytest.fixture
def fake_cpu(monkeypatch):
    cpu = FakeCpu()
    monkeypatch.setattr(Machine, "cpu_mark", lambda machine: cpu.mark(machine))
    monkeypatch.setattr(Machine, "cpu_usage_between", lambda machine, before, after: cpu.between(machine, before, after))
    return cpu


def test_a_plan_made_a_sample_after_the_run_started_reads_the_cpu_without_waiting(fake_cpu, tmp_path):
    machine, readings = Machine(tmp_path), CpuReadings(clock=lambda: fake_cpu.now, sleep=fake_cpu.sleep)
    readings.mark(machine)  # the run's resources are set up
    fake_cpu.now += CPU_SAMPLE_SECONDS * 3  # raw_volume ran meanwhile
    assert readings.read(machine) == Measured(50.0, "psutil")
    assert fake_cpu.slept == [] and fake_cpu.read_from == [1000.0]


def test_a_plan_made_sooner_waits_out_the_rest_of_the_sample(fake_cpu, tmp_path):
    machine, readings = Machine(tmp_path), CpuReadings(clock=lambda: fake_cpu.now, sleep=fake_cpu.sleep)
    readings.mark(machine)
    fake_cpu.now += CPU_SAMPLE_SECONDS / 4
    readings.read(machine)
    assert fake_cpu.slept == [round(CPU_SAMPLE_SECONDS * 3 / 4, 6)]


def test_the_hours_of_one_step_share_a_cpu_reading_and_the_next_window_reads_from_the_last(fake_cpu, tmp_path):
    machine, readings = Machine(tmp_path), CpuReadings(clock=lambda: fake_cpu.now, sleep=fake_cpu.sleep)
    readings.mark(machine)
    fake_cpu.now += 1.0
    first = readings.read(machine)
    fake_cpu.now += CPU_READING_SECONDS / 2
    assert readings.read(machine) is first and fake_cpu.read_from == [1000.0]
    fake_cpu.now += CPU_READING_SECONDS  # the next window measures from the first reading on
    readings.read(machine)
    assert fake_cpu.read_from == [1000.0, 1001.0] and fake_cpu.slept == []


def test_a_run_set_up_just_after_the_definitions_loaded_reads_from_their_load(fake_cpu, tmp_path):
    machine, readings = Machine(tmp_path), CpuReadings(clock=lambda: fake_cpu.now, sleep=fake_cpu.sleep)
    readings.mark(machine)  # the run's process loads the definitions
    fake_cpu.now += 1.0
    readings.mark(machine, keep_younger_than=CPU_READING_SECONDS)  # the run's resources are set up: the mark stands
    readings.read(machine)
    assert fake_cpu.read_from == [1000.0] and fake_cpu.slept == []

    fake_cpu.now += CPU_READING_SECONDS + 1  # a later run in this process: measured from its own setup
    readings.mark(machine, keep_younger_than=CPU_READING_SECONDS)
    readings.read(machine)
    assert fake_cpu.read_from == [1000.0, fake_cpu.now - CPU_SAMPLE_SECONDS] and fake_cpu.slept == [CPU_SAMPLE_SECONDS]


def test_a_forked_step_process_takes_its_own_mark(fake_cpu, tmp_path):
    pid = [100]  # the step server loads the definitions, then forks a step process
    machine = Machine(tmp_path)
    readings = CpuReadings(clock=lambda: fake_cpu.now, sleep=fake_cpu.sleep, pid=lambda: pid[0])
    readings.mark(machine)
    fake_cpu.now += 1.0
    pid[0] = 101
    readings.mark(machine, keep_younger_than=CPU_READING_SECONDS)  # the parent's mark counts the parent's own CPU
    fake_cpu.now += CPU_SAMPLE_SECONDS
    readings.read(machine)
    assert fake_cpu.read_from == [1001.0]


def test_others_cpu_use_leaves_out_this_process():
    before = CpuMark(0.0, host_busy=10.0, host_total=100.0, container_usec=None, own=1.0)
    after = CpuMark(1.0, host_busy=13.0, host_total=104.0, container_usec=None, own=2.0)  # 3 s busy, 1 of them ours
    assert others_cpu_percent(before, after) == 50.0
    assert others_cpu_percent(before, before) == 0.0  # no time passed
    busy_only_us = CpuMark(1.0, host_busy=11.0, host_total=104.0, container_usec=None, own=2.0)
    assert others_cpu_percent(before, busy_only_us) == 0.0


def test_a_real_reading_is_a_percentage_of_the_machine(tmp_path):
    machine = Machine(fake_cgroup(tmp_path))
    mark = machine.cpu_mark()
    sum(range(2_000_000))  # this process's own work is left out
    reading = machine.cpu_usage_between(mark, machine.cpu_mark())
    assert 0.0 <= reading.value <= 100.0 and reading.source == "psutil"  # no quota in the fake cgroup
