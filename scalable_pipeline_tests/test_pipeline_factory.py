"""The pipeline factory: every step is a processing module's own function or a closure over its pipeline (no
rewritten signature), it requires its pipeline's resource keys, and each op is built once per pipeline."""

import inspect
import sys
from collections.abc import Iterator

import dagster as dg
import pytest

from scalable_pipeline.assembly.project import build_definitions

PIPELINES = """
pools: {chunk_processing: 4}
pipelines:
  - name: scalable_data_processing
    key_prefix: []
  - name: eu
    reserved_slots: 1
    time_rules: [{name: business_hours, hours: "9-17", scaling: {chunk_count: 4}}]
"""
PIPELINE_RESOURCES = {"source", "scaling", "quality", "data_store"}


def op_nodes(graph: dg.GraphDefinition) -> Iterator[tuple[str, dg.OpDefinition]]:
    """(node name, op definition) of every op in ``graph``, its graph assets' ops included."""
    for node in graph.nodes:
        if isinstance(node.definition, dg.GraphDefinition):
            yield from op_nodes(node.definition)
        else:
            yield node.name, node.definition


@pytest.fixture(scope="module")
def pipelines_file(tmp_path_factory: pytest.TempPathFactory):
    path = tmp_path_factory.mktemp("factory") / "pipelines.yaml"
    path.write_text(PIPELINES)
    return path


@pytest.fixture(scope="module")
def defs(pipelines_file) -> dg.Definitions:
    return build_definitions(pipelines_file)


@pytest.mark.parametrize("job", ["scalable_data_processing", "eu"])
def test_every_step_is_a_module_function_or_a_closure_with_its_own_signature(defs, job):
    for node, op in op_nodes(defs.resolve_job_def(job).graph):
        fn = op.compute_fn.decorated_fn
        assert fn.__module__.startswith("scalable_pipeline.processing."), node
        assert not hasattr(fn, "__signature__") and not hasattr(fn, "__wrapped__"), node
        outer, _, name = fn.__qualname__.rpartition(".<locals>.")
        assert name == fn.__name__ and node.removeprefix("eu__").startswith(name), node
        assert callable(getattr(sys.modules[fn.__module__], outer or name)), node  # a module function, or its builder
        assert not set(inspect.signature(fn).parameters) & PIPELINE_RESOURCES, node  # resources come from the context


def test_a_prefixed_pipelines_steps_require_its_own_resource_keys(defs):
    ops = dict(op_nodes(defs.resolve_job_def("eu").graph))
    assert ops["eu__raw_volume"].required_resource_keys == {
        "eu__source",
        "eu__data_store",
        "eu__quality",
        "circuit_breaker",
        "faults",
    }
    assert ops["eu__chunk_partitions"].required_resource_keys == {"eu__scaling", "eu__data_store", "eu__quality"}
    assert ops["eu__process_chunk"].required_resource_keys == {"eu__data_store", "faults"}
    assert ops["eu__route_hour"].required_resource_keys == {"eu__scaling"}
    assert defs.resolve_assets_def(dg.AssetKey(["eu", "raw_volume"])).required_resource_keys >= {
        "eu__source",
        "eu__versioned_store_io_manager",
    }
    unprefixed = dict(op_nodes(defs.resolve_job_def("scalable_data_processing").graph))
    assert unprefixed["raw_volume"].required_resource_keys == {"source", "data_store", "quality", "circuit_breaker", "faults"}


def test_each_op_is_built_once_per_pipeline_and_aliased_for_the_priority_path(defs, pipelines_file):
    eu = dict(op_nodes(defs.resolve_job_def("eu").graph))
    main = dict(op_nodes(defs.resolve_job_def("scalable_data_processing").graph))
    assert eu["eu__process_chunk_priority"] is eu["eu__process_chunk"]
    assert eu["eu__process_range_priority"] is eu["eu__process_range"]
    assert eu["eu__fan_out_ranges_priority"] is eu["eu__fan_out_ranges"]
    assert eu["eu__process_chunk_reserved"].name == "eu__process_chunk_reserved"  # its own op: the reserved pool
    assert (eu["eu__process_chunk_reserved"].pool, eu["eu__process_chunk"].pool) == ("eu_reserved", "chunk_processing")
    assert main["process_chunk_reserved"] is main["process_chunk"]  # no reserved slots: the same op
    assert eu["eu__join_chunk_results"] is main["join_chunk_results"]  # no resource, no pool: one op for all
    rebuilt = dict(op_nodes(build_definitions(pipelines_file).resolve_job_def("eu").graph))
    assert rebuilt["eu__process_chunk"] is not eu["eu__process_chunk"]  # built per pipeline, not kept by a module


SHARING = """
pipelines:
  - name: scalable_data_processing
    key_prefix: []
  - name: a
    quality: {max_invalid_ratio: 0.02}
  - name: b
    quality: {max_invalid_ratio: 0.02}
  - name: c
    source: {kind: synthetic, seed: 3}
    scaling: {chunk_count: 4}
    quality: {max_invalid_ratio: 0.2}
"""


def test_pipelines_with_equal_settings_share_one_resource_instance_per_build(tmp_path):
    path = tmp_path / "pipelines.yaml"
    path.write_text(SHARING)
    resources = build_definitions(path).resources
    for key in ("scaling", "source"):  # equal settings (no source: the default one)
        assert resources[key] is resources[f"a__{key}"] is resources[f"b__{key}"], key
    assert resources["a__quality"] is resources["b__quality"] and resources["a__quality"] is not resources["quality"]
    assert resources["a__quality"].max_invalid_ratio == 0.02 and resources["quality"].max_invalid_ratio == 0.05
    assert resources["c__scaling"].chunk_count == 4 and resources["scaling"].chunk_count != 4  # other settings: its own
    assert resources["c__source"].seed == 3 and resources["c__quality"].max_invalid_ratio == 0.2
    assert resources["a__data_store"].pipeline == "a" and resources["b__data_store"].pipeline == "b"
    assert build_definitions(path).resources["a__scaling"] is not resources["a__scaling"]  # shared within one build only
