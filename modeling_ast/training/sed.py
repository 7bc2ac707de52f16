"""Training sound event detection: strong and weak labels, frame targets that follow the augmentations, metrics.

Labels. Strong labels are events (onset s, offset s, label) from a DCASE TSV (`filename onset offset event_label`) or
JSON Lines with the same fields; weak labels are clip labels from a DCASE weak TSV (`filename event_labels`,
comma-separated). A run may mix both: a clip with strong labels is strong, a clip only in the weak file is weak.

Frame targets (`frame_targets`). Column j of the model (`modeling_ast_frames.column_centres`) stands for the interval
[centre_j - hop / 2, centre_j + hop / 2) (hop = `column_hop`, 0.1 s at time stride 10); it is positive for label c
when that interval overlaps an event [onset, offset) of c by any amount. Items carry their events in seconds and
the collator makes the targets after every augmentation, from the moved events:

- random crop (training clips longer than `max_length`): events move by minus the crop start and are cut to the
  window (`crop_events`);
- mixup: the mixture holds both clips' events (their union; targets and clip labels are the maximum of the two, not
  the lambda mix): with lambda ~ Beta(10, 10) both sounds stay clearly audible, so each event is fully present, and
  a frame where only one clip has an event is not half an event. A mixture with a weak clip is weak;
- time roll (`noise_and_roll_shift`, by whole 10 ms frames, so not a multiple of the column hop in general): events
  move by shift x 10 ms, wrapping around the clip's rolled length (an event that wraps becomes two), and the targets
  are recomputed (`roll_events`);
- SpecAugment time masks: targets unchanged, since the event still happened (as clip labels are left unchanged).

Bad label rows (`LabelRowCheck`). Every row of the label files is checked before training starts: its clip must be a
file of the split's audio folder; a strong row's event must have 0 <= onset < offset (`sed_metrics.checked_event`)
and end by the clip's end (`END_TOLERANCE_S`); an evaluation event's label must be a training label (the label space
is the training labels'). A bad row is a ValueError naming the labels file and line, or, with on_bad_file "skip", left
out and counted (`TaskData.skipped_rows`). A skipped row takes only its own event: the clip's other rows still count,
and a clip all of whose rows are skipped is left out.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, NamedTuple

import torch
from transformers.utils import logging

from ..audio_io import audio_duration
from ..configuration_ast import ASTConfig
from ..fbank import FrameSpec
from ..file_lists import read_manifest
from ..modeling_ast_frames import ASTForAudioFrameClassification, column_centres, column_hop
from .augment import crop_start, mix_waveforms, sample_mixup_lambda
from .collator import AudioCollator
from .datasets import AudioDataset, Item
from .decoding import OnBadFile, check_on_bad_file
from .labels import LabelSpace, list_names
from .sampling import WAVEFORM_STAGE, seeded_generator
from .sed_metrics import Event, LabelRow, checked_event, events_by_clip, read_strong_rows
from .sources import Example
from .task import TaskData, task_from_examples

logger = logging.get_logger(__name__)

__all__ = [
    "END_TOLERANCE_S",
    "LabelRowCheck",
    "SEDArguments",
    "SEDCollator",
    "SEDDataset",
    "WeakRow",
    "crop_events",
    "frame_model",
    "frame_targets",
    "read_strong_label_rows",
    "read_strong_labels",
    "read_weak_labels",
    "read_weak_rows",
    "roll_events",
    "sed_examples",
    "sed_task",
]

END_TOLERANCE_S = 0.001
"""How far past its clip's end an event may end. Label TSVs hold times in seconds with 3 decimals
(`sed_metrics.write_events_tsv` rounds, other tools may round up), so an event that ends with its clip is written up
to 1 ms after the clip's exact length (a 159 995-sample clip at 16 kHz is 9.9996875 s; its end is written 10.000)."""


class WeakRow(NamedTuple):
    """One data row of a weak-label file: the `clip` it names, its `labels` and `where` it is ("FILE, line N")."""

    clip: str
    labels: list[str]
    where: str


@dataclass
class SEDArguments:
    """Sound event detection data: strong and/or weak training labels of the clips in --audio_dir, strong
    evaluation labels. Any of them trains `ASTForAudioFrameClassification` instead of a clip classifier."""

    strong_labels: str | None = field(
        default=None,
        metadata={"help": "Strong training labels: DCASE TSV (filename onset offset event_label) or JSONL."},
    )
    weak_labels: str | None = field(
        default=None, metadata={"help": "Weak training labels: DCASE TSV (filename event_labels, comma-separated)."}
    )
    audio_dir: str | None = field(default=None, metadata={"help": "Folder of the training clips the labels name."})
    eval_strong_labels: str | None = field(default=None, metadata={"help": "Strong labels of the evaluation clips."})
    eval_audio_dir: str | None = field(default=None, metadata={"help": "Folder of the evaluation clips."})
    validation_strong_labels: str | None = field(
        default=None,
        metadata={"help": "Strong labels of validation clips: after training, the event threshold and median window "
                          "with the best event F1 on them become the model's defaults (config.event_options)."},
    )
    validation_audio_dir: str | None = field(default=None, metadata={"help": "Folder of the validation clips."})

    def __post_init__(self) -> None:
        if self.is_sed and not (self.audio_dir and self.eval_strong_labels and self.eval_audio_dir):
            raise ValueError("sound event detection needs --audio_dir, --eval_strong_labels and --eval_audio_dir")
        if bool(self.validation_strong_labels) != bool(self.validation_audio_dir):
            raise ValueError("give --validation_strong_labels and --validation_audio_dir together")
        if self.validation_strong_labels and not self.is_sed:
            raise ValueError("--validation_strong_labels choose event settings: they need --strong_labels or "
                             "--weak_labels (sound event detection)")

    @property
    def is_sed(self) -> bool:
        return bool(self.strong_labels or self.weak_labels)


def sed_task(args: SEDArguments, on_bad_file: OnBadFile = "error") -> TaskData:
    """The task of `args`' label files (multi-label; its datasets are `SEDDataset`s), every row checked
    (`LabelRowCheck`): a bad row is a ValueError naming its file and line, or with `on_bad_file` "skip" left out and
    listed in the task's `skipped_rows` (split -> messages) and a warning."""
    check_on_bad_file(on_bad_file)
    train_rows = LabelRowCheck(Path(args.audio_dir), on_bad_file)
    strong = train_rows.strong(read_strong_label_rows(args.strong_labels)) if args.strong_labels else {}
    weak = train_rows.weak(read_weak_rows(args.weak_labels)) if args.weak_labels else {}
    train = sed_examples(args.audio_dir, strong, weak)
    training_labels = frozenset(label for example in train for label in example["labels"])
    checks = {"train": train_rows}

    def strong_split(split: str, labels: str | None, audio_dir: str | None) -> list[Example]:
        if not labels:
            return []
        checks[split] = LabelRowCheck(Path(audio_dir), on_bad_file, training_labels)
        return sed_examples(audio_dir, checks[split].strong(read_strong_label_rows(labels)), {})

    evaluation = strong_split("eval", args.eval_strong_labels, args.eval_audio_dir)
    validation = strong_split("validation", args.validation_strong_labels, args.validation_audio_dir)
    if args.validation_strong_labels and not validation:
        raise ValueError(f"{args.validation_strong_labels} lists no validation clip")
    files = " + ".join(str(name) for name in (args.strong_labels, args.weak_labels) if name)
    source = f"events {files} / {args.eval_strong_labels}"
    task = task_from_examples(train, evaluation, source, True, on_bad_file == "error")
    skipped = {split: check.skipped for split, check in checks.items()}
    for split, messages in skipped.items():
        if messages:
            more = f"; and {len(messages) - 5} more" if len(messages) > 5 else ""
            logger.warning(f"{split} labels: skipped {len(messages)} bad row(s): {'; '.join(messages[:5])}{more}")
    return replace(task, dataset_class=SEDDataset, skipped_rows=skipped, validation=validation)


@dataclass
class LabelRowCheck:
    """The check of one split's label rows against its `audio_dir` and, for evaluation labels, the training
    `labels` (None for the training split, whose labels make the label space). A bad row (module docstring) is a
    ValueError naming its file and line, or with `on_bad_file` "skip" left out and its message kept in `skipped`."""

    audio_dir: Path
    on_bad_file: OnBadFile = "error"
    labels: frozenset[str] | None = None
    skipped: list[str] = field(default_factory=list)
    durations: dict[str, float] = field(default_factory=dict)  # clip -> seconds, read once per clip

    def strong(self, rows: Sequence[LabelRow]) -> dict[str, list[Event]]:
        """Clip -> events of the good rows (a clip listed without events -> [])."""
        return events_by_clip(row for row in rows if self._keep(self._problem(row.clip, row.event, row.where)))

    def weak(self, rows: Sequence[WeakRow]) -> dict[str, list[str]]:
        """Clip -> labels of the good rows."""
        return {row.clip: row.labels for row in rows if self._keep(self._problem(row.clip, None, row.where))}

    def _keep(self, problem: str | None) -> bool:
        if problem is None:
            return True
        if self.on_bad_file == "error":
            raise ValueError(f"{problem} (on_bad_file 'skip' skips such rows)")
        self.skipped.append(problem)
        return False

    def _problem(self, clip: str, event: Event | None, where: str) -> str | None:
        """What is wrong with a row naming `clip` (and `event`), as a message naming `where`; None if nothing."""
        path = self.audio_dir / clip
        if not path.is_file():
            return f"{where}: {clip!r} is not a file in the audio folder {self.audio_dir}"
        if event is None:
            return None
        try:
            _, offset, label = checked_event(*event, where)
        except ValueError as error:
            return str(error)
        if clip not in self.durations:
            self.durations[clip] = audio_duration(path)
        # 0.0 when the header does not tell (m4a): such a clip's events are not checked against its end; the
        # training crop cuts them to the audio (`crop_events`)
        duration = self.durations[clip]
        if duration and offset > duration + END_TOLERANCE_S:
            return f"{where}: the event ends at {offset} s, after the end of {clip} ({duration:.4f} s)"
        if self.labels is not None and label not in self.labels:
            return (f"{where}: label {label!r} is not a training label ({list_names(sorted(self.labels))}); the model "
                    "cannot detect a class it never trains on")  # fmt: skip
        return None


def frame_model(model_name_or_path: str, label_space: LabelSpace) -> ASTForAudioFrameClassification:
    """The encoder of any AST checkpoint this package loads, with a frame head for `label_space` (new when the
    checkpoint's head does not fit)."""
    return ASTForAudioFrameClassification.from_pretrained(
        model_name_or_path, **label_space.config_kwargs(), ignore_mismatched_sizes=True
    )


def read_strong_label_rows(path: str | os.PathLike) -> list[LabelRow]:
    """The rows of a DCASE strong TSV (`sed_metrics.read_strong_rows`) or of JSON Lines (`.jsonl`/`.json`) with the
    same four fields, each with its line; only their format is checked here (`LabelRowCheck` checks the rest)."""
    if Path(path).suffix.lower() not in (".jsonl", ".json"):
        return read_strong_rows(path)
    rows = []
    for row in read_manifest(path, path_column="filename"):
        where = f"{path}, line {row.line}"
        try:
            fields = row.fields
            onset, offset, label = float(fields["onset"]), float(fields["offset"]), str(fields["event_label"])
        except (KeyError, TypeError, ValueError):
            raise ValueError(f"{where}: needs numeric onset, offset and an event_label") from None
        rows.append(LabelRow(row.path, (onset, offset, label), where))
    return rows


def read_strong_labels(path: str | os.PathLike) -> dict[str, list[Event]]:
    """Clip -> events of a DCASE strong TSV or of JSON Lines (`read_strong_label_rows`), every event checked by
    `sed_metrics.checked_event` (ValueError naming the file and line)."""
    return events_by_clip(read_strong_label_rows(path))


def read_weak_rows(path: str | os.PathLike) -> list[WeakRow]:
    """The rows of a DCASE weak TSV (header `filename event_labels`, labels comma-separated, may be empty), each with
    its line."""
    lines = Path(path).read_text(encoding="utf-8").splitlines()
    if not lines or lines[0].split("\t") != ["filename", "event_labels"]:
        raise ValueError(f"{path}: the first line must be the header 'filename<TAB>event_labels'")
    rows = []
    for number, line in enumerate(lines[1:], start=2):
        if line.strip():
            name, _, text = line.partition("\t")
            if not name:
                raise ValueError(f"{path}, line {number}: empty filename")
            rows.append(WeakRow(name, [label for label in text.split(",") if label], f"{path}, line {number}"))
    return rows


def read_weak_labels(path: str | os.PathLike) -> dict[str, list[str]]:
    """Clip -> labels of a DCASE weak TSV (`read_weak_rows`; a clip listed twice keeps its last row)."""
    return {row.clip: row.labels for row in read_weak_rows(path)}


def sed_examples(
    audio_dir: str | os.PathLike, strong: Mapping[str, list[Event]], weak: Mapping[str, list[str]]
) -> list[Example]:
    """Examples of the clips in `audio_dir` named by either file: strong ones with their `events`, clips only in
    `weak` with `events` None; `labels` are the clip's labels (its events' for strong clips)."""
    examples = []
    for name in sorted({*strong, *weak}):
        events = strong.get(name)
        labels = sorted({label for _, _, label in events}) if events is not None else sorted(set(weak[name]))
        examples.append({"audio": str(Path(audio_dir) / name), "sampling_rate": None, "labels": labels,
                         "name": name, "events": events})  # fmt: skip
    return examples


def crop_events(events: Sequence[Event], start: float, length: float) -> list[Event]:
    """The events of the window [start, start + length) of a clip, in the window's time; cut to it, empty ones
    dropped."""
    moved = [(max(0.0, onset - start), min(length, offset - start), label) for onset, offset, label in events]
    return [(onset, offset, label) for onset, offset, label in moved if onset < offset]


def roll_events(events: Sequence[Event], shift: float, length: float) -> list[Event]:
    """Events of a clip of `length` seconds rolled by `shift` seconds: times move by `shift` modulo `length`; an
    event that crosses the end continues at the start (two events)."""
    rolled = []
    for onset, offset, label in events:
        turns = math.floor((onset + shift) / length)
        onset, offset = onset + shift - turns * length, offset + shift - turns * length
        rolled.append((onset, min(offset, length), label))
        if offset > length:
            rolled.append((0.0, offset - length, label))
    return rolled


def frame_targets(events: Sequence[Event], centres: torch.Tensor, hop: float, label_space: LabelSpace) -> torch.Tensor:
    """(t, C) float32: 1 where column j's interval [centres[j] - hop / 2, centres[j] + hop / 2) overlaps an event
    [onset, offset) of label c."""
    targets = torch.zeros(len(centres), label_space.num_labels)
    for onset, offset, label in events:
        overlaps = (centres - hop / 2 < offset) & (centres + hop / 2 > onset)
        targets[overlaps, label_space.labels.index(label)] = 1.0
    return targets


class SEDDataset(AudioDataset):
    """`AudioDataset` of `sed_examples`: items also carry `events` (seconds, None for weak clips), moved with the
    training crop and joined by mixup (module docstring); `labels` are (C,) multi-hot clip labels."""

    def _load(self, index: int) -> tuple[torch.Tensor, Example] | None:
        example = self.examples[index]
        waveform = self._decode(example)
        return None if waveform is None else (waveform, example)

    def _item(self, waveform: torch.Tensor, example: Example, partner: Callable, seed: int | None) -> Item:
        labels = self.label_space.multi_hot(example["labels"])
        if seed is None:
            waveform, events = self._window(waveform, example["events"], None, example.get("start", 0))
            return {"audio": waveform, "labels": labels, "events": events}
        generator = seeded_generator(seed, WAVEFORM_STAGE)
        waveform, events = self._window(waveform, example["events"], generator)
        if self.augment.mixup > 0 and float(torch.rand((), generator=generator)) < self.augment.mixup:
            other = partner(generator)
            if other is not None:
                lam = sample_mixup_lambda(self.augment.mixup_alpha, generator)
                other_waveform, other_events = self._window(other[0], other[1]["events"], generator)
                waveform = mix_waveforms(waveform, other_waveform, lam)
                labels = torch.maximum(labels, self.label_space.multi_hot(other[1]["labels"]))
                length = waveform.shape[0] / self.sampling_rate  # the partner is cut or padded to this clip
                both = events is not None and other_events is not None
                events = events + crop_events(other_events, 0.0, length) if both else None
        return {"audio": waveform, "labels": labels, "events": events, "seed": seed}

    def _window(
        self,
        waveform: torch.Tensor,
        events: list[Event] | None,
        generator: torch.Generator | None,
        example_start: int = 0,
    ) -> tuple[torch.Tensor, list[Event] | None]:
        """The clip's training crop (at random with `generator`, else from `example_start`) and its events moved
        with it."""
        if self.max_samples is None:
            return waveform, events
        # an evaluation window (`sed_evaluation.eval_windows`) says where it starts; a training crop is drawn
        start = example_start if generator is None else crop_start(waveform.shape[0], self.max_samples, generator)
        window = waveform[start : start + self.max_samples]
        rate = self.sampling_rate
        return window, None if events is None else crop_events(events, start / rate, window.shape[0] / rate)


class SEDCollator(AudioCollator):
    """`AudioCollator` for `SEDDataset` items and `ASTForAudioFrameClassification`: `labels` (B, t, C) frame
    targets made after SpecAugment and the time roll (from the rolled events), `clip_labels` (B, C) and `strong`
    (B,). `config` gives the column grid, `label_space` the label order; the rest as for `AudioCollator`."""

    def __init__(self, *args: Any, config: ASTConfig, label_space: LabelSpace, **options: Any) -> None:
        super().__init__(*args, **options)
        self.config = config
        self.label_space = label_space

    def __call__(self, items: Sequence[Item | None]) -> dict[str, torch.Tensor]:
        kept = [item for item in items if item is not None]
        if not kept:
            raise ValueError(f"all {len(items)} clips of this batch were unreadable and skipped")
        features, mask = self.log_mel([item["audio"] for item in kept])
        features, shifts = self.augment_and_normalize(features, mask, [item.get("seed") for item in kept])
        rate = self.feature_extractor.sampling_rate
        frame_s = FrameSpec.for_rate(rate).shift / rate
        centres = column_centres(self.config, self.config.time_patches(features.shape[1]), rate)
        hop = column_hop(self.config, rate)
        lengths = mask.sum(dim=1).tolist() if self.return_attention_mask else [features.shape[1]] * len(kept)
        targets = []
        for item, shift, length in zip(kept, shifts, lengths):
            events = item["events"] or []
            if shift:
                events = roll_events(events, shift * frame_s, length * frame_s)
            targets.append(frame_targets(events, centres, hop, self.label_space))
        batch = {"input_values": features, "labels": torch.stack(targets)}
        if self.return_attention_mask:
            batch["attention_mask"] = mask.to(torch.int64)
        batch["clip_labels"] = torch.stack([item["labels"] for item in kept])
        batch["strong"] = torch.tensor([item["events"] is not None for item in kept])
        return batch
