"""The project's definitions, as Dagster loads them (``workspace.yaml``): every pipeline of the pipelines file
(``$SCALABLE_PIPELINE_CONFIG``, else the shipped one), assembled by ``pipelines.project``."""

from scalable_pipeline.pipelines.project import (  # noqa: F401  (the names tests and tools import from here)
    build_definitions,
    build_resources,
    build_source,
    scalable_data_processing_job,
    shipped_definitions,
)

defs = shipped_definitions()
