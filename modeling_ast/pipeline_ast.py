"""The audio-classification pipeline, extended for our models: any sampling rate, files without ffmpeg, long audio.

transformers' `AudioClassificationPipeline` resamples `{"raw", "sampling_rate"}` inputs with torchaudio (and fails
without it), decodes file paths with the ffmpeg binary, and truncates everything to the model's fixed length. For
models whose feature extractor is ours, this subclass

- decodes files with soundfile (ffmpeg stays the fallback for formats libsndfile cannot read) and lets the feature
  extractor resample in torch;
- with `chunk_length_s`, tags recordings of any length: overlapping windows (`stride_length_s` seconds of overlap,
  see `long_audio.plan_windows`) are read lazily, featurised and classified `window_batch_size` at a time, and the
  per-window scores are aggregated over the recording (`aggregation="max"` or `"mean"`); `return_timestamps=True`
  adds each window's `{start, end, labels}` (seconds; labels above `threshold`, else the top_k).

Every other model gets the parent's behaviour unchanged.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from transformers.pipelines.audio_classification import AudioClassificationPipeline

from .audio_utils import decode_audio_file
from .fbank import FrameSpec
from .feature_extraction_ast import ASTFeatureExtractor
from .long_audio import FileWindows, WaveformWindows, iter_window_batches, plan_windows
from .modeling_ast import class_scores

_AGGREGATIONS = ("max", "mean")


class ASTAudioClassificationPipeline(AudioClassificationPipeline):
    """`pipeline("audio-classification")` once `modeling_ast` is imported; see the module docstring."""

    def _sanitize_parameters(
        self,
        top_k: int | None = None,
        function_to_apply: str | None = None,
        chunk_length_s: float | None = None,
        stride_length_s: float | None = None,
        aggregation: str | None = None,
        return_timestamps: bool | None = None,
        threshold: float | None = None,
        window_batch_size: int | None = None,
        **kwargs: Any,
    ) -> tuple[dict, dict, dict]:
        preprocess, forward, postprocess = super()._sanitize_parameters(
            top_k=top_k, function_to_apply=function_to_apply, **kwargs
        )
        if function_to_apply is None and isinstance(self.feature_extractor, ASTFeatureExtractor):
            postprocess.pop("function_to_apply", None)  # 5.0 fills in "softmax"; ours follows problem_type
        long_mode = {chunk_length_s, stride_length_s, aggregation, return_timestamps, threshold, window_batch_size}
        if chunk_length_s is None and long_mode != {None}:
            raise ValueError(
                "stride_length_s, aggregation, return_timestamps, threshold and window_batch_size apply to long-audio "
                "mode: pass chunk_length_s (window length in seconds) as well"
            )
        if chunk_length_s is not None:
            if not isinstance(self.feature_extractor, ASTFeatureExtractor):
                raise ValueError("chunk_length_s needs a modeling_ast checkpoint (an ASTFeatureExtractor)")
            if aggregation is not None and aggregation not in _AGGREGATIONS:
                raise ValueError(f"aggregation must be one of {_AGGREGATIONS}, got {aggregation!r}")
            if threshold is not None and not 0 <= threshold <= 1:
                raise ValueError(f"threshold is a score in [0, 1], got {threshold}")
            if window_batch_size is not None and (not isinstance(window_batch_size, int) or window_batch_size < 1):
                raise ValueError(f"window_batch_size must be a positive integer, got {window_batch_size!r}")
            preprocess.update(chunk_length_s=chunk_length_s, stride_length_s=stride_length_s or 0.0)
            forward["window_batch_size"] = window_batch_size or 8
            postprocess.update(
                aggregation=aggregation or "max", return_timestamps=bool(return_timestamps), threshold=threshold
            )
        return preprocess, forward, postprocess

    def preprocess(
        self, inputs: Any, chunk_length_s: float | None = None, stride_length_s: float = 0.0
    ) -> dict[str, Any]:
        if not isinstance(self.feature_extractor, ASTFeatureExtractor):
            return super().preprocess(inputs)
        if chunk_length_s is not None:
            return self._plan_long_audio(inputs, chunk_length_s, stride_length_s)
        target_rate = self.feature_extractor.sampling_rate
        if isinstance(inputs, str) and not inputs.startswith(("http://", "https://")):
            inputs = decode_audio_file(inputs, sampling_rate=target_rate)  # errors name the file and the reason
        if isinstance(inputs, (str, bytes)):
            return super().preprocess(inputs)
        waveform, sampling_rate = _waveform_and_rate(inputs, target_rate)
        _check_mono(waveform)
        processed = self.feature_extractor(waveform, sampling_rate=sampling_rate, return_tensors="pt")
        if self.dtype is not None:
            processed = processed.to(dtype=self.dtype)
        return processed

    def _plan_long_audio(self, inputs: Any, chunk_length_s: float, stride_length_s: float) -> dict[str, Any]:
        """A lazy window source and its window plan; nothing is featurised yet."""
        target_rate = self.feature_extractor.sampling_rate
        if isinstance(inputs, str):
            source = FileWindows(inputs, target_rate)
        else:
            waveform, sampling_rate = _waveform_and_rate(inputs, target_rate)
            source = WaveformWindows(waveform, sampling_rate, target_rate)
        spec = FrameSpec.for_rate(target_rate)
        min_samples = spec.size + (self.model.config.patch_size - 1) * spec.shift  # one patch of frames
        plan = plan_windows(source.num_samples, target_rate, chunk_length_s, stride_length_s, min_samples)
        return {"window_source": source, "window_plan": plan}

    def _forward(self, model_inputs: dict[str, Any], window_batch_size: int = 8) -> Any:
        if "window_plan" not in model_inputs:
            return super()._forward(model_inputs)
        plan = model_inputs["window_plan"]
        logits = []
        for windows in iter_window_batches(model_inputs["window_source"], plan, window_batch_size):
            features = self.feature_extractor(
                windows, sampling_rate=plan.sampling_rate, padding="longest", truncation=False, return_tensors="pt"
            )
            features = features.to(self.device)
            if self.dtype is not None:
                features = features.to(dtype=self.dtype)
            logits.append(self.model(**features).logits.float().cpu())
        return {"window_logits": torch.cat(logits), "window_plan": plan}

    def postprocess(
        self,
        model_outputs: Any,
        top_k: int = 5,
        function_to_apply: str | None = None,
        aggregation: str = "max",
        return_timestamps: bool = False,
        threshold: float | None = None,
    ) -> list[dict[str, Any]] | dict[str, Any]:
        if not isinstance(self.feature_extractor, ASTFeatureExtractor):
            return super().postprocess(model_outputs, top_k=top_k, function_to_apply=function_to_apply)
        if not (isinstance(model_outputs, dict) and "window_logits" in model_outputs):
            # transformers 5.0's parent always applies softmax; choose from problem_type on every version
            scores = self._activation(model_outputs["logits"][0], function_to_apply)
            return self._top_labels(scores, min(top_k, scores.shape[-1]))
        scores = self._activation(model_outputs["window_logits"], function_to_apply)  # (windows, labels)
        clip_scores = scores.amax(dim=0) if aggregation == "max" else scores.mean(dim=0)
        top_k = min(top_k, clip_scores.shape[-1])
        labels = self._top_labels(clip_scores, top_k)
        if not return_timestamps:
            return labels
        plan = model_outputs["window_plan"]
        windows = []
        for index, window_scores in enumerate(scores):
            start, end = plan.seconds(index)
            if threshold is None:
                window_labels = self._top_labels(window_scores, top_k)
            else:
                window_labels = [item for item in self._top_labels(window_scores, len(window_scores))
                                 if item["score"] >= threshold]
            windows.append({"start": start, "end": end, "labels": window_labels})
        return {"labels": labels, "windows": windows}

    def _activation(self, logits: torch.Tensor, function_to_apply: str | None) -> torch.Tensor:
        return class_scores(logits, self.model.config.problem_type, function_to_apply)

    def _top_labels(self, scores: torch.Tensor, k: int) -> list[dict[str, Any]]:
        values, indices = scores.topk(k)
        id2label = self.model.config.id2label
        return [{"score": value, "label": id2label[index]} for value, index in zip(values.tolist(), indices.tolist())]


def _check_mono(waveform: np.ndarray | torch.Tensor) -> None:
    if np.ndim(waveform) != 1:
        raise ValueError(
            f"audio-classification expects one mono clip (a 1-D array), got shape {tuple(np.shape(waveform))}; "
            "pick a channel or average them first"
        )


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
