"""JSON-lines logs survive a torn last line (a crash in the middle of an append)."""

from scalable_pipeline.core.jsonl import append_record, read_records


def test_torn_last_line_is_skipped_and_the_next_append_starts_a_new_line(tmp_path):
    path = tmp_path / "log.jsonl"
    append_record(path, {"n": 1})
    with open(path, "a") as handle:
        handle.write('{"n": 2, "half')  # the crash
    assert read_records(path) == [{"n": 1}]
    append_record(path, {"n": 3})
    assert read_records(path) == [{"n": 1}, {"n": 3}]
