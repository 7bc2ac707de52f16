"""Where tag records live: an append-only journal per process while tagging, one output file at the end.

A record is `{"input": key, "labels": [{"label", "score"}, ...], "error": None | "Type: message"}` plus, in
long-audio mode, `"windows": [{"start", "end", "labels"}, ...]`, and what made it: `"source"` and `"tagged_with"`
(see `fingerprints`). With `events` (`ast-tag --events`) a record is
`{"input", "events": [{"label", "start", "end", "score"}, ...], "error", ...}` and the output holds one row per event
(`event_rows`; a .tsv output is DCASE's format, its complete rows kept beside it).

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
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from transformers.utils import logging

from . import event_rows
from .event_rows import is_tsv, tsv_rows_path

__all__ = [
    "EVENT_OUTPUT_FORMATS",
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
EVENT_OUTPUT_FORMATS = (".tsv", *OUTPUT_FORMATS)
CSV_COLUMNS = ("input", "labels", "windows", "error", "source", "tagged_with")  # labels, windows, tagged_with: JSON
REQUIRED_FIELDS = ("input", "labels", "error")  # what every record ast-tag ever wrote has


class NotATagOutputError(ValueError):
    """An existing output file that is not a file of tag records (it is left as it is)."""


@dataclass(frozen=True)
class _Layout:
    """What the rows of one kind of output hold: the fields every row has, the CSV columns and their conversions."""

    what: str
    required: tuple[str, ...]
    csv_columns: tuple[str, ...]
    to_csv: Callable[[dict[str, Any]], dict[str, Any]]
    from_csv: Callable[[dict[str, str]], dict[str, Any]]


def check_output_path(output: str | os.PathLike, events: bool = False) -> Path:
    path = Path(output)
    hint = "a .tsv (DCASE), .jsonl, .csv or .parquet" if events else "a .jsonl, .csv or .parquet"
    if path.suffix.lower() not in (EVENT_OUTPUT_FORMATS if events else OUTPUT_FORMATS):
        more = "" if events or not is_tsv(path) else " (a .tsv output holds sound events: --events)"
        raise ValueError(f"output {path}: use {hint} file name{more}")
    if not path.parent.is_dir():
        raise FileNotFoundError(f"output {path}: folder {path.parent} does not exist")
    if path.is_dir():
        raise ValueError(f"output {path} is a folder; name {hint} file")
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


def read_output(path: Path, events: bool = False) -> list[dict[str, Any]]:
    """The records of a finished output file (any of its formats); [] when there is none. With `events`, the
    records gathered from its event rows (`event_rows.clip_records`; a .tsv output's from the rows kept beside it).

    Raises:
        NotATagOutputError: `path` exists and does not hold records of this kind (naming it and why).
    """
    stored = _stored_rows_path(path, events)
    if not stored.exists():
        return []
    layout = _EVENTS if events else _CLIPS
    try:
        records = _read_records(stored, layout)
    except NotATagOutputError:
        raise
    except (ValueError, KeyError, TypeError, csv.Error) as err:  # pyarrow's ArrowInvalid is a ValueError
        raise _not_a_tag_output(stored, f"{type(err).__name__}: {err}") from err
    if not records:
        raise _not_a_tag_output(stored, "it holds no records")
    for number, record in enumerate(records, start=1):
        _check_fields(stored, record if isinstance(record, dict) else {}, layout, f"record {number} has no {{}}")
    return event_rows.clip_records(records) if events else records


def _stored_rows_path(path: Path, events: bool) -> Path:
    """The file that holds the rows of output `path`: itself, or for a .tsv of events the rows file beside it (a TSV
    without one is not ours: a reference annotation, say, which is never written over)."""
    if not (events and is_tsv(path)):
        return path
    rows = tsv_rows_path(path)
    if path.exists() and not rows.exists():
        raise _not_a_tag_output(path, f"no {rows.name} beside it, which ast-tag --events writes with its TSV")
    return rows


def _check_fields(path: Path, fields: Iterable[str], layout: _Layout, missing_text: str) -> None:
    """NotATagOutputError unless `fields` has what `layout` needs (`missing_text` names what is missing: "... {}
    ..."), saying so when they are the other kind's (clip labels and events never share an output)."""
    fields = set(fields)
    missing = [name for name in layout.required if name not in fields]
    if not missing:
        return
    other = _CLIPS if layout is _EVENTS else _EVENTS
    if set(other.required) <= fields:
        raise NotATagOutputError(f"output {path} holds {other.what} and this run writes {layout.what}; it is left as "
                                 "it is: choose another output")
    raise _not_a_tag_output(path, missing_text.format(", ".join(missing)))


def _read_records(path: Path, layout: _Layout) -> list[Any]:
    suffix = path.suffix.lower()
    if suffix == ".jsonl":
        return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    if suffix == ".csv":
        reader = csv.DictReader(io.StringIO(path.read_text(encoding="utf-8"), newline=""))
        _check_fields(path, reader.fieldnames or (), layout, "no {} column")
        return [layout.from_csv(row) for row in reader]
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
    """Delete the temporary files of writers of `path` (and of a TSV's rows file) killed before their rename (call it
    holding path's lock; a TSV's own temporary file is removed when it is next written, `atomic_output_file`)."""
    for target in (path, tsv_rows_path(path)) if is_tsv(path) else (path,):
        pattern = re.compile(re.escape(f".{target.name}.") + r"\d+" + re.escape(".partial"))
        for candidate in target.parent.iterdir():
            if pattern.fullmatch(candidate.name):
                candidate.unlink(missing_ok=True)
                logger.warning(f"removed {candidate}, left by a run killed while writing {target}")


def write_output(path: Path, records: list[dict[str, Any]], events: bool = False) -> None:
    """Write `records` to `path` in the format its suffix names, atomically. With `events`, one row per event
    (`event_rows`); a .tsv gets DCASE's columns, after the complete rows are written beside it."""
    if not events:
        _write_rows(path, records, _CLIPS)
        return
    _write_rows(tsv_rows_path(path) if is_tsv(path) else path, event_rows.event_rows(records), _EVENTS)
    if is_tsv(path):
        from ..training.sed_metrics import write_events_tsv

        write_events_tsv(event_rows.dcase_events(records), path)


def _write_rows(path: Path, rows: list[dict[str, Any]], layout: _Layout) -> None:
    """Write `rows` to `path` in the format its suffix names, atomically (fsync'd, then renamed)."""
    staging = _staging_path(path, os.getpid())
    try:
        suffix = path.suffix.lower()
        if suffix == ".jsonl":
            staging.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
        elif suffix == ".csv":
            with open(staging, "w", encoding="utf-8", newline="") as handle:
                writer = csv.DictWriter(handle, fieldnames=layout.csv_columns)
                writer.writeheader()
                writer.writerows(layout.to_csv(row) for row in rows)
        else:
            import pyarrow
            import pyarrow.parquet

            pyarrow.parquet.write_table(pyarrow.Table.from_pylist(rows), staging)
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


_CLIPS = _Layout("clip labels (ast-tag records)", REQUIRED_FIELDS, CSV_COLUMNS, _to_csv_row, _from_csv_row)
_EVENTS = _Layout("sound events (ast-tag --events rows)", event_rows.REQUIRED_EVENT_FIELDS,
                  event_rows.EVENT_CSV_COLUMNS, event_rows.to_csv_row, event_rows.from_csv_row)
