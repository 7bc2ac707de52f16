"""Where tag records live: an append-only journal per process while tagging, one output file at the end.

A record is `{"input": key, "labels": [{"label", "score"}, ...], "error": None | "Type: message"}` plus, in
long-audio mode, `"windows": [{"start", "end", "labels"}, ...]`.

Journal: `OUTPUT.journal/process-<rank>.jsonl`, one JSON line per record, flushed and fsync'd after every group of
records, so a process killed (SIGKILL, power loss) loses at most the group in flight. A torn last line is dropped when
the journal is read and cut off before its process appends again. The output (.jsonl, .csv or .parquet) is written
once, atomically (temporary file, fsync, rename), from the journals and the previous output, so a reader never sees a
half-written file.
"""

from __future__ import annotations

import csv
import io
import json
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

OUTPUT_FORMATS = (".jsonl", ".csv", ".parquet")
CSV_COLUMNS = ("input", "labels", "windows", "error")  # labels and windows hold JSON text


def check_output_path(output: str | os.PathLike) -> Path:
    path = Path(output)
    if path.suffix.lower() not in OUTPUT_FORMATS:
        raise ValueError(f"output {path}: use a .jsonl, .csv or .parquet file name")
    if not path.parent.is_dir():
        raise FileNotFoundError(f"output {path}: folder {path.parent} does not exist")
    return path


def journal_dir(output: Path) -> Path:
    return output.with_name(output.name + ".journal")


def read_journal(path: Path) -> tuple[list[dict[str, Any]], int]:
    """The complete records of one journal file and the byte length they span (a torn last line is left out)."""
    records, length = [], 0
    with open(path, "rb") as handle:
        for line in handle:
            if not line.endswith(b"\n"):
                break  # the process died while writing this line
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError:
                break
            length += len(line)
    return records, length


def read_journals(directory: Path) -> list[dict[str, Any]]:
    """The records of every process's journal in `directory`; none when it does not exist."""
    records: list[dict[str, Any]] = []
    for path in sorted(directory.glob("process-*.jsonl")):
        records.extend(read_journal(path)[0])
    return records


class Journal:
    """The append-only journal of one process (see the module docstring)."""

    def __init__(self, directory: Path, rank: int) -> None:
        directory.mkdir(exist_ok=True)
        self.path = directory / f"process-{rank}.jsonl"
        if self.path.exists():
            _, length = read_journal(self.path)
            os.truncate(self.path, length)  # drop a torn tail before appending after it
        self._handle = open(self.path, "ab")

    def append(self, records: Iterable[dict[str, Any]]) -> None:
        self._handle.write(b"".join(json.dumps(record).encode() + b"\n" for record in records))
        self._handle.flush()
        os.fsync(self._handle.fileno())

    def close(self) -> None:
        self._handle.close()


def read_output(path: Path) -> list[dict[str, Any]]:
    """The records of a finished output file (any of the three formats); [] when there is none."""
    if not path.exists():
        return []
    suffix = path.suffix.lower()
    if suffix == ".jsonl":
        return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    if suffix == ".csv":
        rows = list(csv.DictReader(io.StringIO(path.read_text(encoding="utf-8"), newline="")))
        return [_from_csv_row(row) for row in rows]
    import pyarrow.parquet

    return pyarrow.parquet.read_table(path).to_pylist()


def write_output(path: Path, records: list[dict[str, Any]]) -> None:
    """Write `records` to `path` in the format its suffix names, atomically."""
    staging = path.with_name(f".{path.name}.{os.getpid()}.partial")
    try:
        suffix = path.suffix.lower()
        if suffix == ".jsonl":
            staging.write_text("".join(json.dumps(record) + "\n" for record in records), encoding="utf-8")
        elif suffix == ".csv":
            with open(staging, "w", encoding="utf-8", newline="") as handle:
                writer = csv.DictWriter(handle, fieldnames=CSV_COLUMNS)
                writer.writeheader()
                writer.writerows(_to_csv_row(record) for record in records)
        else:
            import pyarrow
            import pyarrow.parquet

            pyarrow.parquet.write_table(pyarrow.Table.from_pylist(records), staging)
        with open(staging, "rb") as handle:
            os.fsync(handle.fileno())
        os.replace(staging, path)
    finally:
        staging.unlink(missing_ok=True)
    directory = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory)  # the rename itself survives a power loss
    finally:
        os.close(directory)


def _to_csv_row(record: dict[str, Any]) -> dict[str, str]:
    row = {"input": record["input"], "labels": json.dumps(record["labels"]), "error": record.get("error") or ""}
    row["windows"] = json.dumps(record["windows"]) if "windows" in record else ""
    return row


def _from_csv_row(row: dict[str, str]) -> dict[str, Any]:
    record = {"input": row["input"], "labels": json.loads(row["labels"]), "error": row["error"] or None}
    if row.get("windows"):
        record["windows"] = json.loads(row["windows"])
    return record
