"""A timeline picture of a recording: which labels the windows of long-audio mode found, or which sound events the
frame-level model found (`ast-tag --events`), and when.

One row per label (ordered by its best score). Windows: one bar per window spanning the window's [start, end)
seconds, shaded by the window's score for that label (overlapping windows darken where both agree). Events: one bar
per event over its [start, end), shaded by its score.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

__all__ = ["plot_timeline"]


def _labelled_spans(record: dict[str, Any]) -> list[tuple[str, float, float, float]]:
    """(label, start, end, score) of each event of `record["events"]`, else of each label of each window."""
    if "events" in record:
        return [(event["label"], event["start"], event["end"], event["score"]) for event in record["events"]]
    return [
        (item["label"], window["start"], window["end"], item["score"])
        for window in record["windows"] for item in window["labels"]
    ]


def _timeline_rows(record: dict[str, Any]) -> list[tuple[str, list[tuple[float, float, float]]]]:
    """[(label, [(start, end, score), ...]), ...] of a record (`_labelled_spans`), best-scoring label first."""
    spans: dict[str, list[tuple[float, float, float]]] = {}
    for label, start, end, score in _labelled_spans(record):
        spans.setdefault(label, []).append((start, end, score))
    return sorted(spans.items(), key=lambda row: -max(score for _, _, score in row[1]))


def _time_axis_end(record: dict[str, Any], duration: float | None) -> float:
    """Where the time axis ends: the latest of the recording's `duration` and the windows' or events' ends; 1 s when
    none is known (a recording without events whose length its file header does not tell)."""
    ends = [window["end"] for window in record.get("windows") or []]
    ends += [event["end"] for event in record.get("events") or []]
    return max([duration or 0.0, *ends]) or 1.0


def plot_timeline(
    record: dict[str, Any], path: str | os.PathLike, max_labels: int = 12, duration: float | None = None
) -> Path:
    """Draw `record["events"]`, else `record["windows"]` (see `_timeline_rows`), as a PNG at `path` (written
    atomically); returns the path. At most `max_labels` rows (the best scoring) are drawn; `duration` (seconds)
    sets the length of the time axis of events.
    """
    import matplotlib

    matplotlib.use("Agg")  # no display: files only
    from matplotlib.figure import Figure

    rows = _timeline_rows(record)[:max_labels]
    figure = Figure(figsize=(10, 1 + 0.35 * max(len(rows), 1)), layout="constrained")
    axes = figure.add_subplot()
    for row, (_, spans) in enumerate(rows):
        for start, end, score in spans:
            axes.barh(row, end - start, left=start, height=0.8, color="tab:blue", alpha=max(min(score, 1.0), 0.02))
    axes.set_yticks(range(len(rows)), [label for label, _ in rows])
    axes.invert_yaxis()
    axes.set_xlim(0, _time_axis_end(record, duration))
    axes.set_xlabel("time (s)")
    axes.set_title(str(record.get("input", "")), fontsize=9)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    staging = path.with_name(f".{path.stem}.{os.getpid()}.partial.png")
    figure.savefig(staging, dpi=100)
    os.replace(staging, path)
    return path
