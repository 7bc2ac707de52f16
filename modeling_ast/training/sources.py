"""Where labelled training clips come from: folders of audio files, CSV/JSON Lines manifests, `datasets` datasets.

Every source yields examples `{"audio": path | bytes | array, "sampling_rate": int | None, "labels": list[str],
"name": str}` (`Example`):

- `folder_examples`: a folder of audio files, labelled by class sub-folder or by a regex on the relative path, split
  into train/eval by another regex;
- `manifest_examples`: CSV (`path,label`, several labels `;`-separated) or JSON Lines (`{"path": ..., "label": ... or
  [...]}`) manifests, paths relative to the manifest;
- `load_hub_examples`: one split of a Hugging Face `datasets` dataset (Hub name, local `save_to_disk` folder or local
  data folder), with `streaming=True` for an iterable stream. Audio is read with `Audio(decode=False)` and decoded by
  `decoding.decode_example` with the package's one loader, `audio_io` (no torchcodec needed).
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any, TypedDict

import numpy as np
import torch
from transformers.utils import logging

from ..audio_io import AUDIO_EXTENSIONS
from ..file_lists import ManifestRow, audio_files, is_saved_dataset, load_saved_split, read_manifest
from .labels import LabelSpace, list_names

logger = logging.get_logger(__name__)

__all__ = [
    "Example",
    "HubExamples",
    "StreamingHubExamples",
    "folder_examples",
    "load_hub_examples",
    "manifest_examples",
]


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
    eval_regex: str | None = None,
    extensions: str | Sequence[str] | None = None,
) -> dict[str, list[Example]]:
    """Labelled clips of the audio files under `data_dir` (searched recursively, sorted by path) whose extension is in
    `extensions` (any case; default `audio_io.AUDIO_EXTENSIONS`, every format the loader reads).

    Labels: without `label_regex` each file's label is the name of the folder holding it (`data_dir/dog/1.wav` and
    `data_dir/train/dog/1.wav` are both "dog"; files directly in `data_dir` are an error). With `label_regex`, the
    regex is searched in the path relative to `data_dir` (POSIX separators) and the label is its group named `label`,
    else its first group, else the whole match (FSDD `{digit}_{speaker}_{take}.wav`: `^(\\d+)_`).

    Split: with `eval_regex`, files whose relative path matches it go to "eval", the others to "train"; without it all
    go to "train". Returns `{"train": [...]}` or `{"train": [...], "eval": [...]}`. Raises `ValueError` naming the
    files that get no label, or when there is no audio file at all.
    """
    root = Path(data_dir)
    if not root.is_dir():
        raise FileNotFoundError(f"audio folder {root} does not exist")
    suffixes = _suffixes(AUDIO_EXTENSIONS if extensions is None else extensions)
    files = audio_files(root, suffixes)
    if not files:
        raise ValueError(f"no audio files ({', '.join(sorted(suffixes))}) found under {root}")
    label_pattern = None if label_regex is None else _compile(label_regex, "label_regex")
    eval_pattern = None if eval_regex is None else _compile(eval_regex, "eval_regex")

    splits: dict[str, list[Example]] = {"train": []} if eval_pattern is None else {"train": [], "eval": []}
    unlabelled = []
    for path in files:
        relative = path.relative_to(root).as_posix()
        label = _folder_label(relative, label_pattern)
        if not label:
            unlabelled.append(relative)
            continue
        split = "eval" if eval_pattern is not None and eval_pattern.search(relative) else "train"
        splits[split].append(_path_example(path, [label]))
    if unlabelled:
        how = f"label_regex {label_regex!r} finds no label in" if label_pattern else "no class sub-folder holds"
        raise ValueError(f"{how} {len(unlabelled)} file(s) under {root}: {list_names(unlabelled)}")
    return splits


def _folder_label(relative: str, pattern: re.Pattern[str] | None) -> str:
    """Label of one file from its relative POSIX path: the regex's label, or the parent folder's name ("" if none)."""
    if pattern is None:
        return PurePosixPath(relative).parent.name
    match = pattern.search(relative)
    return "" if match is None else _label_from_match(match)


def manifest_examples(manifest: str | os.PathLike) -> list[Example]:
    """Labelled clips listed in a CSV (`.csv`) or JSON Lines (`.jsonl`, `.json`) manifest (`file_lists.read_manifest`).

    CSV: a header with a `path` column and a `label` (or `labels`) column; several labels of one clip are separated
    by `;`. JSON Lines: one object per line with `path` and `label` (or `labels`), a string or a list of strings.
    Relative paths are taken from the manifest's folder. A clip may have no label (an empty field or list: a negative
    clip of a multi-label task). Files are not opened here; a missing file is an unreadable file when decoded. A file
    listed more than once is kept as listed (each row is a clip), with a warning naming the file and its lines: rows
    with the same labels are duplicates, and one file under different labels is most likely a multi-label clip
    split over rows.
    """
    path = Path(manifest)
    if not path.is_file():
        raise FileNotFoundError(f"manifest {path} does not exist")
    rows = read_manifest(path)
    if not rows:
        raise ValueError(f"manifest {path} lists no files")
    labelled = [(row, _row_labels(path, row)) for row in rows]
    _warn_repeated_files(path, labelled)
    return [_path_example(row.resolved(path), labels) for row, labels in labelled]


def _row_labels(manifest: Path, row: ManifestRow) -> list[str]:
    """Labels of a row: `label` or `labels`; in CSV one string, `;`-separated, in JSON a string or list of strings."""
    where = f"manifest {manifest}, line {row.line}"
    if "label" not in row.fields and "labels" not in row.fields:
        raise ValueError(f"{where}: no `label` (or `labels`) column; columns {sorted(row.fields)}")
    value = row.fields.get("label", row.fields.get("labels"))
    if manifest.suffix.lower() == ".csv":
        return [label.strip() for label in (value or "").split(";") if label.strip()]
    values = [value] if isinstance(value, str) else value
    if not isinstance(values, list) or not all(isinstance(label, str) for label in values):
        raise ValueError(f"{where}: the label must be a string or a list of strings, got {value!r}")
    return [label.strip() for label in values if label.strip()]


def _warn_repeated_files(manifest: Path, rows: Sequence[tuple[ManifestRow, list[str]]]) -> None:
    """Warn about files listed on several rows: with the same labels (duplicates) or with different ones."""
    listings: dict[str, list[tuple[int, list[str]]]] = {}
    for row, labels in rows:
        listings.setdefault(os.path.normpath(row.resolved(manifest)), []).append((row.line, sorted(labels)))
    duplicates, conflicts = [], []
    for file, entries in listings.items():
        if len(entries) > 1:
            lines = ", ".join(str(line) for line, _ in entries)
            label_sets = {";".join(labels) or "no label" for _, labels in entries}
            if len(label_sets) == 1:
                duplicates.append(f"{file} (lines {lines})")
            else:
                conflicts.append(f"{file} (lines {lines}: {' / '.join(sorted(label_sets))})")
    if duplicates:
        logger.warning(
            f"manifest {manifest}: {len(duplicates)} file(s) listed more than once with the same labels, so drawn "
            f"more often: {list_names(duplicates)}"
        )
    if conflicts:
        logger.warning(
            f"manifest {manifest}: {len(conflicts)} file(s) listed under different labels (each row trains towards "
            f"its own; a clip with several labels is one row, labels separated by ';'): {list_names(conflicts)}"
        )


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

    def label_space(
        self, multi_label: bool | None = None, label_lists: Sequence[Sequence[str]] | None = None
    ) -> LabelSpace:
        """Labels of a ClassLabel column (all its names) or those seen in the split, sorted; task from the data.
        `label_lists`: the split's `label_lists()` if the caller has already read them (not read again)."""
        label_lists = self.label_lists() if label_lists is None else label_lists
        return LabelSpace.infer(label_lists, names=self.columns.class_names, multi_label=multi_label)


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
    audio_column_name: str = "audio",
    label_column_name: str = "label",
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
    columns = _HubColumns.from_features(dataset.features, source, audio_column_name, label_column_name)
    dataset = dataset.select_columns([audio_column_name, label_column_name])
    if isinstance(dataset.features[audio_column_name], datasets.Audio):
        dataset = dataset.cast_column(audio_column_name, datasets.Audio(decode=False))
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
    if not is_saved_dataset(dataset_name):
        return datasets.load_dataset(
            os.fspath(dataset_name), config_name, split=split, streaming=streaming, **load_kwargs
        )
    loaded = load_saved_split(dataset_name, split)
    return loaded.to_iterable_dataset() if streaming else loaded


