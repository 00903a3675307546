"""The key of a pipeline stage as seen from inside a step: a configured pipeline prefixes its asset keys."""

import dagster as dg

from scalable_pipeline.core.constants import StepContext


def step_asset_key(context: StepContext, asset: str) -> dg.AssetKey:
    """``asset`` under the key prefix of the asset this step belongs to (unprefixed outside an asset step)."""
    if not context.has_assets_def:
        return dg.AssetKey(asset)
    prefix = next(iter(context.assets_def.keys)).path[:-1]
    return dg.AssetKey([*prefix, asset])
