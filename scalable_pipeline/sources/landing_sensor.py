"""``<pipeline>_landing_sensor``: one run per complete, valid hour file in the landing folder.

Each tick looks at every file under the landing folder (``os.scandir``, symlinks not followed, hidden
and ``.tmp`` names skipped) and compares size, mtime and inode with the cursor
(``decisions/landing_watch.py``). A file unchanged since the last tick is complete and judged once: its
name must be an hour of the pattern (``hour_file_name``), of a partition (``hour_partition``; a future
hour waits), a regular file inside the folder and readable with the order columns (the landing file
rules of ``sources/landing_files.py``), at least ``min_bytes`` (``min_size``), modified at most
``max_age_seconds`` ago (``max_age``). A rejected file is moved to
``<data root>/quarantine/landing/<pipeline>/<relative path>`` with a ``.reason.json``. A valid one
starts a run of its hour, run key ``<relative path>@sha256:<content digest>``: the same content never
runs twice (Dagster drops a run key already used: a file delivered again unchanged), a replaced file
runs again. While the source's circuit is open (``on_source_outage: defer``) valid files are held in
the cursor and launched when it closes.
"""

import hashlib
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import dagster as dg
import pandas as pd

from scalable_pipeline.core.constants import DEFAULT_START, PIPELINE_TAG
from scalable_pipeline.core.partition_keys import PARTITION_FORMAT
from scalable_pipeline.core.tick_log import log_tick
from scalable_pipeline.sources.circuit_breaker_store import CircuitOpenError
from scalable_pipeline.sources.deferral import LAUNCH, OutageMode
from scalable_pipeline.sources.errors import SourceUnavailableError
from scalable_pipeline.sources.landing_files import (
    LandingFileError,
    check_table_header,
    hour_of,
    open_landing_file,
)
from scalable_pipeline.sources.landing_watch import LAUNCHED, READY, REJECTED, Look, files_cursor, parse_files, sort_looks
from scalable_pipeline.sources.quarantine import quarantine_landing_file
from scalable_pipeline.sources.resource import LandingFileSource
from scalable_pipeline.sources.source_outage import BREAKER_KEY, pipeline_resources, read_source

FILE_TAG = "scalable_pipeline/landing_file"
DIGEST_TAG = "scalable_pipeline/landing_sha256"


@dataclass(frozen=True)
class LandingRules:
    """What the sensor checks, from the landing source's settings (``LandingRules.of``)."""

    landing_dir: str
    pattern: str
    min_bytes: int
    max_age_seconds: float
    first_hour: str  # the pipeline's first partition

    @classmethod
    def of(cls, source: LandingFileSource, first_hour: str = DEFAULT_START) -> "LandingRules":
        """The rules of a landing source's settings."""
        return cls(source.landing_dir, source.pattern, source.min_bytes, source.max_age_seconds, first_hour)


class Rejected(Exception):
    """A complete file that breaks ``rule``: it goes to the quarantine."""

    def __init__(self, rule: str, detail: str):
        self.rule, self.detail = rule, detail
        super().__init__(f"{rule}: {detail}")


def taken(name: str) -> bool:
    """Hidden files and ``.tmp`` files are being written (or are not ours): never taken."""
    return not name.startswith(".") and not name.endswith(".tmp")


def scan_landing(landing_dir: Path) -> list[Look]:
    """Every file (or symlink, pipe, ...) under ``landing_dir``; real folders are walked, hidden ones not."""
    if not landing_dir.is_dir():
        raise SourceUnavailableError(f"landing folder {landing_dir} is not there (not mounted?)")

    def walk(folder: Path, prefix: str) -> Iterator[Look]:
        with os.scandir(folder) as entries:
            for entry in entries:
                if not taken(entry.name):
                    continue
                if entry.is_dir(follow_symlinks=False):
                    yield from walk(Path(entry.path), f"{prefix}{entry.name}/")
                    continue
                stat = entry.stat(follow_symlinks=False)
                yield Look(f"{prefix}{entry.name}", stat.st_size, stat.st_mtime_ns, stat.st_ino)

    return sorted(walk(landing_dir, ""), key=lambda look: look.rel)


def content_digest(handle: BinaryIO) -> str:
    """SHA-256 of the whole opened file, read in 1 MiB blocks."""
    handle.seek(0)
    digest = hashlib.sha256()
    while block := handle.read(2**20):
        digest.update(block)
    return digest.hexdigest()


def judge(rules: LandingRules, look: Look, now: float) -> tuple[pd.Timestamp, str] | None:
    """The hour and content digest of a complete file that may run; None when its hour has not ended yet.
    Raises ``Rejected``."""
    hour_start = hour_of(look.rel, rules.pattern)
    if hour_start is None:
        raise Rejected("hour_file_name", f"not an hour file of the pattern {rules.pattern!r} (.csv or .parquet)")
    first = pd.to_datetime(rules.first_hour, format=PARTITION_FORMAT, utc=True)
    if hour_start < first:
        raise Rejected("hour_partition", f"hour {hour_start} is before the first partition {rules.first_hour}")
    if (hour_start + pd.Timedelta(hours=1)).timestamp() > now:
        return None
    try:
        real, handle = open_landing_file(Path(rules.landing_dir), Path(rules.landing_dir) / look.rel)
        with handle:
            stat = os.fstat(handle.fileno())
            if stat.st_size < rules.min_bytes:
                raise Rejected("min_size", f"{stat.st_size} bytes, less than the minimum {rules.min_bytes}")
            if now - stat.st_mtime > rules.max_age_seconds:
                raise Rejected("max_age", f"modified {now - stat.st_mtime:.0f} s ago, more than {rules.max_age_seconds:.0f} s")
            check_table_header(Path(look.rel), real, handle)
            digest = content_digest(handle)
    except LandingFileError as error:
        raise Rejected(error.rule, str(error)) from error
    except SourceUnavailableError:
        raise
    except OSError as error:  # this file only (permissions, vanished): the others go on
        raise Rejected("readable_table", f"{type(error).__name__}: {error}") from error
    return hour_start, digest


def run_request(pipeline: str, rel: str, hour_start: pd.Timestamp, digest: str) -> dg.RunRequest:
    """The run of the file's hour; its key names the file and its content, so the same content never runs twice."""
    return dg.RunRequest(
        run_key=f"{rel}@sha256:{digest[:32]}",
        partition_key=hour_start.strftime(PARTITION_FORMAT),
        tags={PIPELINE_TAG: pipeline, FILE_TAG: rel, DIGEST_TAG: digest},
    )


def build_landing_sensor(
    pipeline: str,
    job_name: str,
    rules: LandingRules,
    on_source_outage: OutageMode = "defer",
    circuit: str = "source",
    minimum_interval_seconds: int = 30,
    clock: Callable[[], float] = time.time,
    data_store_key: str = "data_store",
) -> dg.SensorDefinition:
    """The landing sensor of ``pipeline``, launching the job ``job_name``; its data root is the resource
    ``data_store_key``; ``clock`` gives now (tests inject one)."""

    @dg.sensor(
        name=f"{pipeline}_landing_sensor",
        job_name=job_name,
        minimum_interval_seconds=minimum_interval_seconds,
        required_resource_keys={data_store_key, BREAKER_KEY},
        description=f"One run per complete, valid hour file in {rules.landing_dir} ({rules.pattern}); "
        "rejected files go to the quarantine with their reason.",
    )
    def landing_sensor(context: dg.SensorEvaluationContext, **_resources) -> dg.SensorResult:
        data_store, circuit_breaker = pipeline_resources(context, data_store_key)
        now = clock()
        landing_dir = Path(rules.landing_dir)
        try:
            looks, decision = read_source(
                circuit_breaker, data_store, circuit, on_source_outage, now, lambda: scan_landing(landing_dir)
            )
        except (OSError, CircuitOpenError) as error:
            return dg.SensorResult(skip_reason=f"landing folder not read: {error}", cursor=context.cursor)
        found = sort_looks(parse_files(context.cursor), looks)
        files, ready, rejected = found.files, list(found.ready), []
        for look in found.complete:
            try:
                judged = judge(rules, look, now)
            except Rejected as problem:
                reason = quarantine_landing_file(
                    data_store.root, pipeline, landing_dir, look.rel, problem.rule, problem.detail, now
                )
                rejected.append(f"{look.rel} ({problem.rule})")
                context.log.warning(f"{look.rel} rejected, {problem}; see {reason}")
                if (landing_dir / look.rel).exists() or (landing_dir / look.rel).is_symlink():
                    files[look.rel][1] = REJECTED  # could not be moved: not judged again until it changes
                else:
                    del files[look.rel]
                continue
            if judged is not None:
                files[look.rel] = [look.version, READY, judged[1]]
                ready.append(look)
        requests = []
        if decision.action == LAUNCH:
            for look in ready:
                hour_start = hour_of(look.rel, rules.pattern)
                assert hour_start is not None  # judged above or on an earlier tick
                requests.append(run_request(pipeline, look.rel, hour_start, files[look.rel][2]))
                files[look.rel][1] = LAUNCHED
        summary = f"{len(looks)} files, {len(found.complete)} newly complete, {len(rejected)} quarantined {rejected[:5]}, " + (
            f"{len(requests)} runs requested"
            if decision.action == LAUNCH
            else f"{len(ready)} hour(s) deferred: {decision.reason}"
        )
        log_tick(context.log, summary, acted=bool(requests or rejected))
        return dg.SensorResult(run_requests=requests, skip_reason=None if requests else summary, cursor=files_cursor(files))

    return landing_sensor
