"""What a step knows of itself: its context type, and the key of a pipeline stage as seen from inside it (a
configured pipeline prefixes its asset keys)."""

import dagster as dg

# The context an op or an asset receives: the helpers that work inside a step take either.
StepContext = dg.OpExecutionContext | dg.AssetExecutionContext


def step_asset_key(context: StepContext, asset: str) -> dg.AssetKey:
    """``asset`` under the key prefix of the asset this step belongs to (unprefixed outside an asset step)."""
    if not context.has_assets_def:
        return dg.AssetKey(asset)
    prefix = next(iter(context.assets_def.keys)).path[:-1]
    return dg.AssetKey([*prefix, asset])
