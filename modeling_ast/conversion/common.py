"""What the converters share: label files, dataset presets, and building, filling and saving a model."""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import os
import re
import sys
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path

import torch

from ..configuration_ast import ASTConfig
from ..feature_extraction_ast import ASTFeatureExtractor
from ..modeling_ast import ASTForAudioClassification, ASTModel
from .io import atomic_output_dir

__all__ = [
    "AUDIOSET_MEAN",
    "AUDIOSET_STD",
    "DATASET_PRESETS",
    "DatasetPreset",
    "LabelSource",
    "build_model",
    "check_label_names",
    "dataset_preset",
    "describe_model_dir",
    "load_encoder",
    "push_folder_to_hub",
    "read_label_names",
    "run_cli",
    "save_model_dir",
    "shape_mismatches",
]

# ------------------------------------------------------------------------------------------------------ datasets

# Log-mel statistics of AudioSet, measured by the AST authors (the default normalisation of every converter).
AUDIOSET_MEAN = -4.2677393
AUDIOSET_STD = 4.5689974


@dataclasses.dataclass(frozen=True)
class DatasetPreset:
    """Normalisation statistics and task type of a dataset the authors trained on.

    `problem_type` decides the pipeline's output function: sigmoid for "multi_label_classification", softmax for
    "single_label_classification". `metric` names what the number in a released file name measures; `why` explains
    the problem type on the model card.
    """

    name: str
    mean: float
    std: float
    problem_type: str
    metric: str
    num_labels: int
    why: str


DATASET_PRESETS: dict[str, DatasetPreset] = {
    "audioset": DatasetPreset(
        "audioset", AUDIOSET_MEAN, AUDIOSET_STD, "multi_label_classification", "mAP", 527,
        "AudioSet clips carry several labels at once; the authors train with BCE and report mAP, so each class gets "
        "an independent sigmoid score.",
    ),
    "speechcommands": DatasetPreset(
        "speechcommands", -6.845978, 5.5654526, "single_label_classification", "accuracy", 35,
        "every Speech Commands clip has exactly one word and the authors evaluate argmax accuracy. They trained with "
        "BCE, but softmax and sigmoid rank the classes identically (both are monotone in each logit), so the argmax "
        "and the reported accuracy are unchanged, and softmax gives scores that sum to one over the mutually "
        "exclusive words. Set problem_type to multi_label_classification to fine-tune with the authors' BCE.",
    ),
    "esc50": DatasetPreset(
        "esc50", -6.6268077, 5.358466, "single_label_classification", "accuracy", 50,
        "every ESC-50 clip has one class; the authors train with cross-entropy and report accuracy.",
    ),
}
_DATASET_ALIASES = {
    "audioset": "audioset", "as": "audioset", "audiosetbal": "audioset", "audiosetbalanced": "audioset",
    "speechcommands": "speechcommands", "speechcommandsv2": "speechcommands", "sc": "speechcommands",
    "esc50": "esc50", "esc": "esc50",
}


def dataset_preset(name: str) -> DatasetPreset:
    """The preset of a dataset name, spelled loosely ("AudioSet", "esc-50", "speech_commands_v2", ...)."""
    key = re.sub(r"[^a-z0-9]", "", name.lower())
    if key not in _DATASET_ALIASES:
        raise ValueError(f"unknown dataset {name!r}; use one of {sorted(DATASET_PRESETS)}")
    return DATASET_PRESETS[_DATASET_ALIASES[key]]


# -------------------------------------------------------------------------------------------------------- labels

LabelSource = str | os.PathLike | Sequence[str] | Mapping[int | str, str]
_LABEL_FILE_SUFFIXES = (".csv", ".json", ".txt")


def read_label_names(labels: LabelSource) -> list[str]:
    """Class names, in class order, from a label file, a comma-separated string, a list or an id2label mapping.

    Files (UTF-8, a byte-order mark is allowed):
        `.csv` with a header naming a `display_name` column, ordered by an `index` column when there is one
            (AudioSet's `class_labels_indices.csv`: index, mid, display_name);
        `.json`: a list of names, an id2label object, or an object holding "id2label" (e.g. a config.json);
        `.txt`: one name per line (blank lines skipped).
    A `str` that names no existing file and has no label-file suffix is split on commas ("yes, no" -> two names).
    Raises FileNotFoundError for a missing file, ValueError naming the file (and line) for a malformed one, and
    ValueError for empty, non-string or repeated names.
    """
    if isinstance(labels, (str, os.PathLike)):
        path = Path(labels)
        if isinstance(labels, str) and not path.is_file() and path.suffix.lower() not in _LABEL_FILE_SUFFIXES:
            names, where = [name.strip() for name in labels.split(",") if name.strip()], f"labels {labels!r}"
        else:
            names, where = _label_file_names(path), str(path)
    elif isinstance(labels, Mapping):
        names, where = _labels_from_mapping(labels, "id2label"), "id2label"
    else:
        names, where = list(labels), "labels"
    if not names:
        raise ValueError(f"{where} gives no label names")
    check_label_names(names, where)
    return names


def check_label_names(names: Sequence, where: str) -> None:
    """Raise ValueError (naming `where`) unless every name is a non-empty string and no name repeats."""
    bad = [index for index, name in enumerate(names) if not isinstance(name, str) or not name.strip()]
    if bad:
        raise ValueError(f"{where}: labels {bad[:10]} are empty or not strings")
    seen: dict[str, int] = {}
    repeated = [
        f"{name!r} ({seen[name]} and {index})"
        for index, name in enumerate(names)
        if seen.setdefault(name, index) != index
    ]
    if repeated:
        raise ValueError(f"{where}: label names must be unique (label2id maps names back to classes): {repeated[:10]}")


def _label_file_names(path: Path) -> list[str]:
    if not path.is_file():
        raise FileNotFoundError(f"label file {path} does not exist")
    suffix = path.suffix.lower()
    if suffix not in _LABEL_FILE_SUFFIXES:
        raise ValueError(f"label file {path}: use a .csv (index,mid,display_name), .json or .txt file")
    try:
        text = path.read_text(encoding="utf-8-sig")  # utf-8-sig: a leading byte-order mark is not part of the text
    except UnicodeDecodeError as err:
        raise ValueError(f"label file {path} is not UTF-8 text ({err})") from err
    if suffix == ".csv":
        return _labels_from_csv(path, text)
    if suffix == ".json":
        return _labels_from_json(path, text)
    return [line.strip() for line in text.splitlines() if line.strip()]


def _labels_from_csv(path: Path, text: str) -> list[str]:
    """Names from CSV text with a `display_name` column, ordered by the `index` column when there is one."""
    reader = csv.reader(io.StringIO(text, newline=""))
    columns = [name.strip() for name in next(reader, [])]
    if "display_name" not in columns:
        raise ValueError(f"{path}: expected a CSV with a header naming a display_name column, got columns {columns}")
    rows = []
    for row in reader:
        if not row:  # a blank line
            continue
        if len(row) != len(columns):
            raise ValueError(
                f"{path}, line {reader.line_num}: {len(row)} fields where the header names {len(columns)} "
                f"({', '.join(columns)})"
            )
        rows.append(dict(zip(columns, row)))
    names = [row["display_name"] for row in rows]
    if "index" not in columns:
        return names
    try:
        indices = [int(row["index"]) for row in rows]
    except ValueError as err:
        raise ValueError(f"{path}: the index column must hold integers ({err})") from err
    if sorted(indices) != list(range(len(rows))):
        raise ValueError(f"{path}: the index column must number the {len(rows)} rows 0..{len(rows) - 1} once each")
    return [name for _, name in sorted(zip(indices, names))]


def _labels_from_mapping(mapping: Mapping, where: str) -> list[str]:
    """Names from an id2label mapping whose keys are 0..n-1 (ints or their strings)."""
    try:
        indexed = {int(key): value for key, value in mapping.items()}
    except (TypeError, ValueError) as err:
        raise ValueError(f"{where}: id2label keys must be class indices ({err})") from err
    if sorted(indexed) != list(range(len(indexed))):
        raise ValueError(f"{where}: id2label keys must be 0..{len(indexed) - 1} once each, got {sorted(indexed)[:10]}")
    return [indexed[index] for index in range(len(indexed))]


def _labels_from_json(path: Path, text: str) -> list[str]:
    """Names from a JSON list, an id2label object, or an object holding "id2label" (e.g. a config.json)."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as err:
        raise ValueError(f"{path}: not valid JSON ({err})") from err
    if isinstance(data, dict) and "id2label" in data:
        data = data["id2label"]
    if isinstance(data, list):
        return data
    if isinstance(data, dict):
        return _labels_from_mapping(data, str(path))
    raise ValueError(f"{path}: expected a JSON list of names or an id2label object, got {type(data).__name__}")


# --------------------------------------------------------------------------------------------------------- models


def build_model(config: ASTConfig, add_classifier: bool, seed: int | None) -> ASTModel | ASTForAudioClassification:
    """A freshly initialised model (seeded without touching the global RNG when `seed` is given)."""
    model_class = ASTForAudioClassification if add_classifier else ASTModel
    if seed is None:
        return model_class(config)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return model_class(config)


def shape_mismatches(
    weights: Mapping[str, torch.Tensor], expected: Mapping[str, tuple[int, ...]], name: Callable[[str], str] = str
) -> list[str]:
    """"key: expected (..), got (..)" for every tensor of `weights` whose shape differs from `expected[key]`;
    `name` turns our key into the one a user would recognise (the source checkpoint's)."""
    return [
        f"{name(key)}: expected {tuple(shape)}, got {tuple(weights[key].shape)}"
        for key, shape in expected.items()
        if key in weights and tuple(weights[key].shape) != tuple(shape)
    ]


def load_encoder(model: ASTModel | ASTForAudioClassification, weights: Mapping[str, torch.Tensor]) -> None:
    """Copy a complete `ASTModel` state dict into `model` (or its encoder).

    Raises ValueError listing missing and unexpected keys, or naming each tensor whose shape differs from the
    model's (e.g. `blocks.0.attn.qkv.weight: expected (2304, 768), got (768, 768)`).
    """
    encoder = model.ast if isinstance(model, ASTForAudioClassification) else model
    expected = {key: tuple(tensor.shape) for key, tensor in encoder.state_dict().items()}
    missing, unexpected = sorted(set(expected) - set(weights)), sorted(set(weights) - set(expected))
    if missing or unexpected:
        raise ValueError(
            f"the encoder weights do not match ASTModel: missing keys {missing[:20]}; unexpected keys {unexpected[:20]}"
        )
    wrong = shape_mismatches(weights, expected)
    if wrong:
        raise ValueError("the encoder weights do not match the model's config: " + "; ".join(wrong))
    encoder.load_state_dict(dict(weights), strict=True)


def save_model_dir(
    model: ASTModel | ASTForAudioClassification,
    output_dir: str | os.PathLike,
    *,
    mean: float = AUDIOSET_MEAN,
    std: float = AUDIOSET_STD,
    overwrite: bool = False,
    model_card: str | None = None,
    inputs: Iterable[Path] = (),
) -> Path:
    """Write `model` (config.json + model.safetensors), an `ASTFeatureExtractor` for its `max_length` and mel bins
    (preprocessor_config.json) and, when given, `model_card` (README.md) to `output_dir`, atomically.

    Returns the directory. Raises RuntimeError if `save_pretrained` wrote pickled weights instead of safetensors,
    ValueError when `output_dir` cannot be written (`io.check_output_dir`: e.g. it is or holds one of `inputs`, the
    files the model was made from).
    """
    feature_extractor = ASTFeatureExtractor(
        num_mel_bins=model.config.num_mel_bins, max_length=model.config.max_length, mean=mean, std=std
    )
    with atomic_output_dir(output_dir, overwrite=overwrite, inputs=inputs) as staging:
        model.save_pretrained(staging)
        pickled = sorted(path.name for path in staging.iterdir() if path.suffix in (".bin", ".pt", ".pth", ".pkl"))
        if pickled or not any(path.suffix == ".safetensors" for path in staging.iterdir()):
            raise RuntimeError(f"save_pretrained wrote {pickled or 'no safetensors file'}; expected safetensors only")
        feature_extractor.save_pretrained(staging)
        if model_card is not None:
            (staging / "README.md").write_text(model_card, encoding="utf-8")
    return Path(output_dir).resolve()


def push_folder_to_hub(
    folder: str | os.PathLike, repo_id: str, token: str | None = None, private: bool | None = None
) -> str:
    """Create the Hub model repository `repo_id` if needed and upload `folder` to it; returns the commit URL."""
    from huggingface_hub import HfApi

    api = HfApi(token=token)
    api.create_repo(repo_id, repo_type="model", exist_ok=True, private=private)
    commit = api.upload_folder(
        folder_path=str(folder), repo_id=repo_id, repo_type="model", commit_message="Upload a converted AST checkpoint"
    )
    return str(getattr(commit, "commit_url", commit))


# ----------------------------------------------------------------------------------------------------------- CLIs


def describe_model_dir(path: str | os.PathLike) -> str:
    """One line about a written model directory: class, architecture, grid, strides and labels (for the CLIs)."""
    config = ASTConfig.from_pretrained(path)
    classifier = "ASTForAudioClassification" in (config.architectures or [])
    return (
        f"wrote {path}: {'ASTForAudioClassification' if classifier else 'ASTModel'}, D={config.hidden_size}, "
        f"{config.num_hidden_layers} layers, {config.num_attention_heads} heads, "
        f"layer_norm_eps={config.layer_norm_eps:g}, grid {config.patch_grid} ({config.max_length} frames, strides "
        f"{config.frequency_stride}/{config.time_stride})"
        + (f", {config.num_labels} labels, problem_type={config.problem_type}" if classifier else "")
    )


def run_cli(work: Callable[[], str], message_to_stderr: bool = False) -> int:
    """A converter CLI's exit status: 0 after printing what `work` returns, 1 after printing `error: ...` (without a
    traceback) when it raises ValueError or OSError (bad input, a missing, unreadable or unwritable file).
    `message_to_stderr` for commands whose stdout is data (ast-listen's JSON lines)."""
    try:
        message = work()
    except (ValueError, OSError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    print(message, file=sys.stderr if message_to_stderr else sys.stdout)
    return 0
