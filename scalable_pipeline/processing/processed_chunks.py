"""processed_chunks per pipeline, branching by volume into three paths that publish the same result.

``route_hour`` yields the plan on one of three optional outputs (``decisions/pools.processing_path``):

- ``single_step``: an hour below ``scaling.single_step_below`` records runs every chunk and range in one
  step (``process_hour``), no fan-out;
- ``fan_out``: one step per chunk, then one per order_id range, in the pipeline's pool;
- ``fan_out_priority``: above ``scaling.priority_above``, the chunk and range steps run at a higher step
  priority, and the chunks spread over the pipeline's reserved pool and its shared pool by their free slots.

The paths not taken show as skipped in the run. ``collect_ranges`` takes the one path that ran (a fan-in
of the three, two of them skipped), audits and publishes it, so every path publishes the same whole-hour
result.
"""

from typing import Any

import dagster as dg

from scalable_pipeline.checkpoints.checkpoints import ChunkCheckpoints, ChunkResult, ChunkTask, RangeResult, RangeTask
from scalable_pipeline.pipelines.build import PRIORITY_STEP_TAGS, PipelineBuild
from scalable_pipeline.processing.chunk_plan import ChunkPlan
from scalable_pipeline.processing.chunk_steps import (
    ASSET,
    CHUNK_RETRY_POLICY,
    GATES,
    PathResults,
    chunk_tasks,
    collect_ranges_op,
    compute_ranges,
    fan_out_chunks_op,
    fan_out_ranges_op,
    final_attempt,
    path_results,
    pending_steps,
    process_chunk_op,
    process_range_op,
    range_tasks,
    shuffle_chunk,
)
from scalable_pipeline.processing.descriptions import PROCESSED_CHUNKS
from scalable_pipeline.processing.hours import HourPlans, hour_context
from scalable_pipeline.scaling.pools import (
    FAN_OUT,
    FAN_OUT_PRIORITY,
    PROCESSING_PATHS,
    SINGLE_STEP,
    assign_pools,
    processing_path,
)

RESERVED, SHARED = "reserved", "shared"


def route_hour_op(pipeline: PipelineBuild, **op_args: Any) -> dg.OpDefinition:
    @dg.op(name=pipeline.node("route_hour"), required_resource_keys=pipeline.resource_keys("scaling"), **op_args)
    def route_hour(context: dg.OpExecutionContext, chunk_plan: HourPlans):
        """Each hour's plan on the output of its path; a path no hour takes stays empty, so its steps are skipped."""
        by_path: dict[str, list[ChunkPlan]] = {}
        for hour, plan in sorted(chunk_plan.items()):
            scaling = pipeline.resources(hour_context(context, hour)).scaling  # the hour's time rule applies
            path = processing_path(plan.total_records, scaling.single_step_below, scaling.priority_above)
            context.log.info(
                f"{hour}: {plan.total_records} records -> {path} "
                f"(single_step_below={scaling.single_step_below}, priority_above={scaling.priority_above})"
            )
            by_path.setdefault(path, []).append(plan)
        for path, plans in by_path.items():
            yield dg.Output(plans, path)

    return route_hour


def process_hour_op(pipeline: PipelineBuild, **op_args: Any) -> dg.OpDefinition:
    @dg.op(name=pipeline.node("process_hour"), required_resource_keys=pipeline.resource_keys("data_store"), **op_args)
    def process_hour(context: dg.OpExecutionContext, plans: list[ChunkPlan]) -> PathResults:
        """Every chunk, then every range of each plan, in this one step (or reuse their checkpoints)."""
        data_store = pipeline.resources(context).data_store
        checkpoints = ChunkCheckpoints(data_store.root)
        chunks: list[ChunkResult] = []
        ranges: list[RangeResult] = []
        for chunk_plan in plans:
            partition = data_store.hold_partition(context, chunk_plan.partition_key)
            try:
                shuffled = [shuffle_chunk(checkpoints, task) for task in chunk_tasks(chunk_plan)]
                own = [result for _, results in shuffled for result in results]
                done = {result.index for result in own}
                ranges += own + compute_ranges(checkpoints, [task for task in range_tasks(chunk_plan) if task.index not in done])
                chunks += [chunk for chunk, _ in shuffled]
            except Exception as error:
                plan_dir = str(checkpoints.plan_dir(partition, chunk_plan.fingerprint))
                raise final_attempt(context, "the single step", partition, error, plan_dir) from error
        return path_results(SINGLE_STEP, plans, chunks, ranges)

    return process_hour


def fan_out_priority_chunks_op(pipeline: PipelineBuild, **op_args: Any) -> dg.OpDefinition:
    @dg.op(
        name=pipeline.node("fan_out_priority_chunks"),
        required_resource_keys=pipeline.resource_keys("data_store", "scaling"),
        **op_args,
    )
    def fan_out_priority_chunks(context: dg.OpExecutionContext, plans: list[ChunkPlan]):
        """The chunks still to compute, spread over the reserved and the shared pool by their free slots now."""
        resources = pipeline.resources(context)
        data_store, scaling = resources.data_store, resources.scaling
        load = ChunkCheckpoints(data_store.root).load_chunk
        pending = list(pending_steps(context, data_store, plans, chunk_tasks, load, "chunk"))
        free = [
            (RESERVED if pool == scaling.reserved_pool else SHARED, len(pending) if slots is None else slots)  # None: no limit
            for pool, slots in scaling.free_slots(context.instance)
        ]
        context.log.info(f"free slots now: {dict(free)}")
        for step, output in zip(pending, assign_pools(len(pending), free), strict=True):
            yield dg.DynamicOutput(step.value, mapping_key=step.mapping_key, output_name=output)

    return fan_out_priority_chunks


# The joins take no resource and no pool: one op each, which every pipeline's graph names as its own node.
@dg.op
def join_chunk_results(reserved: list[ChunkResult], shared: list[ChunkResult]) -> list[ChunkResult]:
    return sorted([*reserved, *shared], key=lambda result: result.index)


@dg.op
def fan_out_results(plans: list[ChunkPlan], chunk_results: list[ChunkResult], range_results: list[RangeResult]) -> PathResults:
    return path_results(FAN_OUT, plans, chunk_results, range_results)


@dg.op
def priority_results(plans: list[ChunkPlan], chunk_results: list[ChunkResult], range_results: list[RangeResult]) -> PathResults:
    return path_results(FAN_OUT_PRIORITY, plans, chunk_results, range_results)


def build_processed_chunks(pipeline: PipelineBuild) -> dg.AssetsDefinition:
    """The graph asset of ``pipeline``: route, the three paths, collect.

    Each op is built once; the priority path's nodes are aliases of the fan-out path's ops at a higher step
    priority (its reserved chunk step is its own op where it runs in the pipeline's reserved pool).
    """
    gates = pipeline.check_specs(GATES)
    gate_outputs = {spec.get_python_identifier(): dg.Out(is_required=False) for spec in gates}

    def node(op: dg.OpDefinition, name: str, tags: dict[str, str] | None = None) -> dg.PendingNodeInvocation:
        """``op`` as this pipeline's node ``name``."""
        return op.alias(pipeline.node(name)).tag(tags)

    chunk_step: dict[str, Any] = {"retry_policy": CHUNK_RETRY_POLICY, "pool": pipeline.pool}
    route = route_hour_op(pipeline, out={path: dg.Out(list[ChunkPlan], is_required=False) for path in PROCESSING_PATHS})
    single = process_hour_op(pipeline, **chunk_step)
    chunks_out = fan_out_chunks_op(pipeline, out=dg.DynamicOut(ChunkTask))
    ranges_out = fan_out_ranges_op(pipeline, out=dg.DynamicOut(RangeTask))
    chunk, range_step = process_chunk_op(pipeline, **chunk_step), process_range_op(pipeline, **chunk_step)
    priority_out = fan_out_priority_chunks_op(
        pipeline, out={RESERVED: dg.DynamicOut(ChunkTask), SHARED: dg.DynamicOut(ChunkTask)}
    )
    collect = collect_ranges_op(pipeline, out={"result": dg.Out(io_manager_key=pipeline.io_manager_key), **gate_outputs})
    reserved_op = (
        process_chunk_op(pipeline, "process_chunk_reserved", **{**chunk_step, "pool": pipeline.reserved_pool})
        if pipeline.reserved_pool
        else chunk
    )
    reserved_chunk = node(reserved_op, "process_chunk_reserved", PRIORITY_STEP_TAGS)
    priority_chunk = node(chunk, "process_chunk_priority", PRIORITY_STEP_TAGS)
    priority_ranges_out = node(ranges_out, "fan_out_ranges_priority")
    priority_range = node(range_step, "process_range_priority", PRIORITY_STEP_TAGS)
    fan_done, join_chunks, priority_done = (node(op, op.name) for op in (fan_out_results, join_chunk_results, priority_results))

    @dg.graph_asset(
        name=ASSET,
        key_prefix=list(pipeline.spec.key_prefix),
        ins=pipeline.ins("chunk_partitions"),
        partitions_def=pipeline.partitions_def,
        backfill_policy=pipeline.backfill_policy,
        group_name=pipeline.group,
        check_specs=gates,
        kinds={"pandas", "parquet"},
        description=PROCESSED_CHUNKS,
    )
    def processed_chunks(chunk_partitions: HourPlans):
        """Every raw row with its verdict (rejection_reason empty = valid), sorted by order_id, range by range."""
        routed = route(chunk_partitions)
        by_step = single(getattr(routed, SINGLE_STEP))

        fan = getattr(routed, FAN_OUT)
        fan_chunks = chunks_out(fan).map(chunk).collect()
        by_fan_out = fan_done(fan, fan_chunks, ranges_out(fan, fan_chunks).map(range_step).collect())

        priority = getattr(routed, FAN_OUT_PRIORITY)
        reserved, shared = priority_out(priority)
        priority_chunks = join_chunks(reserved.map(reserved_chunk).collect(), shared.map(priority_chunk).collect())
        by_priority = priority_done(
            priority, priority_chunks, priority_ranges_out(priority, priority_chunks).map(priority_range).collect()
        )

        collected = collect(chunk_partitions, [by_step, by_fan_out, by_priority])
        return {"result": collected.result, **{name: getattr(collected, name) for name in gate_outputs}}

    return processed_chunks
