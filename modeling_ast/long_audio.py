"""Windows over recordings of any length, for tagging long audio with a fixed-context model.

`plan_windows` splits N samples into windows of `chunk` samples whose consecutive starts are `chunk - overlap` apart;
the last window is moved back to end exactly at the end of the recording, so every window is a full window of real
audio (no padding) unless the whole recording is shorter than one window, in which case it is a single window of its
own length. `window_source` gives what the windows are read from: a local file window by window (`audio_io.AudioFile`,
so a one-hour file never sits in memory whole), anything else decoded once by `audio_io.load_audio`.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch

from .audio_io import AudioFile, AudioSource, load_audio

__all__ = ["WindowPlan", "check_window_lengths", "is_number", "iter_window_batches", "plan_windows", "window_source",
           "window_starts"]  # fmt: skip


@dataclass(frozen=True)
class WindowPlan:
    """Window boundaries in samples at `sampling_rate`: window i covers [starts[i], ends[i])."""

    starts: list[int]
    ends: list[int]
    sampling_rate: int

    def seconds(self, index: int) -> tuple[float, float]:
        return self.starts[index] / self.sampling_rate, self.ends[index] / self.sampling_rate


def plan_windows(
    num_samples: int, sampling_rate: int, chunk_length_s: float, stride_length_s: float, min_samples: int
) -> WindowPlan:
    """Windows of `chunk_length_s` seconds overlapping by `stride_length_s` seconds (see the module docstring).

    Raises ValueError, with the reason, for lengths `check_window_lengths` refuses, a chunk shorter than
    `min_samples`, an overlap that leaves no hop once rounded to samples, or a recording shorter than `min_samples`.
    """
    check_window_lengths(chunk_length_s, stride_length_s)
    chunk = round(chunk_length_s * sampling_rate)
    overlap = round(stride_length_s * sampling_rate)
    if chunk < min_samples:
        raise ValueError(
            f"chunk_length_s={chunk_length_s} gives {chunk} samples per window; the model needs at least "
            f"{min_samples} ({min_samples / sampling_rate:.3f} s)"
        )
    if overlap >= chunk:
        raise ValueError(
            f"stride_length_s ({stride_length_s} s) is {overlap} samples, not fewer than the {chunk} of "
            f"chunk_length_s ({chunk_length_s} s): the windows would never advance"
        )
    if num_samples < min_samples:
        raise ValueError(
            f"the audio has {num_samples} samples ({num_samples / sampling_rate:.3f} s); the model needs at least "
            f"{min_samples} ({min_samples / sampling_rate:.3f} s)"
        )
    if num_samples <= chunk:
        return WindowPlan([0], [num_samples], sampling_rate)
    starts = window_starts(num_samples, chunk, chunk - overlap)
    return WindowPlan(starts, [start + chunk for start in starts], sampling_rate)


def window_starts(total: int, size: int, hop: int) -> list[int]:
    """Starts of windows of `size` every `hop` positions over `total`, the last moved back to end exactly at the end
    (one window at 0 when `total <= size`): no window holds padding."""
    if total <= size:
        return [0]
    return list(range(0, total - size, hop)) + [total - size]


def check_window_lengths(chunk_length_s: object, stride_length_s: object) -> None:
    """ValueError naming the option unless 0 <= stride_length_s < chunk_length_s, both finite numbers of seconds."""
    if not (is_number(chunk_length_s) and math.isfinite(chunk_length_s) and chunk_length_s > 0):
        raise ValueError(f"chunk_length_s must be a positive number of seconds (finite), got {chunk_length_s!r}")
    if not (is_number(stride_length_s) and math.isfinite(stride_length_s)):
        raise ValueError(
            f"stride_length_s (the overlap between windows) must be a finite number of seconds, got {stride_length_s!r}"
        )
    if stride_length_s < 0:
        raise ValueError(
            f"stride_length_s is the overlap between windows and cannot be negative, got {stride_length_s}"
        )
    if stride_length_s >= chunk_length_s:
        raise ValueError(
            f"stride_length_s ({stride_length_s} s) must be smaller than chunk_length_s ({chunk_length_s} s): it is "
            "the overlap between consecutive windows, so the windows would never advance"
        )


def is_number(value: object) -> bool:
    """A real number (Python or numpy), not a bool."""
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)


class WaveformWindows:
    """Windows cut from a mono waveform held in memory, already at the model's rate (`audio_io.load_audio`)."""

    def __init__(self, waveform: torch.Tensor) -> None:
        self.samples = waveform
        self.num_samples = waveform.shape[0]

    def read(self, start: int, end: int) -> torch.Tensor:
        return self.samples[start:end]


def window_source(source: AudioSource, sampling_rate: int) -> AudioFile | WaveformWindows:
    """Where a recording's windows are read from: a local file window by window (`audio_io.AudioFile`), any other
    source (URL, bytes, dict, array) decoded whole by `audio_io.load_audio`, so both equal a plain call's samples."""
    if isinstance(source, (str, os.PathLike)) and not os.fspath(source).startswith(("http://", "https://")):
        return AudioFile(source, sampling_rate)
    return WaveformWindows(load_audio(source, sampling_rate))


def iter_window_batches(
    source: AudioFile | WaveformWindows, plan: WindowPlan, batch_size: int
) -> Iterator[list[torch.Tensor]]:
    """The plan's windows, `batch_size` at a time, read lazily from `source`."""
    for first in range(0, len(plan.starts), batch_size):
        indices = range(first, min(first + batch_size, len(plan.starts)))
        yield [source.read(plan.starts[i], plan.ends[i]) for i in indices]
