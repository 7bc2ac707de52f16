"""The rows of an `ast-tag --events` output: one per sound event, and one per recording that has none.

An event row is `{"input", "onset", "offset", "event_label", "score", "error", "source", "tagged_with"}` (DCASE's
column names; seconds; `score` the event's peak frame score). A recording without events, or one that could not be
read (its "error" says why), keeps one row whose onset, offset, event_label and score are empty, as DCASE lists a clip
without events: every recording tagged has a row, so a rerun knows it is done.

While tagging, a recording is one journal record, `{"input", "events": [{"label", "start", "end", "score"}, ...],
"error", ...}` (the events as `pipeline("sound-event-detection")` gives them), so a kill keeps or loses a recording
whole; `event_rows` spreads records into rows when the output is written and `clip_records` gathers them back when it
is read.

A .tsv output is DCASE's system-output format (`training.sed_metrics.write_events_tsv`: `filename onset offset
event_label`, 3 decimals). It has no room for scores, errors or fingerprints, so the rows are also kept, complete,
in `OUTPUT.rows.jsonl` beside it (`tsv_rows_path`): the file a rerun reads to resume and to compare fingerprints.
The TSV is rewritten from them at the end of every run; recordings that could not be read are left out of it.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

__all__ = [
    "EVENT_CSV_COLUMNS",
    "REQUIRED_EVENT_FIELDS",
    "clip_records",
    "dcase_events",
    "event_rows",
    "from_csv_row",
    "is_tsv",
    "to_csv_row",
    "tsv_rows_path",
]

EVENT_FIELDS = ("onset", "offset", "event_label", "score")  # empty in the row of a recording without events
EVENT_CSV_COLUMNS = ("input", *EVENT_FIELDS, "error", "source", "tagged_with")  # tagged_with: JSON
REQUIRED_EVENT_FIELDS = ("input", "onset", "offset", "event_label", "error")
SHARED_FIELDS = ("source", "tagged_with")  # the same in every row of a recording


def is_tsv(path: Path) -> bool:
    return path.suffix.lower() == ".tsv"


def tsv_rows_path(path: Path) -> Path:
    """Where the complete rows of the TSV output `path` are kept (see the module docstring)."""
    return path.with_name(path.name + ".rows.jsonl")


def event_rows(records: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """The rows of `records`, in record order, each record's events in their order (by start)."""
    rows = []
    for record in records:
        shared = {name: record[name] for name in SHARED_FIELDS if name in record}
        for event in record["events"] or [None]:
            rows.append({"input": record["input"], **_event_fields(event), "error": record["error"], **shared})
    return rows


def _event_fields(event: dict[str, Any] | None) -> dict[str, Any]:
    if event is None:
        return dict.fromkeys(EVENT_FIELDS)
    return {"onset": event["start"], "offset": event["end"], "event_label": event["label"], "score": event["score"]}


def clip_records(rows: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """One record per input of `rows` (see the module docstring), in the order inputs first appear."""
    records: dict[str, dict[str, Any]] = {}
    for row in rows:
        record = records.setdefault(row["input"], _record_of(row))
        if row["event_label"] is not None:
            record["events"].append(
                {"label": row["event_label"], "start": row["onset"], "end": row["offset"], "score": row["score"]}
            )
    return list(records.values())


def _record_of(row: dict[str, Any]) -> dict[str, Any]:
    record = {"input": row["input"], "events": [], "error": row["error"]}
    record.update({name: row[name] for name in SHARED_FIELDS if row.get(name) is not None})
    return record


def dcase_events(records: Iterable[dict[str, Any]]) -> dict[str, list[tuple[float, float, str]]]:
    """{input: [(onset, offset, label), ...]} of the records that hold a result (errors have none), for
    `write_events_tsv`."""
    return {
        record["input"]: [(event["start"], event["end"], event["label"]) for event in record["events"]]
        for record in records if record["error"] is None
    }


def to_csv_row(row: dict[str, Any]) -> dict[str, Any]:
    """A row as the CSV writer takes it: tagged_with as JSON text (the writer writes None as an empty field and a
    float as its repr, which reads back as the same float)."""
    return {**row, "tagged_with": json.dumps(row["tagged_with"]) if "tagged_with" in row else None}


def from_csv_row(row: dict[str, str]) -> dict[str, Any]:
    """A CSV row back as written: empty fields are None, times and scores floats, tagged_with parsed."""
    parsed: dict[str, Any] = {name: row.get(name) or None for name in EVENT_CSV_COLUMNS}
    for name in ("onset", "offset", "score"):
        parsed[name] = None if parsed[name] is None else float(parsed[name])
    if parsed["tagged_with"] is not None:
        parsed["tagged_with"] = json.loads(parsed["tagged_with"])
    return parsed
