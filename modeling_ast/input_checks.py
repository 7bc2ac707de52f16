"""Checks of what the AST models are given: a forward call's inputs (`check_inputs`, shared with the ONNX model so
both refuse the same inputs with the same words) and a checkpoint to load (`check_checkpoint_path`,
`unreadable_safetensors`). Kept apart from the model file so that it reads as the model alone; exported with it as
Hub remote code (a sibling module)."""

from __future__ import annotations

import os
from pathlib import Path

import torch
from huggingface_hub.utils import HFValidationError, validate_repo_id
from safetensors import SafetensorError, safe_open

from .configuration_ast import ASTConfig

__all__ = ["check_checkpoint_path", "check_inputs", "unreadable_safetensors"]


def check_checkpoint_path(name_or_path: str | os.PathLike | None) -> None:
    """FileNotFoundError for a checkpoint path that does not exist and cannot be a Hub id either."""
    if name_or_path is None or os.path.exists(name_or_path):
        return
    try:
        validate_repo_id(os.fspath(name_or_path))
    except HFValidationError:
        raise FileNotFoundError(f"{name_or_path} does not exist (no such local directory or file)") from None


def unreadable_safetensors(name_or_path: str | os.PathLike) -> str:
    """The first safetensors file of a local checkpoint directory that cannot be opened; else the checkpoint's name
    (a Hub id: the error then names the repository)."""
    if os.path.isdir(name_or_path):
        for path in sorted(Path(name_or_path).glob("*.safetensors")):
            try:
                with safe_open(path, framework="pt"):
                    pass
            except SafetensorError:
                return str(path)
    return os.fspath(name_or_path)


def check_inputs(
    input_values: torch.Tensor, attention_mask: torch.Tensor | None, config: ASTConfig, weight_dtype: torch.dtype
) -> None:
    """Raise ValueError naming what is wrong with a forward call's `input_values` and `attention_mask`: type, dtype,
    rank, mel bins, too few frames, a mask of another shape or with values other than 0 and 1.

    The one check of the PyTorch models and of `ASTOnnxForAudioClassification`, so both refuse the same inputs with
    the same words (`real_frames` then checks that the mask is right padding)."""
    if not isinstance(input_values, torch.Tensor):
        raise ValueError(
            f"input_values must be a torch.Tensor (batch, frames, mel_bins), got a {type(input_values).__name__}"
        )
    autocast = torch.is_autocast_enabled(input_values.device.type)
    if not input_values.is_floating_point() or (input_values.dtype != weight_dtype and not autocast):
        raise ValueError(
            f"input_values has dtype {input_values.dtype}; this model's weights are {weight_dtype}: pass "
            f"input_values.to({weight_dtype}) (float32, float16 or bfloat16, the dtype the model was loaded in)"
        )
    if input_values.dim() != 3:
        raise ValueError(
            f"input_values must be a (batch, frames, mel_bins) spectrogram, got shape {tuple(input_values.shape)}"
        )
    frames, mel_bins = input_values.shape[1:]
    if mel_bins != config.num_mel_bins:
        raise ValueError(
            f"input_values has {mel_bins} mel bins in its last axis; this model expects {config.num_mel_bins} "
            "(a (batch, frames, mel_bins) spectrogram from ASTFeatureExtractor)"
        )
    if frames < config.patch_size:
        raise ValueError(
            f"input_values has {frames} frames; AST needs at least patch_size={config.patch_size} frames "
            f"(about {config.patch_size * 10 + 15} ms of audio). Pad the clip or use padding='max_length'."
        )
    if attention_mask is not None:
        _check_mask(attention_mask, input_values)


def _check_mask(attention_mask: torch.Tensor, input_values: torch.Tensor) -> None:
    if not isinstance(attention_mask, torch.Tensor):
        raise ValueError(
            f"attention_mask must be a torch.Tensor (batch, frames), got a {type(attention_mask).__name__}"
        )
    if tuple(attention_mask.shape) != tuple(input_values.shape[:2]):
        raise ValueError(
            f"attention_mask has shape {tuple(attention_mask.shape)}; it must be (batch, frames) = "
            f"{tuple(input_values.shape[:2])}, input_values.shape[:2]: one entry per frame of each clip"
        )
    stray = (attention_mask != 0) & (attention_mask != 1)
    if bool(stray.any()):  # a soft or scaled mask would be read as "real" wherever it is not 0
        raise ValueError(
            f"attention_mask holds values other than 0 and 1 (e.g. {attention_mask[stray][0].item()!r}, dtype "
            f"{attention_mask.dtype}); it must mark real frames with 1 and padding with 0"
        )
