"""The audio-classification pipeline, taught to hand any sampling rate to our feature extractor.

transformers' `AudioClassificationPipeline` resamples `{"raw", "sampling_rate"}` inputs with torchaudio (and fails
without it) and decodes file paths with the ffmpeg binary. For models whose feature extractor is ours, this subclass
decodes files with soundfile (ffmpeg stays the fallback for formats libsndfile cannot read) and lets the feature
extractor resample in torch. Every other model gets the parent's behaviour unchanged.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from transformers.pipelines.audio_classification import AudioClassificationPipeline

from .audio_utils import load_audio
from .feature_extraction_ast import ASTFeatureExtractor


class ASTAudioClassificationPipeline(AudioClassificationPipeline):
    """`pipeline("audio-classification")` once `modeling_ast` is imported; see the module docstring."""

    def preprocess(self, inputs: Any) -> dict[str, torch.Tensor]:
        if not isinstance(self.feature_extractor, ASTFeatureExtractor):
            return super().preprocess(inputs)
        target_rate = self.feature_extractor.sampling_rate
        if isinstance(inputs, str) and not inputs.startswith(("http://", "https://")):
            try:
                inputs = load_audio(inputs, sampling_rate=target_rate)
            except ValueError:
                return super().preprocess(inputs)  # a format only ffmpeg decodes, or no file: ffmpeg says which
        if isinstance(inputs, (str, bytes)):
            return super().preprocess(inputs)
        waveform, sampling_rate = _waveform_and_rate(inputs, target_rate)
        if waveform.ndim != 1:
            raise ValueError(
                f"audio-classification expects one mono clip (a 1-D array), got shape {tuple(waveform.shape)}; "
                "pick a channel or average them first"
            )
        processed = self.feature_extractor(waveform, sampling_rate=sampling_rate, return_tensors="pt")
        if self.dtype is not None:
            processed = processed.to(dtype=self.dtype)
        return processed


def _waveform_and_rate(inputs: Any, default_rate: int) -> tuple[np.ndarray | torch.Tensor, int]:
    """Split a pipeline input (array, tensor or {"raw"|"array", "sampling_rate"} dict) into samples and their rate."""
    if not isinstance(inputs, dict):
        return inputs, default_rate
    if "sampling_rate" not in inputs or not ("raw" in inputs or "array" in inputs):
        raise ValueError(
            'a dict input needs the samples under "raw" (or "array", as in datasets) and their "sampling_rate"; '
            f"got keys {sorted(inputs)}"
        )
    waveform = inputs["raw"] if "raw" in inputs else inputs["array"]
    return waveform, inputs["sampling_rate"]
