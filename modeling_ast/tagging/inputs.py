"""What to tag: a folder, a manifest, a glob or a saved `datasets` dataset, as an ordered list of `TagInput`.

Each input has a `key` (the record's "input" field, unique in the collection, used to resume) and `source` (what the
audio-classification pipeline is given: a file path, or a dataset row's `{"bytes", "path"}` audio value, read only
when the pipeline asks for it and decoded by `audio_io.load_audio` like a file).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..audio_io import AUDIO_EXTENSIONS
from ..file_lists import (
    GLOB_CHARACTERS,
    audio_files,
    glob_files,
    is_manifest,
    is_saved_dataset,
    load_saved_split,
    read_manifest,
)

__all__ = ["TagInput", "collect_inputs"]


@dataclass(frozen=True)
class TagInput:
    """One recording: `key` names it in the output. A file has its `path`; a dataset row has `read`, which reads its
    audio value. `load()` gives the pipeline input: the path, or the row's audio value."""

    key: str
    path: str | None = None
    read: Callable[[], dict[str, Any]] | None = None

    def load(self) -> str | dict[str, Any]:
        return self.path if self.read is None else self.read()


def collect_inputs(source: str | os.PathLike, path_column: str = "path", audio_column: str = "audio") -> list[TagInput]:
    """The recordings `source` names, in a fixed order, listed by the one file-list reader (`file_lists`).

    folder: every file with an audio suffix (`audio_io.AUDIO_EXTENSIONS`, any case) below it, sorted, keyed by the
    path relative to the folder; .csv / .jsonl manifest: rows in order, keyed by `path_column` (relative paths are
    read from the manifest's folder); glob pattern: the files matched, sorted, keyed as matched; a folder written by
    `Dataset.save_to_disk`: the rows in order, `audio_column` read on demand, keyed by the audio's path (or the row
    number when paths are missing or repeat). Raises ValueError naming `source` when it gives no recordings, or a key
    twice.
    """
    text = os.fspath(source)
    path = Path(text)
    if is_saved_dataset(path):
        inputs = _dataset_inputs(path, audio_column)
    elif path.is_dir():
        inputs = [_file_input(file.relative_to(path).as_posix(), file) for file in audio_files(path)]
    elif is_manifest(path):
        inputs = [_file_input(row.path, row.resolved(path)) for row in read_manifest(path, path_column)]
    elif any(character in text for character in GLOB_CHARACTERS):
        inputs = [_file_input(str(match), match) for match in glob_files(text)]
    elif not path.exists():
        raise FileNotFoundError(f"input {text} does not exist")
    else:
        raise ValueError(
            f"input {text}: expected a folder, a .csv / .jsonl manifest, a glob pattern or a saved dataset"
        )
    if not inputs:
        raise ValueError(f"input {text} names no audio files (suffixes {', '.join(AUDIO_EXTENSIONS)})")
    _check_unique([item.key for item in inputs], text)
    return inputs


def _file_input(key: str, path: Path) -> TagInput:
    return TagInput(key, path=str(path))


def _check_unique(keys: list[str], where: str) -> None:
    seen: set[str] = set()
    repeated = [key for key in keys if key in seen or seen.add(key)]
    if repeated:
        raise ValueError(f"input {where} names these recordings more than once: {repeated[:10]}")


def _dataset_inputs(path: Path, audio_column: str) -> list[TagInput]:
    from datasets import Audio

    dataset = load_saved_split(path)
    if audio_column not in dataset.column_names:
        raise ValueError(f"{path}: no column {audio_column!r} (--audio_column); columns {dataset.column_names}")
    dataset = dataset.cast_column(audio_column, Audio(decode=False))  # {"bytes", "path"}, decoded by audio_io
    # the path field alone: reading the audio column would read every row's audio bytes too
    paths = [path or "" for path in dataset.select_columns(audio_column).flatten()[f"{audio_column}.path"]]
    keyed_by_path = all(paths) and len(set(paths)) == len(paths)
    keys = paths if keyed_by_path else [str(index) for index in range(len(paths))]
    return [TagInput(key, read=_row_reader(dataset, audio_column, index)) for index, key in enumerate(keys)]


def _row_reader(dataset: Any, audio_column: str, index: int) -> Callable[[], dict[str, Any]]:
    """The row's `{"bytes", "path"}` audio value, read when the pipeline asks for it (and decoded there)."""
    return lambda: dataset[index][audio_column]
