"""The one place where user input (partition keys, asset names, version ids) becomes a path.

Every folder or file under the data root is built by :func:`under_root` from names checked by
:func:`safe_name`, and partitions by :func:`partition_dirname`, which accepts only hourly partition keys:
nothing can name a path outside the data root. Which hours a pipeline has is its own partitions
definition's (from its ``start``), checked where the pipeline is known (:func:`require_partition_key`).
"""

import hashlib
import re
from pathlib import Path

import dagster as dg

from scalable_pipeline.core.partition_keys import partition_key_problem

SAFE_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*")


class InvalidPartitionKey(ValueError):
    """A partition key that is not an hourly partition key, or not an hour of its pipeline."""


class UnsafeName(ValueError):
    """A name that could address a path outside its folder."""


def require_partition_key(
    key: str, partitions: dg.TimeWindowPartitionsDefinition | None = None, pipeline: str = "this pipeline"
) -> str:
    """``key`` if it is an hourly partition key (``YYYY-MM-DD-HH:00``, a real hour) and, given ``pipeline``'s
    ``partitions``, one of them (from its ``start`` to the last complete hour)."""
    problem = partition_key_problem(key, partitions)
    if problem:
        raise InvalidPartitionKey(f"partition {key!r} is not an hourly partition of {pipeline}: {problem}")
    return key


def safe_name(name: str, what: str = "name") -> str:
    """``name`` if it is one plain path component (letters, digits, ``_ . -``; no separators, not ``..``)."""
    if not SAFE_NAME.fullmatch(name) or name in (".", ".."):
        raise UnsafeName(f"{what} {name!r} is not allowed: use letters, digits, '_', '.' and '-' only")
    return name


def partition_dirname(partition_key: str) -> str:
    """The folder name of a partition (the key without ``:``); rejects anything that is not an hourly partition key."""
    return require_partition_key(partition_key).replace(":", "")


def under_root(root: Path | str, *parts: str) -> Path:
    """``root/parts...``, each part a safe name; the result is always inside ``root``."""
    return Path(root).joinpath(*(safe_name(part, "path component") for part in parts))


def escaped_name(name: str) -> str:
    """``name`` if it is a safe name; else its other characters as ``_`` plus a digest of ``name`` (a file
    name found on disk, kept recognisable, never a separator or ``..``)."""
    if SAFE_NAME.fullmatch(name) and name not in (".", ".."):
        return name
    digest = hashlib.sha256(name.encode("utf-8", "surrogateescape")).hexdigest()[:8]
    return f"_{re.sub(r'[^A-Za-z0-9_.-]', '_', name)}-{digest}"
