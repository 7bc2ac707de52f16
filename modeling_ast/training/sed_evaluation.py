"""Evaluating sound event detection during training: whole clips, through the windows the pipeline runs.

A model trains on windows of `max_length` frames (random crops of longer clips), but users run it on whole
recordings through `pipeline("sound-event-detection")`, which cuts them into windows on the column grid and averages
the frame scores of overlapping columns. Evaluation does the same, so its figures are the pipeline's:

- `eval_windows` turns each evaluation clip into the windows the pipeline runs by default
  (`pipeline_sed.sed_window_starts` with no stride: windows a whole number of columns apart, the last one moved back
  to end with the clip), one example per window with its `start` sample (`SEDDataset` cuts it and moves the events
  with it, so the evaluation loss is the windows' loss);
- `sed_metrics_fn` puts each clip's windows back together (`events.merge_columns` of the windows' real columns,
  `pipeline_sed.real_columns`), then scores the whole clip: PSDS1 and PSDS2 of the frame scores, each column scored
  over its interval (`ColumnGrid.bounds`, clipped to the clip), and event- and segment-based F1 of the events
  `detect_events` finds with the model's post-processing (`events.model_event_options`: its `config.event_options`,
  else threshold 0.5 without median filter) (`sed_metrics`).

A clip no longer than a window is one window, as in the pipeline.

`choose_event_options` picks that post-processing after training: the threshold and median window (a grid,
`THRESHOLDS` x `MEDIAN_WINDOWS`) with the best macro event F1 on validation clips run through the pipeline. The
script stores it in the model's config, so the final evaluation, the pipeline, `ast-tag --events` and `ast-listen`
use it. Macro event F1 is the headline DCASE metric that depends on these settings (PSDS does not: it sweeps every
threshold over the raw scores).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, NamedTuple

import numpy as np
import torch
from transformers import EvalPrediction, PreTrainedModel, pipeline

from ..configuration_ast import ASTConfig
from ..events import ColumnGrid, EventOptions, detect_events, merge_columns, model_event_options
from ..fbank import num_frames, num_samples_for_frames
from ..feature_extraction_ast import ASTFeatureExtractor
from ..long_audio import window_source
from ..modeling_ast_frames import column_grid
from ..pipeline_sed import column_samples, real_columns, sed_window_starts
from ..registration import SOUND_EVENT_DETECTION
from .labels import LabelSpace
from .sed_metrics import Event, event_f1, psds
from .sources import Example

__all__ = ["MEDIAN_WINDOWS", "THRESHOLDS", "EventOptionsChoice", "best_event_options", "choose_event_options",
           "eval_windows", "event_options_summary", "sed_metrics_fn"]  # fmt: skip

THRESHOLDS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)
MEDIAN_WINDOWS = (1, 3, 5, 7, 9)  # columns: up to 0.9 s at the released models' 0.1 s column hop


def eval_windows(
    examples: Sequence[Example], config: ASTConfig, feature_extractor: ASTFeatureExtractor
) -> list[Example]:
    """The windows of the evaluation clips `examples` (in order, each clip's windows by start): the clip's example
    with `start` (sample), `num_samples` (the whole clip's, at the feature extractor's rate)."""
    rate = feature_extractor.sampling_rate
    window = num_samples_for_frames(feature_extractor.max_length, rate)
    windows = []
    for example in examples:
        num_samples = window_source(example["audio"], rate).num_samples
        for start in sed_window_starts(config, num_samples, window, 0, rate):
            windows.append({**example, "start": start, "num_samples": num_samples})
    return windows


def sed_metrics_fn(
    windows: Sequence[Example], config: ASTConfig, label_space: LabelSpace, feature_extractor: ASTFeatureExtractor
) -> Callable[[EvalPrediction], dict[str, float]]:
    """`compute_metrics` for the (unshuffled) evaluation windows `windows` (`eval_windows` of strong clips): the
    metrics of the whole clips (module docstring)."""
    rate = feature_extractor.sampling_rate
    window = num_samples_for_frames(feature_extractor.max_length, rate)
    column = column_samples(config, rate)
    clips = {example["name"]: example for example in windows}  # each clip once, in order
    grids = {name: column_grid(config, clip["num_samples"] / rate, rate) for name, clip in clips.items()}
    truth = {name: clip["events"] for name, clip in clips.items()}

    def compute(prediction: EvalPrediction) -> dict[str, float]:
        logits = prediction.predictions[0] if isinstance(prediction.predictions, tuple) else prediction.predictions
        scores = torch.sigmoid(torch.as_tensor(np.asarray(logits, dtype=np.float64)))
        scored: dict[str, list[tuple[int, torch.Tensor]]] = {name: [] for name in clips}
        for example, window_scores in zip(windows, scores):
            length = min(window, example["num_samples"] - example["start"])
            real = real_columns(config, length, rate)
            scored[example["name"]].append((example["start"] // column, window_scores[:real]))
        frame_scores, detected = {}, {}
        for name, clip in clips.items():
            count = config.time_patches(num_frames(clip["num_samples"], rate))
            clip_scores = merge_columns(scored[name], count)
            grid = grids[name]
            bounds = [grid.bounds(index, index + 1)[0] for index in range(count)] + [grid.bounds(count - 1, count)[1]]
            frame_scores[name] = (np.asarray(bounds), clip_scores.numpy())
            events = detect_events(clip_scores, grid, label_space.labels, model_event_options(config))
            detected[name] = [(event["start"], event["end"], event["label"]) for event in events]
        durations = {name: grid.duration for name, grid in grids.items()}
        labels = label_space.labels
        return {**psds(frame_scores, truth, durations, labels), **event_f1(detected, truth, labels)}

    return compute


class EventOptionsChoice(NamedTuple):
    """What `choose_event_options` chose: `settings` (for `config.event_options`), their macro event F1 on the
    validation clips (`event_f1`), the F1 at `EventOptions`' defaults (`default_event_f1`) and every candidate's
    (`table`: (threshold, median_window) -> F1)."""

    settings: dict[str, Any]
    event_f1: float
    default_event_f1: float
    table: dict[tuple[float, int], float]


def choose_event_options(
    model: PreTrainedModel, feature_extractor: ASTFeatureExtractor, clips: Sequence[Example]
) -> EventOptionsChoice:
    """The post-processing with the best macro event F1 on `clips` (strong examples; `best_event_options`), each clip
    run once through `pipeline("sound-event-detection")` with `model` in eval mode, as users run it."""
    model.eval()
    detector = pipeline(SOUND_EVENT_DETECTION, model=model, feature_extractor=feature_extractor, device=model.device)
    rate = feature_extractor.sampling_rate
    scored = {}
    for clip in clips:
        frame_scores = detector(clip["audio"], return_frame_scores=True)["frame_scores"]
        duration = window_source(clip["audio"], rate).num_samples / rate
        scored[clip["name"]] = (frame_scores, column_grid(model.config, duration, rate))
    labels = [model.config.id2label[index] for index in range(model.config.num_labels)]
    return best_event_options(scored, {clip["name"]: clip["events"] for clip in clips}, labels)


def best_event_options(
    scored: Mapping[str, tuple[torch.Tensor, ColumnGrid]], truth: Mapping[str, Sequence[Event]], labels: Sequence[str]
) -> EventOptionsChoice:
    """The threshold and median window (`THRESHOLDS` x `MEDIAN_WINDOWS`; the first in that order on a tie) whose
    events (`detect_events` of each clip's (n, C) frame scores on its grid, `scored`) have the best macro event F1
    against `truth` (clip -> events)."""
    if not any(truth.values()):
        raise ValueError(f"the {len(truth)} validation clips have no events: nothing to choose the threshold on")

    def f1(threshold: float, median_window: int) -> float:
        options = EventOptions(threshold=threshold, median_window=median_window)
        detected = {name: [(event["start"], event["end"], event["label"])
                           for event in detect_events(scores, grid, labels, options)]
                    for name, (scores, grid) in scored.items()}  # fmt: skip
        return event_f1(detected, truth, labels)["event_f1"]

    table = {(threshold, window): f1(threshold, window) for threshold in THRESHOLDS for window in MEDIAN_WINDOWS}
    threshold, window = max(table, key=lambda candidate: table[candidate])  # the first of equals
    defaults = EventOptions()  # on the grid
    return EventOptionsChoice({"threshold": threshold, "median_window": window}, table[threshold, window],
                              table[defaults.threshold, defaults.median_window], table)  # fmt: skip


def event_options_summary(choice: EventOptionsChoice, num_clips: int) -> str:
    """A model-card bullet point: the settings chosen and what they gained on the validation clips."""
    defaults = EventOptions()
    return (f"- Events: threshold {choice.settings['threshold']:g}, median window {choice.settings['median_window']} "
            f"column(s), chosen for the best event F1 on {num_clips} validation clips ({choice.event_f1:.3f}; "
            f"{choice.default_event_f1:.3f} at threshold {defaults.threshold:g} without median filter); stored in "
            "config.json (`event_options`), the pipeline's default.")
