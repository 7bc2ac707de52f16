"""The datasets `Trainer` reads: labelled clips decoded to mono waveforms, cropped and mixed for training.

`AudioDataset` (map-style) and `StreamingAudioDataset` (iterable) decode clips at the feature extractor's rate, skip
or report unreadable files, and for training crop clips at random and apply waveform mixup; `collator.AudioCollator`
turns their items into model batches. Training items are keyed by (seed, epoch, position) (`sampling.DrawKey`): the
key decides the item's crop and mixup here and, through the item's `seed`, its SpecAugment and noise in the collator.
Evaluation items carry no seed and are never augmented, so one collator serves both `Trainer` loops.
"""

from __future__ import annotations

import collections
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any, TypedDict

import torch

from ..audio_utils import check_sampling_rate
from .augment import AugmentConfig, mix_targets, mix_waveforms, random_crop, random_int, sample_mixup_lambda
from .decoding import SAMPLING_RATE, BadFileLog, OnBadFile, UnreadableAudioError, check_on_bad_file, decode_example
from .labels import LabelSpace
from .sampling import WAVEFORM_STAGE, DrawKey, derive_seed, seeded_generator
from .sources import Example

__all__ = ["AudioDataset", "Item", "StreamingAudioDataset"]

class _RequiredItemKeys(TypedDict):
    audio: torch.Tensor
    labels: torch.Tensor


class Item(_RequiredItemKeys, total=False):
    """What the datasets return for one clip: mono float32 `audio` (samples,) at the dataset's rate and `labels`, a
    () int64 class index or a (num_labels,) float32 (multi-hot or mixed) vector. Training items also carry the `seed`
    of their draw, from which the collator derives their spectrogram augmentations."""

    seed: int


Partner = Callable[[torch.Generator], tuple[torch.Tensor, list[str]] | None]
"""Draws a mixup partner clip (waveform, labels) with the generator it is given, or None when there is none."""


class _LabelledClips:
    """What both datasets share: their options, decoding with bad-file handling, training crops and mixup, targets.

    Args:
        label_space: Classes and task; every label of the examples must be in it.
        train: Training set: random crops, mixup (per `augment`) and a `seed` per item for the collator's SpecAugment
            and noise. Evaluation sets (`train=False`) are deterministic and never augmented.
        max_samples: Longest waveform kept, normally `num_samples_for_frames(feature_extractor.max_length)`:
            training clips are cropped to it at a random offset, evaluation clips cut after it. None keeps clips whole
            (the collator still truncates the features to `max_length` frames, left-aligned).
        augment: Augmentations of a training set (ignored for evaluation).
        soft_targets: Labels as float (num_labels,) vectors instead of class indices. Default: for multi-label tasks,
            and for a single-label training set with mixup (mixed labels are soft targets).
        seed: Seed of the augmentations; a draw's are `derive_seed(seed, epoch, position)`.
        on_bad_file: "error" raises `UnreadableAudioError` naming the clip; "skip" returns no item for it, records it
            in `bad_files` and warns with the count at the end of each pass.
        sampling_rate: Rate clips are decoded to, that of the feature extractor.
    """

    def __init__(
        self,
        label_space: LabelSpace,
        *,
        train: bool = False,
        max_samples: int | None = None,
        augment: AugmentConfig | None = None,
        soft_targets: bool | None = None,
        seed: int = 0,
        on_bad_file: OnBadFile = "error",
        sampling_rate: int = SAMPLING_RATE,
    ) -> None:
        check_on_bad_file(on_bad_file)
        if max_samples is not None and max_samples < 1:
            raise ValueError(f"max_samples must be positive, got {max_samples}")
        self.label_space = label_space
        self.train = train
        self.max_samples = max_samples
        self.augment = (augment or AugmentConfig()) if train else AugmentConfig()
        mixes = self.augment.mixup > 0
        self.soft_targets = (label_space.multi_label or mixes) if soft_targets is None else soft_targets
        self.seed = seed
        self.on_bad_file = on_bad_file
        self.sampling_rate = check_sampling_rate(sampling_rate)
        self.bad_files = BadFileLog(f"{'training' if train else 'evaluation'} {type(self).__name__}")

    def _decode(self, example: Mapping[str, Any]) -> torch.Tensor | None:
        """The clip's waveform, or None when it is unreadable and skipped."""
        try:
            return decode_example(example, self.sampling_rate)
        except UnreadableAudioError as error:
            if self.on_bad_file == "error":
                raise
            self.bad_files.record(error)
            return None

    def _item(self, waveform: torch.Tensor, labels: Sequence[str], partner: Partner, seed: int | None) -> Item:
        """The dataset item of a decoded clip.

        Training (`seed` is the draw's): a random crop to `max_samples`, then, with probability `augment.mixup`,
        mixup with the clip `partner` draws (also cropped at random; no mixup when it draws none). Evaluation: the
        first `max_samples` samples and the plain target.
        """
        target = self.label_space.multi_hot(labels) if self.soft_targets else self.label_space.target(labels)
        if seed is None:
            waveform = waveform if self.max_samples is None else waveform[: self.max_samples]
            return {"audio": waveform, "labels": target}
        generator = seeded_generator(seed, WAVEFORM_STAGE)
        waveform = self._crop(waveform, generator)
        if self.augment.mixup > 0 and float(torch.rand((), generator=generator)) < self.augment.mixup:
            other = partner(generator)
            if other is not None:
                lam = sample_mixup_lambda(self.augment.mixup_alpha, generator)
                waveform = mix_waveforms(waveform, self._crop(other[0], generator), lam)
                target = mix_targets(target, self.label_space.multi_hot(other[1]), lam)
        return {"audio": waveform, "labels": target, "seed": seed}

    def _crop(self, waveform: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        return waveform if self.max_samples is None else random_crop(waveform, self.max_samples, generator)


class AudioDataset(_LabelledClips, torch.utils.data.Dataset):
    """Map-style dataset of labelled clips for `Trainer`: decodes on access, returns `Item`s (or None when an
    unreadable clip is skipped; `AudioCollator` drops those).

    A training set is indexed by `DrawKey`s (from `sampling.EpochDrawSampler`, which `trainer.ASTTrainer` uses): the
    item of a key depends on (seed, epoch, position) alone, so an interrupted and resumed run sees the same augmented
    data as an uninterrupted one. Mixup draws its partner uniformly from this whole dataset, as the original code
    does; the partner is cropped at random too. An evaluation set is indexed by clip index.

    Args:
        examples: Random-access `Example`s (a list from `folder_examples`/`manifest_examples`, or `HubExamples`).
        label_space, train, max_samples, augment, soft_targets, seed, on_bad_file, sampling_rate: see
            `_LabelledClips`. With "skip", a pass ends every `len(self)` reads.
    """

    def __init__(self, examples: Sequence[Example], label_space: LabelSpace, **options: Any) -> None:
        super().__init__(label_space, **options)
        self.examples = examples
        self._reads = 0

    def __len__(self) -> int:
        return len(self.examples)

    def __getitem__(self, key: DrawKey | int) -> Item | None:
        if self.train != isinstance(key, DrawKey):
            wanted = "EpochDrawSampler keys (DrawKey)" if self.train else "clip indices"
            raise TypeError(f"{'training' if self.train else 'evaluation'} items are read by {wanted}, got {key!r}")
        index, seed = (key.index, derive_seed(self.seed, key.epoch, key.position)) if self.train else (key, None)
        try:
            loaded = self._load(index)
            return None if loaded is None else self._item(*loaded, partner=self._random_partner, seed=seed)
        finally:
            self._reads += 1
            if self._reads >= len(self):
                self._reads = 0
                self.bad_files.end_pass()

    def _load(self, index: int) -> tuple[torch.Tensor, list[str]] | None:
        example = self.examples[index]
        waveform = self._decode(example)
        return None if waveform is None else (waveform, list(example["labels"]))

    def _random_partner(self, generator: torch.Generator) -> tuple[torch.Tensor, list[str]] | None:
        """A mixup partner drawn uniformly from the whole dataset (None if it is unreadable and skipped)."""
        return self._load(random_int(0, len(self) - 1, generator))


class StreamingAudioDataset(_LabelledClips, torch.utils.data.IterableDataset):
    """Iterable dataset of labelled clips streamed from `examples` (e.g. `StreamingHubExamples`, shuffled with a
    buffer); has no length, so `Trainer` needs `max_steps`.

    Options as for `AudioDataset`. A training item's draw is keyed by (seed, epoch, DataLoader worker, position in
    the worker's share of the stream). Mixup: without random access the partner is drawn uniformly from the last
    `mixup_buffer_size` clips of the stream (none for the first clip of a pass). Unreadable clips are skipped (or
    raise) as they come, and with "skip" a warning with the count is logged when a pass over the stream ends.
    `set_epoch` selects the epoch of the keys and is passed on to `examples` (reshuffling the stream each epoch). In
    DataLoader workers, a `datasets` stream shards itself; any other iterable is split round-robin between the
    workers.
    """

    def __init__(
        self, examples: Iterable[Example], label_space: LabelSpace, *, mixup_buffer_size: int = 64, **options: Any
    ) -> None:
        if mixup_buffer_size < 1:
            raise ValueError(f"mixup_buffer_size must be positive, got {mixup_buffer_size}")
        super().__init__(label_space, **options)
        self.examples = examples
        self.mixup_buffer_size = mixup_buffer_size
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)
        if hasattr(self.examples, "set_epoch"):
            self.examples.set_epoch(epoch)

    def __iter__(self) -> Iterator[Item]:
        recent: collections.deque[tuple[torch.Tensor, list[str]]] = collections.deque(maxlen=self.mixup_buffer_size)

        def partner(generator: torch.Generator) -> tuple[torch.Tensor, list[str]] | None:
            return recent[random_int(0, len(recent) - 1, generator)] if recent else None

        info = torch.utils.data.get_worker_info()
        worker = 0 if info is None else info.id
        for position, example in enumerate(self._worker_share()):
            waveform = self._decode(example)
            if waveform is None:
                continue
            labels = list(example["labels"])
            seed = derive_seed(self.seed, self.epoch, worker, position) if self.train else None
            yield self._item(waveform, labels, partner=partner, seed=seed)
            if self.train and self.augment.mixup > 0:
                recent.append((waveform, labels))
        self.bad_files.end_pass()

    def _worker_share(self) -> Iterable[Example]:
        """This worker's part of the stream: all of it outside workers or for self-sharding `datasets` streams."""
        info = torch.utils.data.get_worker_info()
        if info is None or hasattr(self.examples, "num_shards"):
            return self.examples
        return (example for position, example in enumerate(self.examples) if position % info.num_workers == info.id)
