"""Build an AST from an ImageNet ViT / DeiT checkpoint, following the original AST code's ImageNet path.

Accepted sources (a path, a Hub repository id, a state dict or a module):
    * timm ViT / DeiT state dicts (`.pth`, `.bin`, `.safetensors`, or a timm Hub repository such as
      `timm/deit_base_distilled_patch16_384.fb_in1k`): `deit_{tiny,small,base}_distilled_patch16_{224,384}`
      (with `dist_token` and `head_dist`), `vit_base_patch16_384`, `vit_large_patch16_384`, ... The key names are the
      same in timm 0.4.5 (models then called `vit_deit_*`) and timm 1.x (`deit_*`), and in the official DeiT
      releases (`{"model": state_dict}`, unwrapped by `load_state_dict`). A `module.` (DataParallel) or `model.`
      prefix shared by every key is removed.
    * transformers ViT / DeiT checkpoints (`ViTModel`, `ViTForImageClassification`, `DeiTModel`,
      `DeiTForImageClassification(WithTeacher)`), in the on-disk spelling (`encoder.layer.{i}.attention.attention.
      query`, ...) or the in-memory one of transformers >= 5.2x (`layers.{i}.attention.q_proj`, ...), as a checkpoint
      directory or Hub repository id (config.json + weights), a state dict or a model. Separate q, k, v projections
      are fused (rows q, k, v).

What is carried over (the original's procedure, see `positional` for the grid):
    * patch embedding: the RGB kernels are summed, (D, 3, p, p) -> (D, 1, p, p), bias copied — the same as feeding the
      mono spectrogram copied to the three input channels;
    * positional embedding: the token rows are dropped, the patch rows reshaped to the ImageNet grid (14 x 14 at 224,
      24 x 24 at 384), adapted to the AST grid of the target config (time first: middle crop or bilinear, then
      frequency), and the token rows put back;
    * [CLS] and [DIST] tokens, every block and the final LayerNorm unchanged; the ImageNet heads are dropped and the
      audio head (LayerNorm + Linear) is new, initialised like the rest of the model (trunc-normal, std 0.02).

A ViT without distillation token gets `dist_token = cls_token` and the [CLS] positional row as the [DIST] row. The two
token rows then enter every block identical and stay identical (same query, same keys), so the AST pooling
(x[CLS] + x[DIST]) / 2 starts out as the [CLS] state, the ViT's own pooled token. It is not an exact copy of the ViT:
every query now sees the [CLS] key twice, i.e. with twice its attention weight. Fine-tuning then lets the two tokens
diverge, as for a DeiT.

The encoder geometry comes from the checkpoint: D from the tokens, depth from the block indices, MLP width from fc1,
patch size from the kernel, heads from the transformers config or D (192 -> 3, 384 -> 6, 768 -> 12, 1024 -> 16,
1280 -> 16, else D / 64), overridable. LayerNorm eps is the source's: 1e-6 for timm, the config's `layer_norm_eps` for
transformers (1e-12 by default there) — it is written into `config.layer_norm_eps` so the encoder computes exactly
what the source computed.
"""

from __future__ import annotations

import copy
import math
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn
from transformers.utils import logging

from ..configuration_ast import ASTConfig
from ..modeling_ast import ASTForAudioClassification, ASTModel
from .common import AUDIOSET_MEAN, AUDIOSET_STD, build_model, load_encoder, save_model_dir, shape_mismatches
from .io import check_output_dir, input_paths, load_checkpoint_dir, load_state_dict, preview_keys, warn_non_finite
from .layouts import (
    AST_KEY_PREFIXES,
    TIMM,
    TIMM_IGNORED,
    TRANSFORMERS_VIT_IGNORED,
    TRANSFORMERS_VIT_PATCH_KEY,
    TRANSFORMERS_VIT_PREFIXES,
    WRAPPER_PREFIXES,
    from_transformers_ast,
)
from .positional import adapt_grid, grid_from_tokens, tokens_from_grid

logger = logging.get_logger(__name__)

__all__ = ["ast_from_imagenet", "save_ast_from_imagenet"]

_CheckpointSource = str | os.PathLike | Mapping[str, torch.Tensor] | nn.Module
_CHECKPOINT_FILE_SUFFIXES = (".pth", ".pt", ".bin", ".safetensors", ".ckpt")

_TIMM_LAYER_NORM_EPS = 1e-6
_TRANSFORMERS_LAYER_NORM_EPS = 1e-12  # ViTConfig / DeiTConfig default, used for a bare transformers state dict
_HEADS_BY_WIDTH = {192: 3, 384: 6, 768: 12, 1024: 16, 1280: 16}


@dataclass
class _ImageNetEncoder:
    """An ImageNet ViT / DeiT encoder renamed to our `ASTModel` keys, before any audio adaptation.

    `weights` holds float32 tensors: `embeddings.patch_embed.proj.weight` still (D, C, p, p) with C image channels,
    `embeddings.pos_embed` (1, k + grid[0] * grid[1], D) with k = 2 token rows for a DeiT, 1 for a ViT (which has no
    `embeddings.dist_token`).
    """

    weights: dict[str, torch.Tensor]
    layout: str  # "timm" or "transformers"
    hidden_size: int
    num_hidden_layers: int
    intermediate_size: int
    num_attention_heads: int
    layer_norm_eps: float
    patch_size: int
    grid: tuple[int, int]
    has_dist_token: bool
    qkv_bias: bool = True
    hidden_act: str = "gelu"
    ignored_keys: list[str] = field(default_factory=list)

    @property
    def num_token_rows(self) -> int:
        return 2 if self.has_dist_token else 1


# --------------------------------------------------------------------------------------------------------- reading


def _read_imagenet_checkpoint(source: _CheckpointSource) -> tuple[dict[str, torch.Tensor], dict | None]:
    """(state dict, config.json as a dict or None) from a file, a checkpoint directory, a Hub repository id, a dict or
    a module. A Hub repository or directory holds config.json and the weights: a transformers ViT / DeiT
    (`facebook/deit-base-distilled-patch16-384`) or a timm one (`timm/deit_base_distilled_patch16_384.fb_in1k`)."""
    if isinstance(source, nn.Module):
        hf_config = getattr(source, "config", None)
        state_dict = dict(source.state_dict())
        warn_non_finite(state_dict, f"the {type(source).__name__} given")
        return state_dict, (hf_config.to_dict() if hf_config is not None else None)
    if isinstance(source, Mapping):
        warn_non_finite(source, "the state dict given")
        return dict(source), None
    path = Path(source)
    if path.is_file():
        return load_state_dict(path), None
    if path.suffix in _CHECKPOINT_FILE_SUFFIXES:
        raise FileNotFoundError(f"no checkpoint file at {path}")
    try:
        return load_checkpoint_dir(source)
    except OSError as error:
        raise FileNotFoundError(
            f"{source} is not a checkpoint file, a checkpoint directory or a reachable Hub repository ({error})"
        ) from error


def _strip_wrapper_prefixes(state_dict: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Remove a `module.` (DataParallel) or `model.` prefix carried by every key, repeatedly."""
    state_dict = dict(state_dict)
    while state_dict:
        prefix = next((p for p in WRAPPER_PREFIXES if all(key.startswith(p) for key in state_dict)), None)
        if prefix is None:
            break
        state_dict = {key[len(prefix):]: value for key, value in state_dict.items()}
    return state_dict


def _detect_layout(state_dict: Mapping[str, torch.Tensor]) -> str:
    """"timm" or "transformers"; raises ValueError listing the keys when the layout is neither."""
    if "patch_embed.proj.weight" in state_dict:
        return "timm"
    if any(TRANSFORMERS_VIT_PATCH_KEY.fullmatch(key) for key in state_dict):
        return "transformers"
    keys = sorted(state_dict)
    hint = ""
    if any(key.startswith(AST_KEY_PREFIXES) for key in keys):
        hint = " It looks like an audio (AST) checkpoint: use adapt_pretrained_ast / ast-adapt-pretrained."
    raise ValueError(
        "unrecognised ImageNet checkpoint layout: missing keys patch_embed.proj.weight (timm ViT/DeiT) or "
        f"[deit.|vit.]embeddings.patch_embeddings.projection.weight (transformers ViT/DeiT); unexpected keys "
        f"({len(keys)}): {preview_keys(keys)}.{hint}"
    )


def _rename_timm(state_dict: Mapping[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], list[str], list[str]]:
    """timm names -> ours. Returns (renamed, ignored ImageNet-only keys, unexpected keys)."""
    renamed: dict[str, torch.Tensor] = {}
    ignored, unexpected = [], []
    for key, tensor in state_dict.items():
        ours = TIMM.to_ours(key)
        if ours is not None:
            renamed[ours] = tensor
        elif TIMM_IGNORED.fullmatch(key):
            ignored.append(key)
        else:
            unexpected.append(key)
    return renamed, ignored, unexpected


def _rename_transformers(
    state_dict: Mapping[str, torch.Tensor],
) -> tuple[dict[str, torch.Tensor], list[str], list[str]]:
    """transformers ViT/DeiT names (either spelling) -> ours, q/k/v fused. Returns (renamed, ignored, unexpected)."""
    encoder: dict[str, torch.Tensor] = {}
    ignored = []
    for key, tensor in state_dict.items():
        body = next((key[len(p):] for p in TRANSFORMERS_VIT_PREFIXES if key.startswith(p)), key)
        if TRANSFORMERS_VIT_IGNORED.fullmatch(body):
            ignored.append(key)
        else:
            encoder[body] = tensor
    renamed, unexpected = from_transformers_ast(encoder)
    return renamed, ignored, unexpected


# ------------------------------------------------------------------------------------------------------ validation


def _expected_shapes(
    hidden: int, mlp: int, layers: int, patch_kernel: tuple[int, ...], qkv_bias: bool
) -> dict[str, tuple[int, ...]]:
    """Every encoder tensor (our names) with its required shape; the positional embedding is checked separately."""
    shapes: dict[str, tuple[int, ...]] = {
        "embeddings.cls_token": (1, 1, hidden),
        "embeddings.patch_embed.proj.weight": (hidden, *patch_kernel[1:]),
        "embeddings.patch_embed.proj.bias": (hidden,),
        "norm.weight": (hidden,),
        "norm.bias": (hidden,),
    }
    for i in range(layers):
        block = {
            "norm1.weight": (hidden,),
            "norm1.bias": (hidden,),
            "attn.qkv.weight": (3 * hidden, hidden),
            "attn.proj.weight": (hidden, hidden),
            "attn.proj.bias": (hidden,),
            "norm2.weight": (hidden,),
            "norm2.bias": (hidden,),
            "mlp.fc1.weight": (mlp, hidden),
            "mlp.fc1.bias": (mlp,),
            "mlp.fc2.weight": (hidden, mlp),
            "mlp.fc2.bias": (hidden,),
        }
        if qkv_bias:
            block["attn.qkv.bias"] = (3 * hidden,)
        shapes.update({f"blocks.{i}.{name}": shape for name, shape in block.items()})
    return shapes


def _source_name(key: str, layout: str) -> str:
    """Our key as the timm checkpoint spells it (transformers names are reported in our spelling)."""
    return (TIMM.to_theirs(key) or key) if layout == "timm" else key


def _check_keys_and_shapes(
    weights: Mapping[str, torch.Tensor], expected: Mapping[str, tuple[int, ...]], unexpected: list[str], layout: str
) -> None:
    """Raise ValueError listing missing / unexpected keys, or naming every tensor whose shape is wrong."""
    required = set(expected) | {"embeddings.pos_embed"}
    allowed = required | {"embeddings.dist_token"}
    missing = sorted(_source_name(key, layout) for key in required - set(weights))
    unexpected = sorted(set(unexpected) | {_source_name(key, layout) for key in weights if key not in allowed})
    if missing or unexpected:
        spelling = "" if layout == "timm" else " (encoder keys in ASTModel spelling)"
        raise ValueError(
            f"{layout} ViT/DeiT checkpoint does not match the expected layout{spelling}: "
            f"missing keys ({len(missing)}): {preview_keys(missing)}; unexpected keys ({len(unexpected)}): "
            f"{preview_keys(unexpected)}"
        )
    hidden = expected["embeddings.cls_token"][2]
    wrong = shape_mismatches(weights, expected, name=lambda key: _source_name(key, layout))
    dist = weights.get("embeddings.dist_token")
    if dist is not None and tuple(dist.shape) != (1, 1, hidden):
        wrong.append(f"{_source_name('embeddings.dist_token', layout)}: expected (1, 1, {hidden}), "
                     f"got {tuple(dist.shape)}")
    pos = weights["embeddings.pos_embed"]
    if pos.dim() != 3 or pos.shape[0] != 1 or pos.shape[2] != hidden:
        wrong.append(f"{_source_name('embeddings.pos_embed', layout)}: expected (1, tokens, {hidden}), "
                     f"got {tuple(pos.shape)}")
    if wrong:
        raise ValueError(f"shape mismatch in the {layout} ViT/DeiT checkpoint: " + "; ".join(wrong))


def _num_layers(weights: Mapping[str, torch.Tensor]) -> int:
    indices = {int(match.group(1)) for key in weights if (match := re.match(r"blocks\.(\d+)\.", key))}
    if not indices:
        raise ValueError("the checkpoint has no transformer blocks (no blocks.N.* / encoder.layer.N.* keys)")
    missing = sorted(set(range(max(indices) + 1)) - indices)
    if missing:
        raise ValueError(f"the checkpoint lacks transformer blocks {missing} (found blocks 0..{max(indices)})")
    return max(indices) + 1


def _num_heads(hidden: int, override: int | None, hf_config: Mapping | None) -> int:
    if override is not None:
        heads = override
    elif hf_config and hf_config.get("num_attention_heads"):
        heads = int(hf_config["num_attention_heads"])
    elif hidden in _HEADS_BY_WIDTH:
        heads = _HEADS_BY_WIDTH[hidden]
    elif hidden % 64 == 0:
        heads = hidden // 64
    else:
        raise ValueError(f"cannot infer the number of attention heads for width {hidden}: pass num_attention_heads")
    if hidden % heads:
        raise ValueError(f"hidden size {hidden} is not a multiple of num_attention_heads={heads}")
    return heads


def _imagenet_grid(patch_rows: int, patch_size: int, hf_config: Mapping | None, override) -> tuple[int, int]:
    """(rows, cols) of the ImageNet patch grid: given, from the transformers config's image_size, or square."""
    if override is not None:
        grid = (int(override[0]), int(override[1]))
    elif hf_config and hf_config.get("image_size"):
        size = hf_config["image_size"]
        height, width = (size, size) if isinstance(size, int) else size
        grid = (height // patch_size, width // patch_size)
    else:
        side = math.isqrt(patch_rows)
        if side * side != patch_rows:
            raise ValueError(
                f"the positional embedding has {patch_rows} patch rows, not a square grid: pass imagenet_grid=(h, w)"
            )
        grid = (side, side)
    if grid[0] * grid[1] != patch_rows:
        raise ValueError(f"ImageNet grid {grid} does not match the {patch_rows} patch rows of the positional embedding")
    return grid


def _parse_imagenet_encoder(
    source: _CheckpointSource,
    *,
    num_attention_heads: int | None = None,
    layer_norm_eps: float | None = None,
    imagenet_grid: tuple[int, int] | None = None,
) -> _ImageNetEncoder:
    """Read and validate an ImageNet ViT/DeiT checkpoint (see the module docstring for accepted sources).

    Raises ValueError listing missing and unexpected keys for an unknown or incomplete layout, and naming every tensor
    whose shape disagrees with the inferred geometry.
    """
    state_dict, hf_config = _read_imagenet_checkpoint(source)
    state_dict = _strip_wrapper_prefixes(state_dict)
    layout = _detect_layout(state_dict)
    if layout == "timm":
        hf_config = None  # a timm repository's config.json has none of the transformers fields read below
    rename = _rename_timm if layout == "timm" else _rename_transformers
    weights, ignored, unexpected = rename(state_dict)
    weights = {key: tensor.detach().to(torch.float32) for key, tensor in weights.items()}

    kernel = weights["embeddings.patch_embed.proj.weight"]
    if kernel.dim() != 4 or kernel.shape[2] != kernel.shape[3]:
        raise ValueError(
            f"embeddings.patch_embed.proj.weight: expected a square (D, C, p, p) kernel, got {tuple(kernel.shape)}"
        )
    hidden = kernel.shape[0]
    layers = _num_layers(weights)
    fc1 = weights.get("blocks.0.mlp.fc1.weight")
    mlp = fc1.shape[0] if fc1 is not None else 4 * hidden
    qkv_bias = any(key.endswith("attn.qkv.bias") for key in weights)
    if hf_config is not None and "qkv_bias" in hf_config:
        qkv_bias = bool(hf_config["qkv_bias"])
    _check_keys_and_shapes(weights, _expected_shapes(hidden, mlp, layers, tuple(kernel.shape), qkv_bias),
                           unexpected, layout)

    has_dist = "embeddings.dist_token" in weights
    patch_rows = weights["embeddings.pos_embed"].shape[1] - (2 if has_dist else 1)
    if layer_norm_eps is None:
        if layout == "timm":
            layer_norm_eps = _TIMM_LAYER_NORM_EPS
        elif hf_config is not None and "layer_norm_eps" in hf_config:
            layer_norm_eps = float(hf_config["layer_norm_eps"])
        else:
            layer_norm_eps = _TRANSFORMERS_LAYER_NORM_EPS
            logger.warning("transformers state dict without its config: assuming layer_norm_eps=1e-12 (the default)")
    return _ImageNetEncoder(
        weights=weights,
        layout=layout,
        hidden_size=hidden,
        num_hidden_layers=layers,
        intermediate_size=mlp,
        num_attention_heads=_num_heads(hidden, num_attention_heads, hf_config),
        layer_norm_eps=layer_norm_eps,
        patch_size=kernel.shape[2],
        grid=_imagenet_grid(patch_rows, kernel.shape[2], hf_config, imagenet_grid),
        has_dist_token=has_dist,
        qkv_bias=qkv_bias,
        hidden_act=(hf_config or {}).get("hidden_act", "gelu"),
        ignored_keys=ignored,
    )


# ------------------------------------------------------------------------------------------------------ conversion


def _audio_config(config: ASTConfig | None, encoder: _ImageNetEncoder) -> ASTConfig:
    """A copy of `config` (the audio side: strides, max_length, mel bins, labels) with the encoder's geometry.

    The encoder fields (hidden_size, num_hidden_layers, num_attention_heads, intermediate_size, layer_norm_eps,
    qkv_bias, patch_size, hidden_act) always come from the checkpoint; differences from `config` are logged.
    """
    config = copy.deepcopy(config) if config is not None else ASTConfig()
    inferred = {
        "hidden_size": encoder.hidden_size,
        "num_hidden_layers": encoder.num_hidden_layers,
        "num_attention_heads": encoder.num_attention_heads,
        "intermediate_size": encoder.intermediate_size,
        "layer_norm_eps": encoder.layer_norm_eps,
        "qkv_bias": encoder.qkv_bias,
        "patch_size": encoder.patch_size,
        "hidden_act": encoder.hidden_act,
    }
    changed = {
        name: (getattr(config, name), value) for name, value in inferred.items() if getattr(config, name) != value
    }
    if changed:
        logger.info(f"config fields taken from the ImageNet checkpoint (config value -> checkpoint value): {changed}")
    for name, value in inferred.items():
        setattr(config, name, value)
    config._check_geometry()
    return config


def _audio_patch_kernel(kernel: torch.Tensor) -> torch.Tensor:
    """(D, C, p, p) image kernel -> (D, 1, p, p) by summing over the C input channels, as the original does."""
    return kernel.sum(dim=1, keepdim=True)


def _audio_positional_embedding(encoder: _ImageNetEncoder, grid: tuple[int, int]) -> torch.Tensor:
    """The source's positional embedding adapted to the AST patch grid (f, t): (1, 2 + f * t, D).

    Token rows are kept ([CLS], [DIST]; for a ViT the [CLS] row twice); the ImageNet patch grid is adapted with
    `positional.adapt_grid` (time: middle crop / bilinear, then frequency).
    """
    pos = encoder.weights["embeddings.pos_embed"]
    rows, cols = encoder.grid
    token_rows = pos[:, : encoder.num_token_rows]
    if not encoder.has_dist_token:
        token_rows = torch.cat([token_rows, token_rows], dim=1)
    patch_grid = grid_from_tokens(pos, rows, cols, encoder.num_token_rows)
    return tokens_from_grid(token_rows, adapt_grid(patch_grid, *grid))


def _audio_encoder_weights(encoder: _ImageNetEncoder, config: ASTConfig) -> dict[str, torch.Tensor]:
    """The complete `ASTModel` state dict for `config` from an ImageNet encoder."""
    weights = dict(encoder.weights)
    weights["embeddings.patch_embed.proj.weight"] = _audio_patch_kernel(weights["embeddings.patch_embed.proj.weight"])
    if not encoder.has_dist_token:
        weights["embeddings.dist_token"] = weights["embeddings.cls_token"].clone()
    weights["embeddings.pos_embed"] = _audio_positional_embedding(encoder, config.patch_grid)
    return weights


def ast_from_imagenet(
    state_dict_or_path: _CheckpointSource,
    config: ASTConfig | None = None,
    *,
    add_classifier: bool = True,
    num_attention_heads: int | None = None,
    layer_norm_eps: float | None = None,
    imagenet_grid: tuple[int, int] | None = None,
    seed: int | None = None,
) -> ASTModel | ASTForAudioClassification:
    """An AST initialised from an ImageNet ViT / DeiT, as the original code's `imagenet_pretrain=True` path.

    Args:
        state_dict_or_path: timm `.pth` / `.safetensors` file, checkpoint directory or Hub repository id (transformers
            or timm), state dict, or model.
        config: the audio side of the model — `frequency_stride`, `time_stride`, `max_length`, `num_mel_bins`,
            labels (`num_labels` / `id2label`), `problem_type`, `head_layer_norm_eps`. Its encoder fields are replaced
            by the checkpoint's (see `_audio_config`). Default: `ASTConfig()` (128 x 1024, strides 10, 2 labels).
        add_classifier: return `ASTForAudioClassification` with a new head (True) or the bare `ASTModel`.
        num_attention_heads: override the inferred head count.
        layer_norm_eps: override the source's LayerNorm epsilon.
        imagenet_grid: (rows, cols) of the source's patch grid when it is not square and has no transformers config.
        seed: seed for the new parameters (the head), leaving the global RNG untouched.

    Returns:
        the model in eval mode; its positional embedding is (1, 2 + f * t, D) for `config.patch_grid` = (f, t).
    """
    encoder = _parse_imagenet_encoder(
        state_dict_or_path,
        num_attention_heads=num_attention_heads,
        layer_norm_eps=layer_norm_eps,
        imagenet_grid=imagenet_grid,
    )
    if encoder.ignored_keys:
        logger.info(f"dropped the ImageNet-only tensors {sorted(encoder.ignored_keys)}")
    config = _audio_config(config, encoder)
    model = build_model(config, add_classifier, seed)
    load_encoder(model, _audio_encoder_weights(encoder, config))
    return model.eval()


def save_ast_from_imagenet(
    state_dict_or_path: _CheckpointSource,
    output_dir: str | os.PathLike,
    config: ASTConfig | None = None,
    *,
    mean: float = AUDIOSET_MEAN,
    std: float = AUDIOSET_STD,
    overwrite: bool = False,
    inputs: Sequence[str | os.PathLike] = (),
    **kwargs,
) -> Path:
    """`ast_from_imagenet(state_dict_or_path, config, **kwargs)` saved with `save_model_dir`. Returns the directory.

    `output_dir` is checked first (`io.check_output_dir`): it must not be or hold the source checkpoint nor any of
    `inputs` (other files the model is made from, such as a labels file)."""
    protected = input_paths(state_dict_or_path, *inputs)
    check_output_dir(output_dir, overwrite, protected)
    model = ast_from_imagenet(state_dict_or_path, config, **kwargs)
    return save_model_dir(model, output_dir, mean=mean, std=std, overwrite=overwrite, inputs=protected)
