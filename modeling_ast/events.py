"""From frame scores to sound events: per-class median filtering, thresholds with hysteresis, and merging the
frame scores of overlapping windows of a long recording.

Frame scores are (n, C) probabilities on a regular grid of time columns: column i is centred at `first + i * hop`
seconds and stands for [centre - hop / 2, centre + hop / 2), clipped to the recording. An event of label c is a run of
columns whose filtered score rises to `threshold[c]` and stays at or above `low[c]` (hysteresis: a score that dips
only a little does not split an event; `low = threshold` turns it off). The event's score is its peak frame score.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from typing import Any

import torch

__all__ = ["ColumnGrid", "EventOptions", "class_settings", "detect_events", "median_filter", "merge_columns",
           "model_event_options", "per_class"]  # fmt: skip


@dataclass(frozen=True)
class ColumnGrid:
    """Where frame scores sit in time: column i is centred at `first + i * hop` seconds; `duration` clips the ends."""

    first: float
    hop: float
    duration: float

    def bounds(self, start: int, end: int) -> tuple[float, float]:
        """Seconds covered by columns [start, end)."""
        low = self.first + (start - 0.5) * self.hop
        high = self.first + (end - 0.5) * self.hop
        return max(0.0, low), min(self.duration, high)


@dataclass(frozen=True)
class EventOptions:
    """Post-processing: `threshold` (one value, or one per label) starts an event, `low` (default: `threshold`)
    ends it; `median_window` (columns, one value or one per label; 1 = none) smooths each label's scores first."""

    threshold: float | Sequence[float] = 0.5
    low: float | Sequence[float] | None = None
    median_window: int | Sequence[int] = 1


def model_event_options(config: Any, given: Mapping[str, Any] | None = None) -> EventOptions:
    """The event settings for a frame model with `config`: `EventOptions`' defaults, replaced by the model's own
    (`config.event_options`, which the training script chooses on validation clips), replaced by those `given`
    (None values count as not given). The one place every door (pipeline, `ast-tag --events`, `ast-listen`,
    training's evaluation) decides them. ValueError naming an unknown setting and where it came from."""
    names = {option.name for option in fields(EventOptions)}
    settings: dict[str, Any] = {}
    for source, values in (("the model's config.event_options", getattr(config, "event_options", None)),
                           ("the given options", given)):  # fmt: skip
        values = {name: value for name, value in (values or {}).items() if value is not None}
        if unknown := sorted(set(values) - names):
            raise ValueError(f"{source} hold unknown event setting(s) {unknown}; known: {sorted(names)}")
        settings.update(values)
    return EventOptions(**settings)


def per_class(value: float | Sequence[float], num_labels: int, name: str) -> list[float]:
    """One value per label from a scalar or a sequence of `num_labels` values; ValueError naming the option."""
    values = [value] * num_labels if isinstance(value, (int, float)) else list(value)
    if len(values) != num_labels:
        raise ValueError(f"{name} needs one value or one per label ({num_labels}), got {len(values)}")
    return values


def median_filter(scores: torch.Tensor, windows: Sequence[int]) -> torch.Tensor:
    """(n, C) scores, each label's column filtered with a running median of `windows[c]` columns (odd, >= 1;
    the ends repeat the edge values, so an event at the start or end is not shortened)."""
    filtered = scores.clone()
    for label, window in enumerate(windows):
        if window < 1 or window % 2 == 0 or int(window) != window:
            raise ValueError(f"median_window must be odd positive numbers of columns, got {window} for label {label}")
        if window > 1:
            half = int(window) // 2
            padded = torch.cat([scores[:1, label].expand(half), scores[:, label], scores[-1:, label].expand(half)])
            filtered[:, label] = padded.unfold(0, int(window), 1).median(dim=1).values
    return filtered


def detect_events(
    scores: torch.Tensor, grid: ColumnGrid, labels: Sequence[str], options: EventOptions = EventOptions()
) -> list[dict[str, float | str]]:
    """Events `[{"label", "start", "end", "score"}]` from (n, C) frame scores, sorted by start (then label)."""
    num_labels = scores.shape[1]
    if len(labels) != num_labels:
        raise ValueError(f"{len(labels)} label names for {num_labels} score columns")
    high, low, windows = class_settings(options, labels)
    filtered = median_filter(scores.float(), windows)
    events = []
    for label in range(num_labels):
        for start, end in _runs(filtered[:, label], high[label], low[label]):
            onset, offset = grid.bounds(start, end)
            peak = float(filtered[start:end, label].max())
            events.append({"label": labels[label], "start": onset, "end": offset, "score": peak})
    return sorted(events, key=lambda event: (event["start"], event["label"]))


def class_settings(options: EventOptions, labels: Sequence[str]) -> tuple[list[float], list[float], list[int]]:
    """(threshold, low, median_window) per label from `options`; ValueError naming the label or option at fault."""
    high = per_class(options.threshold, len(labels), "threshold")
    low = per_class(high if options.low is None else options.low, len(labels), "low")
    for label, (start, stop) in enumerate(zip(high, low)):
        if not 0 <= stop <= start <= 1:
            raise ValueError(f"need 0 <= low <= threshold <= 1 for label {labels[label]!r}, got {stop} and {start}")
    return high, low, [int(window) for window in per_class(options.median_window, len(labels), "median_window")]


def _runs(scores: torch.Tensor, high: float, low: float) -> list[tuple[int, int]]:
    """[start, end) column ranges that reach `high` and stay at or above `low` (hysteresis)."""
    runs, values = [], scores.tolist()
    index = 0
    while index < len(values):
        if values[index] < low:
            index += 1
            continue
        end = index
        while end < len(values) and values[end] >= low:
            end += 1
        if max(values[index:end]) >= high:
            runs.append((index, end))
        index = end
    return runs


def merge_columns(windows: Sequence[tuple[int, torch.Tensor]], num_columns: int) -> torch.Tensor:
    """(num_columns, C) scores of a whole recording from windows `(first_column, scores (n, C))` on one column grid:
    where windows overlap, the mean of their scores, so an event crossing a window seam is one run of columns.
    Raises ValueError if some column is in no window."""
    total = windows[0][1].new_zeros(num_columns, windows[0][1].shape[1])
    counts = total.new_zeros(num_columns, 1)
    for first, scores in windows:
        total[first : first + scores.shape[0]] += scores[: num_columns - first]
        counts[first : first + scores.shape[0]] += 1
    if bool((counts == 0).any()):
        raise ValueError(f"columns {(counts[:, 0] == 0).nonzero().flatten().tolist()[:10]} are in no window")
    return total / counts
