"""Training data for AST: sources of labelled clips, the label space, decoding, datasets and the batch collator.

Every source yields examples `{"audio": path | bytes | array, "sampling_rate": int | None, "labels": list[str],
"name": str}` (`Example`):

- `folder_examples`: a folder of audio files, labelled by class sub-folder or by a regex on the relative path, split
  into train/test by another regex;
- `manifest_examples`: CSV (`path,label`, several labels `;`-separated) or JSON Lines (`{"path": ..., "label": ... or
  [...]}`) manifests, paths relative to the manifest;
- `load_hub_examples`: one split of a Hugging Face `datasets` dataset (Hub name, local `save_to_disk` folder or local
  data folder), with `streaming=True` for an iterable stream. Audio is read with `Audio(decode=False)` and decoded here
  with soundfile (no torchcodec needed).

`LabelSpace.infer` sorts the labels and picks the task: single-label when every clip has exactly one label, otherwise
multi-label. `AudioDataset` (map-style) and `StreamingAudioDataset` (iterable) decode clips to mono 16 kHz, skip or
report unreadable files, crop training clips at random and apply waveform mixup; `AudioCollator` turns their items
into model batches and applies SpecAugment and noise to training items only (items of a training dataset carry a
per-item seed; evaluation items do not, so one collator serves both `Trainer` loops).
"""

from __future__ import annotations

import collections
import copy
import csv
import functools
import io
import json
import os
import re
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any, Literal, TypedDict

import numpy as np
import torch
from transformers.utils import logging

from ..audio_utils import check_sampling_rate, load_audio, resample, to_float_waveform
from ..feature_extraction_ast import ASTFeatureExtractor, FrameSpec
from .augment import (
    AugmentConfig,
    item_generator,
    mix_targets,
    mix_waveforms,
    noise_and_roll,
    random_int,
    sample_mixup_lambda,
    spec_augment_,
)

logger = logging.get_logger(__name__)

__all__ = [
    "AUDIO_EXTENSIONS",
    "AudioCollator",
    "AudioDataset",
    "BadFileLog",
    "Example",
    "HubExamples",
    "LabelSpace",
    "StreamingAudioDataset",
    "StreamingHubExamples",
    "UnreadableAudioError",
    "decode_example",
    "folder_examples",
    "load_hub_examples",
    "manifest_examples",
    "num_samples_for_frames",
    "random_crop",
]

SAMPLING_RATE = 16000
AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg", ".mp3")
"""File extensions `folder_examples` collects by default (those libsndfile decodes)."""

# Seed streams of one training item: waveform stage (crop, mixup) in the dataset, spectrogram stage in the collator.
_WAVEFORM_STREAM = 0
_SPECTROGRAM_STREAM = 1
# How many names a warning or error lists before "and N more".
_NAMES_SHOWN = 5

OnBadFile = Literal["error", "skip"]
AudioData = str | os.PathLike | bytes | np.ndarray | torch.Tensor | Mapping[str, Any]


class _RequiredExampleKeys(TypedDict):
    audio: AudioData
    sampling_rate: int | None
    labels: list[str]


class Example(_RequiredExampleKeys, total=False):
    """One labelled clip as the sources produce it.

    `audio` is a file path, the encoded bytes of a file, a 1-D sample array, or a `datasets` audio dict
    (`{"bytes", "path"}` or `{"array", "sampling_rate"}`). `sampling_rate` is required for arrays and ignored for
    files and bytes (their header wins). The optional `name` identifies the clip in messages (default: the path).
    """

    name: str


class _RequiredItemKeys(TypedDict):
    audio: torch.Tensor
    labels: torch.Tensor


class Item(_RequiredItemKeys, total=False):
    """What the datasets return for one clip: mono float32 `audio` (samples,) at the dataset's rate and `labels`, a
    () int64 class index or a (num_labels,) float32 (multi-hot or mixed) vector. Training items also carry the `seed`
    of their spectrogram augmentations."""

    seed: int


Partner = Callable[[torch.Generator], tuple[torch.Tensor, list[str]] | None]
"""Draws a mixup partner clip (waveform, labels) with the generator it is given, or None when there is none."""


def _list_names(names: Sequence[str]) -> str:
    """The first few `names`, and how many more there are."""
    shown = ", ".join(names[:_NAMES_SHOWN])
    return shown + (f" and {len(names) - _NAMES_SHOWN} more" if len(names) > _NAMES_SHOWN else "")


# ---------------------------------------------------------------------------------------------------------------
# Sources: local folders and manifests
# ---------------------------------------------------------------------------------------------------------------


def _suffixes(extensions: str | Sequence[str]) -> set[str]:
    """Lower-case dotted suffixes from a comma-separated string or a sequence of extensions."""
    parts = extensions.split(",") if isinstance(extensions, str) else extensions
    suffixes = {"." + part.strip().lower().lstrip(".") for part in parts if part.strip()}
    if not suffixes:
        raise ValueError(f"no file extensions given: {extensions!r}")
    return suffixes


def _compile(pattern: str, option: str) -> re.Pattern[str]:
    try:
        return re.compile(pattern)
    except re.error as error:
        raise ValueError(f"{option} {pattern!r} is not a valid regular expression: {error}") from None


def _label_from_match(match: re.Match[str]) -> str:
    """The group named `label`, else the first group, else the whole match."""
    if "label" in match.re.groupindex:
        return match.group("label") or ""
    return (match.group(1) or "") if match.re.groups else match.group(0)


def _path_example(path: Path, labels: list[str]) -> Example:
    return {"audio": str(path), "sampling_rate": None, "labels": labels, "name": str(path)}


def folder_examples(
    data_dir: str | os.PathLike,
    label_regex: str | None = None,
    test_regex: str | None = None,
    extensions: str | Sequence[str] = AUDIO_EXTENSIONS,
) -> dict[str, list[Example]]:
    """Labelled clips of the audio files under `data_dir` (searched recursively, sorted by path).

    Labels: without `label_regex` each file's label is the name of the folder holding it (`data_dir/dog/1.wav` and
    `data_dir/train/dog/1.wav` are both "dog"; files directly in `data_dir` are an error). With `label_regex`, the
    regex is searched in the path relative to `data_dir` (POSIX separators) and the label is its group named `label`,
    else its first group, else the whole match (FSDD `{digit}_{speaker}_{take}.wav`: `^(\\d+)_`).

    Split: with `test_regex`, files whose relative path matches it go to "test", the others to "train"; without it all
    go to "train". Returns `{"train": [...]}` or `{"train": [...], "test": [...]}`. Raises `ValueError` naming the
    files that get no label, or when there is no audio file at all.
    """
    root = Path(data_dir)
    if not root.is_dir():
        raise FileNotFoundError(f"audio folder {root} does not exist")
    suffixes = _suffixes(extensions)
    files = sorted(path for path in root.rglob("*") if path.is_file() and path.suffix.lower() in suffixes)
    if not files:
        raise ValueError(f"no audio files ({', '.join(sorted(suffixes))}) found under {root}")
    label_pattern = None if label_regex is None else _compile(label_regex, "label_regex")
    test_pattern = None if test_regex is None else _compile(test_regex, "test_regex")

    splits: dict[str, list[Example]] = {"train": []} if test_pattern is None else {"train": [], "test": []}
    unlabelled = []
    for path in files:
        relative = path.relative_to(root).as_posix()
        label = _folder_label(relative, label_pattern)
        if not label:
            unlabelled.append(relative)
            continue
        split = "test" if test_pattern is not None and test_pattern.search(relative) else "train"
        splits[split].append(_path_example(path, [label]))
    if unlabelled:
        how = f"label_regex {label_regex!r} finds no label in" if label_pattern else "no class sub-folder holds"
        raise ValueError(f"{how} {len(unlabelled)} file(s) under {root}: {_list_names(unlabelled)}")
    return splits


def _folder_label(relative: str, pattern: re.Pattern[str] | None) -> str:
    """Label of one file from its relative POSIX path: the regex's label, or the parent folder's name ("" if none)."""
    if pattern is None:
        return PurePosixPath(relative).parent.name
    match = pattern.search(relative)
    return "" if match is None else _label_from_match(match)


def manifest_examples(manifest: str | os.PathLike) -> list[Example]:
    """Labelled clips listed in a CSV (`.csv`) or JSON Lines (`.jsonl`, `.json`) manifest.

    CSV: a header with a `path` column and a `label` (or `labels`) column; several labels of one clip are separated
    by `;`. JSON Lines: one object per line with `path` and `label` (or `labels`), a string or a list of strings.
    Relative paths are taken from the manifest's folder. A clip may have no label (an empty field or list: a negative
    clip of a multi-label task). Files are not opened here; a missing file is an unreadable file when decoded.
    """
    path = Path(manifest)
    if not path.is_file():
        raise FileNotFoundError(f"manifest {path} does not exist")
    suffix = path.suffix.lower()
    if suffix == ".csv":
        rows = _csv_rows(path)
    elif suffix in (".jsonl", ".json"):
        rows = _jsonl_rows(path)
    else:
        raise ValueError(f"manifest {path} must be a .csv or .jsonl file")
    if not rows:
        raise ValueError(f"manifest {path} lists no files")
    return [_path_example(path.parent / audio_path, labels) for audio_path, labels in rows]


def _csv_rows(path: Path) -> list[tuple[str, list[str]]]:
    """(path, labels) of each row of a `path,label` CSV manifest."""
    with path.open(newline="") as handle:
        reader = csv.DictReader(handle)
        fields = reader.fieldnames or []
        label_field = "label" if "label" in fields else "labels"
        if "path" not in fields or label_field not in fields:
            raise ValueError(f"manifest {path} needs a header with `path` and `label` columns, got {fields}")
        rows = []
        for line, row in enumerate(reader, start=2):
            if not row["path"]:
                raise ValueError(f"manifest {path}, line {line}: empty path")
            labels = [label.strip() for label in (row[label_field] or "").split(";") if label.strip()]
            rows.append((row["path"], labels))
    return rows


def _jsonl_rows(path: Path) -> list[tuple[str, list[str]]]:
    """(path, labels) of each line of a JSON Lines manifest."""
    rows = []
    with path.open() as handle:
        for line_number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            where = f"manifest {path}, line {line_number}"
            try:
                record = json.loads(line)
            except json.JSONDecodeError as error:
                raise ValueError(f"{where}: invalid JSON: {error}") from None
            if not isinstance(record, dict) or not isinstance(record.get("path"), str) or not record["path"]:
                raise ValueError(f"{where}: expected an object with a `path` string")
            rows.append((record["path"], _json_labels(record, where)))
    return rows


def _json_labels(record: dict[str, Any], where: str) -> list[str]:
    """Labels of a JSON Lines record: `label` or `labels`, one string or a list of strings."""
    value = record.get("label", record.get("labels"))
    if value is None:
        raise ValueError(f"{where}: no `label` (or `labels`) field")
    values = [value] if isinstance(value, str) else value
    if not isinstance(values, list) or not all(isinstance(label, str) for label in values):
        raise ValueError(f"{where}: the label must be a string or a list of strings, got {value!r}")
    return [label.strip() for label in values if label.strip()]


# ---------------------------------------------------------------------------------------------------------------
# Sources: `datasets` datasets (Hub, local save_to_disk folders, local data folders)
# ---------------------------------------------------------------------------------------------------------------


def _import_datasets() -> Any:
    try:
        import datasets
    except ImportError as error:
        raise ImportError(
            "reading `datasets` datasets needs the `datasets` package: pip install 'datasets>=4.0'"
        ) from error
    return datasets


@dataclass(frozen=True)
class _HubColumns:
    """How to turn rows of a `datasets` split into `Example`s.

    `label_kind`: "class" (ClassLabel), "class_list" (list of ClassLabel), "value" (string or number) or "value_list".
    `class_names`: the ClassLabel names, for the "class" kinds.
    """

    source: str
    audio_column: str
    label_column: str
    label_kind: str
    class_names: tuple[str, ...] | None

    @classmethod
    def from_features(cls, features: Any, source: str, audio_column: str, label_column: str) -> _HubColumns:
        datasets = _import_datasets()
        if features is None:
            raise ValueError(f"dataset {source} does not declare its features; cannot find its columns")
        missing = [column for column in (audio_column, label_column) if column not in features]
        if missing:
            raise ValueError(f"dataset {source} has no column(s) {missing}; its columns are {list(features)}")
        feature = features[label_column]
        element = getattr(feature, "feature", None)  # List / LargeList / Sequence of something
        if isinstance(feature, datasets.ClassLabel):
            return cls(source, audio_column, label_column, "class", tuple(feature.names))
        if isinstance(element, datasets.ClassLabel):
            return cls(source, audio_column, label_column, "class_list", tuple(element.names))
        if element is not None:
            return cls(source, audio_column, label_column, "value_list", None)
        return cls(source, audio_column, label_column, "value", None)

    def labels(self, value: Any) -> list[str]:
        """Label names of one row's label value (ClassLabel -1 means "no label")."""
        if self.label_kind == "class":
            return [] if value is None or value < 0 else [self.class_names[value]]
        if self.label_kind == "class_list":
            return [self.class_names[index] for index in value]
        if self.label_kind == "value_list":
            return [str(label) for label in value]
        return [] if value is None else [str(value)]

    def example(self, row: Mapping[str, Any], position: int) -> Example:
        """The `Example` of one row; `position` (row index or stream position) names clips given as bytes.

        An `Audio(decode=False)` value becomes its bytes when it has them (named by position and file name), else its
        path; a value with neither reaches `decode_example` as None and is reported there as unreadable.
        """
        audio, sampling_rate = row[self.audio_column], None
        name = f"{self.source} row {position}"
        if isinstance(audio, Mapping):
            if audio.get("bytes") is not None:
                name = f"{name} ({audio['path']})" if audio.get("path") else name
                audio = audio["bytes"]
            elif audio.get("path") is not None:
                audio = name = audio["path"]
            else:
                audio, sampling_rate = audio.get("array"), audio.get("sampling_rate")
        elif isinstance(audio, str):
            name = audio
        labels = self.labels(row[self.label_column])
        return {"audio": audio, "sampling_rate": sampling_rate, "labels": labels, "name": name}


class HubExamples(Sequence):
    """Random-access `Example`s of one split of a `datasets.Dataset` (audio not decoded until an example is read).

    Build it with `load_hub_examples`. `label_space()` reads only the label column.
    """

    def __init__(self, dataset: Any, columns: _HubColumns) -> None:
        self.dataset = dataset
        self.columns = columns

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> Example:  # type: ignore[override]
        if not -len(self) <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} examples")
        index %= len(self)
        return self.columns.example(self.dataset[index], index)

    def label_lists(self) -> list[list[str]]:
        """The labels of every clip, read from the label column alone."""
        return [self.columns.labels(value) for value in self.dataset[self.columns.label_column]]

    def label_space(self, multi_label: bool | None = None) -> LabelSpace:
        """Labels of a ClassLabel column (all its names) or those seen in the split, sorted; task from the data."""
        return LabelSpace.infer(self.label_lists(), names=self.columns.class_names, multi_label=multi_label)


class StreamingHubExamples:
    """`Example`s streamed from a `datasets.IterableDataset` (no length; iterate, shuffle with a buffer).

    When iterated in DataLoader worker processes, `datasets` gives each worker its own shards.
    """

    def __init__(self, dataset: Any, columns: _HubColumns) -> None:
        self.dataset = dataset
        self.columns = columns

    def __iter__(self) -> Iterator[Example]:
        for position, row in enumerate(self.dataset):
            yield self.columns.example(row, position)

    @property
    def num_shards(self) -> int:
        """Shards of the stream; DataLoader workers beyond this number get no data."""
        return self.dataset.num_shards

    def shuffle(self, seed: int, buffer_size: int = 1000) -> StreamingHubExamples:
        """A copy whose stream is shuffled with a buffer of `buffer_size` examples (and its shard order with `seed`);
        the order changes with every `set_epoch`."""
        return StreamingHubExamples(self.dataset.shuffle(seed=seed, buffer_size=buffer_size), self.columns)

    def set_epoch(self, epoch: int) -> None:
        """Reshuffle for `epoch` (Trainer calls this through the dataset that wraps the stream)."""
        self.dataset.set_epoch(epoch)

    def label_space(self) -> LabelSpace:
        """Label space from the column's type, without reading the stream: a ClassLabel column is single-label, a list
        of ClassLabel multi-label; names sorted. Raises for string labels (build `LabelSpace.infer` from a pass, or
        give the label names yourself)."""
        if self.columns.class_names is None:
            raise ValueError(
                f"the labels of the streamed column {self.columns.label_column!r} are not a ClassLabel, so the label "
                "set is unknown without reading the whole stream; use LabelSpace.infer on a non-streaming copy or "
                "LabelSpace(labels=..., multi_label=...)"
            )
        return LabelSpace(tuple(sorted(self.columns.class_names)), self.columns.label_kind == "class_list")


def load_hub_examples(
    dataset_name: str | os.PathLike,
    dataset_config_name: str | None = None,
    split: str = "train",
    *,
    audio_column: str = "audio",
    label_column: str = "label",
    streaming: bool = False,
    **load_kwargs: Any,
) -> HubExamples | StreamingHubExamples:
    """One split of a `datasets` dataset as `Example`s, without decoding audio through `datasets` (no torchcodec).

    `dataset_name` is a Hub id, a local data folder or file type `datasets.load_dataset` understands (e.g. a folder
    of parquet files), or a folder written by `save_to_disk` (read with `load_from_disk`). The audio column is cast to
    `Audio(decode=False)`, so its `bytes` or `path` reach `decode_example`; only the audio and label columns are kept.
    Labels may be a ClassLabel, a list of ClassLabel, strings or lists of strings.

    With `streaming=True` the result is a `StreamingHubExamples` (an iterable, shuffled with a buffer); otherwise a
    `HubExamples` (random access). Extra keyword arguments go to `datasets.load_dataset`.
    """
    datasets = _import_datasets()
    source = f"{os.fspath(dataset_name)}[{split}]"
    dataset = _load_split(datasets, dataset_name, dataset_config_name, split, streaming, load_kwargs)
    columns = _HubColumns.from_features(dataset.features, source, audio_column, label_column)
    dataset = dataset.select_columns([audio_column, label_column])
    if isinstance(dataset.features[audio_column], datasets.Audio):
        dataset = dataset.cast_column(audio_column, datasets.Audio(decode=False))
    return StreamingHubExamples(dataset, columns) if streaming else HubExamples(dataset, columns)


def _load_split(
    datasets: Any,
    dataset_name: str | os.PathLike,
    config_name: str | None,
    split: str,
    streaming: bool,
    load_kwargs: dict[str, Any],
) -> Any:
    """The split as a `datasets.Dataset`, or an `IterableDataset` when streaming."""
    path = Path(dataset_name)
    saved = path.is_dir() and any((path / marker).is_file() for marker in ("dataset_dict.json", "state.json"))
    if not saved:
        return datasets.load_dataset(
            os.fspath(dataset_name), config_name, split=split, streaming=streaming, **load_kwargs
        )
    loaded = datasets.load_from_disk(os.fspath(path))
    if isinstance(loaded, datasets.DatasetDict):
        if split not in loaded:
            raise ValueError(f"dataset {path} has no split {split!r}; its splits are {list(loaded)}")
        loaded = loaded[split]
    elif loaded.split is not None and str(loaded.split) != split:
        raise ValueError(f"dataset {path} holds the {loaded.split!s} split only, not {split!r}")
    return loaded.to_iterable_dataset() if streaming else loaded


# ---------------------------------------------------------------------------------------------------------------
# Labels
# ---------------------------------------------------------------------------------------------------------------


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
                raise ValueError(f"labels {_list_names(unknown)} are not among the given label names")
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
        """Raise naming the labels of `split` that are not in this space (e.g. a class only the test split has)."""
        unknown = sorted({label for labels in label_lists for label in labels} - set(self.labels))
        if unknown:
            raise ValueError(
                f"labels {_list_names(unknown)} of the {split} split are not in the label space (the training "
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


# ---------------------------------------------------------------------------------------------------------------
# Decoding and unreadable files
# ---------------------------------------------------------------------------------------------------------------


class UnreadableAudioError(ValueError):
    """A clip could not be decoded; `name` identifies it (its path, or its dataset row)."""

    def __init__(self, name: str, reason: str) -> None:
        super().__init__(f"cannot read audio {name}: {reason}")
        self.name = name
        self.reason = reason


def _example_name(example: Mapping[str, Any]) -> str:
    if example.get("name"):
        return str(example["name"])
    audio = example.get("audio")
    return os.fspath(audio) if isinstance(audio, (str, os.PathLike)) else "<in-memory audio>"


def decode_example(example: Mapping[str, Any], sampling_rate: int = SAMPLING_RATE) -> torch.Tensor:
    """The example's audio as a mono float32 (samples,) tensor at `sampling_rate` Hz.

    Files and bytes are decoded with soundfile (channel 0 of multichannel audio) and resampled with
    `audio_utils.resample`; arrays are taken at the example's `sampling_rate`. Raises `UnreadableAudioError` naming
    the clip for a missing, corrupt or empty file, non-finite samples, or an unusable audio value.
    """
    name = _example_name(example)
    audio, rate = example.get("audio"), example.get("sampling_rate")
    if isinstance(audio, Mapping):  # a `datasets` audio dict: {"bytes", "path"} or {"array", "sampling_rate"}
        rate = audio.get("sampling_rate", rate)
        audio = next((audio[key] for key in ("bytes", "path", "array") if audio.get(key) is not None), None)
    try:
        if isinstance(audio, (str, os.PathLike)):
            waveform = torch.from_numpy(load_audio(audio, sampling_rate))
        elif isinstance(audio, (bytes, bytearray)):
            waveform = _decode_bytes(bytes(audio), sampling_rate)
        elif isinstance(audio, (np.ndarray, torch.Tensor, list)):
            waveform = _array_waveform(audio, rate, sampling_rate)
        elif audio is None:
            raise ValueError("the example holds no audio (no bytes, path or array)")
        else:
            raise ValueError(f"unsupported audio value of type {type(audio).__name__}")
    except (ValueError, RuntimeError, OSError, TypeError) as error:
        raise UnreadableAudioError(name, str(error)) from error
    if waveform.numel() == 0:
        raise UnreadableAudioError(name, "no samples")
    if not bool(torch.isfinite(waveform).all()):
        raise UnreadableAudioError(name, "NaN or infinite samples")
    return waveform


def _decode_bytes(data: bytes, sampling_rate: int) -> torch.Tensor:
    """Decode an encoded audio file held in memory; channel 0, resampled to `sampling_rate`."""
    import soundfile

    samples, file_rate = soundfile.read(io.BytesIO(data), dtype="float32", always_2d=True)
    waveform = torch.from_numpy(np.ascontiguousarray(samples[:, 0]))
    return resample(waveform, file_rate, sampling_rate) if file_rate != sampling_rate else waveform


def _array_waveform(samples: Any, rate: int | None, sampling_rate: int) -> torch.Tensor:
    """A 1-D sample array at `rate` Hz, as float32 at `sampling_rate` Hz."""
    if rate is None:
        raise ValueError("audio given as an array needs its sampling_rate")
    waveform = to_float_waveform(samples)
    if waveform.dim() != 1:
        raise ValueError(f"audio arrays must be 1-D mono, got shape {tuple(waveform.shape)}")
    rate = check_sampling_rate(rate)
    return resample(waveform, rate, sampling_rate) if rate != sampling_rate else waveform


@dataclass
class BadFileLog:
    """Unreadable clips skipped by a dataset (`on_bad_file="skip"`), counted per pass over the data.

    `count` and `names` describe the pass in progress, `last_pass_count` the last finished one and `total` every
    skip so far (a file that fails as a clip and as a mixup partner in one pass counts once). `end_pass()` closes a
    pass and logs a warning with the count and the first few names when something was skipped. Datasets call it
    themselves (`AudioDataset` after `len(dataset)` reads, `StreamingAudioDataset` at the end of the stream).

    Each process keeps its own log: with DataLoader worker processes, the skips are counted (and warned about, for
    streams) in the workers, not in the main process's copy.
    """

    context: str = "dataset"
    reasons: dict[str, str] = field(default_factory=dict)
    last_pass_count: int = 0
    total: int = 0

    @property
    def count(self) -> int:
        """Distinct clips skipped in the pass in progress."""
        return len(self.reasons)

    @property
    def names(self) -> list[str]:
        """Names of the clips skipped in the pass in progress, in the order they failed."""
        return list(self.reasons)

    def record(self, error: UnreadableAudioError) -> None:
        if error.name not in self.reasons:
            self.reasons[error.name] = error.reason
            self.total += 1

    def end_pass(self) -> int:
        """Close the pass: warn if clips were skipped, reset the pass counters, return the pass's count."""
        count = self.count
        if count:
            logger.warning(f"{self.context}: skipped {count} unreadable audio file(s): {_list_names(self.names)}")
        self.last_pass_count = count
        self.reasons = {}
        return count


def _check_on_bad_file(on_bad_file: str) -> None:
    if on_bad_file not in ("error", "skip"):
        raise ValueError(f"on_bad_file must be 'error' or 'skip', got {on_bad_file!r}")


# ---------------------------------------------------------------------------------------------------------------
# Lengths
# ---------------------------------------------------------------------------------------------------------------


def num_samples_for_frames(frames: int, sampling_rate: int = SAMPLING_RATE) -> int:
    """Samples that give exactly `frames` Kaldi frames: (frames - 1) * 160 + 400 at 16 kHz."""
    if frames < 1:
        raise ValueError(f"frames must be positive, got {frames}")
    spec = FrameSpec.for_rate(sampling_rate)
    return (frames - 1) * spec.shift + spec.size


def random_crop(waveform: torch.Tensor, max_samples: int, generator: torch.Generator) -> torch.Tensor:
    """A random window of `max_samples` samples of a longer (samples,) clip, start ~ U{0, ..., samples - max_samples};
    shorter clips come back whole.

    Clips are not padded in the waveform domain: the collator pads in log-mel space (value 0 before normalisation,
    as the original code and `ASTFeatureExtractor` do) and masks the padding.
    """
    excess = waveform.shape[0] - max_samples
    if excess <= 0:
        return waveform
    start = random_int(0, excess, generator)
    return waveform[start : start + max_samples]


def _resolve_soft_targets(soft_targets: bool | None, label_space: LabelSpace, mixes: bool) -> bool:
    """Float (num_labels,) targets when asked, for multi-label tasks, and when mixup mixes labels."""
    return (label_space.multi_label or mixes) if soft_targets is None else soft_targets


def _generator_seed(seed: int) -> int:
    """The seed of a dataset's generator in this process: `seed` in the main process, mixed with the worker's
    (per-epoch) torch seed in a DataLoader worker so that workers and epochs draw differently but reproducibly."""
    info = torch.utils.data.get_worker_info()
    if info is None:
        return seed
    return int(np.random.SeedSequence([seed, info.seed]).generate_state(1, dtype=np.uint64)[0])


class _ItemMaker:
    """What both datasets share: decoding with bad-file handling, training crops and mixup, targets."""

    def __init__(
        self,
        label_space: LabelSpace,
        train: bool,
        max_samples: int | None,
        augment: AugmentConfig | None,
        soft_targets: bool | None,
        seed: int,
        on_bad_file: OnBadFile,
        sampling_rate: int,
        context: str,
    ) -> None:
        _check_on_bad_file(on_bad_file)
        if max_samples is not None and max_samples < 1:
            raise ValueError(f"max_samples must be positive, got {max_samples}")
        self.label_space = label_space
        self.train = train
        self.max_samples = max_samples
        self.augment = (augment or AugmentConfig()) if train else AugmentConfig()
        self.soft_targets = _resolve_soft_targets(soft_targets, label_space, self.augment.mixup > 0)
        self.seed = seed
        self.on_bad_file = on_bad_file
        self.sampling_rate = check_sampling_rate(sampling_rate)
        self.bad_files = BadFileLog(context)
        self._generator: torch.Generator | None = None
        self._generator_seed: int | None = None

    def decode(self, example: Mapping[str, Any]) -> torch.Tensor | None:
        """The clip's waveform, or None when it is unreadable and skipped."""
        try:
            return decode_example(example, self.sampling_rate)
        except UnreadableAudioError as error:
            if self.on_bad_file == "error":
                raise
            self.bad_files.record(error)
            return None

    def next_seed(self) -> int:
        """A fresh item seed from this process's generator."""
        seed = _generator_seed(self.seed)
        if self._generator is None or seed != self._generator_seed:
            self._generator, self._generator_seed = torch.Generator().manual_seed(seed), seed
        return int(torch.randint(0, 2**63 - 1, (), generator=self._generator))

    def item(self, waveform: torch.Tensor, labels: Sequence[str], partner: Partner) -> Item:
        """The dataset item of a decoded clip.

        Training: a random crop to `max_samples`, then, with probability `augment.mixup`, mixup with the clip
        `partner` draws (also cropped at random; no mixup when it draws none), and the item's seed. Evaluation: the
        first `max_samples` samples and the plain target.
        """
        if not self.train:
            if self.max_samples is not None:
                waveform = waveform[: self.max_samples]
            target = self.label_space.multi_hot(labels) if self.soft_targets else self.label_space.target(labels)
            return {"audio": waveform, "labels": target}
        seed = self.next_seed()
        generator = item_generator(seed, _WAVEFORM_STREAM)
        waveform = self._crop(waveform, generator)
        target = self.label_space.multi_hot(labels) if self.soft_targets else self.label_space.target(labels)
        if self.augment.mixup > 0 and float(torch.rand((), generator=generator)) < self.augment.mixup:
            other = partner(generator)
            if other is not None:
                lam = sample_mixup_lambda(self.augment.mixup_alpha, generator)
                waveform = mix_waveforms(waveform, self._crop(other[0], generator), lam)
                target = mix_targets(target, self.label_space.multi_hot(other[1]), lam)
        return {"audio": waveform, "labels": target, "seed": seed}

    def _crop(self, waveform: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        return waveform if self.max_samples is None else random_crop(waveform, self.max_samples, generator)


class AudioDataset(torch.utils.data.Dataset):
    """Map-style dataset of labelled clips for `Trainer`: decodes on access, returns `Item`s (or None when an
    unreadable clip is skipped; `AudioCollator` drops those).

    Args:
        examples: Random-access `Example`s (a list from `folder_examples`/`manifest_examples`, or `HubExamples`).
        label_space: Classes and task; every label of `examples` must be in it.
        train: Training set: random crops, mixup (per `augment`) and a per-item `seed` for the collator's
            SpecAugment and noise. Evaluation sets (`train=False`) are deterministic and never augmented.
        max_samples: Longest waveform kept, normally `num_samples_for_frames(feature_extractor.max_length)`:
            training clips are cropped to it at a random offset, evaluation clips cut after it. None keeps clips whole
            (the collator still truncates the features to `max_length` frames, left-aligned).
        augment: Augmentations of a training set (ignored for evaluation). Mixup draws its partner uniformly from this
            whole dataset, as the original code does; the partner is cropped at random too.
        soft_targets: Labels as float (num_labels,) vectors instead of class indices. Default: for multi-label tasks,
            and for a single-label training set with mixup (mixed labels are soft targets).
        seed: Seed of the augmentations. Item seeds come from one generator per process, drawn in access order; in
            DataLoader workers it is re-seeded from the worker's torch seed, which differs per worker and epoch.
        on_bad_file: "error" raises `UnreadableAudioError` naming the clip; "skip" returns None for it, records it in
            `bad_files` and warns with the count at the end of each pass (every `len(self)` reads).
        sampling_rate: Rate clips are decoded to, that of the feature extractor.
    """

    def __init__(
        self,
        examples: Sequence[Example],
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
        self.examples = examples
        context = f"{'training' if train else 'evaluation'} AudioDataset"
        self._maker = _ItemMaker(
            label_space, train, max_samples, augment, soft_targets, seed, on_bad_file, sampling_rate, context
        )
        self._reads = 0

    @property
    def label_space(self) -> LabelSpace:
        return self._maker.label_space

    @property
    def bad_files(self) -> BadFileLog:
        """Unreadable clips skipped in this process (see `BadFileLog`)."""
        return self._maker.bad_files

    def __len__(self) -> int:
        return len(self.examples)

    def __getitem__(self, index: int) -> Item | None:
        try:
            loaded = self._load(index)
            return None if loaded is None else self._maker.item(*loaded, partner=self._random_partner)
        finally:
            self._reads += 1
            if self._reads >= len(self):
                self._reads = 0
                self.bad_files.end_pass()

    def _load(self, index: int) -> tuple[torch.Tensor, list[str]] | None:
        example = self.examples[index]
        waveform = self._maker.decode(example)
        return None if waveform is None else (waveform, list(example["labels"]))

    def _random_partner(self, generator: torch.Generator) -> tuple[torch.Tensor, list[str]] | None:
        """A mixup partner drawn uniformly from the whole dataset (None if it is unreadable and skipped)."""
        return self._load(random_int(0, len(self) - 1, generator))


class StreamingAudioDataset(torch.utils.data.IterableDataset):
    """Iterable dataset of labelled clips streamed from `examples` (e.g. `StreamingHubExamples`, shuffled with a
    buffer); has no length, so `Trainer` needs `max_steps`.

    Arguments as for `AudioDataset`, except mixup: without random access the partner is drawn uniformly from the last
    `mixup_buffer_size` clips of the stream (none for the first clip of a pass). Unreadable clips are skipped (or
    raise) as they come, and with "skip" a warning with the count is logged when a pass over the stream ends.
    `set_epoch` is passed on to `examples` (reshuffling the stream each epoch). In DataLoader workers, a `datasets`
    stream shards itself; any other iterable is split round-robin between the workers.
    """

    def __init__(
        self,
        examples: Iterable[Example],
        label_space: LabelSpace,
        *,
        train: bool = False,
        max_samples: int | None = None,
        augment: AugmentConfig | None = None,
        soft_targets: bool | None = None,
        seed: int = 0,
        on_bad_file: OnBadFile = "error",
        sampling_rate: int = SAMPLING_RATE,
        mixup_buffer_size: int = 64,
    ) -> None:
        if mixup_buffer_size < 1:
            raise ValueError(f"mixup_buffer_size must be positive, got {mixup_buffer_size}")
        self.examples = examples
        context = f"{'training' if train else 'evaluation'} StreamingAudioDataset"
        self._maker = _ItemMaker(
            label_space, train, max_samples, augment, soft_targets, seed, on_bad_file, sampling_rate, context
        )
        self.mixup_buffer_size = mixup_buffer_size

    @property
    def label_space(self) -> LabelSpace:
        return self._maker.label_space

    @property
    def bad_files(self) -> BadFileLog:
        """Unreadable clips skipped in this process (see `BadFileLog`)."""
        return self._maker.bad_files

    def set_epoch(self, epoch: int) -> None:
        if hasattr(self.examples, "set_epoch"):
            self.examples.set_epoch(epoch)

    def __iter__(self) -> Iterator[Item]:
        recent: collections.deque[tuple[torch.Tensor, list[str]]] = collections.deque(maxlen=self.mixup_buffer_size)

        def partner(generator: torch.Generator) -> tuple[torch.Tensor, list[str]] | None:
            return recent[random_int(0, len(recent) - 1, generator)] if recent else None

        for example in self._worker_share():
            waveform = self._maker.decode(example)
            if waveform is None:
                continue
            labels = list(example["labels"])
            yield self._maker.item(waveform, labels, partner=partner)
            if self._maker.train and self._maker.augment.mixup > 0:
                recent.append((waveform, labels))
        self.bad_files.end_pass()

    def _worker_share(self) -> Iterable[Example]:
        """This worker's part of the stream: all of it outside workers or for self-sharding `datasets` streams."""
        info = torch.utils.data.get_worker_info()
        if info is None or hasattr(self.examples, "num_shards"):
            return self.examples
        return (example for position, example in enumerate(self.examples) if position % info.num_workers == info.id)


# ---------------------------------------------------------------------------------------------------------------
# Collator
# ---------------------------------------------------------------------------------------------------------------


class AudioCollator:
    """Turns dataset `Item`s into a model batch: `input_values` (B, T, F), optional `attention_mask` (B, T) and
    `labels` ((B,) int64 class indices or (B, num_labels) float32 targets, as the items hold them).

    Features are the feature extractor's Kaldi filter banks, padded with 0 in log-mel space (to `max_length` frames,
    or to the longest clip with `padding="longest"`) and truncated to `max_length`, left-aligned. Items with a `seed`
    (those of a training dataset) then get SpecAugment on the un-normalised filter banks, the normalisation
    `(x - mean) / (2 * std)`, then noise and a time roll, per `augment`; items without one are only normalised, which
    gives exactly what the feature extractor returns. None items (skipped unreadable clips) are dropped.

    Args:
        feature_extractor: Supplies the sampling rate, `max_length`, `padding_value` and the normalisation
            (`do_normalize`, `mean`, `std`); items must be at its sampling rate.
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
        batch = {"input_values": self.augment_and_normalize(features, mask, [item.get("seed") for item in kept])}
        if self.return_attention_mask:
            batch["attention_mask"] = mask.to(torch.int64)
        batch["labels"] = _stack_labels([item["labels"] for item in kept])
        return batch

    def log_mel(self, waveforms: Sequence[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """Un-normalised filter banks (B, T, F), padded with `padding_value`, and the real-frame mask (B, T) bool."""
        # A shallow copy without normalisation: SpecAugment must see the raw filter banks.
        raw_extractor = copy.copy(self.feature_extractor)
        raw_extractor.do_normalize = False
        batch = raw_extractor(
            [to_float_waveform(waveform) for waveform in waveforms],
            sampling_rate=raw_extractor.sampling_rate,
            padding=self.padding,
            truncation=True,
            return_attention_mask=True,
            return_tensors="pt",
        )
        features, mask = batch["input_values"], batch["attention_mask"].bool()
        missing = self.min_frames - features.shape[1]
        if missing > 0:
            features = torch.nn.functional.pad(features, (0, 0, 0, missing), value=raw_extractor.padding_value)
            mask = torch.nn.functional.pad(mask, (0, missing), value=False)
        return features, mask

    def augment_and_normalize(
        self, features: torch.Tensor, mask: torch.Tensor, seeds: Sequence[int | None]
    ) -> torch.Tensor:
        """SpecAugment, normalisation, noise and roll of a (B, T, F) batch; clips whose seed is None are only
        normalised. Modifies and returns `features` (noise and roll replace the rows of the clips they touch)."""
        spec_augment = self.augment.freqm > 0 or self.augment.timem > 0
        generators = [None if seed is None else item_generator(seed, _SPECTROGRAM_STREAM) for seed in seeds]
        for row, generator in zip(features, generators):
            if generator is not None and spec_augment:
                spec_augment_(row, self.augment.freqm, self.augment.timem, generator)
        extractor = self.feature_extractor
        if extractor.do_normalize:
            features.sub_(extractor.mean).div_(extractor.std * 2)
        if self.augment.noise:
            lengths = mask.sum(dim=1).tolist() if self.return_attention_mask else [None] * len(seeds)
            for index, (generator, length) in enumerate(zip(generators, lengths)):
                if generator is not None:
                    features[index] = noise_and_roll(features[index], generator, length)
        return features


def _stack_labels(labels: Sequence[torch.Tensor]) -> torch.Tensor:
    """Stack per-item targets: () int64 -> (B,) int64; (C,) float -> (B, C) float32."""
    shapes = {(tuple(label.shape), label.dtype) for label in labels}
    if len(shapes) > 1:
        raise ValueError(f"the items of a batch hold labels of different shapes/dtypes: {sorted(map(str, shapes))}")
    return torch.stack(list(labels))
