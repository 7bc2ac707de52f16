"""`pipeline("sound-event-detection")`: events `[{"label", "start", "end", "score"}]` from a frame-level AST.

    detector = pipeline("sound-event-detection", model="outputs/sed")
    detector("street.wav", threshold=0.5, low=0.3, median_window=5)   # sorted by start; seconds

Settings not given are the model's (`config.event_options`, chosen by the training script on validation clips),
else `events.EventOptions`' defaults (`events.model_event_options`).

Any source the package reads (`audio_io.load_audio`: paths, bytes, URLs, dicts at any rate, arrays), any length:
a recording longer than `chunk_length_s` (default: the model's `max_length`) is cut into windows overlapping by
`stride_length_s` seconds, whose starts fall on the model's column grid (one column every `time_stride` frames), so
the columns of overlapping windows sit at the same times; their frame scores are averaged where windows overlap
(`events.merge_columns`) before events are decided, so an event crossing a window seam is one event. Local files
are read window by window (`audio_io.AudioFile`). Windows are featurised as the audio-classification pipeline
featurises clips (real length with a mask, or `max_length` padding for checkpoints without masks) and run
`window_batch_size` at a time. `return_frame_scores=True` adds the merged scores and column centres.

Lists are answered in order; `num_workers` decodes in DataLoader workers (transformers' iterator, one recording per
step: windows, not recordings, are what is batched).
"""

from __future__ import annotations

import math
from typing import Any

from transformers import Pipeline

from .audio_io import AudioFile
from .configuration_ast import ASTConfig
from .events import class_settings, detect_events, merge_columns, model_event_options
from .fbank import FrameSpec, num_frames, num_samples_for_frames
from .long_audio import WaveformWindows, check_window_lengths, window_source
from .modeling_ast import class_scores
from .modeling_ast_frames import column_grid
from .pipeline_ast import checkpoint_features

__all__ = ["SoundEventDetectionPipeline", "column_aligned_starts", "column_samples", "real_columns",
           "sed_window_starts"]  # fmt: skip

_EVENT_OPTIONS = ("threshold", "low", "median_window")


def real_columns(config: ASTConfig, num_samples: int, sampling_rate: int) -> int:
    """Time columns of a window of `num_samples` that hold its audio: those whose frames are all real (at least one,
    as the masked model counts them). A checkpoint without masks also scores the columns of the `max_length` padding
    after a short window; those say nothing about the audio that follows and are left out of the merge."""
    return max(1, config.time_patches(num_frames(num_samples, sampling_rate)))


def column_aligned_starts(num_samples: int, window: int, hop: int, column: int) -> list[int]:
    """Window starts every `hop` samples (a multiple of `column`), the last one moved to the first multiple of
    `column` from which a window reaches the end (so it may be shorter than `window`); [0] if one window holds all."""
    if num_samples <= window:
        return [0]
    last = math.ceil((num_samples - window) / column) * column
    return sorted(set(range(0, last, hop)) | {last})


def column_samples(config: ASTConfig, sampling_rate: int) -> int:
    """Samples between the starts of neighbouring time columns (`time_stride` frame shifts)."""
    return config.time_stride * FrameSpec.for_rate(sampling_rate).shift


def sed_window_starts(config: ASTConfig, num_samples: int, window: int, stride: int, sampling_rate: int) -> list[int]:
    """Where the windows of `window` samples overlapping by `stride` samples start in a recording of `num_samples`:
    on the column grid, a whole number of columns apart (at least one, and no more than a window holds, or columns
    would fall between windows); `column_aligned_starts`. The pipeline's windows, and training's evaluation windows."""
    column = column_samples(config, sampling_rate)
    window_columns = config.time_patches(num_frames(window, sampling_rate))
    hop = max(1, min(window_columns, (window - stride) // column)) * column
    return column_aligned_starts(num_samples, window, hop, column)


class SoundEventDetectionPipeline(Pipeline):
    """Sound events from an `ASTForAudioFrameClassification` checkpoint (see the module docstring)."""

    _load_processor = False
    _load_image_processor = False
    _load_feature_extractor = True
    _load_tokenizer = False

    def _sanitize_parameters(
        self,
        chunk_length_s: float | None = None,
        stride_length_s: float | None = None,
        window_batch_size: int | None = None,
        return_frame_scores: bool | None = None,
        **event_options: Any,
    ) -> tuple[dict, dict, dict]:
        unknown = sorted(set(event_options) - set(_EVENT_OPTIONS))
        if unknown:
            raise ValueError(f"unknown sound-event-detection option(s) {unknown}")
        preprocess = {}
        if chunk_length_s is not None or stride_length_s is not None:
            chunk = chunk_length_s if chunk_length_s is not None else self._default_chunk_s()
            check_window_lengths(chunk, stride_length_s or 0.0)
            preprocess = {"chunk_length_s": chunk, "stride_length_s": stride_length_s or 0.0}
        forward = {} if window_batch_size is None else {"window_batch_size": int(window_batch_size)}
        # one parameter per setting, so a call's settings join those given at init (transformers merges by key)
        postprocess = {name: value for name, value in event_options.items() if value is not None}
        config = self.model.config  # a bad setting fails here, not after the forward pass
        class_settings(model_event_options(config, postprocess), [config.id2label[i] for i in range(config.num_labels)])
        if return_frame_scores is not None:
            postprocess["return_frame_scores"] = bool(return_frame_scores)
        return preprocess, forward, postprocess

    def _default_chunk_s(self) -> float:
        rate = self.feature_extractor.sampling_rate
        return num_samples_for_frames(self.feature_extractor.max_length, rate) / rate

    def preprocess(self, inputs: Any, chunk_length_s: float | None = None, stride_length_s: float = 0.0) -> dict:
        """A lazy window source and column-aligned window starts; nothing is featurised yet."""
        rate = self.feature_extractor.sampling_rate
        source = window_source(inputs, rate)
        window = round((chunk_length_s or self._default_chunk_s()) * rate)
        if source.num_samples < num_samples_for_frames(self.model.config.patch_size, rate):
            raise ValueError(
                f"the audio has {source.num_samples} samples ({source.num_samples / rate:.3f} s); the model needs at "
                f"least one patch of frames ({num_samples_for_frames(self.model.config.patch_size, rate)} samples)"
            )
        starts = sed_window_starts(self.model.config, source.num_samples, window, round(stride_length_s * rate), rate)
        column = column_samples(self.model.config, rate)
        return {"source": source, "starts": starts, "window": window, "column": column}

    def _forward(self, model_inputs: dict, window_batch_size: int = 8) -> dict:
        source: AudioFile | WaveformWindows = model_inputs["source"]
        starts, window, column = model_inputs["starts"], model_inputs["window"], model_inputs["column"]
        rate = self.feature_extractor.sampling_rate
        scored = []
        for first in range(0, len(starts), window_batch_size):
            batch = starts[first : first + window_batch_size]
            waveforms = [source.read(start, min(start + window, source.num_samples)) for start in batch]
            features = checkpoint_features(
                self.feature_extractor, waveforms, self.model.config.patch_size, truncation=False
            ).to(self.device)
            if self.dtype is not None:
                features = features.to(dtype=self.dtype)
            output = self.model(**features)
            scores = class_scores(output.logits.float(), "multi_label_classification").cpu()
            for start, waveform, row, mask in zip(batch, waveforms, scores, output.column_mask.cpu()):
                real = real_columns(self.model.config, waveform.shape[0], rate)
                scored.append((start // column, row[mask][:real]))
        columns = self.model.config.time_patches(num_frames(source.num_samples, rate))
        return {"scores": merge_columns(scored, columns), "num_samples": source.num_samples}

    def postprocess(
        self, model_outputs: dict, return_frame_scores: bool = False, **event_options: Any
    ) -> list[dict[str, Any]] | dict[str, Any]:
        options = model_event_options(self.model.config, event_options)
        rate = self.feature_extractor.sampling_rate
        scores = model_outputs["scores"]
        grid = column_grid(self.model.config, model_outputs["num_samples"] / rate, rate)
        labels = [self.model.config.id2label[index] for index in range(scores.shape[1])]
        events = detect_events(scores, grid, labels, options)
        if not return_frame_scores:
            return events
        centres = self.model.column_centres(scores.shape[0], rate)
        return {"events": events, "frame_scores": scores, "column_centres": centres.float()}
