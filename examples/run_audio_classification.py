"""Train an Audio Spectrogram Transformer (AST) classifier with `transformers.Trainer`: the paper's recipes, your data.

With no data arguments it runs a self-contained demo: it writes a synthetic 8-class sound-event dataset
(`synthetic_sounds.py`) to `<output_dir>/data`, trains a tiny AST from scratch on the CPU, reports the test accuracy,
saves the model, its feature extractor, a model card and a confusion matrix to `output_dir`, reloads the model with
`pipeline("audio-classification")` and classifies a held-out clip:

    python examples/run_audio_classification.py

Data sources (give one; every source needs an evaluation split, which doubles as the test set):

    # a folder: labels from class sub-folders or a regex on the relative path, test clips chosen by a regex
    python examples/run_audio_classification.py --data_dir fsdd/recordings \
        --label_regex '^(\\d+)_' --test_regex '_[0-4]\\.wav$' --output_dir outputs/fsdd
    # CSV (`path,label`, several labels `;`-separated) or JSON Lines manifests
    python examples/run_audio_classification.py --train_manifest train.csv --test_manifest test.csv
    # a `datasets` dataset (Hub id, local data folder or save_to_disk folder), optionally streamed (needs --max_steps)
    python examples/run_audio_classification.py --dataset_name NAME --train_split train --eval_split test \
        --audio_column audio --label_column label

The task follows the data: every clip with exactly one label gives single-label classification (cross-entropy;
accuracy and top-5), otherwise multi-label (binary cross-entropy; mAP, mAUC, d'); `--problem_type` forces either.

Recipes are JSON files of arguments (`examples/recipes/*.json`); arguments after the file override it:

    python examples/run_audio_classification.py examples/recipes/esc50.json --train_manifest ... --num_train_epochs 5

Every `transformers.TrainingArguments` option is accepted too (`--num_train_epochs`, `--learning_rate`,
`--resume_from_checkpoint`, ...); this script changes some defaults (`TRAINING_DEFAULTS`). The script runs unchanged
under `torchrun` and `accelerate launch`. No model selection is done on the evaluation split: the reported metrics are
those of the final (or weight-averaged) model.
"""

from __future__ import annotations

import copy
import dataclasses
import importlib.util
import json
import os
import shlex
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, NamedTuple

import numpy as np
import torch
import transformers
from torch.utils.data import Dataset, Sampler
from transformers import HfArgumentParser, Trainer, TrainerCallback, TrainingArguments
from transformers.trainer_utils import PredictionOutput

from modeling_ast import ASTConfig, ASTFeatureExtractor, ASTForAudioClassification  # also registers "ast"
from modeling_ast.conversion.adapt import adapt_pretrained_ast
from modeling_ast.conversion.common import AUDIOSET_MEAN, AUDIOSET_STD
from modeling_ast.conversion.imagenet import ast_from_imagenet
from modeling_ast.training.augment import AugmentConfig
from modeling_ast.training.averaging import WeightAveragingCallback
from modeling_ast.training.data import (
    AudioCollator,
    AudioDataset,
    Example,
    HubExamples,
    Item,
    LabelSpace,
    StreamingAudioDataset,
    StreamingHubExamples,
    decode_example,
    folder_examples,
    load_hub_examples,
    manifest_examples,
    num_samples_for_frames,
)
from modeling_ast.training.metrics import compute_metrics_fn, per_class_average_precision
from modeling_ast.training.sampling import DistributedWeightedSampler, balanced_sample_weights
from modeling_ast.training.schedules import build_lr_scheduler, build_optimizer, trainer_steps_per_epoch
from synthetic_sounds import generate_dataset

SAMPLING_RATE = 16000
SCRIPT = "examples/run_audio_classification.py"
PLOT_FILES = {"single": "confusion_matrix.png", "multi": "per_class_ap.png"}


def _default_report_to() -> str:
    """TensorBoard when it is installed (training curves under `<output_dir>/runs`), else no logging integration."""
    return "tensorboard" if importlib.util.find_spec("tensorboard") is not None else "none"


def _launched_on_cpus() -> bool:
    """Several processes (torchrun, accelerate launch) on a machine without an accelerator. accelerate sets up CPU data
    parallelism (gloo) only when told to use the CPU; otherwise every process would train alone on all the data."""
    has_accelerator = torch.accelerator.is_available() if hasattr(torch, "accelerator") else torch.cuda.is_available()
    return int(os.environ.get("WORLD_SIZE", "1")) > 1 and not has_accelerator


TRAINING_DEFAULTS: dict[str, Any] = {
    "output_dir": "outputs/demo",
    "report_to": _default_report_to(),
    "eval_strategy": "epoch",
    "save_strategy": "no",
    "num_train_epochs": 5,
    "learning_rate": 2e-3,
    "warmup_steps": 0.1,
    # The AST recipes' Adam: coupled L2 of 5e-7 and betas (0.95, 0.999) (see --paper_optimizer).
    "weight_decay": 5e-7,
    "adam_beta1": 0.95,
    "per_device_train_batch_size": 16,
    "per_device_eval_batch_size": 32,
    "logging_steps": 10,
    "dataloader_pin_memory": torch.cuda.is_available(),
    "use_cpu": _launched_on_cpus(),
    # Our datasets yield raw `audio` that the collator turns into `input_values`; Trainer must not drop it.
    "remove_unused_columns": False,
}
"""TrainingArguments defaults of this script, sized for the demo; a recipe file and the command line override them."""


# ---------------------------------------------------------------------------------------------------------------
# Arguments
# ---------------------------------------------------------------------------------------------------------------


@dataclass
class DataArguments:
    """Where the audio and its labels come from. Give none of these to run the synthetic demo."""

    data_dir: str | None = field(
        default=None,
        metadata={
            "help": "Folder searched recursively for audio files. Labels: the name of each file's folder, or "
            "--label_regex; the evaluation clips: those matching --test_regex."
        },
    )
    label_regex: str | None = field(
        default=None,
        metadata={
            "help": "Regex searched in each file's path relative to --data_dir (POSIX separators); the label is its "
            "group named 'label', else its first group, else the whole match. FSDD: '^(\\d+)_'. Default: the name "
            "of the folder holding the file."
        },
    )
    test_regex: str | None = field(
        default=None,
        metadata={"help": "Files whose relative path matches this regex form the evaluation (test) split."},
    )
    audio_extensions: str = field(
        default=".wav,.flac,.ogg,.mp3",
        metadata={"help": "Comma-separated file extensions --data_dir collects (case-insensitive)."},
    )
    train_manifest: str | None = field(
        default=None,
        metadata={
            "help": "CSV (`path,label`, several labels separated by ';') or JSON Lines (`{\"path\", \"label\"}`) "
            "manifest of the training clips; paths relative to the manifest."
        },
    )
    test_manifest: str | None = field(default=None, metadata={"help": "Manifest of the evaluation (test) clips."})
    dataset_name: str | None = field(
        default=None,
        metadata={"help": "A `datasets` dataset: Hub id, local data folder, or folder written by save_to_disk."},
    )
    dataset_config_name: str | None = field(default=None, metadata={"help": "Configuration of --dataset_name."})
    train_split: str = field(default="train", metadata={"help": "Training split of --dataset_name."})
    eval_split: str = field(default="test", metadata={"help": "Evaluation (test) split of --dataset_name."})
    audio_column: str = field(default="audio", metadata={"help": "Audio column of --dataset_name."})
    label_column: str = field(
        default="label",
        metadata={"help": "Label column of --dataset_name: a class label, a string, or a list of either."},
    )
    streaming: bool = field(
        default=False,
        metadata={
            "help": "Stream --dataset_name instead of downloading it (needs --max_steps; the label column must be a "
            "ClassLabel or a list of them, so the classes are known without reading the stream)."
        },
    )
    shuffle_buffer_size: int = field(
        default=1000, metadata={"help": "With --streaming: clips in the buffer the stream is shuffled with."}
    )
    problem_type: Literal["auto", "single_label_classification", "multi_label_classification"] = field(
        default="auto",
        metadata={
            "help": "auto: single-label when every training clip has exactly one label, else multi-label. Force "
            "multi_label_classification for the Speech Commands recipe (BCE on single-label data)."
        },
    )
    on_bad_file: Literal["error", "skip"] = field(
        default="error",
        metadata={"help": "Unreadable or missing audio: stop with its name (error) or skip it and report the count."},
    )
    synthetic_train_per_class: int = field(
        default=200, metadata={"help": "Demo only: synthetic training clips per class (8 classes)."}
    )
    synthetic_test_per_class: int = field(default=15, metadata={"help": "Demo only: synthetic test clips per class."})
    synthetic_seed: int = field(default=0, metadata={"help": "Demo only: seed of the synthetic dataset."})

    def __post_init__(self) -> None:
        sources = [
            name
            for name, given in (
                ("--data_dir", self.data_dir is not None),
                ("--train_manifest/--test_manifest", bool(self.train_manifest or self.test_manifest)),
                ("--dataset_name", self.dataset_name is not None),
            )
            if given
        ]
        if len(sources) > 1:
            raise ValueError(f"give one data source, not {' and '.join(sources)}")
        if self.data_dir is not None and not self.test_regex:
            raise ValueError("--data_dir needs --test_regex to choose the evaluation clips")
        if self.data_dir is None and (self.label_regex or self.test_regex):
            raise ValueError("--label_regex and --test_regex apply to the files of --data_dir; give --data_dir too")
        if bool(self.train_manifest) != bool(self.test_manifest):
            missing = "--test_manifest" if self.train_manifest else "--train_manifest"
            raise ValueError(f"manifests come in pairs: {missing} is missing")
        if self.streaming and self.dataset_name is None:
            raise ValueError("--streaming applies to --dataset_name")

    @property
    def is_demo(self) -> bool:
        """True when no data source was given: train on the synthetic dataset."""
        return self.data_dir is None and self.train_manifest is None and self.dataset_name is None

    @property
    def forced_multi_label(self) -> bool | None:
        """The task asked for by --problem_type, or None to infer it from the labels."""
        return None if self.problem_type == "auto" else self.problem_type == "multi_label_classification"


@dataclass
class ModelArguments:
    """The model to train and its features: a new AST, a pretrained AST, or an ImageNet ViT/DeiT turned into one."""

    model_name_or_path: str | None = field(
        default=None,
        metadata={
            "help": "Fine-tune this AST (folder or Hub id; saved by this package or transformers' AST, e.g. "
            "MIT/ast-finetuned-audioset-10-10-0.4593). Its classifier head is replaced when the labels differ; the "
            "size arguments are ignored."
        },
    )
    imagenet_checkpoint: str | None = field(
        default=None,
        metadata={
            "help": "Start from this ImageNet ViT/DeiT checkpoint (timm .pth/.safetensors file, or a transformers / "
            "timm folder or Hub id), as the paper does: size from the checkpoint, --max_length and strides from here."
        },
    )
    adapt_max_length: int | None = field(
        default=None,
        metadata={
            "help": "With --model_name_or_path: re-target the checkpoint to this many frames (its positional grid is "
            "cropped or stretched as the original code does; ESC-50 512, Speech Commands 128)."
        },
    )
    adapt_stride: int | None = field(
        default=None, metadata={"help": "With --model_name_or_path: new patch stride (both axes)."}
    )
    hidden_size: int = field(default=128, metadata={"help": "Token width D of a new model."})
    num_hidden_layers: int = field(default=2, metadata={"help": "Transformer blocks of a new model."})
    num_attention_heads: int = field(default=4, metadata={"help": "Attention heads of a new model."})
    intermediate_size: int = field(default=256, metadata={"help": "MLP width of a new model."})
    max_length: int = field(
        default=256,
        metadata={
            "help": "Frames (~100 per second) of a new model's positional grid and of its feature extractor; longer "
            "training clips are cropped at random to this length, evaluation clips cut after it."
        },
    )
    frequency_stride: int = field(default=10, metadata={"help": "Patch stride along the mel axis of a new model."})
    time_stride: int = field(default=10, metadata={"help": "Patch stride along time of a new model."})
    hidden_dropout_prob: float = field(default=0.1, metadata={"help": "Dropout on token states of a new model."})
    patchout_time: int | None = field(
        default=None, metadata={"help": "Training only: time columns of patches dropped per step (default: none)."}
    )
    patchout_frequency: int | None = field(
        default=None, metadata={"help": "Training only: frequency rows of patches dropped per step (default: none)."}
    )
    patchout_random: float | None = field(
        default=None, metadata={"help": "Training only: fraction of the other patches dropped per step."}
    )
    fbank_mean: float | None = field(
        default=None,
        metadata={
            "help": "Normalisation mean of the filter banks (examples/compute_fbank_stats.py). Default: the "
            "checkpoint's, else AudioSet's -4.2677393."
        },
    )
    fbank_std: float | None = field(
        default=None,
        metadata={"help": "Normalisation std of the filter banks. Default: the checkpoint's, else 4.5689974."},
    )
    padding: Literal["longest", "max_length"] = field(
        default="longest",
        metadata={"help": "Pad each batch to its longest clip, or every clip to max_length frames (the original)."},
    )
    attention_mask: bool = field(
        default=True,
        metadata={
            "help": "Mask the padding frames (the saved feature extractor then returns the mask too). The original "
            "code has no mask: use --attention_mask false --padding max_length to train as it does."
        },
    )

    def __post_init__(self) -> None:
        if self.model_name_or_path and self.imagenet_checkpoint:
            raise ValueError("give --model_name_or_path or --imagenet_checkpoint, not both")
        if not self.model_name_or_path and (self.adapt_max_length or self.adapt_stride):
            raise ValueError("--adapt_max_length and --adapt_stride re-target --model_name_or_path; give it too")
        if (self.fbank_mean is None) != (self.fbank_std is None):
            raise ValueError("give --fbank_mean and --fbank_std together")

    def patchout(self) -> dict[str, int | float]:
        """The patchout settings given on the command line (config field -> value)."""
        values = {
            "patchout_time": self.patchout_time,
            "patchout_frequency": self.patchout_frequency,
            "patchout_random": self.patchout_random,
        }
        return {name: value for name, value in values.items() if value is not None}


@dataclass
class RecipeArguments:
    """The paper's training recipe: augmentation, sampling, optimiser, learning-rate schedule, weight averaging."""

    mixup: float = field(default=0.0, metadata={"help": "Probability of waveform mixup per training clip."})
    mixup_alpha: float = field(default=10.0, metadata={"help": "Beta(alpha, alpha) of the mixup weight."})
    freqm: int = field(default=0, metadata={"help": "Largest SpecAugment frequency mask, in mel bins (0: none)."})
    timem: int = field(default=0, metadata={"help": "Largest SpecAugment time mask, in frames (0: none)."})
    noise: bool = field(default=False, metadata={"help": "Noise and time roll after normalisation (Speech Commands)."})
    balanced_sampling: bool = field(
        default=False,
        metadata={"help": "Draw training clips with the AST balanced weights (1000 / (label count + 0.01) summed)."},
    )
    paper_optimizer: bool = field(
        default=True,
        metadata={
            "help": "Adam with coupled L2 weight decay as in the AST recipes (--learning_rate, --weight_decay, "
            "--adam_beta1/2 apply); false uses TrainingArguments' --optim."
        },
    )
    lr_decay_start_epoch: int | None = field(
        default=None,
        metadata={
            "help": "The paper's step schedule: epochs 1..N keep the learning rate, then it is multiplied by "
            "--lr_decay_factor every --lr_decay_every_epochs epochs (after --warmup_steps of linear warm-up). "
            "Default: TrainingArguments' --lr_scheduler_type."
        },
    )
    lr_decay_every_epochs: int = field(default=1, metadata={"help": "Epochs between decays of the step schedule."})
    lr_decay_factor: float = field(default=0.5, metadata={"help": "Learning-rate factor per decay."})
    weight_averaging_start_epoch: int | None = field(
        default=None, metadata={"help": "Average the weights of epochs start..end (1-based) into the final model."}
    )
    weight_averaging_end_epoch: int | None = field(default=None, metadata={"help": "Last epoch averaged."})

    def __post_init__(self) -> None:
        if (self.weight_averaging_start_epoch is None) != (self.weight_averaging_end_epoch is None):
            raise ValueError("give --weight_averaging_start_epoch and --weight_averaging_end_epoch together")

    def augment(self) -> AugmentConfig:
        return AugmentConfig(
            mixup=self.mixup, mixup_alpha=self.mixup_alpha, freqm=self.freqm, timem=self.timem, noise=self.noise
        )

    @property
    def weight_averaging(self) -> bool:
        return self.weight_averaging_start_epoch is not None


class Arguments(NamedTuple):
    """Everything one run is told: the three groups of this script, Trainer's, and the recipe file (if any)."""

    model: ModelArguments
    data: DataArguments
    recipe: RecipeArguments
    training: TrainingArguments
    recipe_file: Path | None


ARGUMENT_CLASSES = (ModelArguments, DataArguments, RecipeArguments, TrainingArguments)


def read_recipe(path: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """(argument values, notes) of a recipe JSON file; keys starting with "_" are notes, the rest must be arguments."""
    if not path.is_file():
        raise FileNotFoundError(f"recipe {path} does not exist")
    try:
        values = json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise ValueError(f"recipe {path} is not valid JSON: {error}") from None
    if not isinstance(values, dict):
        raise ValueError(f"recipe {path} must hold a JSON object of argument names and values")
    known = {f.name for cls in ARGUMENT_CLASSES for f in dataclasses.fields(cls)}
    unknown = sorted(key for key in values if not key.startswith("_") and key not in known)
    if unknown:
        raise ValueError(f"recipe {path} sets unknown arguments {unknown}")
    notes = {key: value for key, value in values.items() if key.startswith("_")}
    return {key: value for key, value in values.items() if not key.startswith("_")}, notes


def parse_args(argv: Sequence[str] | None = None) -> Arguments:
    """Command line (or `argv`) -> `Arguments`. A first argument ending in .json is a recipe file: its values replace
    this script's defaults and the arguments after it override them."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = HfArgumentParser(ARGUMENT_CLASSES)
    parser.set_defaults(**TRAINING_DEFAULTS)
    recipe_file = None
    if argv and argv[0].endswith(".json"):
        recipe_file = Path(argv.pop(0))
        values, notes = read_recipe(recipe_file)
        parser.set_defaults(**values)
    model_args, data_args, recipe_args, training_args = parser.parse_args_into_dataclasses(args=argv)
    if recipe_file is not None and data_args.is_demo:
        needs = notes.get("_data", "a data source")
        raise ValueError(f"recipe {recipe_file} needs data: {needs}")
    return Arguments(model_args, data_args, recipe_args, training_args, recipe_file)


def check_compatible(args: Arguments) -> None:
    """Reject combinations the run cannot honour, before any data is read."""
    training, recipe = args.training, args.recipe
    if args.data.streaming:
        if training.max_steps <= 0:
            raise ValueError("--streaming needs --max_steps: a stream has no length to count epochs with")
        for flag, used in (
            ("--balanced_sampling", recipe.balanced_sampling),
            ("--lr_decay_start_epoch", recipe.lr_decay_start_epoch is not None),
            ("--weight_averaging_start_epoch", recipe.weight_averaging),
        ):
            if used:
                raise ValueError(f"{flag} counts epochs of a dataset with a length; it does not work with --streaming")
    launched = int(os.environ.get("WORLD_SIZE", "1"))
    if launched > 1 and training.world_size != launched:
        raise RuntimeError(
            f"launched as {launched} processes but Trainer set up {training.world_size}; each would train alone "
            "(on a machine without GPUs, do not pass --use_cpu false)"
        )
    if recipe.weight_averaging and training.load_best_model_at_end:
        raise ValueError("weight averaging cannot be combined with --load_best_model_at_end")


# ---------------------------------------------------------------------------------------------------------------
# Data
# ---------------------------------------------------------------------------------------------------------------


@dataclass
class TaskData:
    """The training and evaluation clips, the label space, and a one-line description of the source."""

    train: Sequence[Example] | StreamingHubExamples
    eval: Sequence[Example] | StreamingHubExamples
    label_space: LabelSpace
    source: str

    @property
    def streaming(self) -> bool:
        return isinstance(self.train, StreamingHubExamples)

    def train_label_lists(self) -> list[list[str]]:
        """Labels of every training clip (without decoding audio)."""
        if isinstance(self.train, HubExamples):
            return self.train.label_lists()
        return [list(example["labels"]) for example in self.train]

    def first_eval_example(self) -> Example:
        return next(iter(self.eval))


def _example_lists(train: list[Example], test: list[Example], data_args: DataArguments, source: str) -> TaskData:
    """TaskData of two lists of examples, checked: non-empty splits, labels inferred, evaluation labels known."""
    for name, examples in (("training", train), ("evaluation", test)):
        if not examples:
            raise ValueError(f"the {name} split is empty; check --test_regex or the manifests")
    label_space = LabelSpace.infer([example["labels"] for example in train], multi_label=data_args.forced_multi_label)
    check_eval_labels(label_space, [example["labels"] for example in test])
    if data_args.on_bad_file == "error":
        _check_files_exist(train + test)
    return TaskData(train, test, label_space, source)


def check_eval_labels(label_space: LabelSpace, label_lists: Sequence[Sequence[str]]) -> None:
    """Evaluation labels must be training labels, and exactly one per clip for a single-label task."""
    label_space.check(label_lists, "evaluation")
    if not label_space.multi_label:
        wrong = [index for index, labels in enumerate(label_lists) if len(labels) != 1]
        if wrong:
            raise ValueError(
                f"{len(wrong)} evaluation clip(s) (e.g. number {wrong[0]}) have no label or several, but every "
                "training clip has exactly one (a single-label task); use --problem_type multi_label_classification"
            )


def _check_files_exist(examples: Iterable[Example]) -> None:
    """FileNotFoundError listing the clips whose audio file is missing (with --on_bad_file skip they are skipped)."""
    missing = [str(ex["audio"]) for ex in examples if isinstance(ex["audio"], str) and not Path(ex["audio"]).is_file()]
    if missing:
        shown = ", ".join(missing[:5]) + (f" and {len(missing) - 5} more" if len(missing) > 5 else "")
        raise FileNotFoundError(f"{len(missing)} listed audio file(s) do not exist: {shown} (or --on_bad_file skip)")


def _hub_data(data_args: DataArguments) -> TaskData:
    """TaskData of two splits of a `datasets` dataset, streamed or not."""

    def split(name: str) -> HubExamples | StreamingHubExamples:
        return load_hub_examples(
            data_args.dataset_name,
            data_args.dataset_config_name,
            name,
            audio_column=data_args.audio_column,
            label_column=data_args.label_column,
            streaming=data_args.streaming,
        )

    train, test = split(data_args.train_split), split(data_args.eval_split)
    source = f"dataset {data_args.dataset_name} ({data_args.train_split} / {data_args.eval_split})"
    if data_args.streaming:
        label_space = train.label_space()
        if data_args.forced_multi_label is not None:
            label_space = LabelSpace(label_space.labels, data_args.forced_multi_label)
        return TaskData(train, test, label_space, source + ", streamed")
    label_space = train.label_space(multi_label=data_args.forced_multi_label)
    check_eval_labels(label_space, test.label_lists())
    return TaskData(train, test, label_space, source)


def load_task_data(data_args: DataArguments, output_dir: Path) -> TaskData:
    """The clips named by `data_args`; for the demo, a synthetic dataset written to `output_dir/data`."""
    if data_args.dataset_name is not None:
        return _hub_data(data_args)
    if data_args.data_dir is not None:
        splits = folder_examples(
            data_args.data_dir, data_args.label_regex, data_args.test_regex, data_args.audio_extensions
        )
        return _example_lists(splits["train"], splits["test"], data_args, f"folder {data_args.data_dir}")
    if data_args.is_demo:
        train_manifest, test_manifest = generate_dataset(
            output_dir / "data",
            data_args.synthetic_train_per_class,
            data_args.synthetic_test_per_class,
            data_args.synthetic_seed,
        )
        source = f"synthetic sound events (examples/synthetic_sounds.py, seed {data_args.synthetic_seed})"
    else:
        train_manifest, test_manifest = Path(data_args.train_manifest), Path(data_args.test_manifest)
        source = f"manifests {train_manifest} / {test_manifest}"
    return _example_lists(manifest_examples(train_manifest), manifest_examples(test_manifest), data_args, source)


class DrawKey(NamedTuple):
    """One draw of a training clip: the epoch, the position in that epoch's draw, and the clip's index."""

    epoch: int
    position: int
    index: int


def _derived_seed(*numbers: int) -> int:
    """A 63-bit seed from a tuple of integers (unrelated streams for different tuples)."""
    return int(np.random.SeedSequence([int(n) for n in numbers]).generate_state(1, dtype=np.uint64)[0] >> np.uint64(1))


class EpochDrawSampler(Sampler[DrawKey]):
    """The training clips of one epoch, as `DrawKey`s, from (seed, epoch) alone: a permutation of all clips, or with
    `weights` the AST balanced draw (with replacement, `DistributedWeightedSampler`).

    Nothing depends on what earlier epochs or batches drew, so a run resumed mid-epoch draws exactly what the
    uninterrupted run drew. Under torchrun every rank yields the same global draw and accelerate hands each rank its
    batches; Trainer calls `set_epoch` before every epoch.
    """

    def __init__(self, num_clips: int, seed: int, weights: torch.Tensor | None = None) -> None:
        self.num_clips = num_clips
        self.seed = seed
        self.epoch = 0
        self.weighted = None
        if weights is not None:
            self.weighted = DistributedWeightedSampler(weights, num_replicas=1, rank=0, seed=seed)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def indices(self) -> list[int]:
        """The clip indices of the current epoch's draw, in order."""
        if self.weighted is not None:
            self.weighted.set_epoch(self.epoch)
            return self.weighted.global_indices().tolist()
        generator = torch.Generator().manual_seed(_derived_seed(self.seed, self.epoch))
        return torch.randperm(self.num_clips, generator=generator).tolist()

    def __iter__(self):
        epoch = self.epoch
        return iter([DrawKey(epoch, position, index) for position, index in enumerate(self.indices())])

    def __len__(self) -> int:
        return len(self.weighted) if self.weighted is not None else self.num_clips


class DrawSeededDataset(Dataset):
    """Training items whose random crop, mixup and spectrogram augmentation depend only on (seed, epoch, position).

    `AudioDataset` draws item seeds from one generator in access order, which a resumed run (which skips the batches
    it already trained on) cannot replay. Here every `DrawKey` gets its own seed and an `AudioDataset` seeded with it
    makes the item, so an interrupted and resumed run sees the same augmented data as an uninterrupted one, in any
    number of DataLoader workers. Unreadable clips skipped (`on_bad_file="skip"`) are collected in `skipped` (in
    this process: with DataLoader workers, in the workers).
    """

    def __init__(self, examples: Sequence[Example], label_space: LabelSpace, seed: int, **dataset_options: Any) -> None:
        self.examples = examples
        self.label_space = label_space
        self.seed = seed
        self.dataset_options = dataset_options
        self.skipped: set[str] = set()

    def __len__(self) -> int:
        return len(self.examples)

    def __getitem__(self, key: DrawKey) -> Item | None:
        if not isinstance(key, DrawKey):
            raise TypeError(f"training items are drawn by EpochDrawSampler keys, got {key!r}")
        seed = _derived_seed(self.seed, key.epoch, key.position)
        clips = AudioDataset(self.examples, self.label_space, train=True, seed=seed, **self.dataset_options)
        item = clips[key.index]
        self.skipped.update(clips.bad_files.names)
        return item


@dataclass
class DataPipeline:
    """The datasets and the collator handed to Trainer."""

    train: DrawSeededDataset | StreamingAudioDataset
    eval: AudioDataset | StreamingAudioDataset
    collator: AudioCollator

    def skipped_counts(self) -> tuple[int, int]:
        """Unreadable clips skipped: distinct training clips, and evaluation clips in the last evaluation pass."""
        train = len(self.train.skipped) if isinstance(self.train, DrawSeededDataset) else self.train.bad_files.total
        return train, self.eval.bad_files.last_pass_count


def build_data_pipeline(
    data: TaskData, feature_extractor: ASTFeatureExtractor, args: Arguments
) -> DataPipeline:
    """Training set (augmented, reproducible), evaluation set (plain) and the featurising collator."""
    seed = args.training.data_seed if args.training.data_seed is not None else args.training.seed
    augment = args.recipe.augment()
    common = {
        "max_samples": num_samples_for_frames(feature_extractor.max_length, feature_extractor.sampling_rate),
        "on_bad_file": args.data.on_bad_file,
        "sampling_rate": feature_extractor.sampling_rate,
    }
    if data.streaming:
        stream = data.train.shuffle(seed=seed, buffer_size=args.data.shuffle_buffer_size)
        train = StreamingAudioDataset(stream, data.label_space, train=True, augment=augment, seed=seed, **common)
        evaluation = StreamingAudioDataset(data.eval, data.label_space, **common)
    else:
        train = DrawSeededDataset(data.train, data.label_space, seed, augment=augment, **common)
        evaluation = AudioDataset(data.eval, data.label_space, **common)
    collator = AudioCollator(
        feature_extractor,
        augment,
        padding=args.model.padding,
        return_attention_mask=args.model.attention_mask,
        min_frames=ASTConfig().patch_size,
    )
    return DataPipeline(train, evaluation, collator)


# ---------------------------------------------------------------------------------------------------------------
# Model and features
# ---------------------------------------------------------------------------------------------------------------


def _checkpoint_labels(model_name_or_path: str) -> tuple[str, ...]:
    """The class names of a checkpoint's head, in class-id order."""
    config = transformers.AutoConfig.from_pretrained(model_name_or_path)
    return tuple(config.id2label[index] for index in range(config.num_labels))


def _with_patchout(model: ASTForAudioClassification, patchout: dict[str, int | float]) -> ASTForAudioClassification:
    """`model`, rebuilt with the patchout settings `patchout` when its config has other ones (weights kept)."""
    if all(getattr(model.config, name) == value for name, value in patchout.items()):
        return model
    config = copy.deepcopy(model.config)
    for name, value in patchout.items():
        setattr(config, name, value)
    rebuilt = ASTForAudioClassification(config)
    rebuilt.load_state_dict(model.state_dict())
    return rebuilt


def build_model(model_args: ModelArguments, label_space: LabelSpace, seed: int) -> ASTForAudioClassification:
    """The model to train, with a head for `label_space` and its `problem_type` in the config.

    - `--imagenet_checkpoint`: the ImageNet ViT/DeiT turned into an AST (`ast_from_imagenet`) at --max_length and
      the strides given here;
    - `--model_name_or_path`: the checkpoint, re-targeted with `adapt_pretrained_ast` (new head, positional grid for
      --adapt_max_length / --adapt_stride) when those are given or its labels differ from the data's, else loaded
      with its head;
    - otherwise a new AST of the given size.
    """
    labels = label_space.config_kwargs()
    patchout = model_args.patchout()
    if model_args.imagenet_checkpoint:
        config = ASTConfig(
            max_length=model_args.max_length,
            frequency_stride=model_args.frequency_stride,
            time_stride=model_args.time_stride,
            **patchout,
            **labels,
        )
        return ast_from_imagenet(model_args.imagenet_checkpoint, config, seed=seed).train()
    if model_args.model_name_or_path:
        path = model_args.model_name_or_path
        retarget = model_args.adapt_max_length or model_args.adapt_stride
        if retarget or _checkpoint_labels(path) != label_space.labels:
            source_length = transformers.AutoConfig.from_pretrained(path).max_length
            model = adapt_pretrained_ast(
                path,
                model_args.adapt_max_length or source_length,
                id2label=label_space.labels,
                frequency_stride=model_args.adapt_stride,
                time_stride=model_args.adapt_stride,
                problem_type=label_space.problem_type,
                seed=seed,
            )
        else:
            model = ASTForAudioClassification.from_pretrained(path, **labels)
        return _with_patchout(model, patchout).train()
    config = ASTConfig(
        hidden_size=model_args.hidden_size,
        num_hidden_layers=model_args.num_hidden_layers,
        num_attention_heads=model_args.num_attention_heads,
        intermediate_size=model_args.intermediate_size,
        max_length=model_args.max_length,
        frequency_stride=model_args.frequency_stride,
        time_stride=model_args.time_stride,
        hidden_dropout_prob=model_args.hidden_dropout_prob,
        **patchout,
        **labels,
    )
    return ASTForAudioClassification(config)


def build_feature_extractor(model_args: ModelArguments, config: ASTConfig) -> ASTFeatureExtractor:
    """The feature extractor for `config.max_length` frames: the checkpoint's normalisation when it has one, else
    AudioSet's, unless --fbank_mean/--fbank_std are given. It returns the attention mask by default exactly when
    training masks the padding, so `pipeline` later feeds the saved model what it trained on."""
    feature_extractor = ASTFeatureExtractor(num_mel_bins=config.num_mel_bins, mean=AUDIOSET_MEAN, std=AUDIOSET_STD)
    if model_args.model_name_or_path:
        try:
            feature_extractor = ASTFeatureExtractor.from_pretrained(model_args.model_name_or_path)
        except OSError:
            print(f"note: {model_args.model_name_or_path} has no preprocessor_config.json; using AudioSet statistics")
    feature_extractor.max_length = config.max_length
    feature_extractor.return_attention_mask = model_args.attention_mask
    if model_args.fbank_mean is not None:
        feature_extractor.mean, feature_extractor.std = model_args.fbank_mean, model_args.fbank_std
    return feature_extractor


# ---------------------------------------------------------------------------------------------------------------
# Trainer
# ---------------------------------------------------------------------------------------------------------------


class ASTTrainer(Trainer):
    """`Trainer` with the AST recipe: reproducible (optionally balanced) draws, the paper's Adam and step schedule.

    Optimiser and scheduler are built in `create_optimizer` / `create_scheduler`, where Trainer expects them, so a run
    resumed with `resume_from_checkpoint` reloads their states as usual.
    """

    def __init__(
        self, *args: Any, recipe: RecipeArguments, sample_weights: torch.Tensor | None = None, **kwargs: Any
    ) -> None:
        self.recipe = recipe
        self.sample_weights = sample_weights
        super().__init__(*args, **kwargs)

    def _get_train_sampler(self, train_dataset: Dataset | None = None) -> Sampler | None:
        dataset = self.train_dataset if train_dataset is None else train_dataset
        if not isinstance(dataset, DrawSeededDataset):  # a stream: it orders itself
            return super()._get_train_sampler(train_dataset)
        seed = self.args.data_seed if self.args.data_seed is not None else self.args.seed
        return EpochDrawSampler(len(dataset), seed, self.sample_weights)

    def create_optimizer(self, model: torch.nn.Module | None = None) -> torch.optim.Optimizer:
        if not self.recipe.paper_optimizer:
            return super().create_optimizer(model)
        if self.optimizer is None:
            self.optimizer = build_optimizer(
                self.model if model is None else model,
                lr=self.args.learning_rate,
                weight_decay=self.args.weight_decay,
                betas=(self.args.adam_beta1, self.args.adam_beta2),
            )
        return self.optimizer

    def create_scheduler(
        self, num_training_steps: int, optimizer: torch.optim.Optimizer | None = None
    ) -> torch.optim.lr_scheduler.LRScheduler:
        if self.recipe.lr_decay_start_epoch is None:
            return super().create_scheduler(num_training_steps, optimizer)
        if self.lr_scheduler is None:
            self.lr_scheduler = build_lr_scheduler(
                self.optimizer if optimizer is None else optimizer,
                trainer_steps_per_epoch(len(self.train_dataset), self.args),
                decay_start_epoch=self.recipe.lr_decay_start_epoch,
                decay_every_epochs=self.recipe.lr_decay_every_epochs,
                decay_factor=self.recipe.lr_decay_factor,
                warmup_steps=self.args.get_warmup_steps(num_training_steps),
            )
            self._created_lr_scheduler = True  # rebuilt on the next train(), as Trainer does with its own
        return self.lr_scheduler


class FinalWeightsCallback(TrainerCallback):
    """Keeps a CPU copy of the weights training ended with (before weight averaging replaces them)."""

    def __init__(self) -> None:
        self.state_dict: dict[str, torch.Tensor] | None = None

    def on_train_end(self, args: TrainingArguments, state: Any, control: Any, model: Any = None, **kwargs: Any) -> None:
        self.state_dict = {key: value.detach().cpu().clone() for key, value in model.state_dict().items()}


def sample_weights(data: TaskData) -> torch.Tensor:
    """The AST balanced-sampling weight of every training clip."""
    space = data.label_space
    return balanced_sample_weights(torch.stack([space.multi_hot(labels) for labels in data.train_label_lists()]))


def resume_target(value: str | None) -> str | bool | None:
    """`--resume_from_checkpoint` for `Trainer.train`: a checkpoint folder, or "true"/"last" for the newest one in
    output_dir."""
    if value is None:
        return None
    return True if value.lower() in ("true", "last") else value


# ---------------------------------------------------------------------------------------------------------------
# Outputs: metrics, plot, model card
# ---------------------------------------------------------------------------------------------------------------


def headline(metrics: dict[str, float], label_space: LabelSpace) -> str:
    """The main numbers of an evaluation, e.g. "accuracy 0.950, top-5 0.990" or "mAP 0.412, mAUC 0.950, d' 2.3"."""
    if label_space.multi_label:
        return (
            f"mAP {metrics['test_mAP']:.4f}, mAUC {metrics['test_mAUC']:.4f}, d' {metrics['test_d_prime']:.3f}, "
            f"accuracy {metrics['test_accuracy']:.4f}"
        )
    return f"accuracy {metrics['test_accuracy']:.4f}, top-5 {metrics['test_top5_accuracy']:.4f}"


def save_plot(prediction: PredictionOutput, label_space: LabelSpace, output_dir: Path) -> Path | None:
    """A confusion matrix (single-label) or per-class AP bars (multi-label) as PNG; None without matplotlib."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        from matplotlib import pyplot
    except ImportError:
        print("note: matplotlib is not installed; no evaluation plot (pip install matplotlib)")
        return None
    logits = prediction.predictions[0] if isinstance(prediction.predictions, tuple) else prediction.predictions
    names = list(label_space.labels)
    if label_space.multi_label:
        figure = _per_class_ap_figure(pyplot, per_class_average_precision(logits, prediction.label_ids), names)
        path = output_dir / PLOT_FILES["multi"]
    else:
        figure = _confusion_figure(pyplot, np.asarray(prediction.label_ids), np.argmax(logits, axis=-1), names)
        path = output_dir / PLOT_FILES["single"]
    figure.savefig(path, dpi=100, bbox_inches="tight")
    pyplot.close(figure)
    return path


def _confusion_figure(pyplot: Any, truth: np.ndarray, predicted: np.ndarray, names: list[str]) -> Any:
    """Row-normalised confusion matrix; counts written in the cells for up to 30 classes."""
    count = len(names)
    matrix = np.zeros((count, count), dtype=np.int64)
    np.add.at(matrix, (truth, predicted), 1)
    rates = matrix / np.maximum(matrix.sum(axis=1, keepdims=True), 1)
    size = min(max(4.0, 0.45 * count + 2), 30.0)
    figure, axes = pyplot.subplots(figsize=(size, size))
    axes.imshow(rates, cmap="Blues", vmin=0, vmax=1)
    if count <= 30:
        axes.set_xticks(range(count), names, rotation=90)
        axes.set_yticks(range(count), names)
        for row in range(count):
            for column in range(count):
                if matrix[row, column]:
                    colour = "white" if rates[row, column] > 0.5 else "black"
                    axes.text(column, row, matrix[row, column], ha="center", va="center", color=colour, fontsize=8)
    axes.set_xlabel("predicted")
    axes.set_ylabel("true")
    axes.set_title(f"confusion matrix ({int(matrix.sum())} clips, accuracy {np.trace(matrix) / matrix.sum():.3f})")
    return figure


def _per_class_ap_figure(pyplot: Any, average_precision: np.ndarray, names: list[str]) -> Any:
    """Per-class average precision, sorted; class names shown for up to 60 classes."""
    scored = [(ap, name) for ap, name in zip(average_precision, names) if not np.isnan(ap)]
    scored.sort(reverse=True)
    values = [ap for ap, _ in scored]
    figure, axes = pyplot.subplots(figsize=(max(6.0, min(0.25 * len(values) + 2, 40.0)), 4))
    axes.bar(range(len(values)), values, color="tab:blue")
    if len(values) <= 60:
        axes.set_xticks(range(len(values)), [name for _, name in scored], rotation=90)
    axes.set_ylim(0, 1)
    axes.set_ylabel("average precision")
    axes.set_title(f"per-class AP ({len(values)} classes with positives, mAP {np.mean(values):.3f})")
    return figure


def _metrics_table(results: dict[str, dict[str, float]]) -> str:
    """A markdown table: one row per evaluated model, one column per metric (Trainer's bookkeeping left out)."""
    keys = [k for k in next(iter(results.values())) if not k.endswith(("_runtime", "_per_second", "_loss"))]
    header = "| model | " + " | ".join(k.removeprefix("test_") for k in keys) + " |"
    rows = [f"| {name} | " + " | ".join(f"{metrics[k]:.4f}" for k in keys) + " |" for name, metrics in results.items()]
    return "\n".join([header, "|" + " --- |" * (len(keys) + 1), *rows])


def training_summary(args: Arguments) -> list[str]:
    """Markdown bullet points of the settings that shape training."""
    training, recipe = args.training, args.recipe
    length = f"{training.max_steps} steps" if training.max_steps > 0 else f"{training.num_train_epochs:g} epochs"
    if recipe.lr_decay_start_epoch is None:
        schedule = f"{getattr(training.lr_scheduler_type, 'value', training.lr_scheduler_type)} schedule"
    else:
        schedule = (
            f"x{recipe.lr_decay_factor:g} every {recipe.lr_decay_every_epochs} epoch(s) after epoch "
            f"{recipe.lr_decay_start_epoch}"
        )
    optimizer = "Adam (coupled L2)" if recipe.paper_optimizer else training.optim
    lines = [
        f"- {length}, batch {training.per_device_train_batch_size} per device x {training.world_size} process(es), "
        f"{optimizer}, learning rate {training.learning_rate:g}, weight decay {training.weight_decay:g}, "
        f"warm-up {training.warmup_steps:g}{' of the steps' if 0 < training.warmup_steps < 1 else ' steps'}, "
        f"{schedule}.",
        f"- Augmentation: {recipe.augment()}; balanced sampling: {'yes' if recipe.balanced_sampling else 'no'}; "
        f"patchout: {args.model.patchout() or 'none'}.",
    ]
    if recipe.weight_averaging:
        lines.append(
            f"- Weight averaging of epochs {recipe.weight_averaging_start_epoch}-{recipe.weight_averaging_end_epoch}."
        )
    return lines


def write_model_card(
    output_dir: Path, args: Arguments, data: TaskData, results: dict[str, dict[str, float]], command: str,
    plot: Path | None,
) -> Path:
    """README.md in output_dir: what the model is, the data, the metrics and the command that trained it."""
    space = data.label_space
    task = "multi-label" if space.multi_label else "single-label"
    start = args.model.imagenet_checkpoint or args.model.model_name_or_path or "random initialisation"
    labels = ", ".join(space.labels[:30]) + (f" and {space.num_labels - 30} more" if space.num_labels > 30 else "")
    lines = [
        "---",
        "library_name: transformers",
        "pipeline_tag: audio-classification",
        "tags: [audio-classification, audio-spectrogram-transformer, modeling_ast]",
        "---",
        "",
        f"# {output_dir.name}",
        "",
        f"An Audio Spectrogram Transformer (`modeling_ast`) trained for {task} classification of {space.num_labels} "
        f"classes with `{SCRIPT}`, starting from {start}.",
        "",
        f"- Data: {data.source}; evaluated on the evaluation split (no model selection on it).",
        f"- Labels: {labels}.",
        f"- problem_type: `{space.problem_type}`.",
        "",
        "## Evaluation",
        "",
        _metrics_table(results),
        "",
    ]
    if plot is not None:
        lines += [f"![evaluation plot]({plot.name})", ""]
    lines += ["## Training", "", *training_summary(args), "", "```bash", command, "```", ""]
    path = output_dir / "README.md"
    path.write_text("\n".join(lines))
    return path


def pipeline_top3(model_dir: Path, example: Example) -> list[dict[str, Any]]:
    """Reloads the saved model with `pipeline("audio-classification")` and returns its top-3 for `example`."""
    classifier = transformers.pipeline("audio-classification", model=str(model_dir))
    audio = example["audio"]
    if not isinstance(audio, str):
        audio = {"raw": decode_example(example).numpy(), "sampling_rate": SAMPLING_RATE}
    return classifier(audio, top_k=3)


# ---------------------------------------------------------------------------------------------------------------
# Main
# ---------------------------------------------------------------------------------------------------------------


def evaluate(
    trainer: ASTTrainer, pipeline: DataPipeline, final_weights: FinalWeightsCallback | None
) -> tuple[PredictionOutput, dict[str, dict[str, float]]]:
    """Predictions of the model as trained (weight-averaged when averaging) and the metrics of every model evaluated:
    {"final": ...} or {"weight-averaged": ..., "last epoch": ...}."""
    prediction = trainer.predict(pipeline.eval, metric_key_prefix="test")
    if final_weights is None:
        return prediction, {"final": prediction.metrics}
    averaged = {key: value.detach().clone() for key, value in trainer.model.state_dict().items()}
    trainer.model.load_state_dict(final_weights.state_dict)
    last = trainer.predict(pipeline.eval, metric_key_prefix="test").metrics
    trainer.model.load_state_dict(averaged)
    return prediction, {"weight-averaged": prediction.metrics, "last epoch": last}


def build_trainer(
    args: Arguments, data: TaskData, model: ASTForAudioClassification, feature_extractor: ASTFeatureExtractor,
    pipeline: DataPipeline, callbacks: Sequence[TrainerCallback],
) -> ASTTrainer:
    return ASTTrainer(
        model=model,
        args=args.training,
        train_dataset=pipeline.train,
        eval_dataset=pipeline.eval,
        data_collator=pipeline.collator,
        processing_class=feature_extractor,
        compute_metrics=compute_metrics_fn(data.label_space.problem_type, data.label_space.id2label),
        callbacks=list(callbacks),
        recipe=args.recipe,
        sample_weights=sample_weights(data) if args.recipe.balanced_sampling else None,
    )


def main(argv: Sequence[str] | None = None, callbacks: Sequence[TrainerCallback] = ()) -> dict[str, Any]:
    """Runs the whole recipe; returns the test metrics, the trained model and what was written.

    `callbacks` are extra `TrainerCallback`s (e.g. one that stops training early).
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(argv)
    check_compatible(args)
    training_args = args.training
    transformers.set_seed(training_args.seed)
    output_dir = Path(training_args.output_dir)
    is_main = training_args.process_index == 0
    with training_args.main_process_first(desc="reading the data"):
        data = load_task_data(args.data, output_dir)
    space = data.label_space
    task = "multi-label" if space.multi_label else "single-label"
    if is_main:
        counts = "streamed" if data.streaming else f"{len(data.train)} training and {len(data.eval)} test clips"
        shown = ", ".join(space.labels[:20]) + (" ..." if space.num_labels > 20 else "")
        print(f"{counts}, {space.num_labels} labels ({task}): {shown}")
        if not training_args.report_to and importlib.util.find_spec("tensorboard") is None:
            print("note: tensorboard is not installed, so no training curves are logged (pip install tensorboard)")

    model = build_model(args.model, space, training_args.seed)
    feature_extractor = build_feature_extractor(args.model, model.config)
    if is_main:
        print(f"model: {model.num_parameters():,} parameters, {model.config.max_length} frames")
    pipeline = build_data_pipeline(data, feature_extractor, args)
    final_weights = FinalWeightsCallback() if args.recipe.weight_averaging else None
    all_callbacks = list(callbacks)
    if final_weights is not None:
        all_callbacks += [
            final_weights,
            WeightAveragingCallback(
                args.recipe.weight_averaging_start_epoch,
                args.recipe.weight_averaging_end_epoch,
                save_epoch_checkpoints=training_args.save_strategy != "no",
            ),
        ]
    trainer = build_trainer(args, data, model, feature_extractor, pipeline, all_callbacks)
    trainer.train(resume_from_checkpoint=resume_target(training_args.resume_from_checkpoint))
    prediction, results = evaluate(trainer, pipeline, final_weights)
    trainer.save_model(str(output_dir))  # model + feature extractor, safetensors
    skipped_train, skipped_test = pipeline.skipped_counts()

    result: dict[str, Any] = {
        "metrics": prediction.metrics,
        "results": results,
        "test_accuracy": prediction.metrics["test_accuracy"],
        "num_test_clips": len(prediction.label_ids),
        "skipped_files": {"train": skipped_train, "test": skipped_test},
        "output_dir": output_dir,
        "model": trainer.model,
        "problem_type": space.problem_type,
        "log_history": trainer.state.log_history,
    }
    if is_main:
        for name, metrics in results.items():
            print(f"test {headline(metrics, space)} ({result['num_test_clips']} clips, {name} model)")
        if args.data.on_bad_file == "skip":
            print(f"skipped unreadable audio: {skipped_train} training clip(s), {skipped_test} test clip(s)")
        plot = save_plot(prediction, space, output_dir)
        command = f"python {SCRIPT} " + shlex.join(argv)
        result["model_card"] = write_model_card(output_dir, args, data, results, command, plot)
        result["plot"] = plot
        held_out = data.first_eval_example()
        result["top3"] = pipeline_top3(output_dir, held_out)
        guesses = ", ".join(f"{guess['label']} {guess['score']:.3f}" for guess in result["top3"])
        print(f"pipeline on held-out {held_out.get('name', 'clip')} (labels {held_out['labels']}): {guesses}")
        if task == "single-label":
            print(f"test accuracy: {result['test_accuracy']:.3f} ({result['num_test_clips']} clips)")
    trainer.accelerator.wait_for_everyone()  # no process leaves while the main one still writes
    return result


def end_processes() -> None:
    """Close the process group of a multi-process run (a process exiting with it open can abort in gloo)."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()


if __name__ == "__main__":
    main()
    end_processes()
