"""The project's definitions, as Dagster loads them (``workspace.yaml``): every pipeline of the pipelines file
(``$SCALABLE_PIPELINE_CONFIG``, else the shipped one), assembled by ``assembly.project``."""

from scalable_pipeline.assembly.project import shipped_definitions

defs = shipped_definitions()
