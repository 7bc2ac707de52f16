"""The one reader of file lists: folders, CSV / JSON Lines manifests, glob patterns and saved `datasets` datasets.

Training (`training/sources.py`) and tagging (`tagging/inputs.py`) both list their recordings here, so they share
one set of rules: the file types of `audio_io.AUDIO_EXTENSIONS` (any case), sorted folder and glob listings, manifests
read as UTF-8 with or without a byte-order mark, relative manifest paths taken from the manifest's folder, errors that
name the file and the line, and one test for a folder written by `save_to_disk`.
"""

from __future__ import annotations

import csv
import glob
import io
import json
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .audio_io import AUDIO_EXTENSIONS

__all__ = ["GLOB_CHARACTERS", "MANIFEST_SUFFIXES", "ManifestRow", "audio_files", "glob_files", "is_manifest",
           "is_saved_dataset", "load_saved_split", "read_manifest"]  # fmt: skip

GLOB_CHARACTERS = "*?["
MANIFEST_SUFFIXES = (".csv", ".jsonl", ".json")
"""`.json` is read as JSON Lines (one object per line), as `datasets`' json loader reads such files."""


@dataclass(frozen=True)
class ManifestRow:
    """One manifest row: its `line` in the file (1-based), its `fields`, and `path`, the audio path as written."""

    line: int
    fields: dict[str, Any]
    path: str

    def resolved(self, manifest: str | os.PathLike) -> Path:
        """The audio path, taken from the manifest's folder when relative."""
        return Path(manifest).parent / self.path


def audio_files(folder: str | os.PathLike, extensions: Iterable[str] = AUDIO_EXTENSIONS) -> list[Path]:
    """Every file below `folder` (recursive) whose suffix, lower-cased, is one of `extensions`, sorted by path."""
    suffixes = {extension.lower() for extension in extensions}
    return sorted(path for path in Path(folder).rglob("*") if path.suffix.lower() in suffixes and path.is_file())


def glob_files(pattern: str) -> list[Path]:
    """The files a glob pattern matches (`**` recursive), sorted; folders it matches are left out."""
    return [Path(match) for match in sorted(glob.glob(pattern, recursive=True)) if os.path.isfile(match)]


def is_manifest(path: str | os.PathLike) -> bool:
    return Path(path).is_file() and Path(path).suffix.lower() in MANIFEST_SUFFIXES


def read_manifest(manifest: str | os.PathLike, path_column: str = "path") -> list[ManifestRow]:
    """The rows of a CSV (header line first) or JSON Lines manifest, in order; blank JSON lines are skipped.

    Raises ValueError naming the manifest and the line for a line that is not a JSON object, and for a row whose
    `path_column` is missing, empty or not a string.
    """
    path = Path(manifest)
    if path.suffix.lower() not in MANIFEST_SUFFIXES:
        raise ValueError(f"manifest {path} must be a {' / '.join(MANIFEST_SUFFIXES)} file")
    text = path.read_text(encoding="utf-8-sig")  # utf-8-sig: spreadsheet programs write a byte-order mark
    records = _csv_records(path, text) if path.suffix.lower() == ".csv" else _jsonl_records(path, text)
    return [_row(path, line, fields, path_column) for line, fields in records]


def _csv_records(path: Path, text: str) -> list[tuple[int, dict[str, Any]]]:
    reader = csv.DictReader(io.StringIO(text, newline=""))
    records = [(reader.line_num, dict(fields)) for fields in reader]
    if reader.fieldnames is None:
        raise ValueError(f"manifest {path} is empty: expected a header line naming its columns")
    return records


def _jsonl_records(path: Path, text: str) -> list[tuple[int, dict[str, Any]]]:
    records = []
    for line, content in enumerate(text.splitlines(), start=1):
        if not content.strip():
            continue
        try:
            fields = json.loads(content)
        except json.JSONDecodeError as error:
            raise ValueError(f"manifest {path}, line {line}: invalid JSON: {error}") from None
        if not isinstance(fields, dict):
            raise ValueError(f"manifest {path}, line {line}: expected a JSON object, got {type(fields).__name__}")
        records.append((line, fields))
    return records


def _row(path: Path, line: int, fields: dict[str, Any], path_column: str) -> ManifestRow:
    value = fields.get(path_column)
    if not isinstance(value, str) or not value:
        what = "no" if value is None or value == "" else f"a {type(value).__name__} (not a file path string) as its"
        raise ValueError(f"manifest {path}, line {line}: {what} {path_column!r} column; columns {sorted(fields)}")
    return ManifestRow(line, fields, value)


def is_saved_dataset(path: str | os.PathLike) -> bool:
    """Whether `path` is a folder written by `Dataset.save_to_disk` (state.json) or `DatasetDict.save_to_disk`."""
    folder = Path(path)
    return folder.is_dir() and any((folder / marker).is_file() for marker in ("state.json", "dataset_dict.json"))


def load_saved_split(path: str | os.PathLike, split: str | None = None) -> Any:
    """The `datasets.Dataset` saved at `path`: the folder's one split, or `split` of a saved DatasetDict.

    Raises ValueError naming the folder when `split` is not in it, or when it holds several splits and none is named.
    """
    from datasets import DatasetDict, load_from_disk

    loaded = load_from_disk(os.fspath(path))
    if isinstance(loaded, DatasetDict):
        if split is None:
            raise ValueError(f"{path} holds the splits {sorted(loaded)}; pass one split's folder, e.g. {path}/<split>")
        if split not in loaded:
            raise ValueError(f"dataset {path} has no split {split!r}; its splits are {list(loaded)}")
        return loaded[split]
    if split is not None and loaded.split is not None and str(loaded.split) != split:
        raise ValueError(f"dataset {path} holds the {loaded.split!s} split only, not {split!r}")
    return loaded
