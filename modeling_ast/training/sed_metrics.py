"""Sound event detection metrics from the libraries DCASE uses, and the DCASE TSV format of events.

Nothing is re-implemented: the numbers come from `sed_scores_eval` (PSDS) and `sed_eval` (F-scores), called with the
settings of the DCASE task 4 baseline (DESED_task, `recipes/dcase2024_task4_baseline/local/sed_trainer_pretrained.py`
and `desed_task/evaluation/evaluation_measures.py`):

- PSDS1 and PSDS2 (`psds`), the two scenarios of DCASE 2021-2024 task 4, from frame scores with
  `sed_scores_eval.intersection_based.psds` (exact: every score is a threshold):
  PSDS1 dtc 0.7, gtc 0.7, no cross-triggers (alpha_ct 0), alpha_st 1, max eFPR 100 per hour;
  PSDS2 dtc 0.1, gtc 0.1, cttc 0.3, alpha_ct 0.5, alpha_st 1, max eFPR 100 per hour.
- Event-based F1 (onset collar 200 ms, offset collar max(200 ms, 20 % of the reference event's length)) and
  segment-based F1 (1 s segments) from thresholded events (`event_f1`), with `sed_eval.sound_event`.
  "event_f1" / "segment_f1" are macro averages (the mean of the per-class F1, DCASE task 4's headline: a rare class
  counts as much as a frequent one); "event_f1_micro" / "segment_f1_micro" pool the counts of all classes
  (sed_eval's "overall"). As in sed_eval, a class without reference events has no F1 and is left out of the macro
  average (its false alarms still lower the micro F1); a class with reference events but no output scores 0.
- Likewise PSDS is computed over the classes with reference events (a class without any has no true-positive rate,
  and sed_scores_eval refuses it): its scores are left out, cross-triggers included; NaN when no class has any.

Clip names are used as given (a TSV's `filename` column, extension included); an `Event` is (onset s, offset s,
label). The metric libraries are imported when a metric is computed, so reading and writing TSVs needs neither.
"""

from __future__ import annotations

import contextlib
import math
import os
import warnings
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import NamedTuple

import numpy as np
import pandas as pd

from ..conversion.io import atomic_output_file

__all__ = [
    "Event", "LabelRow", "checked_event", "event_f1", "events_by_clip", "psds", "read_strong_rows", "read_strong_tsv",
    "write_events_tsv",
]

Event = tuple[float, float, str]


class LabelRow(NamedTuple):
    """One data row of a strong-label file as written: the `clip` it names, its `event` (times not yet checked;
    None for a row that lists a clip without events) and `where` it is ("FILE, line N"), which every later check of
    the row names."""

    clip: str
    event: Event | None
    where: str

STRONG_HEADER = ("filename", "onset", "offset", "event_label")
PSDS_SCENARIOS: dict[str, dict[str, float | None]] = {
    "psds1": {"dtc_threshold": 0.7, "gtc_threshold": 0.7, "cttc_threshold": None, "alpha_ct": 0.0, "alpha_st": 1.0},
    "psds2": {"dtc_threshold": 0.1, "gtc_threshold": 0.1, "cttc_threshold": 0.3, "alpha_ct": 0.5, "alpha_st": 1.0},
}
PSDS_MAX_EFPR = 100.0  # false positives per hour
ONSET_COLLAR_S = 0.2
OFFSET_COLLAR_FRACTION = 0.2
SEGMENT_S = 1.0


class _WritableScoreFrame(pd.DataFrame):
    """sed_scores_eval 0.0.4 passes `scores[classes].to_numpy()` to Cython code that needs a writable buffer; under
    pandas 3 copy-on-write that array is a read-only view ("buffer source array is read-only"). Fixed upstream
    (fgnt/sed_scores_eval#17) but not released, so our score frames hand out copies."""

    @property
    def _constructor(self) -> type[_WritableScoreFrame]:
        return _WritableScoreFrame  # column selections keep the class

    def to_numpy(self, *args, **kwargs) -> np.ndarray:
        return np.array(super().to_numpy(*args, **kwargs))


@contextlib.contextmanager
def _importing_metric_libraries() -> Iterator[None]:
    """Imports of sed_eval / sed_scores_eval: an ImportError says which extra installs them."""
    # dcase_util (under both) imports pkg_resources, which warns about itself on import.
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="pkg_resources is deprecated", category=UserWarning)
        try:
            yield
        except ImportError as error:
            raise ImportError(f"{error}; the SED metrics need `pip install 'modeling_ast[sed]'`") from error


def _check_no_missing(name: str, clips: Mapping[str, object], ground_truth: Mapping[str, object]) -> None:
    missing = [clip for clip in ground_truth if clip not in clips]
    if missing:
        raise ValueError(f"{name} has no entry for {len(missing)} clip(s) of the ground truth, e.g. {missing[:5]}")


def _check_no_extra(name: str, clips: Mapping[str, object], ground_truth: Mapping[str, object]) -> None:
    extra = [clip for clip in clips if clip not in ground_truth]
    if extra:
        raise ValueError(f"{name} has {len(extra)} clip(s) that the ground truth lacks, e.g. {extra[:5]}")


def _check_labels(name: str, events: Mapping[str, Sequence[Event]], labels: Sequence[str]) -> None:
    known = set(labels)
    for clip, clip_events in events.items():
        for _, _, label in clip_events:
            if label not in known:
                raise ValueError(f"{name}: clip {clip!r} has an event labelled {label!r}, not one of {list(labels)}")


def _score_frame(clip: str, boundaries: np.ndarray, scores: np.ndarray, labels: Sequence[str]) -> pd.DataFrame:
    """sed_scores_eval's score table of one clip: frame onset, offset and one score column per label."""
    boundaries = np.asarray(boundaries, dtype=np.float64)
    scores = np.asarray(scores, dtype=np.float64)
    if scores.ndim != 2 or scores.shape[1] != len(labels) or boundaries.shape != (scores.shape[0] + 1,):
        raise ValueError(
            f"clip {clip!r}: expected scores (n, {len(labels)}) and boundaries (n + 1,), got {scores.shape} and "
            f"{boundaries.shape}"
        )
    if not np.all(np.diff(boundaries) > 0):
        raise ValueError(f"clip {clip!r}: frame boundaries must be strictly ascending")
    table = np.column_stack([boundaries[:-1], boundaries[1:], scores])
    return _WritableScoreFrame(table, columns=["onset", "offset", *labels])


def psds(
    frame_scores: Mapping[str, tuple[np.ndarray, np.ndarray]],
    ground_truth: Mapping[str, Sequence[Event]],
    durations: Mapping[str, float],
    labels: Sequence[str],
) -> dict[str, float]:
    """PSDS1 and PSDS2 of frame scores over the clips of `ground_truth` (see the module docstring for the settings).

    Args:
        frame_scores: clip -> (boundaries (n + 1,) seconds ascending, scores (n, len(labels))); score row i holds
            for [boundaries[i], boundaries[i + 1]). Every clip of `ground_truth`, and no other.
        ground_truth: clip -> reference events; clips without events count (their false alarms lower the score).
        durations: clip -> length in seconds (the false-alarm rate is per hour of audio); extra clips are ignored.
        labels: the classes, in the order of the score columns.

    Returns:
        {"psds1": ..., "psds2": ...}, each in [0, 1], over the classes with reference events (NaN if none has any).
    """
    if not ground_truth:
        raise ValueError("cannot compute PSDS without clips")
    _check_no_missing("frame_scores", frame_scores, ground_truth)
    _check_no_extra("frame_scores", frame_scores, ground_truth)
    _check_no_missing("durations", durations, ground_truth)
    _check_labels("ground_truth", ground_truth, labels)
    with _importing_metric_libraries():
        from sed_scores_eval import intersection_based

    referenced = {label for events in ground_truth.values() for _, _, label in events}
    present = [label for label in labels if label in referenced]
    if not present:
        return {name: math.nan for name in PSDS_SCENARIOS}
    columns = ["onset", "offset", *present]
    scores = {clip: _score_frame(clip, *frame_scores[clip], labels)[columns] for clip in ground_truth}
    references = {clip: [tuple(event) for event in events] for clip, events in ground_truth.items()}
    lengths = {clip: float(durations[clip]) for clip in ground_truth}
    results = {}
    for name, settings in PSDS_SCENARIOS.items():
        if len(present) == 1:
            # No other class to cross-trigger (and sed_scores_eval fails on an empty set of them): PSDS2 without CTs.
            settings = {**settings, "cttc_threshold": None, "alpha_ct": 0.0}
        value = intersection_based.psds(scores, references, lengths, max_efpr=PSDS_MAX_EFPR, **settings)[0]
        results[name] = float(value)
    return results


def _event_dicts(clip: str, events: Sequence[Event]) -> list[dict[str, object]]:
    return [
        {"filename": clip, "onset": onset, "offset": offset, "event_label": label} for onset, offset, label in events
    ]


def event_f1(
    predicted: Mapping[str, Sequence[Event]],
    ground_truth: Mapping[str, Sequence[Event]],
    labels: Sequence[str],
) -> dict[str, float]:
    """Event-based and segment-based F1 of predicted events over the clips of `ground_truth`.

    Clips of `ground_truth` without an entry in `predicted` count as having no predicted events; predictions for
    clips outside `ground_truth` are an error.

    Returns:
        {"event_f1", "event_f1_micro", "segment_f1", "segment_f1_micro"} (see the module docstring); NaN where no
        class has a reference event.
    """
    _check_no_extra("predicted", predicted, ground_truth)
    _check_labels("ground_truth", ground_truth, labels)
    _check_labels("predicted", predicted, labels)
    with _importing_metric_libraries():
        from sed_eval.sound_event import EventBasedMetrics, SegmentBasedMetrics

    events = EventBasedMetrics(
        event_label_list=list(labels),
        t_collar=ONSET_COLLAR_S,
        percentage_of_length=OFFSET_COLLAR_FRACTION,
        empty_system_output_handling="zero_score",
    )
    segments = SegmentBasedMetrics(event_label_list=list(labels), time_resolution=SEGMENT_S)
    # The constructor does not take it, but the F1 reads it: without it a class never output would get a NaN
    # precision and drop out of the macro average instead of scoring 0 (as in the event-based metrics).
    segments.empty_system_output_handling = "zero_score"
    for clip, references in ground_truth.items():
        reference_list = _event_dicts(clip, references)
        estimated_list = _event_dicts(clip, predicted.get(clip, ()))
        events.evaluate(reference_event_list=reference_list, estimated_event_list=estimated_list)
        segments.evaluate(reference_event_list=reference_list, estimated_event_list=estimated_list)
    results = {}
    for name, metric in (("event_f1", events), ("segment_f1", segments)):
        report = metric.results()
        results[name] = float(report["class_wise_average"]["f_measure"].get("f_measure", math.nan))
        results[f"{name}_micro"] = float(report["overall"]["f_measure"]["f_measure"])
    return results


def _parse_strong_row(fields: list[str], where: str) -> LabelRow:
    """One data row, its format checked (field count, filename, numeric times, label), its times not."""
    if len(fields) != len(STRONG_HEADER):
        raise ValueError(f"{where}: expected {len(STRONG_HEADER)} tab-separated fields, got {len(fields)}")
    clip, onset_text, offset_text, label = fields
    if not clip:
        raise ValueError(f"{where}: empty filename")
    if not (onset_text or offset_text or label):
        return LabelRow(clip, None, where)
    try:
        onset, offset = float(onset_text), float(offset_text)
    except ValueError:
        raise ValueError(f"{where}: onset and offset must be numbers, got {onset_text!r} and {offset_text!r}") from None
    if not label:
        raise ValueError(f"{where}: empty event_label")
    return LabelRow(clip, (onset, offset, label), where)


def checked_event(onset: float, offset: float, label: str, where: str) -> Event:
    """The event, or ValueError naming `where` (file and line) unless 0 <= onset < offset, both finite: the rule of
    every strong-label reader (TSV here, JSON Lines in `training.sed`)."""
    if not (0 <= onset < offset < math.inf):
        raise ValueError(f"{where}: need 0 <= onset < offset, got onset {onset} and offset {offset}")
    return onset, offset, label


def read_strong_rows(path: str | os.PathLike) -> list[LabelRow]:
    """The data rows of a DCASE strong-label TSV (header `filename onset offset event_label`) in file order, each
    with its line; a row with only a filename is a clip without events (DCASE's way of listing one). ValueError
    naming the file and line for a bad header or a malformed row (wrong field count, empty filename or label,
    non-numeric times); the times themselves are checked by `checked_event` (`events_by_clip`, or the training
    reader, which may skip a bad row)."""
    with open(path, encoding="utf-8") as handle:
        lines = handle.read().splitlines()
    if not lines or tuple(lines[0].split("\t")) != STRONG_HEADER:
        raise ValueError(f"{path}: the first line must be the header {chr(9).join(STRONG_HEADER)!r} (tab-separated)")
    return [
        _parse_strong_row(line.split("\t"), f"{path}, line {number}")
        for number, line in enumerate(lines[1:], start=2)
        if line.strip()
    ]


def events_by_clip(rows: Iterable[LabelRow]) -> dict[str, list[Event]]:
    """Clip -> its events in row order, each checked by `checked_event` (ValueError naming the row's file and line);
    a clip listed without events maps to []."""
    events: dict[str, list[Event]] = {}
    for clip, event, where in rows:
        events.setdefault(clip, [])
        if event is not None:
            events[clip].append(checked_event(*event, where))
    return events


def read_strong_tsv(path: str | os.PathLike) -> dict[str, list[Event]]:
    """Events of a DCASE strong-label TSV, clip -> events in file order (`read_strong_rows`, `events_by_clip`).
    ValueError naming the file and line for a bad header or row (wrong field count, non-numeric or negative times,
    onset >= offset)."""
    return events_by_clip(read_strong_rows(path))


def write_events_tsv(events: Mapping[str, Sequence[Event]], path: str | os.PathLike) -> None:
    """Writes `events` as a DCASE strong-label TSV: clips in mapping order, each clip's events by onset, times in
    seconds with 3 decimals, a filename-only row for a clip without events. Atomic: written beside `path`, then
    renamed over it, so a reader never sees half a file."""
    rows = ["\t".join(STRONG_HEADER)]
    for clip, clip_events in events.items():
        if any(character in clip for character in "\t\r\n"):
            raise ValueError(f"clip name {clip!r} contains a tab or line break, which the TSV format cannot hold")
        rows.extend(f"{clip}\t{onset:.3f}\t{offset:.3f}\t{label}" for onset, offset, label in sorted(clip_events))
        if not clip_events:
            rows.append(f"{clip}\t\t\t")
    with atomic_output_file(path) as partial:
        partial.write_text("\n".join(rows) + "\n", encoding="utf-8")
