"""What to tag: a folder, a manifest, a glob or a saved `datasets` dataset, as an ordered list of `TagInput`.

Each input has a `key` (the record's "input" field, unique in the collection, used to resume) and `source` (what the
audio-classification pipeline is given: a file path, or `{"raw", "sampling_rate"}` for a dataset row, decoded only
when the pipeline asks for it).
"""

from __future__ import annotations

import csv
import glob
import io
import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

AUDIO_SUFFIXES = (".wav", ".flac", ".ogg", ".mp3", ".opus", ".aiff", ".aif", ".m4a")
GLOB_CHARACTERS = "*?["


@dataclass(frozen=True)
class TagInput:
    """One recording: `key` names it in the output. A file has its `path`; a dataset row has `read`, which decodes it
    to a waveform dict. `load()` gives the pipeline input: the path, or the waveform dict."""

    key: str
    path: str | None = None
    read: Callable[[], dict[str, Any]] | None = None

    def load(self) -> str | dict[str, Any]:
        return self.path if self.read is None else self.read()


def collect_inputs(source: str | os.PathLike, path_column: str = "path", audio_column: str = "audio") -> list[TagInput]:
    """The recordings `source` names, in a fixed order (see the module docstring).

    folder: every file with an audio suffix below it, sorted, keyed by the path relative to the folder;
    .csv / .jsonl manifest: rows in order, keyed by `path_column` (relative paths are read from the manifest's folder);
    glob pattern: the matches, sorted, keyed as matched; a folder written by `Dataset.save_to_disk`: the rows in order,
    `audio_column` decoded on demand, keyed by the audio's path (or the row number when paths are missing or repeat).
    Raises ValueError naming `source` when it gives no recordings, or a key twice.
    """
    text = os.fspath(source)
    path = Path(text)
    if path.is_dir() and _is_saved_dataset(path):
        inputs = _dataset_inputs(path, audio_column)
    elif path.is_dir():
        files = sorted(p for p in path.rglob("*") if p.suffix.lower() in AUDIO_SUFFIXES and p.is_file())
        inputs = [_file_input(p.relative_to(path).as_posix(), p) for p in files]
    elif path.is_file() and path.suffix.lower() in (".csv", ".jsonl"):
        inputs = _manifest_inputs(path, path_column)
    elif any(character in text for character in GLOB_CHARACTERS):
        inputs = [_file_input(match, Path(match)) for match in sorted(glob.glob(text, recursive=True))]
    elif not path.exists():
        raise FileNotFoundError(f"input {text} does not exist")
    else:
        raise ValueError(
            f"input {text}: expected a folder, a .csv / .jsonl manifest, a glob pattern or a saved dataset"
        )
    if not inputs:
        raise ValueError(f"input {text} names no audio files (suffixes {', '.join(AUDIO_SUFFIXES)})")
    _check_unique([item.key for item in inputs], text)
    return inputs


def _file_input(key: str, path: Path) -> TagInput:
    return TagInput(key, path=str(path))


def _check_unique(keys: list[str], where: str) -> None:
    seen: set[str] = set()
    repeated = [key for key in keys if key in seen or seen.add(key)]
    if repeated:
        raise ValueError(f"input {where} names these recordings more than once: {repeated[:10]}")


def _manifest_inputs(path: Path, path_column: str) -> list[TagInput]:
    text = path.read_text(encoding="utf-8-sig")
    if path.suffix.lower() == ".csv":
        rows = list(csv.DictReader(io.StringIO(text, newline="")))
    else:
        rows = []
        for number, line in enumerate(text.splitlines(), start=1):
            if line.strip():
                try:
                    rows.append(json.loads(line))
                except json.JSONDecodeError as err:
                    raise ValueError(f"{path}, line {number}: not a JSON object ({err})") from err
    missing = [
        number for number, row in enumerate(rows, start=1) if not isinstance(row, dict) or not row.get(path_column)
    ]
    if missing:
        raise ValueError(f"{path}: rows {missing[:10]} have no {path_column!r} column (--path_column names it)")
    return [_file_input(row[path_column], path.parent / row[path_column]) for row in rows]


def _is_saved_dataset(path: Path) -> bool:
    return (path / "dataset_info.json").is_file() or (path / "dataset_dict.json").is_file()


def _dataset_inputs(path: Path, audio_column: str) -> list[TagInput]:
    from datasets import Audio, Dataset, load_from_disk

    dataset = load_from_disk(str(path))
    if not isinstance(dataset, Dataset):
        raise ValueError(f"{path} holds the splits {sorted(dataset)}; pass one split's folder, e.g. {path}/<split>")
    if audio_column not in dataset.column_names:
        raise ValueError(f"{path}: no column {audio_column!r} (--audio_column); columns {dataset.column_names}")
    dataset = dataset.cast_column(audio_column, Audio(decode=False))  # decoded here, on demand, with soundfile
    # the path field alone: reading the audio column would read every row's audio bytes too
    paths = [path or "" for path in dataset.select_columns(audio_column).flatten()[f"{audio_column}.path"]]
    keyed_by_path = all(paths) and len(set(paths)) == len(paths)
    keys = paths if keyed_by_path else [str(index) for index in range(len(paths))]
    return [TagInput(key, read=_row_loader(dataset, audio_column, index)) for index, key in enumerate(keys)]


def _row_loader(dataset: Any, audio_column: str, index: int) -> Callable[[], dict[str, Any]]:
    def load() -> dict[str, Any]:
        import soundfile

        audio = dataset[index][audio_column]
        source = io.BytesIO(audio["bytes"]) if audio.get("bytes") else audio["path"]
        samples, sampling_rate = soundfile.read(source, dtype="float32", always_2d=True)
        return {"raw": samples[:, 0], "sampling_rate": sampling_rate}  # channel 0, as `audio_utils.load_audio`

    return load
