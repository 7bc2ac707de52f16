"""transformers' built-in AST (model_type "audio-spectrogram-transformer") to our format and back.

Import: `read_transformers_weights` is the `ASTPreTrainedModel.checkpoint_reader` that `modeling_ast.registration`
installs, so `ASTForAudioClassification.from_pretrained(dir_or_hub_id)` loads a built-in checkpoint (e.g. the MIT
`ast-finetuned-*` models) directly; `convert_transformers_checkpoint` keeps a converted copy. Export:
`export_to_transformers` writes any of our models as a checkpoint that stock transformers loads with
`AutoModelForAudioClassification`, with identical logits at the native length.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import torch
import transformers
from safetensors.torch import save_file
from transformers.utils import cached_file

from ..configuration_ast import TRANSFORMERS_MODEL_TYPE, TRANSFORMERS_SHARED_FIELDS, ASTConfig
from .io import atomic_output_dir, check_output_dir, input_paths, read_checkpoint_weights, read_config_dict
from .layouts import from_transformers_ast, to_transformers_ast

logger = logging.getLogger(__name__)

__all__ = [
    "convert_transformers_checkpoint",
    "export_to_transformers",
    "is_transformers_ast",
    "read_transformers_weights",
    "transformers_state_dict",
]

_HUB_ARGUMENTS = ("cache_dir", "force_download", "proxies", "token", "revision", "local_files_only", "subfolder")


def _hub_arguments(kwargs: dict[str, Any]) -> dict[str, Any]:
    """The `from_pretrained` keyword arguments that address files (revision, cache, token, ...)."""
    return {key: kwargs[key] for key in _HUB_ARGUMENTS if key in kwargs}


def is_transformers_ast(config_dict: dict[str, Any] | None) -> bool:
    return config_dict is not None and config_dict.get("model_type") == TRANSFORMERS_MODEL_TYPE


def read_transformers_weights(
    name_or_path: str | os.PathLike, from_pretrained_kwargs: dict[str, Any]
) -> dict[str, torch.Tensor] | None:
    """Our state dict for a built-in AST checkpoint (directory or Hub id), None for any other source.

    The `ASTPreTrainedModel.checkpoint_reader` of this package: `from_pretrained` passes its own keyword arguments,
    of which the file-addressing ones (revision, token, ...) are used. The config is read by `ASTConfig`, which
    translates the built-in one itself.
    """
    hub_kwargs = _hub_arguments(from_pretrained_kwargs)
    if os.path.isfile(name_or_path) or not is_transformers_ast(read_config_dict(name_or_path, **hub_kwargs)):
        return None
    return transformers_state_dict(name_or_path, **hub_kwargs)


def transformers_state_dict(name_or_path: str | os.PathLike, **hub_kwargs: Any) -> dict[str, torch.Tensor]:
    """The weights of a built-in AST checkpoint in our layout.

    Reads both key spellings of the built-in layout (legacy MIT names and the 5.x in-memory names). Raises
    ValueError listing the keys that match nothing in our layout.
    """
    state_dict, unknown = from_transformers_ast(read_checkpoint_weights(name_or_path, **hub_kwargs))
    if unknown:
        raise ValueError(f"{name_or_path}: keys that are not part of transformers' AST layout: {unknown}")
    return state_dict


def convert_transformers_checkpoint(
    name_or_path: str | os.PathLike,
    output_dir: str | os.PathLike,
    overwrite: bool = False,
    **hub_kwargs: Any,
) -> Path:
    """Write a built-in AST checkpoint (directory or Hub id) in our format: config.json + model.safetensors, and
    the source's preprocessor_config.json read into our `ASTFeatureExtractor` when it has one.

    Raises ValueError for a source that is not a built-in AST checkpoint, or whose weights do not fit its layout, and
    (before reading it) for an output that is or holds the source (`io.check_output_dir`).
    """
    inputs = input_paths(name_or_path)
    check_output_dir(output_dir, overwrite, inputs)
    config_dict = read_config_dict(name_or_path, **hub_kwargs)
    if not is_transformers_ast(config_dict):
        found = None if config_dict is None else config_dict.get("model_type")
        raise ValueError(f"{name_or_path} is not a transformers AST checkpoint (model_type {found!r})")
    # The translation `ASTConfig.from_pretrained` applies to a built-in config.json, on the dict already read.
    config = ASTConfig.from_dict(ASTConfig.from_transformers_dict(config_dict))
    state_dict = transformers_state_dict(name_or_path, **hub_kwargs)
    with atomic_output_dir(output_dir, overwrite=overwrite, inputs=inputs) as staging:
        config.save_pretrained(staging)
        save_file({key: value.contiguous() for key, value in state_dict.items()}, staging / "model.safetensors",
                  metadata={"format": "pt"})
        _copy_feature_extractor(name_or_path, staging, **hub_kwargs)
    return Path(output_dir)


def _copy_feature_extractor(name_or_path: str | os.PathLike, output_dir: Path, **hub_kwargs: Any) -> None:
    """Save the source's feature-extractor settings as our `ASTFeatureExtractor`, if the source has any."""
    from ..feature_extraction_ast import ASTFeatureExtractor

    path = cached_file(
        name_or_path, "preprocessor_config.json", _raise_exceptions_for_missing_entries=False, **hub_kwargs
    )
    if path is not None:
        ASTFeatureExtractor.from_pretrained(Path(path).parent).save_pretrained(output_dir)


def export_to_transformers(
    model: torch.nn.Module,
    output_dir: str | os.PathLike,
    feature_extractor: Any | None = None,
    overwrite: bool = False,
) -> Path:
    """Save `model` (our `ASTModel` or `ASTForAudioClassification`) as a stock transformers AST checkpoint.

    Weights use the legacy key spelling that every transformers 5.x release loads. The built-in model has a single
    LayerNorm epsilon: the encoder's is used, and a different head epsilon is reported (the logits then move by a
    few 1e-6, see the tests). With `feature_extractor`, its settings are written as a preprocessor_config.json for
    transformers' own `ASTFeatureExtractor` (fixed-length padding, 16 kHz). `output_dir` must not be or hold the
    directory `model` was loaded from (`io.check_output_dir`).
    """
    inputs = input_paths(model)
    check_output_dir(output_dir, overwrite, inputs)
    config: ASTConfig = model.config
    if config.head_layer_norm_eps != config.layer_norm_eps:
        logger.warning(
            f"transformers' AST has one layer_norm_eps; exporting {config.layer_norm_eps} (encoder) and dropping the "
            f"head's {config.head_layer_norm_eps}"
        )
    fields = {key: getattr(config, key) for key in TRANSFORMERS_SHARED_FIELDS}
    builtin_config = transformers.ASTConfig(**fields, layer_norm_eps=config.layer_norm_eps)
    builtin_config.architectures = [type(model).__name__]
    weights = to_transformers_ast(model.state_dict())
    with atomic_output_dir(output_dir, overwrite=overwrite, inputs=inputs) as staging:
        builtin_config.save_pretrained(staging)
        save_file({key: value.contiguous() for key, value in weights.items()}, staging / "model.safetensors",
                  metadata={"format": "pt"})
        if feature_extractor is not None:
            builtin_extractor = transformers.ASTFeatureExtractor(
                sampling_rate=feature_extractor.sampling_rate,
                num_mel_bins=feature_extractor.num_mel_bins,
                max_length=feature_extractor.max_length,
                do_normalize=feature_extractor.do_normalize,
                mean=feature_extractor.mean,
                std=feature_extractor.std,
            )
            builtin_extractor.save_pretrained(staging)
    return Path(output_dir)
