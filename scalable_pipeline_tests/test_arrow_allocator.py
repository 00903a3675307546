"""Processes that run steps allocate Arrow memory from jemalloc, unless the deployment names an allocator."""

import dagster as dg
import pyarrow as pa
import pytest

from scalable_pipeline.publishing.data_store import ARROW_POOL_ENV, DataStoreResource, use_jemalloc


@pytest.fixture
def default_pool(monkeypatch):
    """The process's default pool set to mimalloc for the test, and put back afterwards."""
    monkeypatch.delenv(ARROW_POOL_ENV, raising=False)
    before = pa.default_memory_pool()
    pa.set_memory_pool(pa.mimalloc_memory_pool())
    yield
    pa.set_memory_pool(before)


def test_the_data_store_set_up_for_a_run_switches_arrow_to_jemalloc(default_pool, tmp_path):
    with dg.build_resources({"data_store": DataStoreResource(data_dir=str(tmp_path))}):
        assert pa.default_memory_pool().backend_name == "jemalloc"
        assert pa.array(range(1000)).sum().as_py() == 499500  # allocations go through it


def test_an_allocator_named_by_the_environment_stands(default_pool):
    assert not use_jemalloc({ARROW_POOL_ENV: "system"})
    assert pa.default_memory_pool().backend_name == "mimalloc"
    assert use_jemalloc({})
    assert pa.default_memory_pool().backend_name == "jemalloc"
