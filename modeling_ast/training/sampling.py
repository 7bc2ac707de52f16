"""Class-balanced sampling of training clips (the AST recipe for full AudioSet), correct under distributed training.

`balanced_sample_weights` gives every clip the weight of the original AST recipe: each label gets
1000 / (count + 0.01), where count is the number of training clips carrying it, and a clip weighs the sum of the
weights of its labels, so clips of rare labels are drawn as often as clips of common ones.

`DistributedWeightedSampler` draws clips with replacement in proportion to those weights. Each epoch, every rank draws
the *same* global sequence from a generator seeded by (seed, epoch) and keeps its interleaved share
(positions rank, rank + num_replicas, ...), so the ranks never disagree about the sample and all get the same
number of clips.

With `transformers.Trainer`, use `WeightedSamplingMixin` (or `WeightedSamplingTrainer`). Note that Trainer hands
the sampler to `accelerate`, which already splits the batches of one global sampler between the processes
(rank r gets batches r, r + world_size, ...; `accelerate.data_loader.BatchSamplerShard`) and forwards
`set_epoch`. The mixin therefore builds the sampler with `num_replicas=1` (the global draw) and lets accelerate shard
it; giving Trainer a per-rank sampler would shard twice and train every rank on a 1/world_size**2 slice.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch.utils.data import Dataset, Sampler
from transformers import Trainer

# Original AST recipe: label weight = LABEL_WEIGHT_SCALE / (count + COUNT_SMOOTHING).
LABEL_WEIGHT_SCALE = 1000.0
COUNT_SMOOTHING = 0.01


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
    label_weights = LABEL_WEIGHT_SCALE / (matrix.sum(dim=0) + COUNT_SMOOTHING)
    return matrix @ label_weights


def _epoch_seed(seed: int, epoch: int) -> int:
    """A 63-bit generator seed derived from the pair (seed, epoch) (distinct pairs give unrelated streams)."""
    return int(np.random.SeedSequence([seed, epoch]).generate_state(1, np.uint64)[0] >> np.uint64(1))


def _distributed_defaults(num_replicas: int | None, rank: int | None) -> tuple[int, int]:
    """(num_replicas, rank), filled in from torch.distributed when initialised, else (1, 0)."""
    initialised = dist.is_available() and dist.is_initialized()
    if num_replicas is None:
        num_replicas = dist.get_world_size() if initialised else 1
    if rank is None:
        rank = dist.get_rank() if initialised else 0
    if num_replicas < 1:
        raise ValueError(f"num_replicas must be at least 1, got {num_replicas}")
    if not 0 <= rank < num_replicas:
        raise ValueError(f"rank must be in [0, {num_replicas}), got {rank}")
    return num_replicas, rank


class DistributedWeightedSampler(Sampler[int]):
    """Weighted sampling with replacement, sharded across ranks from one common draw per epoch.

    Every rank draws the same `total_size` indices, each independently with probability weights[i] / sum(weights),
    from a generator seeded by (seed, epoch); rank r keeps positions r, r + num_replicas, r + 2 * num_replicas, ...
    `total_size` is `num_samples` rounded up to a multiple of `num_replicas`, so every rank yields exactly
    `len(self)` = total_size / num_replicas indices and the ranks together cover the global draw once.
    Call `set_epoch(epoch)` before each epoch to get a new draw (Trainer, through accelerate, does; a hand-written DDP
    loop must); the same (seed, epoch) always gives the same indices.

    Args:
        weights: (N,) non-negative sampling weights with a positive sum (e.g. `balanced_sample_weights(labels)`).
        num_samples: global number of draws per epoch; defaults to N, as the original recipe's
            `WeightedRandomSampler(weights, len(weights))`.
        num_replicas: number of ranks sharing the draw; defaults to the torch.distributed world size (1 if not
            initialised).
        rank: this process's rank; defaults to the torch.distributed rank (0 if not initialised).
        seed: base seed shared by all ranks.
    """

    def __init__(
        self,
        weights: Sequence[float] | np.ndarray | torch.Tensor,
        num_samples: int | None = None,
        num_replicas: int | None = None,
        rank: int | None = None,
        seed: int = 0,
    ) -> None:
        weight_tensor = _as_cpu_tensor(weights).double()
        if weight_tensor.ndim != 1 or weight_tensor.numel() == 0:
            raise ValueError(f"weights must be a non-empty 1-D sequence, got shape {tuple(weight_tensor.shape)}")
        if not torch.all(torch.isfinite(weight_tensor)) or torch.any(weight_tensor < 0):
            raise ValueError("weights must be finite and non-negative")
        if float(weight_tensor.sum()) <= 0:
            raise ValueError("weights sum to zero: no clip can be drawn")
        num_samples = weight_tensor.numel() if num_samples is None else num_samples
        if num_samples < 1:
            raise ValueError(f"num_samples must be at least 1, got {num_samples}")
        if seed < 0:
            raise ValueError(f"seed must be non-negative, got {seed}")
        self.num_replicas, self.rank = _distributed_defaults(num_replicas, rank)
        self.weights = weight_tensor
        self.num_samples = num_samples
        self.per_replica = math.ceil(num_samples / self.num_replicas)
        self.total_size = self.per_replica * self.num_replicas
        self.seed = seed
        self.epoch = 0
        self._cumulative = torch.cumsum(weight_tensor, dim=0)
        self._last_drawable = int(torch.nonzero(weight_tensor > 0)[-1])

    def set_epoch(self, epoch: int) -> None:
        """Select the draw of `epoch` (all ranks must use the same epoch)."""
        self.epoch = int(epoch)

    def global_indices(self) -> torch.Tensor:
        """(total_size,) int64: the draw of the current epoch shared by all ranks."""
        generator = torch.Generator().manual_seed(_epoch_seed(self.seed, self.epoch))
        uniform = torch.rand(self.total_size, generator=generator, dtype=torch.float64) * self._cumulative[-1]
        # Index i is chosen when cumulative[i - 1] <= u < cumulative[i]; zero weights span empty intervals.
        indices = torch.searchsorted(self._cumulative, uniform, right=True)
        return indices.clamp_(max=self._last_drawable)  # guards u rounding up to the total

    def __iter__(self) -> Iterator[int]:
        return iter(self.global_indices()[self.rank :: self.num_replicas].tolist())

    def __len__(self) -> int:
        return self.per_replica


class WeightedSamplingMixin:
    """`transformers.Trainer` mixin that draws the training clips with `DistributedWeightedSampler`.

    Put it before `Trainer` in the bases and pass `sample_weights` ((N,) per training clip, e.g.
    `balanced_sample_weights(train_labels)`)::

        class BalancedTrainer(WeightedSamplingMixin, Trainer):
            pass

        trainer = BalancedTrainer(model=model, args=args, train_dataset=train, sample_weights=weights, ...)

    It replaces Trainer's training sampler (and so its `train_sampling_strategy` / `group_by_length`) by a global
    weighted draw of len(train_dataset) clips per epoch seeded by `args.data_seed` (or `args.seed`) and the epoch;
    accelerate splits it between processes and calls `set_epoch` (see the module docstring). The signature of
    `_get_train_sampler` is the one of transformers 5.0 through 5.24.
    """

    def __init__(self, *args: Any, sample_weights: Sequence[float] | np.ndarray | torch.Tensor, **kwargs: Any) -> None:
        self.sample_weights = _as_cpu_tensor(sample_weights).double()
        super().__init__(*args, **kwargs)

    def _get_train_sampler(self, train_dataset: Dataset | None = None) -> DistributedWeightedSampler:
        """The weighted sampler over `train_dataset` (default: `self.train_dataset`)."""
        dataset = self.train_dataset if train_dataset is None else train_dataset
        if dataset is None or not hasattr(dataset, "__len__"):
            raise ValueError("weighted sampling needs a training dataset with a length (not an IterableDataset)")
        if len(dataset) != self.sample_weights.numel():
            raise ValueError(
                f"sample_weights has {self.sample_weights.numel()} entries but the training dataset has "
                f"{len(dataset)} clips"
            )
        seed = self.args.data_seed if self.args.data_seed is not None else self.args.seed
        return DistributedWeightedSampler(self.sample_weights, num_replicas=1, rank=0, seed=seed)


class WeightedSamplingTrainer(WeightedSamplingMixin, Trainer):
    """`transformers.Trainer` drawing its training clips with `DistributedWeightedSampler`; pass `sample_weights=`."""
