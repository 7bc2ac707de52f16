"""Train an Audio Spectrogram Transformer (AST) classifier on local audio with `transformers.Trainer`.

With no data arguments it runs a self-contained demo: it writes a synthetic 8-class sound-event dataset
(`synthetic_sounds.py`) to `<output_dir>/data`, trains a tiny AST from scratch on the CPU, reports the test accuracy,
saves the model and its feature extractor to `output_dir`, reloads them with `pipeline("audio-classification")` and
classifies a held-out clip:

    python examples/run_audio_classification.py

Your own audio comes either from a folder, with the label and the train/test split read from each file's path relative
to it (here the Free Spoken Digit Dataset, `{digit}_{speaker}_{take}.wav`, whose takes 0-4 are the test set):

    python examples/run_audio_classification.py --data_dir fsdd/recordings \
        --label_regex '^(\\d+)_' --test_regex '_[0-4]\\.wav$' --output_dir outputs/fsdd

or from two CSV manifests with `path,label` columns (paths relative to the manifest):

    python examples/run_audio_classification.py --train_manifest train.csv --test_manifest test.csv

Every `transformers.TrainingArguments` option is accepted too (`--num_train_epochs`, `--learning_rate`, ...); this
script only changes some defaults (see `TRAINING_DEFAULTS`). The test split doubles as the evaluation set watched
during training; no model selection is done on it, so the reported accuracy is that of the final model.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import transformers
from torch.utils.data import Dataset
from transformers import EvalPrediction, HfArgumentParser, Trainer, TrainingArguments

from modeling_ast import ASTConfig, ASTFeatureExtractor, ASTForAudioClassification  # also registers "ast"
from modeling_ast.audio_utils import load_audio
from synthetic_sounds import generate_dataset

SAMPLING_RATE = 16000

TRAINING_DEFAULTS: dict[str, Any] = {
    "output_dir": "outputs/demo",
    "report_to": "none",
    "eval_strategy": "epoch",
    "save_strategy": "no",
    "num_train_epochs": 5,
    "learning_rate": 2e-3,
    "warmup_steps": 0.1,
    "weight_decay": 0.01,
    "per_device_train_batch_size": 16,
    "per_device_eval_batch_size": 32,
    "logging_steps": 10,
    "dataloader_pin_memory": torch.cuda.is_available(),
    # Our dataset yields raw `audio` that the collator turns into `input_values`; Trainer must not drop it.
    "remove_unused_columns": False,
}
"""TrainingArguments defaults of this script, sized for the demo; the command line overrides any of them."""


@dataclass
class DataArguments:
    """Where the audio and its labels come from. Give none of these to run the synthetic demo."""

    data_dir: str | None = field(
        default=None,
        metadata={"help": "Folder searched recursively for audio files; needs --label_regex and --test_regex."},
    )
    label_regex: str | None = field(
        default=None,
        metadata={
            "help": "Regex searched in each file's path relative to --data_dir (POSIX separators); the label is its "
            "group named 'label', else its first group, else the whole match. FSDD: '^(\\d+)_'; a folder per "
            "class: '^([^/]+)/'."
        },
    )
    test_regex: str | None = field(
        default=None,
        metadata={"help": "Files whose relative path matches this regex form the test set. FSDD: '_[0-4]\\.wav$'."},
    )
    train_manifest: str | None = field(
        default=None, metadata={"help": "CSV with `path,label` columns; paths relative to the CSV file."}
    )
    test_manifest: str | None = field(default=None, metadata={"help": "CSV of the test clips, as --train_manifest."})
    audio_extensions: str = field(
        default=".wav,.flac,.ogg,.mp3",
        metadata={"help": "Comma-separated file extensions --data_dir collects (case-insensitive)."},
    )
    synthetic_train_per_class: int = field(
        default=200, metadata={"help": "Demo only: synthetic training clips per class (8 classes)."}
    )
    synthetic_test_per_class: int = field(default=15, metadata={"help": "Demo only: synthetic test clips per class."})
    synthetic_seed: int = field(default=0, metadata={"help": "Demo only: seed of the synthetic dataset."})

    def __post_init__(self) -> None:
        folder_args = {"--label_regex": self.label_regex, "--test_regex": self.test_regex}
        manifests = {"--train_manifest": self.train_manifest, "--test_manifest": self.test_manifest}
        if self.data_dir is not None and any(manifests.values()):
            raise ValueError("give either --data_dir or --train_manifest/--test_manifest, not both")
        if self.data_dir is not None:
            missing = [name for name, value in folder_args.items() if not value]
            if missing:
                raise ValueError(f"--data_dir needs {' and '.join(missing)} to find each file's label and split")
        elif any(folder_args.values()):
            raise ValueError("--label_regex and --test_regex apply to the files of --data_dir; give --data_dir too")
        if any(manifests.values()) and not all(manifests.values()):
            missing = [name for name, value in manifests.items() if not value]
            raise ValueError(f"manifests come in pairs: {missing[0]} is missing")

    @property
    def is_demo(self) -> bool:
        """True when no data source was given: train on the synthetic dataset."""
        return self.data_dir is None and self.train_manifest is None


@dataclass
class ModelArguments:
    """The model to train: a new AST of the given size, or an existing checkpoint of this package."""

    model_name_or_path: str | None = field(
        default=None,
        metadata={
            "help": "Fine-tune this checkpoint (folder or Hub id; saved by this package or transformers' AST) instead "
            "of training from scratch; a new classifier head is made when its label count differs. The size "
            "arguments below are then ignored."
        },
    )
    hidden_size: int = field(default=128, metadata={"help": "Token width D of a new model."})
    num_hidden_layers: int = field(default=2, metadata={"help": "Transformer blocks of a new model."})
    num_attention_heads: int = field(default=4, metadata={"help": "Attention heads of a new model."})
    intermediate_size: int = field(default=256, metadata={"help": "MLP width of a new model."})
    max_length: int = field(
        default=256,
        metadata={
            "help": "Frames (~100 per second) of a new model's positional grid and of its feature extractor; longer "
            "clips are truncated to this many frames."
        },
    )
    frequency_stride: int = field(default=10, metadata={"help": "Patch stride along the mel axis of a new model."})
    time_stride: int = field(default=10, metadata={"help": "Patch stride along time of a new model."})
    hidden_dropout_prob: float = field(default=0.1, metadata={"help": "Dropout on token states of a new model."})


@dataclass(frozen=True)
class LabelledClip:
    """One audio file and its class name."""

    path: Path
    label: str


@dataclass(frozen=True)
class DataSplits:
    """Training and test clips, and the class names of the task (sorted; the index is the class id)."""

    train: list[LabelledClip]
    test: list[LabelledClip]

    @property
    def labels(self) -> list[str]:
        return sorted({clip.label for clip in self.train})


def _compile(pattern: str, option: str) -> re.Pattern[str]:
    try:
        return re.compile(pattern)
    except re.error as error:
        raise ValueError(f"{option} {pattern!r} is not a valid regular expression: {error}") from None


def _label_from_match(match: re.Match[str]) -> str:
    """The group named `label`, else the first group, else the whole match."""
    if "label" in match.re.groupindex:
        return match.group("label")
    return match.group(1) if match.re.groups else match.group(0)


def _list_examples(paths: Sequence[str], limit: int = 5) -> str:
    shown = ", ".join(paths[:limit])
    return shown + (f" and {len(paths) - limit} more" if len(paths) > limit else "")


def find_audio_files(data_dir: Path, extensions: str) -> list[Path]:
    """Audio files under `data_dir` (recursively, sorted) whose extension is one of the comma-separated `extensions`."""
    if not data_dir.is_dir():
        raise FileNotFoundError(f"--data_dir {data_dir} is not a folder")
    suffixes = {"." + ext.strip().lower().lstrip(".") for ext in extensions.split(",") if ext.strip()}
    files = sorted(path for path in data_dir.rglob("*") if path.is_file() and path.suffix.lower() in suffixes)
    if not files:
        raise ValueError(f"no audio files ({', '.join(sorted(suffixes))}) found under --data_dir {data_dir}")
    return files


def split_folder(data_dir: Path, label_regex: str, test_regex: str, extensions: str) -> DataSplits:
    """Labels and train/test split of the audio files under `data_dir`, read from their relative paths."""
    label_pattern = _compile(label_regex, "--label_regex")
    test_pattern = _compile(test_regex, "--test_regex")
    train, test, unlabelled = [], [], []
    for path in find_audio_files(data_dir, extensions):
        relative = path.relative_to(data_dir).as_posix()
        match = label_pattern.search(relative)
        if match is None or not _label_from_match(match):
            unlabelled.append(relative)
            continue
        clip = LabelledClip(path, _label_from_match(match))
        (test if test_pattern.search(relative) else train).append(clip)
    if unlabelled:
        raise ValueError(
            f"--label_regex {label_regex!r} finds no label in {len(unlabelled)} file(s) under {data_dir}: "
            f"{_list_examples(unlabelled)}"
        )
    return DataSplits(train, test)


def read_manifest(manifest: Path) -> list[LabelledClip]:
    """The clips of a `path,label` CSV file; relative paths are taken from the manifest's folder."""
    if not manifest.is_file():
        raise FileNotFoundError(f"manifest {manifest} does not exist")
    with manifest.open(newline="") as handle:
        reader = csv.DictReader(handle)
        if reader.fieldnames is None or not {"path", "label"} <= set(reader.fieldnames):
            raise ValueError(
                f"manifest {manifest} needs a header with `path` and `label` columns, got {reader.fieldnames}"
            )
        rows = list(reader)
    if not rows:
        raise ValueError(f"manifest {manifest} lists no files")
    clips = [LabelledClip(manifest.parent / row["path"], (row["label"] or "").strip()) for row in rows]
    unlabelled = [str(clip.path) for clip in clips if not clip.label]
    if unlabelled:
        raise ValueError(f"manifest {manifest} has rows without a label: {_list_examples(unlabelled)}")
    missing = [str(clip.path) for clip in clips if not clip.path.is_file()]
    if missing:
        raise FileNotFoundError(f"manifest {manifest} lists {len(missing)} missing file(s): {_list_examples(missing)}")
    return clips


def check_splits(splits: DataSplits) -> DataSplits:
    """Rejects an empty split, a single class, or test labels the model never sees in training."""
    for name, clips in (("training", splits.train), ("test", splits.test)):
        if not clips:
            raise ValueError(f"the {name} split is empty; check --test_regex or the manifests")
    if len(splits.labels) < 2:
        raise ValueError(f"classification needs at least 2 labels in the training split, found {splits.labels}")
    unseen = sorted({clip.label for clip in splits.test} - set(splits.labels))
    if unseen:
        raise ValueError(
            f"label(s) {unseen} occur only in the test split; the model cannot predict a class it never trains on"
        )
    return splits


def load_splits(data_args: DataArguments, output_dir: Path) -> DataSplits:
    """The train/test clips named by `data_args`; for the demo, a synthetic dataset written to `output_dir/data`."""
    if data_args.data_dir is not None:
        splits = split_folder(
            Path(data_args.data_dir), data_args.label_regex, data_args.test_regex, data_args.audio_extensions
        )
    else:
        if data_args.is_demo:
            train_manifest, test_manifest = generate_dataset(
                output_dir / "data",
                data_args.synthetic_train_per_class,
                data_args.synthetic_test_per_class,
                data_args.synthetic_seed,
            )
        else:
            train_manifest, test_manifest = Path(data_args.train_manifest), Path(data_args.test_manifest)
        splits = DataSplits(read_manifest(train_manifest), read_manifest(test_manifest))
    return check_splits(splits)


class AudioClipDataset(Dataset):
    """Decodes clips on access: {"audio": float32 mono waveform at 16 kHz, "label": class id}."""

    def __init__(self, clips: Sequence[LabelledClip], label2id: dict[str, int]) -> None:
        self.clips = list(clips)
        self.label2id = label2id

    def __len__(self) -> int:
        return len(self.clips)

    def __getitem__(self, index: int) -> dict[str, Any]:
        clip = self.clips[index]
        return {"audio": load_audio(clip.path, sampling_rate=SAMPLING_RATE), "label": self.label2id[clip.label]}


def min_clip_samples(patch_size: int) -> int:
    """Samples at 16 kHz that give `patch_size` frames of 25 ms every 10 ms: the shortest clip AST can read."""
    frame, hop = SAMPLING_RATE * 25 // 1000, SAMPLING_RATE * 10 // 1000
    return frame + (patch_size - 1) * hop


@dataclass
class AudioClassificationCollator:
    """Turns a list of dataset items into a model batch: spectrograms, frame mask and labels.

    Clips are padded to the longest clip of the batch (and truncated to the feature extractor's `max_length`) with an
    attention mask, rather than padded to a fixed length: the model masks the padding and gives each clip the
    positional grid of its own length, so a clip's output does not depend on its batch, and short-clip batches cost
    only what their audio needs. Clips too short to fill one patch (under 175 ms for 16-frame patches) are first
    padded with silence to `min_samples`, since the model needs at least one real patch per clip.
    """

    feature_extractor: ASTFeatureExtractor
    min_samples: int

    def __call__(self, items: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        batch = self.feature_extractor(
            [pad_to_length(item["audio"], self.min_samples) for item in items],
            sampling_rate=SAMPLING_RATE,
            padding="longest",
            truncation=True,
            return_attention_mask=True,
            return_tensors="pt",
        )
        batch["labels"] = torch.tensor([item["label"] for item in items], dtype=torch.long)
        return dict(batch)


def pad_to_length(waveform: np.ndarray, num_samples: int) -> np.ndarray:
    """`waveform` with zeros appended up to `num_samples` samples (unchanged when already that long)."""
    return np.pad(waveform, (0, max(0, num_samples - waveform.shape[0])))


def build_feature_extractor(model_args: ModelArguments) -> ASTFeatureExtractor:
    """The checkpoint's feature extractor, or a new one (AudioSet normalisation stats) for `max_length` frames.

    Either way it is set to return the attention mask by default, so the saved extractor gives the pipeline the same
    masked inputs the model trained on (padding hidden) instead of padding the model would read as audio.
    """
    if model_args.model_name_or_path:
        feature_extractor = ASTFeatureExtractor.from_pretrained(model_args.model_name_or_path)
        feature_extractor.return_attention_mask = True
        return feature_extractor
    return ASTFeatureExtractor(
        sampling_rate=SAMPLING_RATE, max_length=model_args.max_length, return_attention_mask=True
    )


def build_model(model_args: ModelArguments, labels: Sequence[str]) -> ASTForAudioClassification:
    """A new AST sized by `model_args`, or the checkpoint with a head for `labels` (single-label classification)."""
    label_maps = {
        "num_labels": len(labels),
        "id2label": dict(enumerate(labels)),
        "label2id": {label: index for index, label in enumerate(labels)},
        "problem_type": "single_label_classification",
    }
    if model_args.model_name_or_path:
        return ASTForAudioClassification.from_pretrained(
            model_args.model_name_or_path, ignore_mismatched_sizes=True, **label_maps
        )
    config = ASTConfig(
        hidden_size=model_args.hidden_size,
        num_hidden_layers=model_args.num_hidden_layers,
        num_attention_heads=model_args.num_attention_heads,
        intermediate_size=model_args.intermediate_size,
        max_length=model_args.max_length,
        frequency_stride=model_args.frequency_stride,
        time_stride=model_args.time_stride,
        hidden_dropout_prob=model_args.hidden_dropout_prob,
        **label_maps,
    )
    return ASTForAudioClassification(config)


def compute_metrics(prediction: EvalPrediction) -> dict[str, float]:
    """Accuracy of the argmax class."""
    logits = prediction.predictions[0] if isinstance(prediction.predictions, tuple) else prediction.predictions
    return {"accuracy": float((np.argmax(logits, axis=-1) == prediction.label_ids).mean())}


def classify_with_pipeline(model_dir: str, clip: LabelledClip, top_k: int = 3) -> list[dict[str, Any]]:
    """Reloads the saved model with `pipeline("audio-classification")` and returns its top-k guesses for `clip`."""
    classifier = transformers.pipeline("audio-classification", model=model_dir)
    return classifier(str(clip.path), top_k=top_k)


def parse_args(argv: Sequence[str] | None = None) -> tuple[ModelArguments, DataArguments, TrainingArguments]:
    """Command line (or `argv`) -> the three argument dataclasses, with this script's TrainingArguments defaults."""
    parser = HfArgumentParser((ModelArguments, DataArguments, TrainingArguments))
    parser.set_defaults(**TRAINING_DEFAULTS)
    model_args, data_args, training_args = parser.parse_args_into_dataclasses(args=argv)
    return model_args, data_args, training_args


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Runs the whole recipe; returns the test metrics, the output folder and the pipeline's top-3 for a test clip."""
    model_args, data_args, training_args = parse_args(argv)
    transformers.set_seed(training_args.seed)
    output_dir = Path(training_args.output_dir)
    splits = load_splits(data_args, output_dir)
    labels = splits.labels
    label2id = {label: index for index, label in enumerate(labels)}
    print(f"{len(splits.train)} training and {len(splits.test)} test clips, {len(labels)} labels: {', '.join(labels)}")

    feature_extractor = build_feature_extractor(model_args)
    model = build_model(model_args, labels)
    print(f"model: {model.num_parameters():,} parameters")
    trainer = Trainer(
        model=model,
        args=training_args,
        train_dataset=AudioClipDataset(splits.train, label2id),
        eval_dataset=AudioClipDataset(splits.test, label2id),
        data_collator=AudioClassificationCollator(feature_extractor, min_clip_samples(model.config.patch_size)),
        processing_class=feature_extractor,
        compute_metrics=compute_metrics,
    )
    trainer.train()
    metrics = trainer.evaluate(metric_key_prefix="test")
    trainer.save_model(str(output_dir))  # model + feature extractor, safetensors
    print(f"test accuracy: {metrics['test_accuracy']:.3f} ({len(splits.test)} clips)")

    held_out = splits.test[0]
    top3 = classify_with_pipeline(str(output_dir), held_out)
    guesses = ", ".join(f"{guess['label']} {guess['score']:.3f}" for guess in top3)
    print(f"pipeline on held-out {held_out.path.name} (label {held_out.label}): {guesses}")
    return {
        "test_accuracy": metrics["test_accuracy"],
        "num_test_clips": len(splits.test),
        "output_dir": output_dir,
        "top3": top3,
    }


if __name__ == "__main__":
    main()
