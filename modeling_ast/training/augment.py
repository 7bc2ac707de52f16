"""Training-time augmentations of the AST recipes: random crops, waveform mixup, SpecAugment, noise plus a time roll.

Every random draw goes through an explicit `torch.Generator`, so an augmentation is a pure function of its inputs and
the generator's state. The training datasets (`modeling_ast.training.datasets`) key each draw by (seed, epoch,
position) and derive independent generators for its waveform and spectrogram stages from that key
(`sampling.seeded_generator`); evaluation items carry no key and are never augmented.

Order of the original pipeline, which `datasets.AudioDataset` and `collator.AudioCollator` follow:
1. random crop (`random_crop`) and waveform mixup (`mix_waveforms`, `mix_targets`), in the dataset;
2. Kaldi log-mel filter banks, padded with zeros in log-mel space;
3. SpecAugment (`spec_augment_`) on the un-normalised filter banks, masked cells set to 0;
4. normalisation `(x - mean) / (2 * std)` (`ASTFeatureExtractor.normalize`);
5. noise and time roll (`noise_and_roll`), Speech Commands recipe only.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import torch

__all__ = [
    "MAX_ROLL",
    "AugmentConfig",
    "MaskSpans",
    "crop_start",
    "mix_targets",
    "mix_waveforms",
    "noise_and_roll",
    "noise_and_roll_shift",
    "random_crop",
    "random_int",
    "sample_mixup_lambda",
    "spec_augment_",
]

# The time roll of the Speech Commands recipe draws a shift from {-MAX_ROLL, ..., MAX_ROLL - 1} frames.
MAX_ROLL = 10
# Noise amplitude: U(0, 1) * r / _NOISE_DIVISOR with r ~ U(0, 1) per clip.
_NOISE_DIVISOR = 10.0


@dataclass(frozen=True)
class AugmentConfig:
    """Which augmentations a training run uses and how strongly.

    Args:
        mixup: Probability that a training clip is mixed with a partner clip (0 disables mixup).
        mixup_alpha: Both parameters of the Beta distribution of the mixing weight (10 in the original code).
        freqm: Largest SpecAugment frequency-mask width in mel bins (0 disables the mask).
        timem: Largest SpecAugment time-mask width in frames (0 disables the mask).
        noise: Add uniform noise and roll in time after normalisation (the Speech Commands recipe).
    """

    mixup: float = 0.0
    mixup_alpha: float = 10.0
    freqm: int = 0
    timem: int = 0
    noise: bool = False

    def __post_init__(self) -> None:
        if not 0.0 <= self.mixup <= 1.0:
            raise ValueError(f"mixup is a probability in [0, 1], got {self.mixup}")
        if self.mixup_alpha <= 0:
            raise ValueError(f"mixup_alpha must be positive, got {self.mixup_alpha}")
        for name in ("freqm", "timem"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"{name} must be a non-negative integer, got {value!r}")

    def describe(self) -> str:
        """The augmentations in words, for reports and model cards: e.g. "mixup of 50% of the clips (lambda ~
        Beta(10, 10)), SpecAugment masks of up to 48 mel bins and 192 frames", or "none"."""
        parts = []
        if self.mixup > 0:
            beta = f"Beta({self.mixup_alpha:g}, {self.mixup_alpha:g})"
            parts.append(f"mixup of {self.mixup:.0%} of the clips (lambda ~ {beta})")
        if self.freqm > 0 or self.timem > 0:
            parts.append(f"SpecAugment masks of up to {self.freqm} mel bins and {self.timem} frames")
        if self.noise:
            parts.append("noise and a random time roll")
        return ", ".join(parts) or "none"


def random_int(low: int, high: int, generator: torch.Generator) -> int:
    """An integer drawn uniformly from {low, ..., high} (both included)."""
    return int(torch.randint(low, high + 1, (), generator=generator))


def random_crop(waveform: torch.Tensor, max_samples: int, generator: torch.Generator) -> torch.Tensor:
    """A random window of `max_samples` samples of a longer (samples,) clip, start ~ U{0, ..., samples - max_samples};
    shorter clips come back whole.

    Clips are not padded in the waveform domain: the collator pads in log-mel space (value 0 before normalisation,
    as the original code and `ASTFeatureExtractor` do) and masks the padding.
    """
    excess = waveform.shape[0] - max_samples
    if excess <= 0:
        return waveform
    start = crop_start(waveform.shape[0], max_samples, generator)
    return waveform[start : start + max_samples]


def crop_start(num_samples: int, max_samples: int, generator: torch.Generator) -> int:
    """Where `random_crop` starts its window in a clip of `num_samples` samples (0, drawing nothing, if it fits), so
    that callers can move what is annotated in the clip with it."""
    excess = num_samples - max_samples
    return random_int(0, excess, generator) if excess > 0 else 0


def sample_mixup_lambda(alpha: float, generator: torch.Generator) -> float:
    """Mixing weight lambda ~ Beta(alpha, alpha).

    PyTorch's Beta sampler takes no generator, so a NumPy generator seeded from `generator` draws it.
    """
    seed = int(torch.randint(0, 2**63 - 1, (), generator=generator))
    return float(np.random.default_rng(seed).beta(alpha, alpha))


def mix_waveforms(first: torch.Tensor, second: torch.Tensor, lam: float) -> torch.Tensor:
    """Waveform mixup as the original code does it: `lam * first + (1 - lam) * second`, re-centred.

    Both clips are mean-subtracted first; `second` is then cut or zero-padded at its end to the length of `first`.
    first (N,), second (M,) float -> (N,) with zero mean.
    """
    first = first - first.mean()
    second = second - second.mean()
    if second.shape[0] >= first.shape[0]:
        second = second[: first.shape[0]]
    else:
        second = torch.nn.functional.pad(second, (0, first.shape[0] - second.shape[0]))
    mixed = lam * first + (1.0 - lam) * second
    return mixed - mixed.mean()


def mix_targets(first: torch.Tensor, second: torch.Tensor, lam: float) -> torch.Tensor:
    """Mixed label vector `lam * first + (1 - lam) * second`; first, second (C,) multi-hot floats -> (C,).

    A label both clips carry keeps weight 1; for single-label tasks the result is a soft target (two non-zero entries
    summing to 1).
    """
    if first.shape != second.shape:
        raise ValueError(f"label vectors differ in shape: {tuple(first.shape)} and {tuple(second.shape)}")
    return lam * first + (1.0 - lam) * second


class MaskSpans(NamedTuple):
    """Where `spec_augment_` masked: mel bins [freq_start, freq_start + freq_width), frames [time_start, ...)."""

    freq_start: int
    freq_width: int
    time_start: int
    time_width: int


def _mask_span(size: int, max_width: int, generator: torch.Generator) -> tuple[int, int]:
    """Start and width of one mask: width ~ U{0, ..., min(max_width, size)}, start ~ U{0, ..., size - width}."""
    width = random_int(0, min(max_width, size), generator)
    return random_int(0, size - width, generator), width


def spec_augment_(
    features: torch.Tensor, freqm: int, timem: int, generator: torch.Generator, value: float = 0.0
) -> MaskSpans:
    """SpecAugment in place: one frequency mask and one time mask set to `value` (0 in the original recipe).

    `features`: (frames, mel_bins) un-normalised log-mel filter banks of one clip. The frequency mask is up to `freqm`
    bins wide, the time mask up to `timem` frames; both widths are uniform integers from 0 and both masks lie anywhere
    on the grid (padding frames included, as in the original). Returns where the masks went.
    """
    if features.dim() != 2:
        raise ValueError(f"spec_augment_ expects one clip's (frames, mel_bins) features, got {tuple(features.shape)}")
    frames, bins = features.shape
    freq_start, freq_width = _mask_span(bins, freqm, generator)
    time_start, time_width = _mask_span(frames, timem, generator)
    features[:, freq_start : freq_start + freq_width] = value
    features[time_start : time_start + time_width] = value
    return MaskSpans(freq_start, freq_width, time_start, time_width)


def noise_and_roll(
    features: torch.Tensor, generator: torch.Generator, num_frames: int | None = None
) -> torch.Tensor:
    """The features of `noise_and_roll_shift` alone."""
    return noise_and_roll_shift(features, generator, num_frames)[0]


def noise_and_roll_shift(
    features: torch.Tensor, generator: torch.Generator, num_frames: int | None = None
) -> tuple[torch.Tensor, int]:
    """The Speech Commands augmentation on normalised features: add `U(0, 1) * r / 10` noise, r ~ U(0, 1) per clip,
    then roll in time by a shift drawn uniformly from {-10, ..., 9} frames.

    `features`: (frames, mel_bins) normalised features of one clip; returns a new tensor of the same shape. With
    `num_frames` (the clip's real frames when padding is masked) only those frames roll, among themselves, so the
    padding stays at the end where the attention mask expects it; without it the whole grid rolls, as in the original.
    Returns the new features and the shift in frames (frame k moved to (k + shift) mod the rolled length).
    """
    if features.dim() != 2:
        raise ValueError(f"noise_and_roll expects one clip's (frames, mel_bins) features, got {tuple(features.shape)}")
    strength = float(torch.rand((), generator=generator)) / _NOISE_DIVISOR
    noisy = features + torch.rand(features.shape, generator=generator) * strength
    shift = random_int(-MAX_ROLL, MAX_ROLL - 1, generator)
    length = features.shape[0] if num_frames is None else num_frames
    noisy[:length] = torch.roll(noisy[:length], shift, dims=0)
    return noisy, shift
