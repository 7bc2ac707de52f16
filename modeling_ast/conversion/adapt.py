"""Re-target a pretrained AST (e.g. the AudioSet model: 1024 frames, 12 x 101 grid at stride 10) to another input
length, patch stride and label set, as the original code's `audioset_pretrain=True` path does.

Positional grid, for a source grid (f0, t0) learned at strides (fs0, ts0) over (F, T0) and a target with strides
(fs, ts) over (F, T):

1. **Stride change** (only when the strides differ). The patch kernel is kept, so a target patch covers the same kind
   of 16 x 16 window, just at other places: target patch i along an axis starts at bin / frame `i * s`, where the
   source had patches at `j * s0`. With `stride_mapping="frames"` (default) the source grid is resampled, linearly,
   at the fractional source indices `j = i * s / s0` of the target patch positions over the source's own extent
   (F x T0), giving `f1 = (F - p) // fs + 1` rows and `t1 = (T0 - p) // ts + 1` columns; positions past the last
   source patch (at most a fraction of one stride) take the edge value. Each target patch thereby gets the embedding
   the source learned for that mel band and that time offset. This is the same linear interpolation the original
   uses to stretch grids, applied in bin/frame coordinates rather than in grid-index coordinates.

   With `stride_mapping="index"` step 1 is skipped and the grid-index rule of the original is applied directly,
   which is exactly what the original code computes (before it fails at the first forward: its patch convolution
   keeps stride 10, authors' issue #73). It mis-places bands: at frequency stride 16 the 8 rows covering bins 0..127
   receive the embeddings the source learned for its rows 2..9 (bins 20..105), so the lowest and highest bands get
   mid-band positions; at stride 12, row 0 (bins 0..15) gets the source's row 1 (bins 10..25).

2. **Length change**, the original's rule on the grid (`positional.adapt_grid`): time first — middle crop
   `[t1 // 2 - t // 2, ... + t)` when shorter (ESC-50 at stride 10: columns 25..74 of 101), bilinear when longer;
   then frequency — middle rows when fewer (`6 - f // 2` for 12 rows), bilinear when more.

At the source's strides step 1 is the identity, so stride-10 targets reproduce the original bit for bit.
Everything else in the encoder (tokens, patch kernel, blocks, final norm) is copied; the classification head is new
(trunc-normal, std 0.02), sized for the new labels.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Literal

import torch
from transformers.utils import logging

from ..configuration_ast import ASTConfig
from ..modeling_ast import ASTForAudioClassification, ASTModel
from .common import AUDIOSET_MEAN, AUDIOSET_STD, build_model, check_label_names, load_encoder, save_model_dir
from .io import (
    check_output_dir,
    input_paths,
    read_checkpoint_weights,
    read_json_file,
    read_saved_config_dict,
    warn_non_finite,
)
from .positional import adapt_grid, grid_from_tokens, resample_axis_at, tokens_from_grid
from .transformers_ast import is_transformers_ast, transformers_state_dict

logger = logging.get_logger(__name__)

__all__ = ["adapt_pretrained_ast", "save_adapted_ast"]

_StrideMapping = Literal["frames", "index"]
_PROBLEM_TYPES = ("regression", "single_label_classification", "multi_label_classification")
# Config fields that describe the old task, not the encoder.
_TASK_FIELDS = ("id2label", "label2id", "num_labels", "problem_type", "architectures", "_name_or_path")


def _stride_resampled_grid(grid: torch.Tensor, source: ASTConfig, target: ASTConfig) -> torch.Tensor:
    """Step 1 of the module docstring: (1, D, f0, t0) at the source's strides -> (1, D, f1, t1) at the target's.

    f1, t1 are the patch counts of the source's extent (mel bins x frames) at the target's strides. Target patch i
    samples the source grid at index `i * stride / source_stride` (linear, edge-clamped).
    """
    extent = (source.num_mel_bins, source.max_length)
    source_strides = (source.frequency_stride, source.time_stride)
    strides = (target.frequency_stride, target.time_stride)
    for axis, size, old_stride, new_stride in zip((2, 3), extent, source_strides, strides):
        count = source.num_patches(size, new_stride)
        positions = torch.arange(count, dtype=torch.float64) * new_stride / old_stride
        grid = resample_axis_at(grid, positions, axis)
    return grid


def _adapt_pretrained_grid(
    pos_embed: torch.Tensor, source: ASTConfig, target: ASTConfig, stride_mapping: _StrideMapping = "frames"
) -> torch.Tensor:
    """The source's positional embedding (1, 2 + f0 * t0, D) for the target's grid: (1, 2 + f * t, D).

    Token rows are kept; the patch grid goes through the stride change (if any) and the length change described in
    the module docstring.
    """
    if stride_mapping not in ("frames", "index"):
        raise ValueError(f"stride_mapping must be 'frames' or 'index', got {stride_mapping!r}")
    grid = grid_from_tokens(pos_embed, *source.patch_grid, num_tokens=2)
    strides_changed = (source.frequency_stride, source.time_stride) != (target.frequency_stride, target.time_stride)
    if stride_mapping == "frames" and strides_changed:
        grid = _stride_resampled_grid(grid, source, target)
    return tokens_from_grid(pos_embed[:, :2], adapt_grid(grid, *target.patch_grid))


def _label_map(num_labels: int | None, id2label: Mapping[int, str] | Sequence[str] | None) -> dict[int, str]:
    """id2label from either argument (they must agree); generic names LABEL_i when only a count is given."""
    if id2label is not None:
        if isinstance(id2label, Mapping):
            labels = {int(index): str(name) for index, name in id2label.items()}
        else:
            labels = {index: str(name) for index, name in enumerate(id2label)}
        if sorted(labels) != list(range(len(labels))):
            raise ValueError(f"id2label keys must be 0..{len(labels) - 1}, got {sorted(labels)[:10]}")
        check_label_names([labels[index] for index in range(len(labels))], "id2label")
        if num_labels is not None and num_labels != len(labels):
            raise ValueError(f"num_labels={num_labels} disagrees with the {len(labels)} names in id2label")
        return labels
    if num_labels is None or num_labels < 1:
        raise ValueError(f"give num_labels (a positive count) or id2label, got num_labels={num_labels}")
    return {i: f"LABEL_{i}" for i in range(num_labels)}


def _target_config(
    source: ASTConfig,
    max_length: int,
    labels: dict[int, str],
    frequency_stride: int | None,
    time_stride: int | None,
    problem_type: str | None,
) -> ASTConfig:
    if problem_type is not None and problem_type not in _PROBLEM_TYPES:
        raise ValueError(f"problem_type must be one of {_PROBLEM_TYPES} or None, got {problem_type!r}")
    fields = {key: value for key, value in source.to_dict().items() if key not in _TASK_FIELDS}
    fields.update(
        max_length=max_length,
        frequency_stride=source.frequency_stride if frequency_stride is None else frequency_stride,
        time_stride=source.time_stride if time_stride is None else time_stride,
        id2label=labels,
        label2id={name: index for index, name in labels.items()},
        problem_type=problem_type,
    )
    return ASTConfig.from_dict(fields)


def _read_source(model_or_dir) -> tuple[ASTConfig, dict[str, torch.Tensor]]:
    """(config, ASTModel state dict) of a pretrained AST: a model of this package or a saved directory of one
    (or of transformers' built-in AST, model_type "audio-spectrogram-transformer")."""
    if isinstance(model_or_dir, ASTForAudioClassification):
        model_or_dir = model_or_dir.ast
    if isinstance(model_or_dir, ASTModel):
        weights = {key: value.detach() for key, value in model_or_dir.state_dict().items()}
        warn_non_finite(weights, f"the {type(model_or_dir).__name__} given")
        return model_or_dir.config, weights
    if not isinstance(model_or_dir, (str, os.PathLike)):
        raise TypeError(f"expected an AST model or a saved model directory, got {type(model_or_dir).__name__}")
    config_dict = read_saved_config_dict(model_or_dir)
    if is_transformers_ast(config_dict):
        state_dict = transformers_state_dict(model_or_dir)
        # Not `ASTConfig.from_transformers_dict`: it would also give head_layer_norm_eps the encoder's value instead
        # of our default.
        config_dict = {k: v for k, v in config_dict.items() if k not in ("model_type", "transformers_version")}
    else:
        # Weights before the model_type check: a missing or corrupt weight file is reported first, as it always was.
        state_dict = read_checkpoint_weights(model_or_dir)
        model_type = config_dict.get("model_type")
        if model_type != ASTConfig.model_type:
            raise ValueError(
                f"{model_or_dir} holds a {model_type!r} model; expected an AST (model_type 'ast' or "
                "'audio-spectrogram-transformer'). For ImageNet ViT/DeiT checkpoints use ast_from_imagenet."
            )
    config = ASTConfig.from_dict(config_dict)
    encoder = {key[len("ast."):]: value for key, value in state_dict.items() if key.startswith("ast.")}
    if not encoder:  # an ASTModel checkpoint: keys without prefix
        encoder = {key: value for key, value in state_dict.items() if not key.startswith("classifier.")}
    return config, encoder


def adapt_pretrained_ast(
    model_or_dir: ASTModel | ASTForAudioClassification | str | os.PathLike,
    max_length: int,
    num_labels: int | None = None,
    id2label: Mapping[int, str] | Sequence[str] | None = None,
    *,
    frequency_stride: int | None = None,
    time_stride: int | None = None,
    problem_type: str | None = None,
    stride_mapping: _StrideMapping = "frames",
    seed: int | None = None,
) -> ASTForAudioClassification:
    """A new-task AST from a pretrained one: new input length, optionally new strides, new labels and head.

    Args:
        model_or_dir: `ASTModel` / `ASTForAudioClassification`, or a directory saved from one (or from transformers'
            built-in AST).
        max_length: frames of the new task's inputs (512 for 5 s ESC-50 clips, 128 for 1 s Speech Commands).
        num_labels / id2label: the new label set (a count, a {index: name} map or a list of names).
        frequency_stride, time_stride: new patch strides (default: the source's). The patch convolution and the
            positional grid both use them; see the module docstring for how the grid is mapped.
        problem_type: "single_label_classification" (ESC-50), "multi_label_classification" (AudioSet,
            Speech Commands trained with BCE as in the original recipe) or "regression"; None lets transformers
            infer it from the first labels it sees.
        stride_mapping: "frames" (default) or "index" (the original code's grid-index rule); only matters when the
            strides change.
        seed: seed for the new head, leaving the global RNG untouched.

    Returns:
        `ASTForAudioClassification` in eval mode, positional embedding (1, 2 + f * t, D) for the new (f, t).
    """
    source_config, weights = _read_source(model_or_dir)
    config = _target_config(
        source_config, max_length, _label_map(num_labels, id2label), frequency_stride, time_stride, problem_type
    )
    if "embeddings.pos_embed" not in weights:
        raise ValueError(f"the source has no embeddings.pos_embed; its keys: {sorted(weights)[:20]}")
    weights = dict(weights)
    weights["embeddings.pos_embed"] = _adapt_pretrained_grid(
        weights["embeddings.pos_embed"].to(torch.float32), source_config, config, stride_mapping
    )
    model = build_model(config, add_classifier=True, seed=seed)
    load_encoder(model, weights)
    logger.info(
        f"adapted the positional grid {source_config.patch_grid} (strides {source_config.frequency_stride}/"
        f"{source_config.time_stride}) to {config.patch_grid} (strides {config.frequency_stride}/{config.time_stride})"
    )
    return model.eval()


def save_adapted_ast(
    model_or_dir: ASTModel | ASTForAudioClassification | str | os.PathLike,
    output_dir: str | os.PathLike,
    max_length: int,
    num_labels: int | None = None,
    id2label: Mapping[int, str] | Sequence[str] | None = None,
    *,
    mean: float | None = None,
    std: float | None = None,
    overwrite: bool = False,
    inputs: Sequence[str | os.PathLike] = (),
    **kwargs,
) -> Path:
    """`adapt_pretrained_ast(...)` saved with a feature extractor for `max_length` frames.

    The normalisation `mean` / `std` default to the source directory's preprocessor_config.json when it has one,
    else to the AudioSet statistics; pass the new dataset's statistics when you have them (ESC-50 and Speech Commands:
    `common.DATASET_PRESETS`). `output_dir` is checked first (`io.check_output_dir`): it must not be or hold the
    source nor any of `inputs` (other files the model is made from, such as a labels file).
    """
    protected = input_paths(model_or_dir, *inputs)
    check_output_dir(output_dir, overwrite, protected)
    model = adapt_pretrained_ast(model_or_dir, max_length, num_labels, id2label, **kwargs)
    source_mean, source_std = _source_normalisation(model_or_dir)
    return save_model_dir(
        model,
        output_dir,
        mean=source_mean if mean is None else mean,
        std=source_std if std is None else std,
        overwrite=overwrite,
        inputs=protected,
    )


def _source_normalisation(model_or_dir) -> tuple[float, float]:
    """(mean, std) of the source directory's feature extractor, or the AudioSet statistics."""
    if isinstance(model_or_dir, (str, os.PathLike)):
        preprocessor = Path(model_or_dir) / "preprocessor_config.json"
        if preprocessor.is_file():
            values = read_json_file(preprocessor)
            if not isinstance(values, dict):
                raise ValueError(f"{preprocessor} holds a JSON {type(values).__name__}, expected an object")
            return float(values.get("mean", AUDIOSET_MEAN)), float(values.get("std", AUDIOSET_STD))
    return AUDIOSET_MEAN, AUDIOSET_STD
