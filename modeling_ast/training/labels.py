"""The label space of a classification task: its class names, single- or multi-label, and the training targets."""

from __future__ import annotations

import functools
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import torch

__all__ = ["LabelSpace", "list_names", "task_reason"]

# How many names a message lists before "and N more".
_NAMES_SHOWN = 5


def list_names(names: Sequence[str], shown: int = _NAMES_SHOWN) -> str:
    """The first `shown` of `names`, comma-separated, and how many more there are ("a, b and 3 more")."""
    listed = ", ".join(names[:shown])
    return listed + (f" and {len(names) - shown} more" if len(names) > shown else "")


def task_reason(
    label_lists: Sequence[Sequence[str]], clip_names: Sequence[str] | None = None, multi_label: bool | None = None
) -> str:
    """Why `LabelSpace.infer(label_lists, multi_label=multi_label)` chose its task, naming the training clips (by
    `clip_names`, else by row number) that made an inferred task multi-label: those with no label or several."""
    if multi_label is not None:
        return "as asked"
    odd = [index for index, labels in enumerate(label_lists) if len(labels) != 1]
    if not odd:
        return "every training clip has exactly one label"

    def described(index: int) -> str:
        name = clip_names[index] if clip_names is not None else f"row {index}"
        labels = label_lists[index]
        return f"{name} ({'no label' if not labels else f'{len(labels)} labels: ' + ';'.join(labels)})"

    return f"{len(odd)} training clip(s) have no label or several: {list_names([described(i) for i in odd], 3)}"


@dataclass(frozen=True)
class LabelSpace:
    """The classes of a task and how clip labels become training targets.

    Args:
        labels: Class names; the position is the class id.
        multi_label: Multi-label task (sigmoid/BCE, multi-hot targets) rather than single-label (softmax/CE, class
            indices).
    """

    labels: tuple[str, ...]
    multi_label: bool

    def __post_init__(self) -> None:
        object.__setattr__(self, "labels", tuple(self.labels))
        if not self.labels:
            raise ValueError("the label space is empty: no clip has a label")
        duplicates = sorted({label for label in self.labels if self.labels.count(label) > 1})
        if duplicates:
            raise ValueError(f"duplicate labels {duplicates}")
        if not self.multi_label and len(self.labels) < 2:
            raise ValueError(f"single-label classification needs at least 2 labels, got {list(self.labels)}")

    @classmethod
    def infer(
        cls,
        label_lists: Iterable[Sequence[str]],
        names: Sequence[str] | None = None,
        multi_label: bool | None = None,
    ) -> LabelSpace:
        """The sorted labels of the clips (or the sorted `names`, which must cover them) and the task: single-label
        when every clip has exactly one label, else multi-label (unless `multi_label` forces it)."""
        seen: set[str] = set()
        one_label_each = True
        for labels in label_lists:
            seen.update(labels)
            one_label_each = one_label_each and len(labels) == 1
        if names is not None:
            unknown = sorted(seen - set(names))
            if unknown:
                raise ValueError(f"labels {list_names(unknown)} are not among the given label names")
            seen = set(names)
        return cls(tuple(sorted(seen)), (not one_label_each) if multi_label is None else multi_label)

    @classmethod
    def from_config(cls, config: Any) -> LabelSpace:
        """The label space a model config describes (`id2label` and `problem_type`)."""
        labels = tuple(config.id2label[index] for index in range(config.num_labels))
        return cls(labels, config.problem_type == "multi_label_classification")

    @property
    def num_labels(self) -> int:
        return len(self.labels)

    @property
    def id2label(self) -> dict[int, str]:
        return dict(enumerate(self.labels))

    @property
    def label2id(self) -> dict[str, int]:
        return dict(self._ids)

    @functools.cached_property
    def _ids(self) -> dict[str, int]:
        """Class id of each label, built once (targets look labels up for every clip)."""
        return {label: index for index, label in enumerate(self.labels)}

    @property
    def problem_type(self) -> str:
        """The transformers `problem_type` of the task."""
        return "multi_label_classification" if self.multi_label else "single_label_classification"

    def config_kwargs(self) -> dict[str, Any]:
        """`num_labels`, `id2label`, `label2id` and `problem_type`, for a model config or `from_pretrained`."""
        return {
            "num_labels": self.num_labels,
            "id2label": self.id2label,
            "label2id": self.label2id,
            "problem_type": self.problem_type,
        }

    def check(self, label_lists: Iterable[Sequence[str]], split: str) -> None:
        """Raise naming the labels of `split` that are not in this space (e.g. a class only the eval split has)."""
        unknown = sorted({label for labels in label_lists for label in labels} - set(self.labels))
        if unknown:
            raise ValueError(
                f"labels {list_names(unknown)} of the {split} split are not in the label space (the training "
                "labels); the model cannot predict a class it never trains on"
            )

    def multi_hot(self, labels: Sequence[str]) -> torch.Tensor:
        """(num_labels,) float32 vector with 1 at each of `labels`."""
        target = torch.zeros(self.num_labels)
        for label in labels:
            target[self._index(label)] = 1.0
        return target

    def target(self, labels: Sequence[str]) -> torch.Tensor:
        """The training target of one clip: a () int64 class index (single-label, exactly one label required) or a
        (num_labels,) float32 multi-hot vector (multi-label)."""
        if self.multi_label:
            return self.multi_hot(labels)
        if len(labels) != 1:
            raise ValueError(f"a single-label task needs exactly one label per clip, got {list(labels)}")
        return torch.tensor(self._index(labels[0]))

    def _index(self, label: str) -> int:
        try:
            return self._ids[label]
        except KeyError:
            raise ValueError(f"label {label!r} is not in the label space ({self.num_labels} labels)") from None
