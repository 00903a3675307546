"""The store's lock and appends across processes and threads (what several workers on one data root rely on)."""

import multiprocessing
import threading
from pathlib import Path

from scalable_pipeline.core.file_lock import file_lock
from scalable_pipeline.core.jsonl import append_record, read_records

ROUNDS = 200


def increment(counter: Path, rounds: int = ROUNDS) -> None:
    """Read-modify-write of a counter under the lock: a lost update shows in the final count."""
    for _ in range(rounds):
        with file_lock(counter.with_suffix(".lock")):
            value = int(counter.read_text()) if counter.exists() else 0
            counter.write_text(str(value + 1))


def append_many(log: Path, writer: int, rounds: int = ROUNDS) -> None:
    for index in range(rounds):
        append_record(log, {"writer": writer, "index": index, "padding": "x" * 512})


def run_in_processes(target, args_list) -> None:
    context = multiprocessing.get_context("spawn")
    processes = [context.Process(target=target, args=args) for args in args_list]
    for process in processes:
        process.start()
    for process in processes:
        process.join(timeout=300)
        assert process.exitcode == 0


def test_lock_excludes_other_processes(tmp_path):
    counter = tmp_path / "counter"
    run_in_processes(increment, [(counter,), (counter,), (counter,)])
    assert int(counter.read_text()) == 3 * ROUNDS


def test_lock_excludes_other_threads_of_one_process(tmp_path):
    # A POSIX record lock alone is shared by the threads of a process; the lock must still exclude them.
    counter = tmp_path / "counter"
    threads = [threading.Thread(target=increment, args=(counter,)) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=300)
    assert int(counter.read_text()) == 3 * ROUNDS


def test_concurrent_appends_keep_every_record_whole(tmp_path):
    log = tmp_path / "logs" / "history.jsonl"
    run_in_processes(append_many, [(log, writer) for writer in range(3)])
    records = read_records(log)
    assert len(log.read_text().splitlines()) == len(records) == 3 * ROUNDS
    for writer in range(3):
        assert [r["index"] for r in records if r["writer"] == writer] == list(range(ROUNDS))
