"""A timeline picture of a long recording: which labels the windows of long-audio mode found, and when.

One row per label that any window reports (ordered by its best score), one bar per window spanning the window's
[start, end) seconds, shaded by the window's score for that label (overlapping windows darken where both agree).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

__all__ = ["plot_timeline"]


def _timeline_rows(windows: list[dict[str, Any]]) -> list[tuple[str, list[tuple[float, float, float]]]]:
    """[(label, [(start, end, score), ...]), ...] from the pipeline's windows, best-scoring label first."""
    spans: dict[str, list[tuple[float, float, float]]] = {}
    for window in windows:
        for item in window["labels"]:
            spans.setdefault(item["label"], []).append((window["start"], window["end"], item["score"]))
    return sorted(spans.items(), key=lambda row: -max(score for _, _, score in row[1]))


def plot_timeline(record: dict[str, Any], path: str | os.PathLike, max_labels: int = 12) -> Path:
    """Draw `record["windows"]` (see `_timeline_rows`) as a PNG at `path` (written atomically); returns the path.

    At most `max_labels` rows (the best scoring) are drawn.
    """
    import matplotlib

    matplotlib.use("Agg")  # no display: files only
    from matplotlib.figure import Figure

    rows = _timeline_rows(record["windows"])[:max_labels]
    duration = max(window["end"] for window in record["windows"])
    figure = Figure(figsize=(10, 1 + 0.35 * max(len(rows), 1)), layout="constrained")
    axes = figure.add_subplot()
    for row, (_, spans) in enumerate(rows):
        for start, end, score in spans:
            axes.barh(row, end - start, left=start, height=0.8, color="tab:blue", alpha=max(min(score, 1.0), 0.02))
    axes.set_yticks(range(len(rows)), [label for label, _ in rows])
    axes.invert_yaxis()
    axes.set_xlim(0, duration)
    axes.set_xlabel("time (s)")
    axes.set_title(str(record.get("input", "")), fontsize=9)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    staging = path.with_name(f".{path.stem}.{os.getpid()}.partial.png")
    figure.savefig(staging, dpi=100)
    os.replace(staging, path)
    return path
