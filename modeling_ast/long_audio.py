"""Windows over recordings of any length, for tagging long audio with a fixed-context model.

`plan_windows` splits N samples into windows of `chunk` samples whose consecutive starts are `chunk - overlap` apart;
the last window is moved back to end exactly at the end of the recording, so every window is a full window of real
audio (no padding) unless the whole recording is shorter than one window, in which case it is a single window of its
own length. `WaveformWindows` cuts them from an array in memory; `FileWindows` reads each one from disk on demand
(resampling a small margin around it), so a one-hour file never sits in memory whole.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import soundfile
import torch

from .audio_utils import check_sampling_rate, decode_audio_file, resample, to_float_waveform, warn_if_truncated

# Zero crossings of the resampling filter on each side (audio_utils.resample) plus slack, in units of the lower rate.
_RESAMPLING_MARGIN = 8


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
    """Windows cut from a waveform held in memory (resampled once to the model's rate)."""

    def __init__(self, waveform: np.ndarray | torch.Tensor, sampling_rate: int, target_rate: int) -> None:
        samples = to_float_waveform(waveform)
        if samples.dim() != 1:
            raise ValueError(f"long-audio mode expects one mono clip (1-D), got shape {tuple(samples.shape)}")
        if not bool(torch.isfinite(samples).all()):
            raise ValueError("the audio contains NaN or infinite samples")
        self.samples = resample(samples, check_sampling_rate(sampling_rate), target_rate)
        self.num_samples = self.samples.shape[0]

    def read(self, start: int, end: int) -> torch.Tensor:
        return self.samples[start:end]


class FileWindows:
    """Windows read from an audio file on demand; each read decodes only the window plus a resampling margin.

    A window read this way equals the same span of the whole file decoded and resampled at once (to float rounding):
    the read starts on a sample where the two rates' grids meet and covers the resampling filter's reach, and zeros
    stand in for samples beyond the file's ends as they do for the whole-file resampler. Formats libsndfile cannot
    read (m4a, ...) are decoded whole, once, with ffmpeg (`audio_utils.decode_audio_file`, as plain pipeline calls do),
    so for them the recording does sit in memory (4 bytes per sample at the target rate). Errors are `ValueError`s
    naming the file; a truncated file (header announcing more data than present) gives a warning naming it.
    """

    def __init__(self, path: str | os.PathLike, target_rate: int) -> None:
        self.path = os.fspath(path)
        if self.path.startswith(("http://", "https://")):
            raise ValueError(f"chunk_length_s reads local files; download {self.path!r} first")
        self.target_rate = target_rate
        self._whole: torch.Tensor | None = None
        try:
            with soundfile.SoundFile(self.path) as handle:
                warn_if_truncated(handle, self.path)
                self.file_rate, self.file_frames = handle.samplerate, handle.frames
        except (RuntimeError, OSError, TypeError, ValueError):  # missing, corrupt or not a libsndfile format
            self._whole = torch.from_numpy(decode_audio_file(self.path, target_rate))  # raises naming the file
            self.file_rate, self.file_frames = target_rate, self._whole.shape[0]
        self.num_samples = -(-self.file_frames * target_rate // self.file_rate)
        gcd = math.gcd(self.file_rate, target_rate)
        self._file_step, self._target_step = self.file_rate // gcd, target_rate // gcd
        reach = _RESAMPLING_MARGIN * self.file_rate / min(self.file_rate, target_rate)
        self._margin_blocks = math.ceil(reach / self._file_step) + 1

    def read(self, start: int, end: int) -> torch.Tensor:
        """Samples [start, end) at the target rate, as float32."""
        if self._whole is not None:
            return self._whole[start:end]
        first_block = start // self._target_step - self._margin_blocks
        last_block = -(-end // self._target_step) + self._margin_blocks
        file_start, file_end = first_block * self._file_step, last_block * self._file_step
        segment = self._read_file(file_start, file_end)
        resampled = resample(segment, self.file_rate, self.target_rate)
        offset = start - first_block * self._target_step
        return resampled[offset : offset + end - start]

    def _read_file(self, file_start: int, file_end: int) -> torch.Tensor:
        """File samples [file_start, file_end), channel 0, with zeros outside the file."""
        lo, hi = max(file_start, 0), min(file_end, self.file_frames)
        try:
            with soundfile.SoundFile(self.path) as handle:
                handle.seek(lo)
                data = handle.read(hi - lo, dtype="float32", always_2d=True)[:, 0]
        except (RuntimeError, OSError, ValueError) as err:  # changed or removed since it was opened
            raise ValueError(f"could not read audio file {self.path!r}: {err}") from err
        padded = np.zeros(file_end - file_start, dtype=np.float32)
        padded[lo - file_start : lo - file_start + len(data)] = data
        if not np.isfinite(data).all():
            raise ValueError(f"{self.path} contains NaN or infinite samples")
        return torch.from_numpy(padded)


def iter_window_batches(
    source: WaveformWindows | FileWindows, plan: WindowPlan, batch_size: int
) -> Iterator[list[torch.Tensor]]:
    """The plan's windows, `batch_size` at a time, read lazily from `source`."""
    for first in range(0, len(plan.starts), batch_size):
        indices = range(first, min(first + batch_size, len(plan.starts)))
        yield [source.read(plan.starts[i], plan.ends[i]) for i in indices]
