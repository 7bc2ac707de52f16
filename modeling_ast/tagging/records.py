"""Where tag records live: an append-only journal per process while tagging, one output file at the end.

A record is `{"input": key, "labels": [{"label", "score"}, ...], "error": None | "Type: message"}` plus, in
long-audio mode, `"windows": [{"start", "end", "labels"}, ...]`, and what made it: `"source"` and `"tagged_with"`
(see `fingerprints`).

Journal: `OUTPUT.journal/process-<rank>.jsonl`, one JSON line per record, flushed and fsync'd after every group of
records, so a process killed (SIGKILL, power loss) loses at most the group in flight. A torn last line is dropped when
the journal is read and cut off before its process appends again. The output (.jsonl, .csv or .parquet) is written
once, atomically (temporary file, fsync, rename), from the journals and the previous output, so a reader never sees a
half-written file; the temporary file of a writer killed before its rename is removed by the next run
(`remove_abandoned_staging`, called under the output's lock, so no live writer owns one).

An existing output that these functions cannot read as records is never written over (`NotATagOutputError`).
"""

from __future__ import annotations

import csv
import io
import json
import os
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from transformers.utils import logging

__all__ = [
    "OUTPUT_FORMATS",
    "Journal",
    "check_output_path",
    "journal_dir",
    "read_journals",
    "read_output",
    "remove_abandoned_staging",
    "write_output",
]

logger = logging.get_logger(__name__)

OUTPUT_FORMATS = (".jsonl", ".csv", ".parquet")
CSV_COLUMNS = ("input", "labels", "windows", "error", "source", "tagged_with")  # labels, windows, tagged_with: JSON
REQUIRED_FIELDS = ("input", "labels", "error")  # what every record ast-tag ever wrote has


class NotATagOutputError(ValueError):
    """An existing output file that is not a file of tag records (it is left as it is)."""


def check_output_path(output: str | os.PathLike) -> Path:
    path = Path(output)
    if path.suffix.lower() not in OUTPUT_FORMATS:
        raise ValueError(f"output {path}: use a .jsonl, .csv or .parquet file name")
    if not path.parent.is_dir():
        raise FileNotFoundError(f"output {path}: folder {path.parent} does not exist")
    if path.is_dir():
        raise ValueError(f"output {path} is a folder; name a .jsonl, .csv or .parquet file")
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
    """The records of a finished output file (any of the three formats); [] when there is none.

    Raises:
        NotATagOutputError: `path` exists and does not hold tag records (naming it and why).
    """
    if not path.exists():
        return []
    try:
        records = _read_records(path)
    except (ValueError, KeyError, TypeError, csv.Error) as err:  # pyarrow's ArrowInvalid is a ValueError
        raise _not_a_tag_output(path, f"{type(err).__name__}: {err}") from err
    if not records:
        raise _not_a_tag_output(path, "it holds no records")
    for number, record in enumerate(records, start=1):
        missing = [name for name in REQUIRED_FIELDS if not isinstance(record, dict) or name not in record]
        if missing:
            raise _not_a_tag_output(path, f"record {number} has no {', '.join(missing)}")
    return records


def _read_records(path: Path) -> list[Any]:
    suffix = path.suffix.lower()
    if suffix == ".jsonl":
        return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    if suffix == ".csv":
        reader = csv.DictReader(io.StringIO(path.read_text(encoding="utf-8"), newline=""))
        missing = [name for name in REQUIRED_FIELDS if name not in (reader.fieldnames or ())]
        if missing:
            raise ValueError(f"no {', '.join(missing)} column")
        return [_from_csv_row(row) for row in reader]
    import pyarrow.parquet

    return pyarrow.parquet.read_table(path).to_pylist()


def _not_a_tag_output(path: Path, reason: str) -> NotATagOutputError:
    return NotATagOutputError(
        f"output {path} exists and is not an ast-tag output ({reason}); it is left as it is: move it away or "
        "choose another output"
    )


def _staging_path(path: Path, pid: int) -> Path:
    return path.with_name(f".{path.name}.{pid}.partial")


def remove_abandoned_staging(path: Path) -> None:
    """Delete the temporary files of writers of `path` killed before their rename (call it holding path's lock)."""
    pattern = re.compile(re.escape(f".{path.name}.") + r"\d+" + re.escape(".partial"))
    for candidate in path.parent.iterdir():
        if pattern.fullmatch(candidate.name):
            candidate.unlink(missing_ok=True)
            logger.warning(f"removed {candidate}, left by a run killed while writing {path}")


def write_output(path: Path, records: list[dict[str, Any]]) -> None:
    """Write `records` to `path` in the format its suffix names, atomically."""
    staging = _staging_path(path, os.getpid())
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
    row["source"] = record.get("source") or ""
    row["tagged_with"] = json.dumps(record["tagged_with"]) if "tagged_with" in record else ""
    return row


def _from_csv_row(row: dict[str, str]) -> dict[str, Any]:
    record = {"input": row["input"], "labels": json.loads(row["labels"]), "error": row["error"] or None}
    for name in ("windows", "tagged_with"):
        if row.get(name):
            record[name] = json.loads(row[name])
    if row.get("source"):
        record["source"] = row["source"]
    return record
