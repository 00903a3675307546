"""Preloaded once by the job executor's forkserver, so that every step process it forks starts warm.

A step process needs the definitions (imported here) and the Dagster instance named by ``$DAGSTER_HOME``:
opening one here imports its storage modules once (about 0.7 s per step otherwise, measured with py-spy on
2 cores). The instance is closed again: no connection or file handle is shared with the forked steps.
"""

import os

import dagster as dg

from scalable_pipeline.definitions import defs

defs.resolve_all_job_defs()  # resolve every pipeline's job once; forked steps inherit the resolved definitions
if os.environ.get("DAGSTER_HOME"):
    with dg.DagsterInstance.get():
        pass
