"""Decoding training clips to mono float32 waveforms, and what happens to the files that cannot be decoded."""

from __future__ import annotations

import io
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import torch
from transformers.utils import logging

from ..audio_utils import check_sampling_rate, load_audio, resample, to_float_waveform
from ..fbank import FrameSpec
from .labels import list_names

logger = logging.get_logger(__name__)

__all__ = [
    "SAMPLING_RATE",
    "BadFileLog",
    "OnBadFile",
    "UnreadableAudioError",
    "check_on_bad_file",
    "check_waveform",
    "decode_example",
    "max_amplitude",
]

SAMPLING_RATE = 16000

OnBadFile = Literal["error", "skip"]


class UnreadableAudioError(ValueError):
    """A clip could not be decoded; `name` identifies it (its path, or its dataset row)."""

    def __init__(self, name: str, reason: str) -> None:
        super().__init__(f"cannot read audio {name}: {reason}")
        self.name = name
        self.reason = reason


def _example_name(example: Mapping[str, Any]) -> str:
    if example.get("name"):
        return str(example["name"])
    audio = example.get("audio")
    return os.fspath(audio) if isinstance(audio, (str, os.PathLike)) else "<in-memory audio>"


def decode_example(example: Mapping[str, Any], sampling_rate: int = SAMPLING_RATE) -> torch.Tensor:
    """The example's audio as a mono float32 (samples,) tensor at `sampling_rate` Hz.

    Files and bytes are decoded with soundfile (channel 0 of multichannel audio) and resampled with
    `audio_utils.resample`; arrays are taken at the example's `sampling_rate`. Raises `UnreadableAudioError` naming
    the clip for a missing, corrupt or empty file, an unusable audio value, a clip shorter than one 25 ms frame (it
    has no filter banks), non-finite samples, or samples beyond `max_amplitude` (its filter banks would overflow).
    """
    name = _example_name(example)
    audio, rate = example.get("audio"), example.get("sampling_rate")
    if isinstance(audio, Mapping):  # a `datasets` audio dict: {"bytes", "path"} or {"array", "sampling_rate"}
        rate = audio.get("sampling_rate", rate)
        audio = next((audio[key] for key in ("bytes", "path", "array") if audio.get(key) is not None), None)
    try:
        if isinstance(audio, (str, os.PathLike)):
            waveform = torch.from_numpy(load_audio(audio, sampling_rate))
        elif isinstance(audio, (bytes, bytearray)):
            waveform = _decode_bytes(bytes(audio), sampling_rate)
        elif isinstance(audio, (np.ndarray, torch.Tensor, list)):
            waveform = _array_waveform(audio, rate, sampling_rate)
        elif audio is None:
            raise ValueError("the example holds no audio (no bytes, path or array)")
        else:
            raise ValueError(f"unsupported audio value of type {type(audio).__name__}")
    except (ValueError, RuntimeError, OSError, TypeError) as error:
        raise UnreadableAudioError(name, str(error)) from error
    check_waveform(waveform, name, sampling_rate)
    return waveform


def max_amplitude(sampling_rate: int = SAMPLING_RATE) -> float:
    """The largest |sample| whose Kaldi filter banks are finite in float32, whatever the signal.

    Why: a frame of `size` samples of |x| <= A is centred (|x| <= 2A), pre-emphasised (|x| <= 1.97 * 2A < 4A) and
    windowed (<= 1), so each FFT bin is at most 4 A size in magnitude and its power (4 A size)^2; a mel energy sums
    at most n_fft // 2 + 1 such powers with weights <= 1. Keeping that under float32's largest value gives the bound
    (7.2e14 at 16 kHz): real audio is within [-1, 1], so only corrupt or wrongly scaled files come near it.
    """
    spec = FrameSpec.for_rate(sampling_rate)
    largest_power = float(torch.finfo(torch.float32).max) / (spec.n_fft // 2 + 1)
    return largest_power**0.5 / (4 * spec.size)


def check_waveform(waveform: torch.Tensor, name: str, sampling_rate: int = SAMPLING_RATE) -> None:
    """`UnreadableAudioError` naming the clip when a decoded (samples,) waveform at `sampling_rate` Hz cannot give
    finite filter banks: fewer samples than one 25 ms frame, NaN or infinite samples, or beyond `max_amplitude`."""
    frame = FrameSpec.for_rate(sampling_rate).size
    if waveform.numel() == 0:
        raise UnreadableAudioError(name, "no samples")
    if waveform.numel() < frame:
        raise UnreadableAudioError(
            name, f"{waveform.numel()} samples at {sampling_rate} Hz, fewer than one 25 ms frame ({frame} samples)"
        )
    # One pass over the samples: the max propagates NaN and |-inf| is inf, so a non-finite peak means such samples.
    peak, limit = float(waveform.abs().max()), max_amplitude(sampling_rate)
    if not math.isfinite(peak):
        raise UnreadableAudioError(name, "NaN or infinite samples")
    if peak > limit:
        raise UnreadableAudioError(
            name, f"peak amplitude {peak:.3g} is beyond {limit:.3g}, where its filter banks overflow float32 "
            "(audio samples are expected within [-1, 1])",
        )  # fmt: skip


def _decode_bytes(data: bytes, sampling_rate: int) -> torch.Tensor:
    """Decode an encoded audio file held in memory; channel 0, resampled to `sampling_rate`."""
    import soundfile

    samples, file_rate = soundfile.read(io.BytesIO(data), dtype="float32", always_2d=True)
    waveform = torch.from_numpy(np.ascontiguousarray(samples[:, 0]))
    return resample(waveform, file_rate, sampling_rate) if file_rate != sampling_rate else waveform


def _array_waveform(samples: Any, rate: int | None, sampling_rate: int) -> torch.Tensor:
    """A 1-D sample array at `rate` Hz, as float32 at `sampling_rate` Hz."""
    if rate is None:
        raise ValueError("audio given as an array needs its sampling_rate")
    waveform = to_float_waveform(samples)
    if waveform.dim() != 1:
        raise ValueError(f"audio arrays must be 1-D mono, got shape {tuple(waveform.shape)}")
    rate = check_sampling_rate(rate)
    return resample(waveform, rate, sampling_rate) if rate != sampling_rate else waveform


def check_on_bad_file(on_bad_file: str) -> None:
    """ValueError unless `on_bad_file` is "error" or "skip"."""
    if on_bad_file not in ("error", "skip"):
        raise ValueError(f"on_bad_file must be 'error' or 'skip', got {on_bad_file!r}")


@dataclass
class BadFileLog:
    """Unreadable clips skipped by a dataset (`on_bad_file="skip"`), counted per pass over the data and in all.

    `count` and `names` describe the pass in progress, `last_pass_count` the last finished one and `total` the distinct
    clips skipped so far in any pass (a file that fails as a clip and as a mixup partner, or in several epochs, counts
    once). `end_pass()` closes a pass and logs a warning with the count and the first few names when something was
    skipped. Datasets call it themselves (`AudioDataset` after `len(dataset)` reads, `StreamingAudioDataset` at the
    end of the stream).

    Each process keeps its own log: with DataLoader worker processes, the skips are counted (and warned about, for
    streams) in the workers, not in the main process's copy.
    """

    context: str = "dataset"
    reasons: dict[str, str] = field(default_factory=dict)
    last_pass_count: int = 0
    skipped: set[str] = field(default_factory=set)

    @property
    def count(self) -> int:
        """Distinct clips skipped in the pass in progress."""
        return len(self.reasons)

    @property
    def names(self) -> list[str]:
        """Names of the clips skipped in the pass in progress, in the order they failed."""
        return list(self.reasons)

    @property
    def total(self) -> int:
        """Distinct clips skipped so far, in any pass."""
        return len(self.skipped)

    def record(self, error: UnreadableAudioError) -> None:
        self.reasons.setdefault(error.name, error.reason)
        self.skipped.add(error.name)

    def end_pass(self) -> int:
        """Close the pass: warn if clips were skipped, reset the pass counters, return the pass's count."""
        count = self.count
        if count:
            logger.warning(f"{self.context}: skipped {count} unreadable audio file(s): {list_names(self.names)}")
        self.last_pass_count = count
        self.reasons = {}
        return count
