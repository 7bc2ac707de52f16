"""The draws of training clips: which clip each position of an epoch gets, and the seed of every random choice.

One model of randomness: everything random about a training clip is keyed by (seed, epoch, position in the epoch's
draw). `EpochDrawSampler` yields `DrawKey(epoch, position, index)`s, from (seed, epoch) alone: a permutation of the
clips, or with weights the AST balanced draw (with replacement). The training dataset derives the clip's crop, mixup
and SpecAugment from the key (`derive_seed`), so nothing depends on what a process drew before: a run resumed in the
middle of an epoch draws exactly what the uninterrupted run drew, in any number of DataLoader workers.

`balanced_sample_weights` gives every clip the weight of the original AST recipe (full AudioSet): each label gets
1000 / (count + 0.01), where count is the number of training clips carrying it, and a clip weighs the sum of the
weights of its labels, so clips of rare labels are drawn as often as clips of common ones.

Several processes: `transformers.Trainer` hands the sampler to accelerate, which splits the batches of one global
sampler between the processes (process p gets batches p, p + world_size, ...; `accelerate.data_loader.
BatchSamplerShard`) and forwards `set_epoch`. Every process therefore yields the same global draw here; a per-process
sampler would be split twice and train every process on a 1/world_size**2 slice.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any, NamedTuple

import numpy as np
import torch
from torch.utils.data import Sampler

__all__ = [
    "SPECTROGRAM_STAGE",
    "WAVEFORM_STAGE",
    "DrawKey",
    "EpochDrawSampler",
    "balanced_sample_weights",
    "derive_seed",
    "seeded_generator",
]

# Original AST recipe: label weight = _LABEL_WEIGHT_SCALE / (count + _COUNT_SMOOTHING).
_LABEL_WEIGHT_SCALE = 1000.0
_COUNT_SMOOTHING = 0.01
# Stages of one training draw, each with its own generator `seeded_generator(draw_seed, stage)`: the waveform (crop,
# mixup) in the dataset, the spectrogram (SpecAugment, noise and roll) in the collator.
WAVEFORM_STAGE = 0
SPECTROGRAM_STAGE = 1


def _as_cpu_tensor(values: np.ndarray | torch.Tensor | Sequence[Any]) -> torch.Tensor:
    """`values` as a detached CPU tensor (NumPy arrays and nested sequences are converted)."""
    if isinstance(values, torch.Tensor):
        return values.detach().cpu()
    return torch.as_tensor(np.asarray(values))


def _label_matrix(labels: np.ndarray | torch.Tensor | Sequence[Any]) -> torch.Tensor:
    """(N, C) float64 label matrix from a multi-hot/soft (N, C) matrix or (N,) non-negative class ids."""
    tensor = _as_cpu_tensor(labels)
    if tensor.ndim == 1:
        if tensor.dtype.is_floating_point or tensor.dtype == torch.bool or tensor.dtype.is_complex:
            raise ValueError(f"1-D labels must be integer class ids, got dtype {tensor.dtype}")
        if tensor.numel() == 0:
            raise ValueError("labels are empty: there are no training clips to weight")
        if int(tensor.min()) < 0:
            raise ValueError(f"class ids must be non-negative, got {int(tensor.min())}")
        return torch.nn.functional.one_hot(tensor.long()).double()
    if tensor.ndim != 2 or tensor.shape[0] == 0:
        raise ValueError(
            f"labels must be (num_clips,) class ids or a (num_clips, num_classes) matrix, got {tuple(tensor.shape)}"
        )
    matrix = tensor.double()
    if not torch.all(torch.isfinite(matrix)) or torch.any(matrix < 0):
        raise ValueError("label matrix entries must be finite and non-negative")
    return matrix


def balanced_sample_weights(labels: np.ndarray | torch.Tensor | Sequence[Any]) -> torch.Tensor:
    """Per-clip sampling weights of the original AST balanced sampler.

    Args:
        labels: (N, C) multi-hot (or soft, non-negative) label matrix, or (N,) integer class ids.

    Returns:
        (N,) float64 weights: w_i = sum_c labels[i, c] * 1000 / (count_c + 0.01), with count_c = sum_i labels[i, c]
        (the number of clips of class c for 0/1 labels). For 0/1 labels this is exactly the original's weight file;
        soft labels count fractionally. A clip without labels weighs 0 and is never drawn.
    """
    matrix = _label_matrix(labels)
    label_weights = _LABEL_WEIGHT_SCALE / (matrix.sum(dim=0) + _COUNT_SMOOTHING)
    return matrix @ label_weights


def derive_seed(*numbers: int) -> int:
    """A 63-bit seed from a tuple of non-negative integers: unrelated streams for different tuples.

    The one way seeds are mixed in training: the epoch's draw is `derive_seed(seed, epoch)`, a clip's augmentations
    `derive_seed(seed, epoch, position)` and each stage of them `derive_seed(that, stage)`. NumPy's `SeedSequence`
    hashes the tuple, so nearby numbers do not give correlated streams.
    """
    state = np.random.SeedSequence([int(number) for number in numbers]).generate_state(1, dtype=np.uint64)[0]
    return int(state >> np.uint64(1))


def seeded_generator(*numbers: int) -> torch.Generator:
    """A CPU generator seeded with `derive_seed(*numbers)`."""
    return torch.Generator().manual_seed(derive_seed(*numbers))


class DrawKey(NamedTuple):
    """One draw of a training clip: the epoch, the position in that epoch's draw, and the clip's index."""

    epoch: int
    position: int
    index: int


def _check_weights(weights: np.ndarray | torch.Tensor | Sequence[float], num_clips: int) -> torch.Tensor:
    """(num_clips,) float64 weights, checked: finite, non-negative, with a positive sum."""
    tensor = _as_cpu_tensor(weights).double()
    if tensor.ndim != 1:
        raise ValueError(f"weights must be 1-D, one per training clip, got shape {tuple(tensor.shape)}")
    if tensor.numel() != num_clips:
        raise ValueError(f"weights have {tensor.numel()} entries but the training dataset has {num_clips} clips")
    if not torch.all(torch.isfinite(tensor)) or torch.any(tensor < 0):
        raise ValueError("weights must be finite and non-negative")
    if float(tensor.sum()) <= 0:
        raise ValueError("weights sum to zero: no clip can be drawn")
    return tensor


class EpochDrawSampler(Sampler[DrawKey]):
    """The training draws of one epoch as `DrawKey`s, from (seed, epoch) alone.

    Without `weights` an epoch is a random permutation of the `num_clips` clips. With `weights` ((num_clips,)
    non-negative, e.g. `balanced_sample_weights(labels)`) it is `num_clips` independent draws with replacement, clip i
    with probability weights[i] / sum(weights), as the original recipe's `WeightedRandomSampler(weights, len(weights))`;
    clips of weight 0 are never drawn. Call `set_epoch(epoch)` before each epoch (Trainer does, through accelerate);
    the same (seed, epoch) always gives the same draw.
    """

    def __init__(
        self, num_clips: int, seed: int, weights: np.ndarray | torch.Tensor | Sequence[float] | None = None
    ) -> None:
        if num_clips < 1:
            raise ValueError(f"num_clips must be at least 1, got {num_clips}")
        if seed < 0:
            raise ValueError(f"seed must be non-negative, got {seed}")
        self.num_clips = num_clips
        self.seed = seed
        self.epoch = 0
        self._cumulative: torch.Tensor | None = None
        if weights is not None:
            weight_tensor = _check_weights(weights, num_clips)
            self._cumulative = torch.cumsum(weight_tensor, dim=0)
            self._last_drawable = int(torch.nonzero(weight_tensor > 0)[-1])

    def set_epoch(self, epoch: int) -> None:
        """Select the draw of `epoch`."""
        self.epoch = int(epoch)

    def indices(self) -> torch.Tensor:
        """(num_clips,) int64: the clip indices of the current epoch's draw, in order."""
        generator = seeded_generator(self.seed, self.epoch)
        if self._cumulative is None:
            return torch.randperm(self.num_clips, generator=generator)
        uniform = torch.rand(self.num_clips, generator=generator, dtype=torch.float64) * self._cumulative[-1]
        # Index i is chosen when cumulative[i - 1] <= u < cumulative[i]; zero weights span empty intervals.
        indices = torch.searchsorted(self._cumulative, uniform, right=True)
        return indices.clamp_(max=self._last_drawable)  # guards u rounding up to the total

    def __iter__(self) -> Iterator[DrawKey]:
        epoch = self.epoch
        return iter([DrawKey(epoch, position, index) for position, index in enumerate(self.indices().tolist())])

    def __len__(self) -> int:
        return self.num_clips
