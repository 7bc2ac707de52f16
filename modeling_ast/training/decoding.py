"""Decoding training clips to mono float32 waveforms, and what happens to the files that cannot be decoded."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import torch
from transformers.utils import logging

from ..audio_io import load_audio
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
    """The example's audio as a mono float32 (samples,) tensor at `sampling_rate` Hz, read by `audio_io.load_audio`
    (the loader every door shares: soundfile, ffmpeg as the fallback, the mean of the channels, our resampler).

    Arrays are taken at the example's `sampling_rate`. Raises `UnreadableAudioError` naming the clip for a missing,
    corrupt or empty file, an unusable audio value, NaN or infinite samples, or a clip shorter than one 25 ms frame
    (it has no filter banks).
    """
    name = _example_name(example)
    audio = example.get("audio")
    try:
        if audio is None:
            raise ValueError("the example holds no audio (no bytes, path or array)")
        waveform = load_audio(_with_rate(audio, example.get("sampling_rate")), sampling_rate)
    except (ValueError, RuntimeError, OSError, TypeError) as error:
        raise UnreadableAudioError(name, str(error)) from error
    check_waveform(waveform, name, sampling_rate)
    return waveform


def _with_rate(audio: Any, rate: int | None) -> Any:
    """Samples as the loader's `{"array", "sampling_rate"}` dict (their rate is the example's); other audio as is."""
    if isinstance(audio, Mapping) and audio.get("array") is not None and "sampling_rate" not in audio:
        audio = audio["array"]
    if isinstance(audio, (np.ndarray, torch.Tensor, list)):
        if rate is None:
            raise ValueError("audio given as an array needs its sampling_rate")
        return {"array": audio, "sampling_rate": rate}
    return audio


def check_waveform(waveform: torch.Tensor, name: str, sampling_rate: int = SAMPLING_RATE) -> None:
    """`UnreadableAudioError` naming the clip when a decoded (samples,) waveform at `sampling_rate` Hz holds fewer
    samples than one 25 ms frame: it has no filter banks. (Any finite amplitude is fine: the feature extractor
    computes loud clips in float64, so one amplitude policy holds for training and inference.)"""
    frame = FrameSpec.for_rate(sampling_rate).size
    if waveform.numel() < frame:
        raise UnreadableAudioError(
            name, f"{waveform.numel()} samples at {sampling_rate} Hz, fewer than one 25 ms frame ({frame} samples)"
        )


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
