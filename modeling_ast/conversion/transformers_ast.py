"""transformers' built-in AST (model_type "audio-spectrogram-transformer") to our format and back.

Import: `ASTForAudioClassification.from_pretrained(dir_or_hub_id)` detects a built-in checkpoint (e.g. the MIT
`ast-finetuned-*` models) from its config.json and converts it on the fly through `convert_transformers_checkpoint`;
nothing needs converting by hand. Export: `export_to_transformers` writes any of our models as a checkpoint that stock
transformers loads with `AutoModelForAudioClassification`, with identical logits at the native length.
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

from ..configuration_ast import ASTConfig
from .io import atomic_output_dir, read_checkpoint_weights, read_config_dict
from .layouts import from_transformers_ast, to_transformers_ast

logger = logging.getLogger(__name__)

TRANSFORMERS_MODEL_TYPE = "audio-spectrogram-transformer"
_SHARED_FIELDS = (
    "hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size", "hidden_act",
    "hidden_dropout_prob", "attention_probs_dropout_prob", "initializer_range", "patch_size", "qkv_bias",
    "frequency_stride", "time_stride", "max_length", "num_mel_bins", "id2label", "label2id", "problem_type",
    "architectures",
)
_HUB_ARGUMENTS = ("cache_dir", "force_download", "proxies", "token", "revision", "local_files_only", "subfolder")
AUDIOSET_LABELS = 527


def hub_arguments(kwargs: dict[str, Any]) -> dict[str, Any]:
    """The `from_pretrained` keyword arguments that address files (revision, cache, token, ...)."""
    return {key: kwargs[key] for key in _HUB_ARGUMENTS if key in kwargs}


def is_transformers_ast(config_dict: dict[str, Any] | None) -> bool:
    return config_dict is not None and config_dict.get("model_type") == TRANSFORMERS_MODEL_TYPE


def config_from_transformers(config_dict: dict[str, Any]) -> ASTConfig:
    """Our config for a built-in AST config dict.

    The built-in model has one `layer_norm_eps` for the encoder and the head; both of ours get it, so the logits are
    unchanged. The MIT AudioSet checkpoints (527 labels) never set `problem_type`, which makes pipelines apply softmax
    to a multi-label model; such configs get "multi_label_classification".
    """
    fields = {key: config_dict[key] for key in _SHARED_FIELDS if key in config_dict}
    eps = config_dict.get("layer_norm_eps", 1e-12)
    config = ASTConfig(**fields, layer_norm_eps=eps, head_layer_norm_eps=eps)
    if config.problem_type is None and config.num_labels == AUDIOSET_LABELS:
        config.problem_type = "multi_label_classification"
        logger.info("527-label AudioSet checkpoint without problem_type: set to multi_label_classification (sigmoid)")
    return config


def convert_transformers_checkpoint(
    name_or_path: str | os.PathLike,
    output_dir: str | os.PathLike,
    overwrite: bool = False,
    with_feature_extractor: bool = True,
    **hub_kwargs: Any,
) -> Path:
    """Write a built-in AST checkpoint (directory or Hub id) in our format: config.json + model.safetensors, and
    the source's preprocessor_config.json read into our `ASTFeatureExtractor` when it has one.

    Reads both key spellings of the built-in layout (legacy MIT names and the 5.x in-memory names). Raises
    ValueError listing the keys that match nothing in our layout.
    """
    config_dict = read_config_dict(name_or_path, **hub_kwargs)
    if not is_transformers_ast(config_dict):
        found = None if config_dict is None else config_dict.get("model_type")
        raise ValueError(f"{name_or_path} is not a transformers AST checkpoint (model_type {found!r})")
    config = config_from_transformers(config_dict)
    state_dict, unknown = from_transformers_ast(read_checkpoint_weights(name_or_path, **hub_kwargs))
    if unknown:
        raise ValueError(f"{name_or_path}: keys that are not part of transformers' AST layout: {unknown}")
    with atomic_output_dir(output_dir, overwrite=overwrite) as staging:
        config.save_pretrained(staging)
        save_file({key: value.contiguous() for key, value in state_dict.items()}, staging / "model.safetensors",
                  metadata={"format": "pt"})
        if with_feature_extractor:
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
    transformers' own `ASTFeatureExtractor` (fixed-length padding, 16 kHz).
    """
    config: ASTConfig = model.config
    if config.head_layer_norm_eps != config.layer_norm_eps:
        logger.warning(
            f"transformers' AST has one layer_norm_eps; exporting {config.layer_norm_eps} (encoder) and dropping the "
            f"head's {config.head_layer_norm_eps}"
        )
    fields = {key: getattr(config, key) for key in _SHARED_FIELDS}
    builtin_config = transformers.ASTConfig(**fields, layer_norm_eps=config.layer_norm_eps)
    builtin_config.architectures = [type(model).__name__]
    weights = to_transformers_ast(model.state_dict())
    with atomic_output_dir(output_dir, overwrite=overwrite) as staging:
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
