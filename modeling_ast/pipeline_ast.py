"""The audio-classification pipeline, extended for our models: any sampling rate, files without ffmpeg, long audio.

transformers' `AudioClassificationPipeline` resamples `{"raw", "sampling_rate"}` inputs with torchaudio (and fails
without it), decodes file paths with the ffmpeg binary, and truncates everything to the model's fixed length. For
models whose feature extractor is ours, this subclass

- reads every input (path, URL, bytes, file object, dict, array) with `audio_io.load_audio`, the loader all doors
  share: soundfile, ffmpeg as the fallback, the mean of the channels, our resampler;
- with `chunk_length_s`, tags recordings of any length: overlapping windows (`stride_length_s` seconds of overlap,
  see `long_audio.plan_windows`) are read lazily, featurised as plain calls are (a checkpoint without masks gets its
  `max_length` padding) and classified `window_batch_size` at a time, and the
  per-window scores are aggregated over the recording (`aggregation="max"` or `"mean"`); `return_timestamps=True`
  adds each window's `{start, end, labels}` (seconds; labels above `threshold`, else the top_k);
- for checkpoints whose extractor returns attention masks (`return_attention_mask: true`, i.e. trained with them),
  pads nothing for one clip and, with `batch_size`, pads a batch only to its longest clip; checkpoints without masks
  keep `max_length` padding, which is what they saw in training. `preprocess` returns raw log-mel features and
  `_forward` normalises them: transformers' batch collator pads `input_values` with the extractor's `padding_value`,
  a raw log-mel value, so padding a raw batch and normalising it after gives exactly the extractor's own padding;
- takes the long-audio options at construction, at call time or split between the two (like transformers'
  speech-recognition pipeline); each call validates the merged options;
- given a list, tuple or dataset (`pipeline_batches`): decodes and featurises in `num_workers` DataLoader workers,
  batches clips of similar length, returns results in input order, and names an unreadable input in its error (or,
  with `on_error="return"`, puts `{"error", "input"}` in its place). Generators keep the parent's iterator.

Every other model gets the parent's behaviour unchanged.
"""

from __future__ import annotations

from collections.abc import Iterator, Sized
from typing import Any

import numpy as np
import torch
from transformers import BatchFeature
from transformers.pipelines.audio_classification import AudioClassificationPipeline
from transformers.pipelines.base import pad_collate_fn

from .audio_io import load_audio
from .fbank import num_samples_for_frames
from .feature_extraction_ast import ASTFeatureExtractor
from .long_audio import check_window_lengths, is_number, iter_window_batches, plan_windows, window_source
from .modeling_ast import class_scores
from .pipeline_batches import ON_ERROR, classify_many

__all__ = ["ASTAudioClassificationPipeline", "checkpoint_features", "top_labels", "window_labels"]

_AGGREGATIONS = ("max", "mean")
_LONG_AUDIO_OPTIONS = (
    "chunk_length_s", "stride_length_s", "aggregation", "return_timestamps", "threshold", "window_batch_size"
)


class ASTAudioClassificationPipeline(AudioClassificationPipeline):
    """`pipeline("audio-classification")` once `modeling_ast` is imported; see the module docstring."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        # remembered so that a call's options are validated merged with these (the parent merges only the results)
        self._construction_options = {
            name: kwargs[name] for name in _LONG_AUDIO_OPTIONS if kwargs.get(name) is not None
        }
        super().__init__(*args, **kwargs)

    def _sanitize_parameters(
        self,
        top_k: int | None = None,
        function_to_apply: str | None = None,
        on_error: str | None = None,
        **kwargs: Any,
    ) -> tuple[dict, dict, dict]:
        """`top_k`, `function_to_apply`, `on_error` and the long-audio options (`_long_audio_parameters`) -> the
        preprocess, forward and postprocess parameters; long-audio options are validated merged with construction's."""
        given = {name: kwargs.pop(name) for name in _LONG_AUDIO_OPTIONS if kwargs.get(name) is not None}
        if on_error is not None and on_error not in ON_ERROR:
            raise ValueError(f"on_error must be one of {ON_ERROR}, got {on_error!r}")
        if top_k is not None and (not _is_int(top_k) or top_k < 1):
            raise ValueError(f"top_k must be a positive integer (the number of labels to return), got {top_k!r}")
        preprocess, forward, postprocess = super()._sanitize_parameters(
            top_k=top_k, function_to_apply=function_to_apply, **kwargs
        )
        if function_to_apply is None and isinstance(self.feature_extractor, ASTFeatureExtractor):
            postprocess.pop("function_to_apply", None)  # 5.0 fills in "softmax"; ours follows problem_type
        options = {**self._construction_options, **given}
        if options:
            long_preprocess, long_forward, long_postprocess = self._long_audio_parameters(**options)
            preprocess.update(long_preprocess)
            forward.update(long_forward)
            postprocess.update(long_postprocess)
        if on_error is not None:
            preprocess["on_error"] = on_error
        return preprocess, forward, postprocess

    def get_iterator(
        self,
        inputs: Any,
        num_workers: int,
        batch_size: int,
        preprocess_params: dict,
        forward_params: dict,
        postprocess_params: dict,
    ) -> Iterator[Any]:
        """Many inputs (a list, tuple or dataset) at real length go through `pipeline_batches.classify_many`:
        preprocessing in `num_workers` DataLoader workers, batches of similar length, results in input order, and
        `on_error="return"` for an error entry in place of an unreadable input. Other cases: the parent's iterator."""
        on_error = preprocess_params.pop("on_error", "raise")
        many = isinstance(inputs, Sized) and isinstance(self.feature_extractor, ASTFeatureExtractor)
        if not many or preprocess_params.get("chunk_length_s") is not None:
            return super().get_iterator(
                inputs, num_workers, batch_size, preprocess_params, forward_params, postprocess_params
            )

        def classify_batch(batch: dict[str, torch.Tensor]) -> list[Any]:
            logits = self.forward(batch, **forward_params)["logits"]
            return [self.postprocess({"logits": row[None]}, **postprocess_params) for row in logits]

        return classify_many(
            inputs, self.preprocess, preprocess_params, classify_batch,
            pad_collate_fn(self.tokenizer, self.feature_extractor),
            batch_size=batch_size, num_workers=num_workers, on_error=on_error,
        )

    def _long_audio_parameters(
        self,
        chunk_length_s: float | None = None,
        stride_length_s: float | None = None,
        aggregation: str | None = None,
        return_timestamps: bool | None = None,
        threshold: float | None = None,
        window_batch_size: int | None = None,
    ) -> tuple[dict, dict, dict]:
        """Validated long-audio options (construction and call merged) -> preprocess, forward, postprocess params."""
        if chunk_length_s is None:
            raise ValueError(
                "stride_length_s, aggregation, return_timestamps, threshold and window_batch_size apply to long-audio "
                "mode: pass chunk_length_s (window length in seconds) as well"
            )
        if not isinstance(self.feature_extractor, ASTFeatureExtractor):
            raise ValueError("chunk_length_s needs a modeling_ast checkpoint (an ASTFeatureExtractor)")
        check_window_lengths(chunk_length_s, stride_length_s or 0.0)
        if aggregation is not None and aggregation not in _AGGREGATIONS:
            raise ValueError(f"aggregation must be one of {_AGGREGATIONS}, got {aggregation!r}")
        if threshold is not None and not (is_number(threshold) and 0 <= threshold <= 1):
            raise ValueError(f"threshold is a score in [0, 1], got {threshold!r}")
        if window_batch_size is not None and (not _is_int(window_batch_size) or window_batch_size < 1):
            raise ValueError(f"window_batch_size must be a positive integer, got {window_batch_size!r}")
        return (
            {"chunk_length_s": chunk_length_s, "stride_length_s": stride_length_s or 0.0},
            {"window_batch_size": window_batch_size or 8},
            {"aggregation": aggregation or "max", "return_timestamps": bool(return_timestamps), "threshold": threshold},
        )

    def preprocess(
        self,
        inputs: Any,
        chunk_length_s: float | None = None,
        stride_length_s: float = 0.0,
        on_error: str = "raise",
    ) -> dict[str, Any]:
        """One clip -> raw (un-normalised) features: `input_values` (1, frames, F) float32 and, for checkpoints with
        masks, `attention_mask` (1, frames) with frames = the clip's own (real length, at least one patch); else
        `max_length` frames. Any source goes through `audio_io.load_audio`, the loader every door shares.
        `on_error` applies to many inputs (`get_iterator`); a single input's error is raised."""
        if not isinstance(self.feature_extractor, ASTFeatureExtractor):
            return super().preprocess(inputs)
        target_rate = self.feature_extractor.sampling_rate
        if chunk_length_s is not None:
            source = window_source(inputs, target_rate)
            min_samples = num_samples_for_frames(self.model.config.patch_size, target_rate)
            plan = plan_windows(source.num_samples, target_rate, chunk_length_s, stride_length_s, min_samples)
            return {"window_source": source, "window_plan": plan}
        waveform = load_audio(inputs, target_rate)
        return checkpoint_features(self.feature_extractor, [waveform], self.model.config.patch_size, truncation=True,
                                   do_normalize=False)  # fmt: skip

    def _forward(self, model_inputs: dict[str, Any], window_batch_size: int = 8) -> Any:
        if "window_plan" not in model_inputs:
            return self.model(**self._normalized(model_inputs))
        plan = model_inputs["window_plan"]
        logits = []
        for windows in iter_window_batches(model_inputs["window_source"], plan, window_batch_size):
            features = checkpoint_features(
                self.feature_extractor, windows, self.model.config.patch_size, truncation=False
            ).to(self.device)
            if self.dtype is not None:
                features = features.to(dtype=self.dtype)
            logits.append(self.model(**features).logits.float().cpu())
        return {"window_logits": torch.cat(logits), "window_plan": plan}

    def _normalized(self, model_inputs: dict[str, Any]) -> dict[str, Any]:
        """Raw features from `preprocess` (padded by the batch collator with the raw `padding_value`) -> the
        normalised model inputs, in the pipeline's dtype."""
        if not isinstance(self.feature_extractor, ASTFeatureExtractor):
            return model_inputs
        features = model_inputs["input_values"]
        if self.feature_extractor.do_normalize:
            features = self.feature_extractor.normalize(features)
        return {**model_inputs, "input_values": features.to(dtype=self.dtype or features.dtype)}

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
        id2label = self.model.config.id2label
        for index, window_scores in enumerate(scores):
            start, end = plan.seconds(index)
            labels_of_window = window_labels(window_scores, id2label, top_k, threshold)
            windows.append({"start": start, "end": end, "labels": labels_of_window})
        return {"labels": labels, "windows": windows}

    def _activation(self, logits: torch.Tensor, function_to_apply: str | None) -> torch.Tensor:
        return class_scores(logits, self.model.config.problem_type, function_to_apply)

    def _top_labels(self, scores: torch.Tensor, k: int) -> list[dict[str, Any]]:
        return top_labels(scores, self.model.config.id2label, k)


def top_labels(scores: torch.Tensor, id2label: dict[int, str], k: int) -> list[dict[str, Any]]:
    """The `k` best `{"score", "label"}` of a (labels,) score vector, best first."""
    values, indices = scores.topk(k)
    return [{"score": value, "label": id2label[index]} for value, index in zip(values.tolist(), indices.tolist())]


def window_labels(
    scores: torch.Tensor, id2label: dict[int, str], top_k: int, threshold: float | None
) -> list[dict[str, Any]]:
    """A window's labels: those scoring at least `threshold`, best first, or the `top_k` best without one."""
    if threshold is None:
        return top_labels(scores, id2label, min(top_k, scores.shape[-1]))
    return [item for item in top_labels(scores, id2label, scores.shape[-1]) if item["score"] >= threshold]


def checkpoint_features(
    feature_extractor: ASTFeatureExtractor,
    waveforms: list[torch.Tensor],
    patch_size: int,
    truncation: bool,
    do_normalize: bool = True,
) -> BatchFeature:
    """Features of waveforms at the extractor's rate, padded as the checkpoint was trained: to the longest clip (at
    least one patch) with a mask when its extractor returns masks, else to `max_length` frames. Plain calls are cut
    to `max_length` (`truncation`); long-audio windows are not (nothing is cut from a window the caller asked for).
    The one featurisation of both pipelines (audio classification, sound event detection)."""
    real_length = bool(feature_extractor.return_attention_mask)
    return feature_extractor(
        waveforms,
        sampling_rate=feature_extractor.sampling_rate,
        padding="longest" if real_length else "max_length",
        truncation=truncation,
        min_frames=patch_size,
        return_attention_mask=real_length,
        do_normalize=do_normalize,
        return_tensors="pt",
    )


def _is_int(value: object) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)
