"""What users can do without a frame model: a clip classifier's windows turned into events, scored like the SED recipe.

The clip classifier (e.g. the FSDD clip recipe's model) runs through `pipeline("audio-classification",
chunk_length_s=..., stride_length_s=..., return_timestamps=True)` over each evaluation recording; every label's score
of every window is kept (`threshold=0`). Each 10 ms of the recording gets the mean score of the windows that cover it
(as the sound-event-detection pipeline averages overlapping columns), and from that grid `events.detect_events` finds
events at threshold 0.5, so the post-processing is the frame model's. PSDS1/PSDS2 and event-/segment-based F1 come
from `training.sed_metrics`, as in the recipe's `eval_results.json`.

A model whose labels are the digits "0".."9" (the FSDD clip recipe's, named by `label_regex`) is scored against the
soundscapes' labels "zero".."nine".

    python examples/sed_clip_baseline.py outputs/fsdd /tmp/fsdd_sed/eval/strong.tsv /tmp/fsdd_sed/eval/audio \\
        --chunk_length_s 1.28 --stride_length_s 0.96
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from transformers import pipeline

import modeling_ast  # noqa: F401  (registers "ast" with the Auto classes and pipelines)
from modeling_ast.events import ColumnGrid, EventOptions, detect_events
from modeling_ast.long_audio import window_source
from modeling_ast.training.sed_metrics import Event, event_f1, psds, read_strong_tsv

GRID_S = 0.01  # the time grid the window scores are spread on
DIGITS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")


def soundscape_label(label: str) -> str:
    """The soundscapes' name of a clip model's label: a digit "3" is "three"; other labels stay as they are."""
    return DIGITS[int(label)] if label.isdigit() and len(label) == 1 else label


def grid_scores(windows: Sequence[dict], labels: Sequence[str], duration: float) -> torch.Tensor:
    """(n, C) scores on the GRID_S grid over `duration` seconds: each cell the mean of the windows that cover its
    centre (`windows`: the pipeline's `{start, end, labels: [{label, score}]}` with every label)."""
    centres = (np.arange(int(np.ceil(duration / GRID_S))) + 0.5) * GRID_S
    totals, counts = np.zeros((centres.size, len(labels))), np.zeros((centres.size, 1))
    for window in windows:
        covered = (centres >= window["start"]) & (centres < window["end"])
        scores = {entry["label"]: entry["score"] for entry in window["labels"]}
        totals[covered] += [scores[label] for label in labels]
        counts[covered] += 1
    return torch.as_tensor(totals / np.maximum(counts, 1))


def evaluate(
    model: str, strong_labels: Path, audio_dir: Path, chunk_length_s: float, stride_length_s: float
) -> dict[str, float]:
    """PSDS and F1 of the clip model's windows on the recordings of `strong_labels` (module docstring)."""
    classifier = pipeline("audio-classification", model=model)
    model_labels = [classifier.model.config.id2label[index] for index in range(classifier.model.config.num_labels)]
    labels = [soundscape_label(label) for label in model_labels]
    truth = read_strong_tsv(strong_labels)
    frame_scores: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    detected: dict[str, list[Event]] = {}
    durations = {}
    rate = classifier.feature_extractor.sampling_rate
    for name in truth:
        path = str(audio_dir / name)
        durations[name] = window_source(path, rate).num_samples / rate
        output = classifier(path, chunk_length_s=chunk_length_s, stride_length_s=stride_length_s,
                            return_timestamps=True, threshold=0.0, top_k=len(labels))  # fmt: skip
        renamed = [{**window, "labels": [{**entry, "label": soundscape_label(entry["label"])}
                                         for entry in window["labels"]]} for window in output["windows"]]  # fmt: skip
        scores = grid_scores(renamed, labels, durations[name])
        grid = ColumnGrid(first=GRID_S / 2, hop=GRID_S, duration=durations[name])
        bounds = np.minimum(np.arange(scores.shape[0] + 1) * GRID_S, durations[name])
        frame_scores[name] = (bounds, scores.numpy())
        events = detect_events(scores, grid, labels, EventOptions(threshold=0.5))
        detected[name] = [(event["start"], event["end"], event["label"]) for event in events]
    return {**psds(frame_scores, truth, durations, labels), **event_f1(detected, truth, labels)}


def main(argv: Sequence[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("model", help="a clip classifier (folder or Hub id)")
    parser.add_argument("strong_labels", type=Path, help="the evaluation recordings' DCASE strong labels")
    parser.add_argument("audio_dir", type=Path, help="folder of the recordings the labels name")
    parser.add_argument("--chunk_length_s", type=float, default=1.28, help="window length (default 1.28 s)")
    parser.add_argument("--stride_length_s", type=float, default=0.96, help="window overlap (default 0.96 s)")
    parser.add_argument("--output", type=Path, help="also write the metrics here (JSON)")
    args = parser.parse_args(argv)
    metrics = evaluate(args.model, args.strong_labels, args.audio_dir, args.chunk_length_s, args.stride_length_s)
    print(json.dumps(metrics, indent=2))
    if args.output:
        args.output.write_text(json.dumps(metrics, indent=2) + "\n", encoding="utf-8")
    return metrics


if __name__ == "__main__":
    main()
