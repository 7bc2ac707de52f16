"""Many clips through the pipeline: decoding in DataLoader workers, batches of similar length, results in input order.

`pipeline(list_of_inputs, batch_size=B, num_workers=W)` runs `preprocess` (decoding, resampling, features) in W
DataLoader workers while the model runs. Within each look-ahead block of `LOOK_AHEAD_BATCHES * B` inputs the clips are
ordered by their duration (read from file headers, or array lengths; inputs whose duration is not cheap to know count as
0) and cut into batches of B, so that a batch pads little; results are put back in input order before they are
yielded, so at most one block of results waits. An input that fails to decode raises a ValueError naming it, or with
`on_error="return"` gives `{"error": message, "input": input}` in its place while every other result comes back.

A list is answered with one list at the end; `pipeline(StreamedInputs(paths), ...)` gives the same results one at a
time as they come (transformers streams a torch `Dataset`), e.g. to save them as a long run goes, with one set of
workers for the whole run.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import soundfile
import torch
from torch.utils.data import DataLoader, Dataset

LOOK_AHEAD_BATCHES = 8
ON_ERROR = ("raise", "return")


def describe(item: Any) -> str:
    """How an input is named in error messages: a path as itself, anything else by its type."""
    if isinstance(item, (str, os.PathLike)):
        return repr(os.fspath(item))
    if isinstance(item, dict) and isinstance(item.get("path"), str):
        return repr(item["path"])
    return f"a {type(item).__name__} input"


def duration(item: Any) -> float:
    """Seconds of audio in an input when cheap to know (a file header, an array's length), else 0."""
    try:
        if isinstance(item, (str, os.PathLike)):
            return soundfile.info(os.fspath(item)).duration
        if isinstance(item, dict) and "sampling_rate" in item:
            samples = item["raw"] if "raw" in item else item["array"]
            return len(samples) / item["sampling_rate"]
    except Exception:  # noqa: BLE001  (an unreadable input is reported when it is decoded, in order)
        return 0.0
    return 0.0


class StreamedInputs(Dataset):
    """A list of pipeline inputs that `pipeline(...)` answers lazily, in input order (see the module docstring)."""

    def __init__(self, inputs: Sequence[Any]) -> None:
        self.inputs = list(inputs)

    def __len__(self) -> int:
        return len(self.inputs)

    def __getitem__(self, index: int) -> Any:
        return self.inputs[index]


def length_grouped_batches(durations: Sequence[float], batch_size: int) -> list[list[int]]:
    """Input indices cut into batches of `batch_size`, each look-ahead block sorted by duration first."""
    block = batch_size * LOOK_AHEAD_BATCHES
    batches = []
    for first in range(0, len(durations), block):
        indices = sorted(range(first, min(first + block, len(durations))), key=lambda index: durations[index])
        batches.extend(indices[start : start + batch_size] for start in range(0, len(indices), batch_size))
    return batches


class PreprocessedInputs(Dataset):
    """Item i: (i, features) or (i, error message naming the input); preprocess runs in the DataLoader's workers."""

    def __init__(self, inputs: Sequence[Any], preprocess: Callable[..., dict], params: dict[str, Any]) -> None:
        self.inputs, self.preprocess, self.params = inputs, preprocess, params

    def __len__(self) -> int:
        return len(self.inputs)

    def __getitem__(self, index: int) -> tuple[int, dict[str, torch.Tensor] | str]:
        item = self.inputs[index]
        try:
            return index, dict(self.preprocess(item, **self.params))
        except Exception as err:  # noqa: BLE001  (any decoding failure becomes a message naming the input)
            return index, f"could not classify {describe(item)}: {type(err).__name__}: {err}"


def pad_raw_features(
    features: list[dict[str, torch.Tensor]], padding_value: float
) -> dict[str, torch.Tensor]:
    """Raw (un-normalised) `input_values` (1, T_i, F) and `attention_mask` (1, T_i) -> a right-padded batch (B, T, F)
    and (B, T): padding frames hold the raw `padding_value`, as the feature extractor pads before normalising."""
    frames = max(item["input_values"].shape[1] for item in features)
    first = features[0]["input_values"]
    values = first.new_full((len(features), frames, first.shape[2]), padding_value)
    batch = {"input_values": values}
    for row, item in enumerate(features):
        values[row, : item["input_values"].shape[1]] = item["input_values"][0]
    if "attention_mask" in features[0]:
        batch["attention_mask"] = torch.zeros(len(features), frames, dtype=torch.int64)
        for row, item in enumerate(features):
            batch["attention_mask"][row, : item["attention_mask"].shape[1]] = item["attention_mask"][0]
    return batch


def classify_many(
    inputs: Sequence[Any],
    preprocess: Callable[..., dict],
    preprocess_params: dict[str, Any],
    classify_batch: Callable[[dict[str, torch.Tensor]], list[Any]],
    padding_value: float,
    batch_size: int,
    num_workers: int,
    on_error: str = "raise",
) -> Iterator[Any]:
    """Results of `classify_batch` for every input, in input order (see the module docstring)."""
    if on_error not in ON_ERROR:
        raise ValueError(f"on_error must be one of {ON_ERROR}, got {on_error!r}")
    if isinstance(inputs, StreamedInputs):
        inputs = inputs.inputs
    durations = [duration(item) for item in inputs] if isinstance(inputs, (list, tuple)) else [0.0] * len(inputs)
    loader = DataLoader(
        PreprocessedInputs(inputs, preprocess, preprocess_params),
        batch_sampler=length_grouped_batches(durations, batch_size),
        num_workers=num_workers,
        collate_fn=list,
    )
    waiting: dict[int, Any] = {}
    next_index = 0
    for batch in loader:
        good = [(index, item) for index, item in batch if not isinstance(item, str)]
        for index, message in ((index, item) for index, item in batch if isinstance(item, str)):
            if on_error == "raise":
                raise ValueError(message)
            waiting[index] = {"error": message, "input": inputs[index]}
        if good:
            results = classify_batch(pad_raw_features([item for _, item in good], padding_value))
            waiting.update(zip((index for index, _ in good), results))
        while next_index in waiting:
            yield waiting.pop(next_index)
            next_index += 1

