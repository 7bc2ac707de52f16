"""Tag a collection: each process takes a disjoint share of the inputs, journals its records, and the first process
merges everything into one output in input order.

Under `accelerate launch` or `torchrun` (RANK / WORLD_SIZE / LOCAL_RANK in the environment) process r tags inputs
r, r + W, r + 2W, ... of the full list, so the shares do not depend on what earlier runs finished; inputs already in
a journal or in the previous output are skipped. Every file is tagged exactly once over any number of restarts: a
record is journaled once (a killed process's torn line is dropped and the file tagged again), and the merge keeps one
record per input.

The first process holds the output's lock (`modeling_ast.locking`) from start to end, and the others start once it
does, so a second run on the same output is refused (or waits) before it reads or writes anything. Records carry what
made them (`fingerprints`): records of another model, other options or an input that changed since are refused, or
under `overwrite` tagged again; they never end up beside this run's.

With `TagOptions(events=True)` (`ast-tag --events`) the same run tags with `pipeline("sound-event-detection")`: a
record holds a recording's events and the output one row per event (`event_rows`).
"""

from __future__ import annotations

import contextlib
import datetime
import itertools
import os
import shutil
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..audio_io import audio_duration
from ..conversion.io import read_json_file
from ..events import EventOptions, class_settings, model_event_options
from ..locking import output_lock
from ..modeling_ast_frames import ASTForAudioFrameClassification
from ..onnx_inference import INT8_FILE_NAME
from ..pipeline_ast import ASTAudioClassificationPipeline
from ..pipeline_batches import StreamedInputs
from ..registration import SOUND_EVENT_DETECTION
from .fingerprints import Provenance, input_identities, model_folder, run_fingerprint
from .inputs import TagInput, collect_inputs
from .records import (
    Journal, check_output_path, journal_dir, read_journals, read_output, remove_abandoned_staging, write_output,
)

__all__ = ["TagOptions", "classify_isolated", "tag_collection"]


@dataclass(frozen=True)
class TagOptions:
    """How each recording is tagged: the pipeline's options (top_k, and long-audio mode with chunk_length_s) and how
    many recordings go through it together (`batch_size`, clip mode only; `num_workers` preprocess in parallel).

    `events`: sound events from a frame-level checkpoint instead (`pipeline("sound-event-detection")`, windows of
    `chunk_length_s`, default the model's length), cut by `threshold`, `low` and `median_window` (one value or one
    per label, `events.EventOptions`; None: the model's, `events.model_event_options`); `top_k` and `batch_size` do
    not apply and are refused there. For clip labels, None means top_k 5 and batch_size 8."""

    top_k: int | None = None
    chunk_length_s: float | None = None
    stride_length_s: float | None = None
    aggregation: str | None = None
    threshold: float | Sequence[float] | None = None
    window_batch_size: int | None = None
    batch_size: int | None = None
    num_workers: int = 0
    events: bool = False
    low: float | Sequence[float] | None = None
    median_window: int | Sequence[int] | None = None

    def __post_init__(self) -> None:
        if self.events and self.aggregation is not None:
            raise ValueError("aggregation turns window labels into clip labels; events (--events) take none")
        if self.events and (self.top_k is not None or self.batch_size is not None):
            raise ValueError("top_k and batch_size choose clip labels and batch recordings; events (--events) take "
                             "neither: every event above the threshold is kept, and --window_batch_size batches "
                             "each recording's windows")  # fmt: skip
        if not self.events:  # the clip defaults, as records written before --events store them
            object.__setattr__(self, "top_k", 5 if self.top_k is None else self.top_k)
            object.__setattr__(self, "batch_size", 8 if self.batch_size is None else self.batch_size)
        if not self.events and (self.low is not None or self.median_window is not None):
            raise ValueError("low and median_window decide where sound events end: pass events=True (--events)")
        if not self.events and isinstance(self.threshold, Sequence):
            raise ValueError("a threshold per label cuts sound events (--events); window labels take one threshold")

    @property
    def per_clip(self) -> bool:
        """Whether each recording is one forward pass (clip labels), so that recordings can be batched."""
        return not self.events and self.chunk_length_s is None

    def given_event_settings(self) -> dict[str, Any]:
        """The event settings given (threshold, low, median_window); the others are the model's."""
        given = {"threshold": self.threshold, "low": self.low, "median_window": self.median_window}
        return {name: value for name, value in given.items() if value is not None}

    def event_options(self, config: Any) -> EventOptions:
        """The event settings for a model with `config`: those given, the others the model's
        (`events.model_event_options`)."""
        return model_event_options(config, self.given_event_settings())

    def pipeline_kwargs(self) -> dict[str, Any]:
        if self.events:
            windows = {"chunk_length_s": self.chunk_length_s, "stride_length_s": self.stride_length_s,
                       "window_batch_size": self.window_batch_size}
            given = {name: value for name, value in windows.items() if value is not None}
            return {"num_workers": self.num_workers, **given, **self.given_event_settings()}
        if self.chunk_length_s is None:
            return {"top_k": self.top_k, "batch_size": self.batch_size, "num_workers": self.num_workers}
        long_mode = {
            "chunk_length_s": self.chunk_length_s, "stride_length_s": self.stride_length_s,
            "aggregation": self.aggregation, "threshold": self.threshold,
            "window_batch_size": self.window_batch_size, "return_timestamps": True,
        }
        given = {name: value for name, value in long_mode.items() if value is not None}
        return {"top_k": self.top_k, "num_workers": self.num_workers, **given}


def classify_isolated(
    classifier: Any, inputs: Sequence[TagInput], kwargs: dict[str, Any], field: str = "labels"
) -> list[dict[str, Any]]:
    """One record per input, the pipeline's answer under `field` ("labels", or "events" from sound event
    detection); a bad file costs only its own record (an error row).

    In clip mode our pipeline returns an error entry in place of a file that does not decode (`on_error="return"`),
    so the group runs once. Otherwise (long-audio mode, another pipeline, a dataset row that does not load) a group
    that raises is run again one input at a time."""
    if _returns_error_entries(classifier, kwargs):
        kwargs = {**kwargs, "on_error": "return"}
    try:
        results = classifier([item.load() for item in inputs], **kwargs)
        return [_record(item.key, result, field) for item, result in zip(inputs, results)]
    except Exception:  # noqa: BLE001 - any failure of one file must not stop the collection; retried one by one
        pass
    records = []
    for item in inputs:
        try:
            records.append(_record(item.key, classifier([item.load()], **kwargs)[0], field))
        except Exception as err:  # noqa: BLE001 - recorded in the error row, which names the exception
            records.append(_error_record(item.key, f"{type(err).__name__}: {err}", field))
    return records


def _returns_error_entries(classifier: Any, kwargs: dict[str, Any]) -> bool:
    """Whether `classifier` can put an error entry in place of an input that does not decode (`on_error="return"`):
    our pipeline in clip mode."""
    return "chunk_length_s" not in kwargs and isinstance(classifier, ASTAudioClassificationPipeline)


def _record(key: str, result: Any, field: str = "labels") -> dict[str, Any]:
    if isinstance(result, dict) and "error" in result:  # the pipeline's on_error="return" entry (a decoding error)
        return _error_record(key, f"ValueError: {result['error']}")
    if isinstance(result, dict):  # long-audio mode with timestamps
        return {"input": key, "labels": result["labels"], "windows": result["windows"], "error": None}
    return {"input": key, field: result, "error": None}


def _error_record(key: str, message: str, field: str = "labels") -> dict[str, Any]:
    return {"input": key, field: [], "error": message}


def process_share() -> tuple[int, int]:
    """(rank, world size) from the launcher's environment (accelerate launch, torchrun); (0, 1) without one."""
    return int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))


def _wait_for_everyone(world_size: int) -> None:
    """A barrier over the launched processes (gloo: CPUs and GPUs alike), with a timeout long enough for any share."""
    if world_size == 1:
        return
    import torch.distributed as dist

    if not dist.is_initialized():
        dist.init_process_group("gloo", timeout=datetime.timedelta(days=7))
    dist.barrier()


def tag_collection(
    model: str | os.PathLike | Any,
    inputs: str | os.PathLike,
    output: str | os.PathLike,
    options: TagOptions = TagOptions(),
    *,
    device: str | int | None = None,
    plot: bool = False,
    path_column: str = "path",
    audio_column: str = "audio",
    group_size: int | None = None,
    progress: bool = True,
    onnx: str | os.PathLike | None = None,
    overwrite: bool = False,
    wait_for_lock: bool = False,
) -> Path:
    """Tag every recording of `inputs` (see `collect_inputs`) with `model` (a checkpoint path, Hub id or a
    pipeline) and write one record per recording to `output` (.jsonl, .csv or .parquet); resumable, see the module
    docstring. `plot` writes a timeline PNG per recording of more than one window to `<output>.timelines/`.
    `group_size` recordings (default 4 x batch_size) are journaled together: what a kill can lose.
    `onnx` runs an exported ONNX file of a local `model` directory on CPU instead of PyTorch ("" for
    `model/model.int8.onnx`, written by `ast-export-onnx MODEL MODEL/model.onnx --quantize_int8`).
    `overwrite` tags again the inputs whose records were made with another model or options, or before the input
    changed (without it such records are refused, naming the difference). `wait_for_lock` waits for another run
    writing `output` to finish (without it that run is named in an `OutputLockedError`).
    With `options.events`, `model` is a frame-level checkpoint (`ASTForAudioFrameClassification`) and `output` gets
    one row per event (.tsv: DCASE's format); `plot` draws every recording's events.
    Returns the output path (written by the first process; every process returns once it exists).
    """
    output = check_output_path(output, options.events)
    if plot and options.chunk_length_s is None and not options.events:
        raise ValueError("--plot draws the windows of long-audio mode: pass chunk_length_s as well")
    if onnx is not None and options.events:
        raise ValueError("--onnx runs exported audio-classification models; --events runs the frame-level model "
                         "in PyTorch")
    rank, world_size = process_share()
    with output_lock(output, wait=wait_for_lock) if rank == 0 else contextlib.nullcontext():
        _wait_for_everyone(world_size)  # the other processes start once the first holds the lock
        if rank == 0:
            remove_abandoned_staging(output)
        items = collect_inputs(inputs, path_column=path_column, audio_column=audio_column)
        onnx_path = None if onnx is None else _onnx_path(model, onnx)
        folder = model_folder(model) if isinstance(model, (str, os.PathLike)) else None
        _check_model_kind(model, folder, options.events)
        provenance = Provenance(run_fingerprint(model, folder, onnx_path, options), input_identities(items, inputs))
        share = _share_to_tag(items[rank::world_size], output, provenance, overwrite, options.events)
        if share:
            classifier = _classifier(model if folder is None else folder, device, onnx_path, options.events)
            _tag_share(classifier, share, journal_dir(output), rank, options, group_size, progress and rank == 0, plot,
                       output, provenance)
        _wait_for_everyone(world_size)
        if rank == 0:
            _write_merged(output, items, provenance, options.events)
        _wait_for_everyone(world_size)
    return output


def _check_model_kind(model: Any, folder: Path | None, events: bool) -> None:
    """ValueError naming the model when it does not make what the run writes: a frame-level checkpoint makes events
    (--events), any other audio classifier clip labels. A folder without config.json is left to the loader."""
    if folder is None:
        frames = isinstance(getattr(model, "model", None), ASTForAudioFrameClassification)
        name = getattr(getattr(model, "model", None), "name_or_path", "") or type(model).__name__
    elif (folder / "config.json").is_file():
        architectures = read_json_file(folder / "config.json").get("architectures") or []
        frames, name = ASTForAudioFrameClassification.__name__ in architectures, os.fspath(model)
    else:
        return
    if events and not frames:
        raise ValueError(
            f"model {name} classifies whole clips; --events needs a frame-level sound event detection checkpoint "
            f"({ASTForAudioFrameClassification.__name__}, README 'Sound event detection'), or leave out --events to "
            "write clip labels"
        )
    if frames and not events:
        raise ValueError(
            f"model {name} is a frame-level sound event detection checkpoint ({ASTForAudioFrameClassification.__name__}"
            "): pass --events to write its events, one row per event"
        )


def _share_to_tag(
    share: list[TagInput], output: Path, provenance: Provenance, overwrite: bool, events: bool
) -> list[TagInput]:
    """The inputs of `share` without a current record in `output` or its journal. Records that are not current
    are refused (ValueError naming what differs), or with `overwrite` not counted: their inputs are tagged again."""
    journals = journal_dir(output)
    previous = read_output(output, events) + read_journals(journals)
    if not overwrite:
        provenance.check(previous, f"{output} (or its journal {journals.name})")
    done = {record["input"] for record in previous if provenance.is_current(record)}
    return [item for item in share if item.key not in done]


def _write_merged(output: Path, items: list[TagInput], provenance: Provenance, events: bool) -> None:
    """Write the current records of the previous output and the journals to `output`, and remove the journals."""
    journals = journal_dir(output)
    records = read_output(output, events) + read_journals(journals)
    write_output(output, _merge(items, [record for record in records if provenance.is_current(record)]), events)
    shutil.rmtree(journals, ignore_errors=True)


def _onnx_path(model: Any, onnx: str | os.PathLike) -> Path:
    """The ONNX file run instead of PyTorch: `onnx`, or "" for the int8 file beside the checkpoint directory `model`
    (checked here, not when it is loaded: its hash is part of the records' fingerprint)."""
    if not isinstance(model, (str, os.PathLike)):
        raise ValueError("onnx needs the model as a checkpoint directory, not a pipeline object")
    folder = Path(model)
    if not folder.is_dir():
        raise ValueError(f"--onnx runs an exported file beside a local checkpoint; {folder} is not a directory")
    path = Path(onnx) if os.fspath(onnx) else folder / INT8_FILE_NAME
    if not path.is_file():
        raise ValueError(f"--onnx: no ONNX file at {path}; write one with `ast-export-onnx {folder} "
                         f"{folder / 'model.onnx'} --quantize_int8` (model.int8.onnx is written beside model.onnx)")
    return path


def _classifier(model: Any, device: str | int | None, onnx: Path | None, events: bool) -> Any:
    """The pipeline to tag with: `model` itself when it is one, else the checkpoint folder `model` loaded (for sound
    event detection with `events`), on `device` (default: this process's GPU, else the CPU), or run by onnxruntime
    from `onnx`."""
    if not isinstance(model, Path):
        return model
    import torch
    from transformers import pipeline

    if onnx is not None:
        return _onnx_classifier(model, onnx)
    if device is None:
        device = int(os.environ.get("LOCAL_RANK", 0)) if torch.cuda.is_available() else "cpu"
    task = SOUND_EVENT_DETECTION if events else "audio-classification"
    return pipeline(task, model=os.fspath(model), device=device)


def _onnx_classifier(model_dir: Path, onnx: Path) -> Any:
    """The pipeline over `ASTOnnxForAudioClassification` (CPU), with the checkpoint's feature extractor."""
    from transformers import pipeline

    from ..feature_extraction_ast import ASTFeatureExtractor
    from ..onnx_inference import ASTOnnxForAudioClassification

    onnx_model = ASTOnnxForAudioClassification.from_pretrained(model_dir, onnx_path=onnx)
    return pipeline("audio-classification", model=onnx_model,
                    feature_extractor=ASTFeatureExtractor.from_pretrained(model_dir))


def _tag_share(
    classifier: Any, share: list[TagInput], journals: Path, rank: int, options: TagOptions,
    group_size: int | None, progress: bool, plot: bool, output: Path, provenance: Provenance,
) -> None:
    """Tag `share` into this process's journal, each record stamped with what made it (`provenance`)."""
    from tqdm.auto import tqdm

    size = group_size or (4 * options.batch_size if options.per_clip else 1)
    kwargs = options.pipeline_kwargs()
    if options.events:
        _check_event_settings(classifier, options)
    paths = {item.key: item.path for item in share}
    journal = Journal(journals, rank)
    try:
        with tqdm(total=len(share), unit="file", disable=not progress, smoothing=0.1) as bar:
            for records in _record_groups(classifier, share, kwargs, size, "events" if options.events else "labels"):
                for record in records:
                    provenance.stamp(record)
                journal.append(records)
                if plot:
                    _draw_timelines(records, output, paths)
                bar.update(len(records))
    finally:
        journal.close()


def _check_event_settings(detector: Any, options: TagOptions) -> None:
    """ValueError before anything is tagged when the event settings do not fit the model's labels (one value or one
    per label); the pipeline would raise it for every recording, each becoming an error row."""
    config = detector.model.config
    class_settings(options.event_options(config), [config.id2label[index] for index in range(config.num_labels)])


def _draw_timelines(records: list[dict[str, Any]], output: Path, paths: dict[str, str | None]) -> None:
    """A timeline PNG per recording that has one: its events (over the file's length where its header tells it),
    or its windows' labels when it has more than one window."""
    from ..timeline import plot_timeline

    for record in records:
        path = timeline_path(output, record["input"])
        if "events" in record and record["error"] is None:
            file = paths.get(record["input"])
            plot_timeline(record, path, duration=audio_duration(file) if file else None)
        elif len(record.get("windows") or []) > 1:
            plot_timeline(record, path)


def _record_groups(
    classifier: Any, share: list[TagInput], kwargs: dict[str, Any], size: int, field: str
) -> Iterator[list[dict[str, Any]]]:
    """The records of `share`, `size` at a time, in share order.

    Files through a classifier that returns error entries stream through one call, so one set of DataLoader
    workers serves the whole share (starting 2 workers for every group of 32 made a tiny model's run over 3000 files
    1.7x slower). Otherwise group by group (`classify_isolated`)."""
    if not _returns_error_entries(classifier, kwargs) or any(item.path is None for item in share):
        for start in range(0, len(share), size):
            yield classify_isolated(classifier, share[start:start + size], kwargs, field)
        return
    results = classifier(StreamedInputs([item.path for item in share]), on_error="return", **kwargs)
    for start in range(0, len(share), size):
        group = share[start:start + size]
        yield [_record(item.key, result) for item, result in zip(group, itertools.islice(results, len(group)))]


def timeline_path(output: Path, key: str) -> Path:
    """`<output>.timelines/<key with / as __>.png`: one flat folder, a file name per input."""
    return output.with_name(output.name + ".timelines") / (key.replace("/", "__").replace("\\", "__") + ".png")


def _merge(items: list[TagInput], records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One record per input, in input order (records of inputs no longer listed follow, as before: never lost)."""
    by_key: dict[str, dict[str, Any]] = {}
    for record in records:
        by_key.setdefault(record["input"], record)
    ordered = [by_key.pop(item.key) for item in items if item.key in by_key]
    return ordered + list(by_key.values())
