"""Routing an hour by its volume and sharing chunk slots between pipelines (pure).

Dagster gives each op one pool, and a pool a slot limit shared by every run. A pipeline with
``reserved_slots`` R owns the pool ``<name>_reserved`` with limit R, which no other pipeline's op names;
the shared pool it also uses gets its capacity minus every reservation in it. So the shared pools and
the reserved ones together never run more chunk steps than the configured capacity, the reserved slots
stay free for their pipeline, and that pipeline may still take shared slots.
"""

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

SINGLE_STEP = "single_step"
FAN_OUT = "fan_out"
FAN_OUT_PRIORITY = "fan_out_priority"
PROCESSING_PATHS = (SINGLE_STEP, FAN_OUT, FAN_OUT_PRIORITY)


def processing_path(total_records: int, single_step_below: int | None, priority_above: int | None) -> str:
    """``single_step`` below the first bound, ``fan_out_priority`` above the second, else ``fan_out``."""
    if single_step_below is not None and total_records < single_step_below:
        return SINGLE_STEP
    if priority_above is not None and total_records > priority_above:
        return FAN_OUT_PRIORITY
    return FAN_OUT


def reserved_pool(pipeline: str) -> str:
    return f"{pipeline}_reserved"


@dataclass(frozen=True)
class PoolUse:
    """What one pipeline asks of the pools: its shared pool and the slots it reserves."""

    pipeline: str
    pool: str
    reserved_slots: int = 0


def pool_limits(capacity: Mapping[str, int], uses: Sequence[PoolUse]) -> dict[str, int]:
    """Slot limit of every pool: each shared pool its capacity less the reservations in it, each reserved pool its slots.

    Raises ``ValueError`` when reservations leave a shared pool without a slot or name a pool with no capacity.
    """
    reserved: dict[str, int] = {}
    for use in uses:
        if use.reserved_slots:
            reserved[use.pool] = reserved.get(use.pool, 0) + use.reserved_slots
    problems = [f"pool {pool!r} has reserved slots but no capacity under 'pools'" for pool in reserved if pool not in capacity]
    problems += [
        f"pool {pool!r}: {reserved[pool]} reserved slot(s) leave none of its {capacity[pool]} for the other pipelines"
        for pool in reserved
        if pool in capacity and reserved[pool] >= capacity[pool]
    ]
    if problems:
        raise ValueError("; ".join(problems))
    limits = {pool: slots - reserved.get(pool, 0) for pool, slots in capacity.items()}
    limits.update({reserved_pool(use.pipeline): use.reserved_slots for use in uses if use.reserved_slots})
    return limits


def assign_pools(chunks: int, free_slots: Sequence[tuple[str, int]]) -> list[str]:
    """The pool of each chunk, in proportion to the free slots of ``free_slots`` (pool, free), interleaved.

    With no free slot anywhere every chunk goes to the first pool (the reserved one: it frees first for its owner).
    """
    weights = [max(free, 0) for _, free in free_slots]
    if not any(weights):
        weights = [1] + [0] * (len(free_slots) - 1)
    given = [0] * len(free_slots)
    chosen = []
    for _ in range(chunks):
        best = min((i for i, w in enumerate(weights) if w), key=lambda i: (given[i] + 1) / weights[i])
        given[best] += 1
        chosen.append(free_slots[best][0])
    return chosen
