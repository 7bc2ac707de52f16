"""The batch collator: dataset items -> model batches, with the spectrogram augmentations of training items."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import torch

from ..audio_utils import to_float_waveform
from ..feature_extraction_ast import ASTFeatureExtractor
from .augment import AugmentConfig, noise_and_roll_shift, spec_augment_
from .datasets import Item
from .sampling import SPECTROGRAM_STAGE, seeded_generator

__all__ = ["AudioCollator"]


class AudioCollator:
    """Turns dataset `Item`s into a model batch: `input_values` (B, T, F), optional `attention_mask` (B, T) and
    `labels` ((B,) int64 class indices or (B, num_labels) float32 targets, as the items hold them).

    Features are the feature extractor's raw Kaldi filter banks (`do_normalize=False`), padded with `padding_value`
    in log-mel space (to `max_length` frames, or to the longest clip with `padding="longest"`) and truncated to
    `max_length`, left-aligned. Items with a `seed` (those of a training dataset) then get SpecAugment on the
    un-normalised filter banks, the extractor's `normalize`, then noise and a time roll, per `augment`; items without
    one are only normalised, which gives exactly what the feature extractor returns. None items (skipped unreadable
    clips) are dropped.

    Args:
        feature_extractor: Supplies the sampling rate, `max_length`, `padding_value` and the normalisation
            (`do_normalize`, `normalize`); items must be at its sampling rate.
        augment: Spectrogram augmentations of training items (SpecAugment widths `freqm`/`timem`, `noise`); mixup
            belongs to the dataset.
        padding: "max_length" (the original's fixed grid) or "longest".
        return_attention_mask: Return the frame mask; defaults to the extractor's `return_attention_mask`. With a mask
            the time roll keeps each clip's real frames in front of its padding.
        min_frames: Batches get at least this many frames (16 = one AST patch, the least the model accepts),
            with `padding_value` frames outside the mask, which matters only with `padding="longest"`. A clip shorter
            than that is padded exactly as the feature extractor (and so `pipeline`) pads it at inference.
    """

    def __init__(
        self,
        feature_extractor: ASTFeatureExtractor,
        augment: AugmentConfig | None = None,
        padding: Literal["max_length", "longest"] = "max_length",
        return_attention_mask: bool | None = None,
        min_frames: int = 16,
    ) -> None:
        if padding not in ("max_length", "longest"):
            raise ValueError(f"padding must be 'max_length' or 'longest', got {padding!r}")
        self.feature_extractor = feature_extractor
        self.augment = augment or AugmentConfig()
        self.padding = padding
        self.return_attention_mask = (
            feature_extractor.return_attention_mask if return_attention_mask is None else return_attention_mask
        )
        self.min_frames = min_frames

    def __call__(self, items: Sequence[Item | None]) -> dict[str, torch.Tensor]:
        kept = [item for item in items if item is not None]
        if not kept:
            raise ValueError(
                f"all {len(items)} clips of this batch were unreadable and skipped; see the dataset's bad_files"
            )
        features, mask = self.log_mel([item["audio"] for item in kept])
        features, _ = self.augment_and_normalize(features, mask, [item.get("seed") for item in kept])
        batch = {"input_values": features}
        if self.return_attention_mask:
            batch["attention_mask"] = mask.to(torch.int64)
        batch["labels"] = _stack_labels([item["labels"] for item in kept])
        return batch

    def log_mel(self, waveforms: Sequence[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """Un-normalised filter banks (B, T, F), padded with `padding_value`, and the real-frame mask (B, T) bool."""
        extractor = self.feature_extractor
        batch = extractor(
            [to_float_waveform(waveform) for waveform in waveforms],
            sampling_rate=extractor.sampling_rate,
            padding=self.padding,
            truncation=True,
            return_attention_mask=True,
            return_tensors="pt",
            do_normalize=False,  # SpecAugment must see the raw filter banks
            min_frames=self.min_frames,
        )
        return batch["input_values"], batch["attention_mask"].bool()

    def augment_and_normalize(
        self, features: torch.Tensor, mask: torch.Tensor, seeds: Sequence[int | None]
    ) -> tuple[torch.Tensor, list[int]]:
        """SpecAugment, normalisation, noise and roll of a (B, T, F) batch; clips whose seed is None are only
        normalised. Modifies and returns `features` (noise and roll replace the rows of the clips they touch), and
        each clip's time roll in frames (0 when not rolled; `augment.noise_and_roll_shift`)."""
        spec_augment = self.augment.freqm > 0 or self.augment.timem > 0
        generators = [None if seed is None else seeded_generator(seed, SPECTROGRAM_STAGE) for seed in seeds]
        for row, generator in zip(features, generators):
            if generator is not None and spec_augment:
                spec_augment_(row, self.augment.freqm, self.augment.timem, generator)
        if self.feature_extractor.do_normalize:
            self.feature_extractor.normalize(features, inplace=True)
        shifts = [0] * len(seeds)
        if self.augment.noise:
            lengths = mask.sum(dim=1).tolist() if self.return_attention_mask else [None] * len(seeds)
            for index, (generator, length) in enumerate(zip(generators, lengths)):
                if generator is not None:
                    features[index], shifts[index] = noise_and_roll_shift(features[index], generator, length)
        return features, shifts


def _stack_labels(labels: Sequence[torch.Tensor]) -> torch.Tensor:
    """Stack per-item targets: () int64 -> (B,) int64; (C,) float -> (B, C) float32."""
    shapes = {(tuple(label.shape), label.dtype) for label in labels}
    if len(shapes) > 1:
        raise ValueError(f"the items of a batch hold labels of different shapes/dtypes: {sorted(map(str, shapes))}")
    return torch.stack(list(labels))
