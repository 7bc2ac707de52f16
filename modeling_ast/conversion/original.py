"""Convert the AST authors' released `.pth` checkpoints (github.com/YuanGongND/ast) into this package's format.

The authors saved their models from `torch.nn.DataParallel`, so every key starts with `module.`; below that the
layout is timm 0.4.5's DeiT under `v.` plus the audio head `mlp_head` (LayerNorm, Linear), renamed to ours by
`layouts.ORIGINAL` (`v.blocks.{i}.attn.qkv.weight` -> `ast.blocks.{i}.attn.qkv.weight`, `mlp_head.1.weight` ->
`classifier.fc.weight`, ...). DeiT's ImageNet heads `v.head`, `v.head_dist`, never used by AST, are dropped.

Nothing in the file says how it was trained, so the converter infers it from tensor shapes:

* D from the tokens, the number of blocks from their indices, the MLP width from `mlp.fc1`, the label count from
  `mlp_head.1`, heads as in DeiT (64 per head: 768 -> 12, 384 -> 6, 192 -> 3; overridable);
* patch strides and input length from the number of positional rows. The authors' layouts (`_KNOWN_LAYOUTS`) are
  recognised: at 128 x 1024 the grids 12x101 / 10x85 / 9x73 / 8x64 mean strides 10 / 12 / 14 / 16, and 144 patches
  are the 128-frame Speech Commands model (stride 10). Any other count is ambiguous (several strides and lengths give
  it), so `frequency_stride`, `time_stride` and `max_length` must then be passed.

The LayerNorm epsilons of the original are kept: 1e-6 in the encoder (timm's DeiT), 1e-5 in the head (PyTorch's
default). The output directory holds `config.json`, `model.safetensors`, `preprocessor_config.json` and a model card,
and loads with `from_pretrained` and `pipeline("audio-classification")` once `modeling_ast` is imported.
"""

from __future__ import annotations

import dataclasses
import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path

import torch
from transformers.utils import logging

from ..configuration_ast import ASTConfig
from ..modeling_ast import ASTForAudioClassification
from .common import DATASET_PRESETS, DatasetPreset, LabelSource, dataset_preset, push_folder_to_hub, read_label_names
from .common import save_model_dir, shape_mismatches
from .io import check_output_dir, input_paths, load_state_dict, preview_keys
from .layouts import (
    DATA_PARALLEL_PREFIX,
    ORIGINAL,
    ORIGINAL_ANCHOR_KEYS,
    ORIGINAL_UNUSED_PREFIXES,
    is_transformers_ast_state_dict,
)
from .fingerprint import file_sha256
from .original_report import ConversionReport, reported_metric_text

logger = logging.get_logger(__name__)

__all__ = ["OriginalLayout", "convert_original_checkpoint", "inspect_original_checkpoint", "original_to_ours"]

_ENCODER_LAYER_NORM_EPS = 1e-6  # timm 0.4.5 DeiT: partial(nn.LayerNorm, eps=1e-6)
_HEAD_LAYER_NORM_EPS = 1e-5  # nn.LayerNorm default in the original mlp_head
_DEIT_HEAD_DIM = 64  # every DeiT size (tiny 192/3, small 384/6, base 768/12) uses 64-wide heads
_DEFAULT_NUM_MEL_BINS = 128  # input_fdim of every recipe of the original code

_BLOCK_INDEX = re.compile(r"v\.blocks\.(\d+)\.")


# ---------------------------------------------------------------------------------------------------- geometry


@dataclasses.dataclass(frozen=True)
class _KnownLayout:
    """Strides and input length of a patch count the authors used (128 mel bins, 16 x 16 patches)."""

    frequency_stride: int
    time_stride: int
    max_length: int
    origin: str


_KNOWN_LAYOUTS: dict[int, _KnownLayout] = {
    1212: _KnownLayout(10, 10, 1024, "AudioSet, stride 10 (12 x 101 grid)"),
    850: _KnownLayout(12, 12, 1024, "AudioSet, stride 12 (10 x 85 grid)"),
    657: _KnownLayout(14, 14, 1024, "AudioSet, stride 14 (9 x 73 grid)"),
    512: _KnownLayout(16, 16, 1024, "AudioSet, stride 16 (8 x 64 grid)"),
    600: _KnownLayout(10, 10, 512, "ESC-50 recipe, stride 10 (12 x 50 grid)"),
    144: _KnownLayout(10, 10, 128, "Speech Commands V2, stride 10 (12 x 12 grid)"),
}


def _geometry_candidates(num_patches: int, num_mel_bins: int, patch_size: int) -> list[str]:
    """Readable equal-stride interpretations of a patch count, for the ambiguity error."""
    config = ASTConfig(patch_size=patch_size, num_mel_bins=num_mel_bins)
    candidates = []
    for stride in range(1, patch_size + 1):
        frequency = config.num_patches(num_mel_bins, stride)
        if num_patches % frequency:
            continue
        time = num_patches // frequency
        shortest = patch_size + (time - 1) * stride  # the fewest frames that give `time` patches
        candidates.append(f"stride {stride}: {frequency} x {time} grid, max_length {shortest}..{shortest + stride - 1}")
    return candidates


def _resolve_geometry(
    num_patches: int,
    *,
    patch_size: int = 16,
    num_mel_bins: int = _DEFAULT_NUM_MEL_BINS,
    frequency_stride: int | None = None,
    time_stride: int | None = None,
    max_length: int | None = None,
) -> tuple[int, int, int]:
    """(frequency_stride, time_stride, max_length) of a positional grid of `num_patches` patches.

    Explicit values win; missing ones come from `_KNOWN_LAYOUTS` when the count is one the authors used (128 bins,
    16 x 16 patches). Otherwise all three must be given. Raises ValueError when the result does not give exactly
    `num_patches` patches, or when the count is ambiguous and some value is missing.
    """
    given = {"frequency_stride": frequency_stride, "time_stride": time_stride, "max_length": max_length}
    known = _KNOWN_LAYOUTS.get(num_patches) if (num_mel_bins, patch_size) == (_DEFAULT_NUM_MEL_BINS, 16) else None
    if known is not None:
        resolved = {
            "frequency_stride": known.frequency_stride,
            "time_stride": known.time_stride,
            "max_length": known.max_length,
        }
        resolved.update({name: value for name, value in given.items() if value is not None})
    elif any(value is None for value in given.values()):
        candidates = _geometry_candidates(num_patches, num_mel_bins, patch_size)
        raise ValueError(
            f"v.pos_embed holds {num_patches} patch positions, which is not one of the authors' layouts "
            f"({sorted(_KNOWN_LAYOUTS)} patches at {_DEFAULT_NUM_MEL_BINS} mel bins), so the patch strides and input "
            "length cannot be told from the shapes alone: pass frequency_stride, time_stride and max_length "
            "(--frequency_stride, --time_stride, --max_length). "
            + (f"Equal-stride readings of {num_patches} patches: {'; '.join(candidates)}." if candidates else "")
        )
    else:
        resolved = dict(given)
    frequency, time = ASTConfig(patch_size=patch_size, num_mel_bins=num_mel_bins, **resolved).patch_grid
    if frequency * time != num_patches:
        raise ValueError(
            f"v.pos_embed holds {num_patches} patch positions, but frequency_stride={resolved['frequency_stride']}, "
            f"time_stride={resolved['time_stride']}, max_length={resolved['max_length']} and "
            f"num_mel_bins={num_mel_bins} give a {frequency} x {time} grid ({frequency * time} patches)"
        )
    return resolved["frequency_stride"], resolved["time_stride"], resolved["max_length"]


# ---------------------------------------------------------------------------------------------------- layout


@dataclasses.dataclass(frozen=True)
class OriginalLayout:
    """Architecture and input geometry of an original checkpoint, inferred from its tensor shapes."""

    hidden_size: int
    num_hidden_layers: int
    num_attention_heads: int
    intermediate_size: int
    num_labels: int
    qkv_bias: bool
    patch_size: int
    frequency_stride: int
    time_stride: int
    max_length: int
    num_mel_bins: int

    @property
    def grid(self) -> tuple[int, int]:
        """(frequency, time) patches of the positional grid."""
        return self.to_config().patch_grid

    def to_config(self, **kwargs) -> ASTConfig:
        """An `ASTConfig` of this architecture with the original LayerNorm epsilons; `kwargs` add labels etc.

        The fields are the config's, so they pass by name; the label count goes in through `kwargs` (id2label).
        """
        fields = {name: value for name, value in dataclasses.asdict(self).items() if name != "num_labels"}
        return ASTConfig(
            **fields,
            hidden_act="gelu",
            hidden_dropout_prob=0.0,
            attention_probs_dropout_prob=0.0,
            layer_norm_eps=_ENCODER_LAYER_NORM_EPS,
            head_layer_norm_eps=_HEAD_LAYER_NORM_EPS,
            **kwargs,
        )


def _listed(keys: Sequence[str]) -> str:
    return f"[{preview_keys(sorted(keys))}]"


def _layout_error(
    unexpected: Sequence[str], missing: Sequence[str], state_dict: Mapping[str, torch.Tensor]
) -> ValueError:
    """The error for keys that do not fit the original layout, listing both sides."""
    hint = ""
    if is_transformers_ast_state_dict(state_dict):
        hint = (
            " It looks like transformers' built-in AST layout: load it with ASTForAudioClassification.from_pretrained "
            "or convert it with ast-convert-transformers import instead."
        )
    return ValueError(
        "not an original AST checkpoint (YuanGongND/ast layout: [module.]v.*, mlp_head.*): "
        f"unexpected keys {_listed(unexpected)}; missing keys {_listed(missing)}.{hint}"
    )


def _strip_data_parallel_prefix(state_dict: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Remove the `module.` that `torch.nn.DataParallel` puts before every key (keys without it are kept)."""
    stripped: dict[str, torch.Tensor] = {}
    for key, tensor in state_dict.items():
        name = key[len(DATA_PARALLEL_PREFIX):] if key.startswith(DATA_PARALLEL_PREFIX) else key
        if name in stripped:
            raise ValueError(f"the checkpoint holds both {name} and {DATA_PARALLEL_PREFIX}{name}")
        stripped[name] = tensor
    return stripped


def _shape(state_dict: Mapping[str, torch.Tensor], key: str, ndim: int, meaning: str) -> torch.Size:
    shape = state_dict[key].shape
    if len(shape) != ndim:
        raise ValueError(f"{key}: expected a {ndim}-D tensor {meaning}, got shape {tuple(shape)}")
    return shape


def inspect_original_checkpoint(
    state_dict: Mapping[str, torch.Tensor],
    *,
    frequency_stride: int | None = None,
    time_stride: int | None = None,
    max_length: int | None = None,
    num_attention_heads: int | None = None,
    num_mel_bins: int = _DEFAULT_NUM_MEL_BINS,
) -> OriginalLayout:
    """Infer architecture and geometry from the shapes of an original state dict (with or without `module.`).

    Only shapes are read, so meta tensors work. The keyword arguments override (and are checked against) what the
    shapes say; `frequency_stride`, `time_stride` and `max_length` are required when the patch count is not one of
    `_KNOWN_LAYOUTS`, and `num_attention_heads` when the hidden size is not a multiple of 64.
    Raises ValueError for an unknown layout (listing unexpected and missing keys) or inconsistent shapes.
    """
    state_dict = _strip_data_parallel_prefix(state_dict)
    missing = [key for key in ORIGINAL_ANCHOR_KEYS if key not in state_dict]
    if missing:
        unexpected = [
            key for key in state_dict if ORIGINAL.to_ours(key) is None and not key.startswith(ORIGINAL_UNUSED_PREFIXES)
        ]
        raise _layout_error(unexpected, missing, state_dict)

    hidden_size = _shape(state_dict, "v.cls_token", 3, "(1, 1, hidden)")[-1]
    positions = _shape(state_dict, "v.pos_embed", 3, "(1, 2 + patches, hidden)")[1]
    proj = _shape(state_dict, "v.patch_embed.proj.weight", 4, "(hidden, 1, patch, patch)")
    if proj[2] != proj[3]:
        raise ValueError(f"v.patch_embed.proj.weight: expected square patches (hidden, 1, p, p), got {tuple(proj)}")
    intermediate_size = _shape(state_dict, "v.blocks.0.mlp.fc1.weight", 2, "(mlp, hidden)")[0]
    num_labels = _shape(state_dict, "mlp_head.1.weight", 2, "(labels, hidden)")[0]
    num_layers = 1 + max(int(match.group(1)) for key in state_dict if (match := _BLOCK_INDEX.match(key)))

    if num_attention_heads is None:
        if hidden_size % _DEIT_HEAD_DIM:
            raise ValueError(
                f"hidden size {hidden_size} (v.cls_token) is not a multiple of DeiT's 64-wide heads, so the number "
                "of attention heads cannot be inferred: pass num_attention_heads (--num_attention_heads)"
            )
        num_attention_heads = hidden_size // _DEIT_HEAD_DIM
    elif num_attention_heads <= 0 or hidden_size % num_attention_heads:
        raise ValueError(f"num_attention_heads={num_attention_heads} does not divide the hidden size {hidden_size}")

    if positions < 3:
        shape = tuple(state_dict["v.pos_embed"].shape)
        raise ValueError(f"v.pos_embed: expected (1, 2 + patches, hidden) with patches >= 1, got {shape}")
    strides_and_length = _resolve_geometry(
        positions - 2,
        patch_size=proj[-1],
        num_mel_bins=num_mel_bins,
        frequency_stride=frequency_stride,
        time_stride=time_stride,
        max_length=max_length,
    )
    return OriginalLayout(
        hidden_size=hidden_size,
        num_hidden_layers=num_layers,
        num_attention_heads=num_attention_heads,
        intermediate_size=intermediate_size,
        num_labels=num_labels,
        qkv_bias="v.blocks.0.attn.qkv.bias" in state_dict,
        patch_size=proj[-1],
        frequency_stride=strides_and_length[0],
        time_stride=strides_and_length[1],
        max_length=strides_and_length[2],
        num_mel_bins=num_mel_bins,
    )


def _expected_shapes(config: ASTConfig) -> dict[str, torch.Size]:
    """Our parameter names and shapes for `config`, from a model built on the meta device (no memory, no init)."""
    with torch.device("meta"):
        model = ASTForAudioClassification(config)
    return {key: tensor.shape for key, tensor in model.state_dict().items()}


def original_to_ours(
    state_dict: Mapping[str, torch.Tensor], config: ASTConfig
) -> dict[str, torch.Tensor]:
    """Rename an original state dict (with or without `module.`) to our layout, checked against `config`.

    The unused ImageNet heads are dropped; tensors become contiguous float32. Raises ValueError listing unexpected and
    missing keys (in original names) if the layout differs, or naming each (key, expected shape, found shape).
    """
    state_dict = _strip_data_parallel_prefix(state_dict)
    expected = _expected_shapes(config)
    converted: dict[str, torch.Tensor] = {}
    unexpected: list[str] = []
    for key, tensor in state_dict.items():
        if key.startswith(ORIGINAL_UNUSED_PREFIXES):
            continue
        ours = ORIGINAL.to_ours(key)
        if ours is None or ours not in expected:
            unexpected.append(key)
        else:
            converted[ours] = tensor
    missing = [ORIGINAL.to_theirs(key) for key in expected if key not in converted]
    if unexpected or missing:
        raise _layout_error(unexpected, missing, state_dict)
    mismatched = shape_mismatches(converted, expected, name=ORIGINAL.to_theirs)
    if mismatched:
        raise ValueError("shape mismatch with the inferred architecture: " + "; ".join(mismatched))
    not_float = [ORIGINAL.to_theirs(key) for key, tensor in converted.items() if not tensor.is_floating_point()]
    if not_float:
        raise ValueError(f"expected floating-point weights, got integer tensors for {_listed(not_float)}")
    # Copies, so no two saved tensors share storage (safetensors refuses that) and the input stays untouched.
    return {key: tensor.detach().to(torch.float32).contiguous().clone() for key, tensor in converted.items()}


# ---------------------------------------------------------------------------------------------------- dataset, labels

_DATASET_IN_FILE_NAME = (
    (re.compile(r"audioset"), "audioset"),
    (re.compile(r"speech_?commands"), "speechcommands"),
    (re.compile(r"esc[-_]?50"), "esc50"),
)


def _dataset_preset(dataset: str | None, checkpoint_name: str, num_labels: int) -> DatasetPreset | None:
    """The preset named by `dataset`, else the one the file name starts with, else 527 labels -> AudioSet.

    A preset whose dataset has another number of classes than the head is still used (a fine-tuned subset, say),
    with a warning.
    """
    if dataset is not None:
        preset = dataset_preset(dataset)
    else:
        stem = checkpoint_name.lower()
        preset = next((DATASET_PRESETS[name] for pattern, name in _DATASET_IN_FILE_NAME if pattern.match(stem)), None)
        if preset is None and num_labels == DATASET_PRESETS["audioset"].num_labels:
            preset = DATASET_PRESETS["audioset"]
    if preset is not None and preset.num_labels != num_labels:
        logger.warning(
            f"dataset {preset.name} has {preset.num_labels} classes but the checkpoint's head has {num_labels}; "
            f"using its normalisation and problem type ({preset.problem_type}) anyway"
        )
    return preset


def _read_labels(labels: LabelSource | None, num_labels: int) -> tuple[dict[int, str], str]:
    """id2label for a head of `num_labels` outputs, and a short description of where the names came from.

    `labels` is anything `common.read_label_names` reads (AudioSet's `class_labels_indices.csv`, a JSON or text
    file, a comma-separated string, a list of names or an id2label mapping). `None` gives transformers' generic
    `LABEL_i` names and logs a warning. Raises ValueError if the count differs from `num_labels`, a name is empty or
    repeated, or the file is malformed.
    """
    if labels is None:
        logger.warning(
            f"no label names given: the {num_labels} classes are called LABEL_0..LABEL_{num_labels - 1}. Pass the "
            "dataset's label file (AudioSet: class_labels_indices.csv) to name them."
        )
        return {index: f"LABEL_{index}" for index in range(num_labels)}, "none given (generic LABEL_i names)"
    names = read_label_names(labels)
    if isinstance(labels, os.PathLike) or (isinstance(labels, str) and Path(labels).is_file()):
        where, description = str(labels), f"`{Path(labels).name}`"
    elif isinstance(labels, Mapping):
        where, description = "labels", "an id2label mapping"
    else:
        where, description = "labels", "a list of names"
    if len(names) != num_labels:
        raise ValueError(
            f"{where} gives {len(names)} labels, but the checkpoint's head (mlp_head.1.weight) has {num_labels} outputs"
        )
    return dict(enumerate(names)), description


# ---------------------------------------------------------------------------------------------------- conversion


def _resolve_task(
    preset: DatasetPreset | None,
    mean: float | None,
    std: float | None,
    problem_type: str | None,
) -> tuple[float, float, str]:
    mean = preset.mean if mean is None and preset is not None else mean
    std = preset.std if std is None and preset is not None else std
    problem_type = preset.problem_type if problem_type is None and preset is not None else problem_type
    if mean is None or std is None or problem_type is None:
        raise ValueError(
            "cannot tell which dataset this checkpoint was trained on (from the dataset argument, the file name or a "
            f"527-label head): pass dataset= one of {sorted(DATASET_PRESETS)} (--dataset), or mean, std and "
            "problem_type (--mean, --std, --problem_type)"
        )
    if problem_type not in ("single_label_classification", "multi_label_classification"):
        raise ValueError(
            f"problem_type must be single_label_classification or multi_label_classification, got {problem_type!r}"
        )
    if not std > 0:
        raise ValueError(f"std must be positive, got {std}")
    return float(mean), float(std), problem_type


def convert_original_checkpoint(
    checkpoint_path: str | os.PathLike,
    output_dir: str | os.PathLike,
    *,
    labels: LabelSource | None = None,
    dataset: str | None = None,
    mean: float | None = None,
    std: float | None = None,
    problem_type: str | None = None,
    reported_metric: float | str | None = None,
    frequency_stride: int | None = None,
    time_stride: int | None = None,
    max_length: int | None = None,
    num_attention_heads: int | None = None,
    num_mel_bins: int = _DEFAULT_NUM_MEL_BINS,
    overwrite: bool = False,
    push_to_hub: str | None = None,
    hub_token: str | None = None,
    private: bool | None = None,
) -> ConversionReport:
    """Convert one of the authors' released AST `.pth` files into a `from_pretrained` / pipeline directory.

    Args:
        checkpoint_path: the `.pth` state dict (read with `weights_only=True`; pickled code is refused).
        output_dir: directory to create. Everything is written into a staging directory that replaces it only on
            success, so a failed conversion leaves nothing behind.
        labels: class names: a CSV with a display_name column (AudioSet's `class_labels_indices.csv`), a JSON list or
            id2label file, a .txt file, a comma-separated string, a list or a mapping; their number must match the
            head. None: `LABEL_i` names and a warning.
        dataset: "audioset", "speechcommands" or "esc50": normalisation statistics and problem type. None: taken from
            the file name (audioset*, speechcommands*, esc50*) or a 527-label head (AudioSet).
        mean, std, problem_type: override the dataset preset, or replace it for other datasets.
        reported_metric: the authors' score for the model card; None parses it from the file name (`_0.4593`).
        frequency_stride, time_stride, max_length: the patch geometry, needed only when the positional grid is not
            one of the authors' layouts (otherwise inferred, and checked when given).
        num_attention_heads: needed only when the hidden size is not a multiple of 64.
        num_mel_bins: mel bins of the training features (128 in every original recipe).
        overwrite: replace a non-empty `output_dir` that this package wrote; never one that is or holds
            `checkpoint_path` or the labels file, nor a folder holding other files (see `io.check_output_dir`).
        push_to_hub: "org/name": after writing, upload the directory to this Hub model repository.
        hub_token, private: passed to the Hub when pushing.

    Returns:
        A `ConversionReport`: `output_dir` (holding config.json, model.safetensors, preprocessor_config.json and
        README.md), what was inferred, and `summary()` for a one-line description.

    Raises:
        ValueError: unknown key layout (listing unexpected and missing keys), shape mismatches (key, expected, got),
            non-tensor pickles, ambiguous geometry, a label file whose size differs from the head, unknown dataset,
            an output that cannot be written (before anything is read).
    """
    checkpoint_path = Path(checkpoint_path)
    inputs = input_paths(checkpoint_path, labels)
    check_output_dir(output_dir, overwrite, inputs)  # before the slow part; `save_model_dir` checks again
    state_dict = load_state_dict(checkpoint_path)
    layout = inspect_original_checkpoint(
        state_dict,
        frequency_stride=frequency_stride,
        time_stride=time_stride,
        max_length=max_length,
        num_attention_heads=num_attention_heads,
        num_mel_bins=num_mel_bins,
    )
    id2label, labels_source = _read_labels(labels, layout.num_labels)
    preset = _dataset_preset(dataset, checkpoint_path.name, layout.num_labels)
    mean, std, problem_type = _resolve_task(preset, mean, std, problem_type)
    config = layout.to_config(
        id2label=id2label,
        label2id={name: index for index, name in id2label.items()},
        problem_type=problem_type,
    )
    with torch.device("meta"):
        model = ASTForAudioClassification(config)
    model.load_state_dict(original_to_ours(state_dict, config), strict=True, assign=True)
    del state_dict

    report = ConversionReport(
        output_dir=Path(output_dir).resolve(),
        source_name=checkpoint_path.name,
        source_sha256=file_sha256(checkpoint_path),
        config=config,
        labels_source=labels_source,
        dataset=preset,
        mean=mean,
        std=std,
        reported_metric=reported_metric_text(reported_metric, checkpoint_path.name, preset),
    )
    save_model_dir(
        model.eval(), output_dir, mean=mean, std=std, overwrite=overwrite, model_card=report.model_card(), inputs=inputs
    )
    logger.info(report.summary())
    if push_to_hub:
        url = push_folder_to_hub(report.output_dir, push_to_hub, token=hub_token, private=private)
        report = dataclasses.replace(report, hub_url=url)
    return report
