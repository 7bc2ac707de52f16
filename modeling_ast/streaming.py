"""Live audio: a stateful tagger fed PCM chunks of any size at any rate, answering as the offline pipelines do.

    tagger = StreamingTagger(pipeline("audio-classification", model="outputs/fsdd"), window_s=2.0, hop_s=0.5,
                             sampling_rate=44100)
    for chunk in microphone:                 # any sizes, 1-D (or (samples, channels): the mean of the channels)
        for result in tagger.push(chunk):    # {"start", "end", "labels": [{label, score}]}, stream seconds
            ...
    tagger.flush()                           # the end of the stream: the last window, the last events

Three stages, each exact against its offline counterpart:

- **resampling** (`audio_utils.IncrementalResampler`): `resample`'s polyphase filter bank applied block by block;
  the samples equal offline resampling of the whole stream to float rounding;
- **features** (`StreamFeatures`): each Kaldi frame (25 ms every 10 ms, edges snipped) is computed once, by
  `fbank.kaldi_fbank` on the span of samples of the frames that just became complete, into a ring of the last window's
  frames. A frame depends only on its own samples, so the frames equal those of the offline features;
- **windows**: a window ends every `hop_s` seconds and covers the last `window_s` seconds. The windows of a stream
  of N samples are the offline long-audio pipeline's over the same N samples (starts 0, hop, 2 hop, ... and at
  `flush` the last one moved back to end at N), featurised as the pipelines featurise windows (`window_inputs`: real
  length with a mask, or `max_length` padding for checkpoints without masks).

Clip classifiers (`ASTForAudioClassification`, its ONNX runner) give one result per window,
`{"start", "end", "labels"}`, the offline `pipeline(..., chunk_length_s=window_s, stride_length_s=window_s - hop_s,
return_timestamps=True)` window for window; before the first full window, a window from the stream's start ends
every hop (each the offline result of the stream so far), so answers come within one hop.

Frame models (`ASTForAudioFrameClassification`) give events `{"label", "start", "end", "score"}`, each once: the
column scores of overlapping windows are averaged as `events.merge_columns` does, and a column is decided once no
future window covers it (after the window starting at column j, columns up to j are final: about `window_s` behind
the stream), then median-filtered and thresholded with hysteresis as `events.detect_events` does. An event is
reported when it ends (its score falls below `low`) or, with `max_event_s`, when it reaches that length (a longer
run continues as a new event from there). Without `max_event_s` the events of a whole stream are those of
`pipeline("sound-event-detection")` over it with the same windows.

Memory is bounded by the window whatever the stream's length: the resampler's tail, the last window of samples and
of frames, the undecided columns, and one result at a time.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from transformers import Pipeline

from .audio_io import downmix
from .audio_utils import IncrementalResampler, check_sampling_rate, to_float_waveform
from .configuration_ast import ASTConfig
from .events import ColumnGrid, EventOptions, class_settings, median_filter, model_event_options
from .fbank import FrameSpec, kaldi_fbank, num_frames
from .feature_extraction_ast import ASTFeatureExtractor, _float32_safe_peak
from .long_audio import is_number
from .modeling_ast import class_scores
from .modeling_ast_frames import ASTForAudioFrameClassification, column_grid
from .pipeline_ast import window_labels
from .pipeline_sed import real_columns

__all__ = ["StreamFeatures", "StreamingTagger", "Window", "stream_step", "window_inputs"]


@dataclass(frozen=True)
class Window:
    """Samples [start, end) of the stream at the model's rate, and their raw (un-normalised) log-mel frames (T, F)."""

    start: int
    end: int
    frames: torch.Tensor
    sampling_rate: int

    def seconds(self) -> tuple[float, float]:
        return self.start / self.sampling_rate, self.end / self.sampling_rate


class _Ring:
    """The last `capacity` rows of an endless sequence, addressed by row number since the stream began."""

    def __init__(self, capacity: int, row_shape: tuple[int, ...] = ()) -> None:
        self.data = torch.zeros(capacity, *row_shape)
        self.end = 0  # rows written since the stream began

    def append(self, rows: torch.Tensor) -> None:
        capacity, count = self.data.shape[0], rows.shape[0]
        if count > capacity:
            raise RuntimeError(f"{count} rows do not fit a ring of {capacity}")
        first = self.end % capacity
        head = min(count, capacity - first)
        self.data[first : first + head] = rows[:head]
        self.data[: count - head] = rows[head:]
        self.end += count

    def read(self, start: int, stop: int) -> torch.Tensor:
        """A copy of rows [start, stop), which must still be held."""
        capacity = self.data.shape[0]
        if start < self.end - capacity or stop > self.end or start > stop:
            raise RuntimeError(f"rows [{start}, {stop}) are not all held (held: [{self.end - capacity}, {self.end}))")
        first = start % capacity
        head = min(stop - start, capacity - first)
        return torch.cat([self.data[first : first + head], self.data[: stop - start - head]])


class StreamFeatures:
    """The front end of a stream: resampling, each Kaldi frame once, and the windows (see the module docstring).

    `push(chunk)` returns the windows that the chunk completes, `flush()` those the end of the stream completes.
    Window ends fall every `hop` samples after the first full window (`window` samples); with `early`, also every
    `hop` samples before it (windows from the stream's start). At `flush`, a last window ends at the stream's end
    unless one already does: it starts `window` samples before the end, rounded up to a multiple of `align` samples
    (the offline pipelines' last window: 1 for clip classifiers, one patch column for frame models). Windows shorter
    than `min_samples` are not made.
    """

    def __init__(
        self,
        input_rate: int,
        sampling_rate: int,
        num_mel_bins: int,
        window: int,
        hop: int,
        min_samples: int,
        early: bool,
        align: int,
    ) -> None:
        self.sampling_rate = sampling_rate
        self.num_mel_bins = num_mel_bins
        self.window, self.hop, self.min_samples, self.align = window, hop, min_samples, align
        self._spec = FrameSpec.for_rate(sampling_rate)
        self._resampler = IncrementalResampler(input_rate, sampling_rate)
        # Frames are computed at window ends, at most a window apart, so fewer than a window and a frame of samples
        # wait for them; the samples ring also keeps the last window (the last window may start off the frame grid),
        # the frames ring a window's frames, which is also the most one computation adds.
        self._samples = _Ring(window + self._spec.size)
        self._frames = _Ring(window // self._spec.shift + 1, (num_mel_bins,))
        self._next_frame = 0  # the first frame not yet computed
        self._next_end = hop if early and hop < window else window
        self._last_end = 0  # where the last window made ended
        self._flushed = False

    @property
    def num_samples(self) -> int:
        """Samples of the stream so far, at the model's rate."""
        return self._samples.end

    def push(self, chunk: torch.Tensor) -> list[Window]:
        """The windows completed by `chunk` (1-D float32 at the input rate)."""
        if self._flushed:
            raise ValueError("this stream has ended (flush was called); start a new StreamingTagger")
        return self._take(self._resampler.push(chunk))

    def flush(self) -> list[Window]:
        """End the stream: the windows completed by the resampler's tail, then the last window (see the class)."""
        if self._flushed:
            raise ValueError("this stream has ended (flush was called); start a new StreamingTagger")
        windows = self._take(self._resampler.flush())
        self._flushed = True
        total = self.num_samples
        if total == self._last_end or total < self.min_samples:
            return windows
        start = max(0, math.ceil((total - self.window) / self.align) * self.align)
        self._compute_frames()
        return [*windows, self._window(start, total)]

    def _take(self, samples: torch.Tensor) -> list[Window]:
        """Append resampled samples up to each window end in turn, computing the frames there: one `kaldi_fbank`
        call per window rather than per chunk (a call costs about as much for one frame as for fifty), and the
        rings never hold more than a window plus a frame."""
        windows, offset = [], 0
        while offset < samples.shape[0]:
            piece = min(samples.shape[0] - offset, self._next_end - self.num_samples)
            self._samples.append(samples[offset : offset + piece])
            offset += piece
            if self.num_samples == self._next_end:
                self._compute_frames()
                start = self._next_end - self.window if self._next_end >= self.window else 0
                if self._next_end - start >= self.min_samples:
                    windows.append(self._window(start, self._next_end))
                self._next_end = self._following_end(self._next_end)
        return windows

    def _following_end(self, end: int) -> int:
        """The window end after `end`: a hop later, but early windows stop at the first full window."""
        return end + self.hop if end >= self.window else min(end + self.hop, self.window)

    def _compute_frames(self) -> None:
        """Each frame completed since the last call, from its own samples only."""
        complete = num_frames(self.num_samples, self.sampling_rate)
        if complete > self._next_frame:
            first = self._next_frame * self._spec.shift
            span = self._samples.read(first, self._spec.samples_for(complete))
            self._frames.append(kaldi_fbank(span[None], self.sampling_rate, self.num_mel_bins)[0])
            self._next_frame = complete

    def _window(self, start: int, end: int) -> Window:
        """The frames of samples [start, end): from the ring when the window starts on the frame grid, else computed
        from its samples (only the end-aligned last window of a clip classifier can start off the grid)."""
        count = num_frames(end - start, self.sampling_rate)
        if start % self._spec.shift == 0:
            frames = self._frames.read(start // self._spec.shift, start // self._spec.shift + count)
        else:
            frames = kaldi_fbank(self._samples.read(start, end)[None], self.sampling_rate, self.num_mel_bins)[0]
        self._last_end = end
        return Window(start, end, frames, self.sampling_rate)


def window_inputs(
    frames: torch.Tensor, extractor: ASTFeatureExtractor, config: ASTConfig
) -> dict[str, torch.Tensor]:
    """Model inputs (batch of one) for a window's raw frames (T, F), padded as the pipelines featurise windows
    (`truncation=False`, at least one patch): to the real length with an attention mask for checkpoints whose
    extractor returns masks, else to at least `max_length` frames; padding is `padding_value` in log-mel space,
    then `extractor.normalize` when it normalises."""
    masked = bool(extractor.return_attention_mask)
    count = frames.shape[0]
    target = max(count, config.patch_size) if masked else max(count, extractor.max_length, config.patch_size)
    padded = frames.new_full((target, frames.shape[1]), extractor.padding_value)
    padded[:count] = frames
    if extractor.do_normalize:
        extractor.normalize(padded, inplace=True)
    inputs = {"input_values": padded[None]}
    if masked:
        inputs["attention_mask"] = (torch.arange(target) < count).to(torch.int64)[None]
    return inputs


class _ClipScorer:
    """Labels per window for a clip classifier, as the audio-classification pipeline's long-audio windows."""

    def __init__(self, config: ASTConfig, top_k: int, threshold: float | None, function_to_apply: str | None) -> None:
        self.config, self.top_k, self.threshold, self.function_to_apply = config, top_k, threshold, function_to_apply

    def score(self, window: Window, logits: torch.Tensor, column_mask: torch.Tensor | None) -> list[dict[str, Any]]:
        scores = class_scores(logits, self.config.problem_type, self.function_to_apply)
        start, end = window.seconds()
        return [{"start": start, "end": end,
                 "labels": window_labels(scores, self.config.id2label, self.top_k, self.threshold)}]  # fmt: skip

    def finish(self, num_samples: int) -> list[dict[str, Any]]:
        return []


class _EventScorer:
    """Events of a frame model, each reported once it is decided (see the module docstring)."""

    def __init__(self, config: ASTConfig, sampling_rate: int, options: EventOptions, max_event_s: float | None) -> None:
        spec = FrameSpec.for_rate(sampling_rate)
        self.config, self.sampling_rate = config, sampling_rate
        self.labels = [config.id2label[index] for index in range(config.num_labels)]
        self.high, self.low, self.medians = class_settings(options, self.labels)
        self.reach = max(self.medians) // 2  # columns on each side a filtered column depends on
        self.column = config.time_stride * spec.shift  # samples between column starts
        self.max_columns = None if max_event_s is None else max(1, round(max_event_s * sampling_rate / self.column))
        num_labels = len(self.labels)
        self._sums = torch.zeros(0, num_labels)  # undecided columns from `_decided` on: sums of window scores ...
        self._counts = torch.zeros(0, 1)  # ... and how many windows scored each
        self._decided = 0  # columns merged so far
        self._merged = torch.zeros(0, num_labels)  # merged columns [_merged_from, _decided) kept for the median
        self._merged_from = 0
        self._filtered = 0  # columns filtered and thresholded so far
        self._open: list[tuple[int, float] | None] = [None] * num_labels  # per label: (first column, peak) of a run

    def score(self, window: Window, logits: torch.Tensor, column_mask: torch.Tensor | None) -> list[dict[str, Any]]:
        scores = class_scores(logits, "multi_label_classification")
        if column_mask is not None:
            scores = scores[column_mask]
        scores = scores[: real_columns(self.config, window.end - window.start, self.sampling_rate)]
        first = window.start // self.column
        self._add(first, scores)
        return self._decide(first + 1, window.end, final=False)

    def finish(self, num_samples: int) -> list[dict[str, Any]]:
        """Every column decided (the stream ended): the last events, runs still open closed at the end."""
        total = self._decided + self._sums.shape[0]
        return self._decide(total, num_samples, final=True)

    def _add(self, first: int, scores: torch.Tensor) -> None:
        """Add a window's column scores (n, C) from column `first`; windows come in order of their start."""
        offset = first - self._decided
        missing = offset + scores.shape[0] - self._sums.shape[0]
        if missing > 0:
            self._sums = torch.cat([self._sums, self._sums.new_zeros(missing, self._sums.shape[1])])
            self._counts = torch.cat([self._counts, self._counts.new_zeros(missing, 1)])
        self._sums[offset : offset + scores.shape[0]] += scores
        self._counts[offset : offset + scores.shape[0]] += 1

    def _decide(self, upto: int, num_samples: int, final: bool) -> list[dict[str, Any]]:
        """Merge the columns before `upto` (no future window covers them), filter those whose median window is all
        merged (every one, at the end) and threshold them: the events that ended, sorted as `detect_events` sorts."""
        self._merge_until(upto)
        events = self._filter_until(self._decided if final else self._decided - self.reach)
        if final:
            events += self._close_open(self._decided)
        grid = column_grid(self.config, num_samples / self.sampling_rate, self.sampling_rate)
        events.sort(key=lambda event: (event[1], self.labels[event[0]]))
        return [self._event(label, start, end, peak, grid) for label, start, end, peak in events]

    def _merge_until(self, upto: int) -> None:
        """Columns [_decided, upto): the mean of their windows' scores, moved to `_merged`. A column no window
        scored (its windows skipped under overload) counts as silence."""
        count = max(0, upto - self._decided)
        merged = self._sums[:count] / self._counts[:count].clamp_min(1)
        self._sums, self._counts = self._sums[count:], self._counts[count:]
        self._decided += count
        self._merged = torch.cat([self._merged, merged])

    def _filter_until(self, ready: int) -> list[tuple[int, int, int, float]]:
        """Median-filter and threshold columns [_filtered, ready); keep the merged columns later ones need."""
        if ready <= self._filtered:
            return []
        local = median_filter(self._merged, self.medians)  # edges repeat only at the stream's true ends
        events = self._threshold(local[self._filtered - self._merged_from : ready - self._merged_from], self._filtered)
        self._filtered = ready
        keep_from = max(self._merged_from, ready - self.reach)
        self._merged = self._merged[keep_from - self._merged_from :]
        self._merged_from = keep_from
        return events

    def _threshold(self, filtered: torch.Tensor, first: int) -> list[tuple[int, int, int, float]]:
        """Runs at or above `low` that reach `threshold` (hysteresis, as `events.detect_events`), ended within
        these columns or cut at `max_columns`: (label, first column, end column, peak)."""
        events = []
        for offset, row in enumerate(filtered.tolist()):
            column = first + offset
            for label, value in enumerate(row):
                run = self._open[label]
                if run is not None and value < self.low[label]:
                    events.append((label, run[0], column, run[1]))
                    run = None
                elif value >= self.low[label]:
                    run = (column, value) if run is None else (run[0], max(run[1], value))
                    if self.max_columns is not None and column + 1 - run[0] >= self.max_columns:
                        events.append((label, run[0], column + 1, run[1]))
                        run = None
                self._open[label] = run
        return [event for event in events if event[3] >= self.high[event[0]]]

    def _close_open(self, end: int) -> list[tuple[int, int, int, float]]:
        closed = [(label, run[0], end, run[1]) for label, run in enumerate(self._open) if run is not None]
        self._open = [None] * len(self._open)
        return [event for event in closed if event[3] >= self.high[event[0]]]

    def _event(self, label: int, start: int, end: int, peak: float, grid: ColumnGrid) -> dict[str, Any]:
        onset, offset = grid.bounds(start, end)
        return {"label": self.labels[label], "start": onset, "end": offset, "score": peak}


class StreamingTagger:
    """Results every hop over the last `window_s` seconds of a stream fed in chunks (see the module docstring).

    Args:
        model_or_pipeline: an audio-classification or sound-event-detection pipeline (its model, feature extractor
            and device), or a model (`ASTForAudioClassification`, `ASTForAudioFrameClassification`,
            `onnx_inference.ASTOnnxForAudioClassification`) with `feature_extractor`.
        window_s: seconds of audio each result covers (at least one patch of frames).
        hop_s: seconds between results, a multiple of 10 ms (one frame), at most `window_s`; for frame models a
            multiple of one patch column (`time_stride` frames).
        sampling_rate: rate of the pushed samples (default: the model's); other rates are resampled as they come.
        feature_extractor: with a model, its `ASTFeatureExtractor`.
        top_k, threshold, function_to_apply: window labels of clip classifiers, as the pipeline's long-audio mode.
        events: thresholds and median filter of frame models (`events.EventOptions`; None: the model's,
            `events.model_event_options`).
        max_event_s: report an event of a frame model at the latest when it has lasted this long.

    `push(chunk)` and `flush()` return results; `windows`, `final_windows`, `score` and `finish` are the same work in
    two halves (features, then the model), for callers that run the model elsewhere (`listen.run_stream`).
    """

    def __init__(
        self,
        model_or_pipeline: Pipeline | torch.nn.Module,
        window_s: float,
        hop_s: float,
        sampling_rate: int | None = None,
        feature_extractor: ASTFeatureExtractor | None = None,
        top_k: int = 5,
        threshold: float | None = None,
        function_to_apply: str | None = None,
        events: EventOptions | None = None,
        max_event_s: float | None = None,
    ) -> None:
        self.model, self.feature_extractor = _model_and_extractor(model_or_pipeline, feature_extractor)
        self.config: ASTConfig = self.model.config
        rate = self.feature_extractor.sampling_rate
        spec = FrameSpec.for_rate(rate)
        self.is_frame_model = isinstance(self.model, ASTForAudioFrameClassification)
        step = self.config.time_stride * spec.shift if self.is_frame_model else spec.shift
        window, hop = _window_samples(window_s, hop_s, rate, step, "one patch column" if self.is_frame_model else
                                      "one 10 ms frame")  # fmt: skip
        min_samples = spec.samples_for(self.config.patch_size)
        if window < min_samples:
            raise ValueError(
                f"window_s={window_s} is {window} samples; the model needs at least one patch of frames, "
                f"{min_samples} samples ({min_samples / rate:.3f} s)"
            )
        columns = self.config.time_patches(num_frames(window, rate))
        if self.is_frame_model and hop > columns * step:
            raise ValueError(
                f"hop_s={hop_s} passes columns that no window covers: a window of {window_s} s has {columns} "
                f"columns, so hop_s may be at most {columns * step / rate:g} s"
            )
        self.features = StreamFeatures(
            check_sampling_rate(sampling_rate or rate), rate, self.feature_extractor.num_mel_bins, window, hop,
            min_samples, early=not self.is_frame_model, align=step if self.is_frame_model else 1,
        )  # fmt: skip
        if self.is_frame_model:
            events = model_event_options(self.config) if events is None else events
            self._scorer: _ClipScorer | _EventScorer = _EventScorer(self.config, rate, events, max_event_s)
        else:
            if threshold is not None and not (is_number(threshold) and 0 <= threshold <= 1):
                raise ValueError(f"threshold is a score in [0, 1], got {threshold!r}")
            if isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 1:
                raise ValueError(f"top_k must be a positive integer, got {top_k!r}")
            self._scorer = _ClipScorer(self.config, top_k, threshold, function_to_apply)
        self._device = getattr(self.model, "device", torch.device("cpu"))
        self._dtype = getattr(self.model, "dtype", torch.float32)
        self._safe_peak = _float32_safe_peak(rate)

    def push(self, chunk: np.ndarray | torch.Tensor) -> list[dict[str, Any]]:
        """Results completed by `chunk`: samples at `sampling_rate`, 1-D or (samples, channels), float in [-1, 1] or
        integer PCM."""
        return [result for window in self.windows(chunk) for result in self.score(window)]

    def flush(self) -> list[dict[str, Any]]:
        """End the stream: the last window (ending at the stream's end) and, for frame models, the last events."""
        return [result for window in self.final_windows() for result in self.score(window)] + self.finish()

    def windows(self, chunk: np.ndarray | torch.Tensor) -> list[Window]:
        """The windows `chunk` completes, not yet run through the model."""
        return self.features.push(self._samples(chunk))

    def final_windows(self) -> list[Window]:
        """End the stream: the windows its end completes, not yet run through the model."""
        return self.features.flush()

    def score(self, window: Window) -> list[dict[str, Any]]:
        """Run the model on one window (windows in stream order): its result, or the events it decides."""
        inputs = window_inputs(window.frames, self.feature_extractor, self.config)
        inputs = {name: value.to(self._device) for name, value in inputs.items()}
        inputs["input_values"] = inputs["input_values"].to(self._dtype)
        with torch.inference_mode():
            output = self.model(**inputs)
        mask = getattr(output, "column_mask", None)
        return self._scorer.score(window, output.logits.float().cpu()[0], None if mask is None else mask.cpu()[0])

    def finish(self) -> list[dict[str, Any]]:
        """After the final windows were scored: the events still open (frame models), else nothing."""
        return self._scorer.finish(self.features.num_samples)

    def _samples(self, chunk: np.ndarray | torch.Tensor) -> torch.Tensor:
        """A pushed chunk as a 1-D float32 CPU tensor (the mean of the channels of a 2-D one); ValueError for
        anything the offline extractor would refuse or compute differently."""
        waveform = to_float_waveform(chunk).cpu()
        if waveform.dim() == 2:  # (samples, channels), as soundfile, sounddevice and gradio give them
            waveform = torch.from_numpy(downmix(waveform.numpy()))  # the channel rule of every other door
        if waveform.dim() != 1:
            raise ValueError(f"a chunk must be 1-D or (samples, channels), got shape {tuple(waveform.shape)}")
        if waveform.numel():
            peak = float(waveform.abs().max())
            if not math.isfinite(peak):
                raise ValueError("the chunk contains NaN or infinite samples")
            if peak > self._safe_peak:
                raise ValueError(
                    f"the chunk has samples of magnitude {peak:.3g}, beyond {self._safe_peak:.3g}, where float32 "
                    "features overflow; scale the audio (float samples are expected in [-1, 1])"
                )
        return waveform


def _model_and_extractor(
    model_or_pipeline: Pipeline | torch.nn.Module, feature_extractor: ASTFeatureExtractor | None
) -> tuple[torch.nn.Module, ASTFeatureExtractor]:
    if isinstance(model_or_pipeline, Pipeline):
        model, feature_extractor = model_or_pipeline.model, feature_extractor or model_or_pipeline.feature_extractor
    else:
        model = model_or_pipeline
    if not isinstance(feature_extractor, ASTFeatureExtractor):
        raise ValueError(
            "StreamingTagger needs the model's ASTFeatureExtractor: pass a pipeline, or a model with "
            f"feature_extractor=ASTFeatureExtractor.from_pretrained(...); got {type(feature_extractor).__name__}"
        )
    if not isinstance(getattr(model, "config", None), ASTConfig):
        raise ValueError(f"StreamingTagger needs a modeling_ast model (an ASTConfig), got {type(model).__name__}")
    return model.eval(), feature_extractor


def _window_samples(window_s: float, hop_s: float, rate: int, step: int, step_name: str) -> tuple[int, int]:
    """(window, hop) in samples; ValueError naming the option unless 0 < hop <= window and hop is a multiple of
    `step` samples (so that every window starts on the frame grid)."""
    for name, value in (("window_s", window_s), ("hop_s", hop_s)):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
            raise ValueError(f"{name} must be a positive number of seconds, got {value!r}")
    window, hop = round(window_s * rate), round(hop_s * rate)
    if hop % step:
        raise ValueError(
            f"hop_s={hop_s} is {hop} samples at {rate} Hz, not a multiple of {step_name} ({step} samples, "
            f"{step / rate * 1000:g} ms): windows must start on the frame grid"
        )
    if hop > window:
        raise ValueError(f"hop_s ({hop_s} s) must not exceed window_s ({window_s} s): audio would go unheard")
    return window, hop


def stream_step(
    tagger: StreamingTagger | None, chunk: tuple[int, np.ndarray] | None, make_tagger: Callable[[int], StreamingTagger]
) -> tuple[StreamingTagger | None, list[dict[str, Any]]]:
    """One step of a live page (e.g. a Gradio `Audio(streaming=True)` whose stream handler keeps the tagger in a
    `gr.State`): `chunk` is `(rate, samples)` as Gradio streams them, or None when the recording stops. The first
    chunk makes the tagger (`make_tagger(rate)`); None flushes it and returns `(None, last results)`."""
    if chunk is None:
        return None, ([] if tagger is None else tagger.flush())
    rate, samples = chunk
    if tagger is None:
        tagger = make_tagger(int(rate))
    return tagger, tagger.push(samples)
