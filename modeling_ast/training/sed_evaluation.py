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
  `detect_events` finds at threshold 0.5 (`sed_metrics`).

A clip no longer than a window is one window, as in the pipeline.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch
from transformers import EvalPrediction

from ..configuration_ast import ASTConfig
from ..events import EventOptions, detect_events, merge_columns
from ..fbank import num_frames, num_samples_for_frames
from ..feature_extraction_ast import ASTFeatureExtractor
from ..long_audio import window_source
from ..modeling_ast_frames import column_grid
from ..pipeline_sed import column_samples, real_columns, sed_window_starts
from .labels import LabelSpace
from .sed_metrics import event_f1, psds
from .sources import Example

__all__ = ["eval_windows", "sed_metrics_fn"]


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
            events = detect_events(clip_scores, grid, label_space.labels, EventOptions(threshold=0.5))
            detected[name] = [(event["start"], event["end"], event["label"]) for event in events]
        durations = {name: grid.duration for name, grid in grids.items()}
        labels = label_space.labels
        return {**psds(frame_scores, truth, durations, labels), **event_f1(detected, truth, labels)}

    return compute
