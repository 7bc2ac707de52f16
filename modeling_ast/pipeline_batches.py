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

from collections.abc import Callable, Iterator, Sequence
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset

from .audio_io import audio_duration, source_name

__all__ = ["ON_ERROR", "StreamedInputs", "classify_many", "length_grouped_batches"]

LOOK_AHEAD_BATCHES = 8
ON_ERROR = ("raise", "return")


class StreamedInputs(Dataset):
    """A list of pipeline inputs that `pipeline(...)` answers lazily, in input order (see the module docstring)."""

    def __init__(self, inputs: Sequence[Any]) -> None:
        self.inputs = list(inputs)

    def __len__(self) -> int:
        return len(self.inputs)

    def __getitem__(self, index: int) -> Any:
        return self.inputs[index]


def length_grouped_batches(inputs: Sequence[Any], batch_size: int) -> Iterator[list[int]]:
    """Input indices cut into batches of `batch_size`, each look-ahead block sorted by duration first (durations of
    a list or tuple only; other inputs stay in order). Durations are read one block at a time, as batches are drawn,
    so the first batch does not wait for every file header."""
    block = batch_size * LOOK_AHEAD_BATCHES
    known = isinstance(inputs, (list, tuple))
    for first in range(0, len(inputs), block):
        indices = range(first, min(first + block, len(inputs)))
        if known:
            durations = {index: audio_duration(inputs[index]) for index in indices}
            indices = sorted(indices, key=durations.__getitem__)
        yield from (list(indices[start : start + batch_size]) for start in range(0, len(indices), batch_size))


class _PreprocessedInputs(Dataset):
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
            return index, f"could not classify {source_name(item)}: {type(err).__name__}: {err}"


def classify_many(
    inputs: Sequence[Any],
    preprocess: Callable[..., dict],
    preprocess_params: dict[str, Any],
    classify_batch: Callable[[dict[str, torch.Tensor]], list[Any]],
    collate: Callable[[list[dict[str, torch.Tensor]]], dict[str, torch.Tensor]],
    batch_size: int,
    num_workers: int,
    on_error: str = "raise",
) -> Iterator[Any]:
    """Results of `classify_batch` for every input, in input order (see the module docstring). `collate` pads
    preprocessed items into a batch (the pipeline's `pad_collate_fn`); `on_error` is "raise" or "return"."""
    if isinstance(inputs, StreamedInputs):
        inputs = inputs.inputs
    loader = DataLoader(
        _PreprocessedInputs(inputs, preprocess, preprocess_params),
        batch_sampler=length_grouped_batches(inputs, batch_size),
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
            results = classify_batch(collate([item for _, item in good]))
            waiting.update(zip((index for index, _ in good), results))
        while next_index in waiting:
            yield waiting.pop(next_index)
            next_index += 1

