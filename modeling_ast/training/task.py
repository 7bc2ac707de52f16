"""A classification task read from one source: its training and evaluation clips and its label space, checked.

`task_from_examples` takes the two splits of a folder or of two manifests (`sources.folder_examples`,
`sources.manifest_examples`); `task_from_datasets` reads two splits of a `datasets` dataset, streamed or not. Both
check what would otherwise fail late: an empty split, a label only the evaluation split has, several labels on an
evaluation clip of a single-label task, and (for lists of files) files that do not exist.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from ..fbank import num_samples_for_frames
from ..feature_extraction_ast import ASTFeatureExtractor
from .augment import AugmentConfig
from .datasets import AudioDataset, StreamingAudioDataset
from .decoding import OnBadFile
from .labels import LabelSpace, list_names, task_reason
from .sampling import balanced_sample_weights
from .sources import Example, HubExamples, StreamingHubExamples, load_hub_examples

__all__ = ["TaskData", "check_eval_labels", "check_files_exist", "task_from_datasets", "task_from_examples"]


@dataclass
class TaskData:
    """The training and evaluation clips, the label space, a one-line description of the source, why the task is
    single- or multi-label (`labels.task_reason`) and the training clips' labels if already read (`train_labels`)."""

    train: Sequence[Example] | StreamingHubExamples
    eval: Sequence[Example] | StreamingHubExamples
    label_space: LabelSpace
    source: str
    task_reason: str = ""
    # Kept from building the task, so balanced sampling does not read the label column again (None for a stream).
    train_labels: list[list[str]] | None = None
    # The map-style dataset of the clips (`sed.SEDDataset` for sound event detection).
    dataset_class: type[AudioDataset] = AudioDataset
    # Label rows left out under on_bad_file "skip" (sound event detection's label files): split -> why, each message
    # naming the row's file and line.
    skipped_rows: dict[str, list[str]] = field(default_factory=dict)
    # Clips that choose how frame scores become events after training (sound event detection's validation labels).
    validation: Sequence[Example] = ()

    @property
    def streaming(self) -> bool:
        return isinstance(self.train, StreamingHubExamples)

    def train_label_lists(self) -> list[list[str]]:
        """Labels of every training clip (without decoding audio)."""
        if self.train_labels is not None:
            return self.train_labels
        if isinstance(self.train, HubExamples):
            return self.train.label_lists()
        return [list(example["labels"]) for example in self.train]

    def balanced_sample_weights(self) -> torch.Tensor:
        """(num_train_clips,) the AST balanced-sampling weight of every training clip."""
        space = self.label_space
        return balanced_sample_weights(torch.stack([space.multi_hot(labels) for labels in self.train_label_lists()]))

    def summary(self) -> str:
        """One line for the log: the clips, the labels (the first 20) and why the task is single- or multi-label."""
        space = self.label_space
        counts = "streamed" if self.streaming else f"{len(self.train)} training and {len(self.eval)} evaluation clips"
        shown = ", ".join(space.labels[:20]) + (" ..." if space.num_labels > 20 else "")
        kind = "multi-label" if space.multi_label else "single-label"
        return f"{counts}, {space.num_labels} labels ({kind}: {self.task_reason}): {shown}"

    def first_eval_example(self) -> Example:
        return next(iter(self.eval))

    def datasets(
        self,
        feature_extractor: ASTFeatureExtractor,
        augment: AugmentConfig,
        seed: int,
        on_bad_file: OnBadFile = "error",
        shuffle_buffer_size: int = 1000,
    ) -> tuple[AudioDataset | StreamingAudioDataset, AudioDataset | StreamingAudioDataset]:
        """The training dataset (cropped to the extractor's `max_length` and augmented per draw, seeded by `seed`) and
        the evaluation dataset (plain); streamed ones for a streamed task, its training stream shuffled with a buffer
        of `shuffle_buffer_size` clips."""
        options: dict[str, Any] = {
            "max_samples": num_samples_for_frames(feature_extractor.max_length, feature_extractor.sampling_rate),
            "on_bad_file": on_bad_file,
            "sampling_rate": feature_extractor.sampling_rate,
        }
        training = {"train": True, "augment": augment, "seed": seed, **options}
        dataset_class = StreamingAudioDataset if self.streaming else self.dataset_class
        train = self.train.shuffle(seed=seed, buffer_size=shuffle_buffer_size) if self.streaming else self.train
        return dataset_class(train, self.label_space, **training), dataset_class(self.eval, self.label_space, **options)


def check_eval_labels(label_space: LabelSpace, label_lists: Sequence[Sequence[str]]) -> None:
    """Evaluation labels must be training labels, and exactly one per clip for a single-label task."""
    label_space.check(label_lists, "evaluation")
    if not label_space.multi_label:
        wrong = [index for index, labels in enumerate(label_lists) if len(labels) != 1]
        if wrong:
            raise ValueError(
                f"{len(wrong)} evaluation clip(s) (e.g. number {wrong[0]}) have no label or several, but every "
                "training clip has exactly one (a single-label task); use problem_type multi_label_classification"
            )


def check_files_exist(examples: Iterable[Example]) -> None:
    """FileNotFoundError listing the clips whose audio file is missing (with on_bad_file "skip" they are skipped)."""
    missing = [str(ex["audio"]) for ex in examples if isinstance(ex["audio"], str) and not Path(ex["audio"]).is_file()]
    if missing:
        raise FileNotFoundError(
            f"{len(missing)} listed audio file(s) do not exist: {list_names(missing)} (on_bad_file 'skip' skips them)"
        )


def task_from_examples(
    train: list[Example],
    evaluation: list[Example],
    source: str,
    multi_label: bool | None = None,
    check_files: bool = True,
) -> TaskData:
    """The task of two lists of examples, checked: non-empty splits, labels inferred (the task too, unless
    `multi_label` forces it), evaluation labels known, and with `check_files` every listed file there."""
    for name, examples in (("training", train), ("evaluation", evaluation)):
        if not examples:
            raise ValueError(f"the {name} split is empty; check the eval regex or the manifests")
    label_lists = [list(example["labels"]) for example in train]
    label_space = LabelSpace.infer(label_lists, multi_label=multi_label)
    check_eval_labels(label_space, [example["labels"] for example in evaluation])
    if check_files:
        check_files_exist(train + evaluation)
    reason = task_reason(label_lists, [str(example.get("name", example["audio"])) for example in train], multi_label)
    return TaskData(train, evaluation, label_space, source, reason, label_lists)


def task_from_datasets(
    dataset_name: str | os.PathLike,
    dataset_config_name: str | None,
    train_split_name: str,
    eval_split_name: str,
    audio_column_name: str = "audio",
    label_column_name: str = "label",
    streaming: bool = False,
    multi_label: bool | None = None,
) -> TaskData:
    """The task of two splits of a `datasets` dataset (`sources.load_hub_examples`), streamed or not.

    A stream's label space comes from the label column's ClassLabel type, without reading the stream (its task
    too, unless `multi_label` forces it); a random-access split's from its labels, checked against the evaluation
    split's.
    """

    def split(name: str) -> HubExamples | StreamingHubExamples:
        return load_hub_examples(
            dataset_name,
            dataset_config_name,
            name,
            audio_column_name=audio_column_name,
            label_column_name=label_column_name,
            streaming=streaming,
        )

    train, evaluation = split(train_split_name), split(eval_split_name)
    source = f"dataset {os.fspath(dataset_name)} ({train_split_name} / {eval_split_name})"
    if streaming:
        label_space = train.label_space()
        reason = "from the label column's type (a ClassLabel, or a list of them)"
        if multi_label is not None:
            label_space, reason = LabelSpace(label_space.labels, multi_label), "as asked"
        return TaskData(train, evaluation, label_space, source + ", streamed", reason)
    label_lists = train.label_lists()  # the label column, read once for the label space, the reason and sampling
    label_space = train.label_space(multi_label=multi_label, label_lists=label_lists)
    check_eval_labels(label_space, evaluation.label_lists())
    reason = task_reason(label_lists, None, multi_label)
    return TaskData(train, evaluation, label_space, source, reason, label_lists)
