"""The records file on disk: podnet writes it atomically, the server reads it."""

from __future__ import annotations

from podnet.dns.records import RecordSet, RecordsFileError

__all__ = ["read_records", "write_records"]


def write_records(path: str, records: RecordSet) -> None:
    """Replace the file at `path` (readers see the old or the new one, never half); a running
    server sees the rename through inotify and answers from the new records at once."""
    from podnet.runtime.pod import write_file_atomic  # the lab's one atomic writer

    write_file_atomic(path, records.to_json(), mode=0o644)


def read_records(path: str) -> RecordSet:
    """The record set in `path`; RecordsFileError (or OSError) says what is wrong."""
    with open(path, encoding="utf-8") as fh:
        text = fh.read()
    try:
        return RecordSet.from_json(text)
    except RecordsFileError as exc:
        raise RecordsFileError(f"{path}: {exc}") from None
