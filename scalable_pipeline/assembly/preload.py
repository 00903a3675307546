"""Preloaded once by the job executor's forkserver, so that every step process it forks starts warm."""

from scalable_pipeline.assembly.project import warm_definitions

warm_definitions()
