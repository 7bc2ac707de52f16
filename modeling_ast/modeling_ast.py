"""Audio Spectrogram Transformer (AST, Gong, Chung & Glass, Interspeech 2021, arXiv 2104.01778).

Shapes used throughout (defaults in brackets):
    B  batch size
    T  spectrogram frames (~100 per second; 1024 for AudioSet checkpoints)
    F  mel bins [128]
    f, t  patch grid along frequency and time: f = (F - 16) // frequency_stride + 1 [12], t = (T - 16) // time_stride + 1
    N  tokens = 2 + f * t ([CLS], [DIST], then patches in frequency-major order: index = fi * t + ti)
    D  hidden size [768]

Any input length runs: the learned positional grid (f, t0), t0 from `config.max_length`, is cropped to its first t
columns for shorter inputs and linearly interpolated along time for longer ones (see `ASTEmbeddings`).
"""

from __future__ import annotations

import importlib
import os
import tempfile
from dataclasses import dataclass
from types import ModuleType

import torch
import torch.nn.functional as F
from torch import nn
from transformers import PreTrainedModel
from transformers import initialization as init
from transformers.activations import ACT2FN
from transformers.modeling_layers import GradientCheckpointingLayer
from transformers.modeling_outputs import BaseModelOutputWithPooling, SequenceClassifierOutput
from transformers.utils import ModelOutput, logging

from .configuration_ast import ASTConfig

logger = logging.get_logger(__name__)


class ASTPatchEmbed(nn.Module):
    """Overlapping 16x16 patches of the spectrogram, projected to D: (B, T, F) -> (B, f * t, D)."""

    def __init__(self, config: ASTConfig) -> None:
        super().__init__()
        self.proj = nn.Conv2d(
            1,
            config.hidden_size,
            kernel_size=config.patch_size,
            stride=(config.frequency_stride, config.time_stride),
        )

    def forward(self, input_values: torch.Tensor) -> tuple[torch.Tensor, int]:
        """Returns the patch tokens (B, f * t, D), frequency-major, and the number of time patches t."""
        patches = self.proj(input_values.transpose(1, 2).unsqueeze(1))  # (B, D, f, t)
        return patches.flatten(2).transpose(1, 2), patches.shape[-1]


class ASTEmbeddings(nn.Module):
    """[CLS] + [DIST] + patch tokens, plus a learned positional embedding adapted to the input length.

    The positional grid is learned for `config.max_length` frames: (f, t0) patches. For an input with t time patches:
      * t == t0: used unchanged (identical to a fixed-length AST);
      * t < t0: its first t columns. A clip shorter than 10 s occupied exactly these columns in the zero-padded
        1024-frame inputs AST checkpoints were trained on, and a prefix crop keeps a clip's embedding independent of
        how much padding its batch adds, which is what makes mixed-length batches exact;
      * t > t0: linearly interpolated along time (bilinear on the grid, frequency unchanged, align_corners=False),
        the rule the original code uses to stretch ImageNet grids.
    With an attention mask, each clip gets the grid of its own length, so a clip's result never depends on its batch.
    """

    def __init__(self, config: ASTConfig) -> None:
        super().__init__()
        self.patch_embed = ASTPatchEmbed(config)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, config.hidden_size))
        self.dist_token = nn.Parameter(torch.zeros(1, 1, config.hidden_size))
        self.grid_frequency, self.grid_time = config.patch_grid
        num_patches = self.grid_frequency * self.grid_time
        self.pos_embed = nn.Parameter(torch.zeros(1, 2 + num_patches, config.hidden_size))
        self.dropout = nn.Dropout(config.hidden_dropout_prob)

    def patch_position_grid(self, num_time: int) -> torch.Tensor:
        """Positional embeddings of the patches for `num_time` time patches: (f, num_time, D)."""
        grid = self.pos_embed[0, 2:].unflatten(0, (self.grid_frequency, self.grid_time))  # (f, t0, D)
        if num_time <= self.grid_time:
            return grid[:, :num_time]
        stretched = F.interpolate(
            grid.permute(2, 0, 1).unsqueeze(0), size=(self.grid_frequency, num_time), mode="bilinear"
        )  # (1, D, f, num_time)
        return stretched[0].permute(1, 2, 0)

    def patch_positions(self, num_time: int, clip_time: list[int] | None) -> torch.Tensor:
        """Patch positional embeddings for a batch whose grid has `num_time` time patches: (1 or B, f * num_time, D).

        `clip_time` holds each clip's own number of real time patches (None: every clip fills the grid). Columns past a
        clip's end get zeros; they belong to padding, which the attention mask hides.
        """
        if clip_time is None or max(clip_time) <= self.grid_time:
            # Prefix crops agree on every real column, so one grid serves the whole batch.
            return self.patch_position_grid(num_time).flatten(0, 1).unsqueeze(0)
        grids = {length: self.patch_position_grid(length) for length in set(clip_time)}
        per_clip = [F.pad(grids[length], (0, 0, 0, num_time - length)) for length in clip_time]
        return torch.stack(per_clip).flatten(1, 2)

    def forward(self, input_values: torch.Tensor, clip_time: list[int] | None = None) -> tuple[torch.Tensor, int]:
        """(B, T, F) spectrogram -> (B, N, D) tokens, and the number of time patches t of the batch grid."""
        patches, num_time = self.patch_embed(input_values)
        patches = patches + self.patch_positions(num_time, clip_time)
        batch_size = patches.shape[0]
        tokens = torch.cat([self.cls_token, self.dist_token], dim=1) + self.pos_embed[:, :2]
        embeddings = torch.cat([tokens.expand(batch_size, -1, -1), patches], dim=1)
        return self.dropout(embeddings), num_time


class ASTPatchout(nn.Module):
    """Patchout (Koutini et al., PaSST): drop patch tokens during training only, for speed and regularisation.

    Each training step drops `config.patchout_time` random time columns and `config.patchout_frequency` random
    frequency rows of the patch grid (the same ones for the whole batch, so the batch stays rectangular), then a
    `config.patchout_random` fraction of the remaining patches. [CLS] and [DIST] are always kept, and at least one
    patch. Positional embeddings were added before, so kept patches keep their positions. Identity in eval mode.
    """

    def __init__(self, config: ASTConfig) -> None:
        super().__init__()
        self.drop_time = config.patchout_time
        self.drop_frequency = config.patchout_frequency
        self.drop_fraction = config.patchout_random

    @property
    def active(self) -> bool:
        return self.training and bool(self.drop_time or self.drop_frequency or self.drop_fraction)

    def forward(
        self, tokens: torch.Tensor, key_mask: torch.Tensor | None, num_frequency: int, num_time: int
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """tokens (B, 2 + f * t, D) and key mask (B, 1, 1, 2 + f * t) -> the same for the kept patches only."""
        if not self.active:
            return tokens, key_mask
        special, patches = tokens[:, :2], tokens[:, 2:].unflatten(1, (num_frequency, num_time))  # (B, f, t, D)
        keep_frequency = _random_subset(num_frequency, num_frequency - self.drop_frequency, tokens.device)
        keep_time = _random_subset(num_time, num_time - self.drop_time, tokens.device)
        patches = patches[:, keep_frequency][:, :, keep_time].flatten(1, 2)
        kept = _random_subset(patches.shape[1], round(patches.shape[1] * (1 - self.drop_fraction)), tokens.device)
        tokens = torch.cat([special, patches[:, kept]], dim=1)
        if key_mask is not None:
            patch_mask = key_mask[:, 0, 0, 2:].unflatten(1, (num_frequency, num_time))
            patch_mask = patch_mask[:, keep_frequency][:, :, keep_time].flatten(1)[:, kept]
            key_mask = torch.cat([key_mask[:, 0, 0, :2], patch_mask], dim=1)[:, None, None, :]
        return tokens, key_mask


def _random_subset(size: int, keep: int, device: torch.device) -> torch.Tensor:
    """Sorted indices of `keep` (at least 1) of `size` positions, drawn from torch's global RNG."""
    return torch.randperm(size, device=device)[: max(keep, 1)].sort().values


class ASTAttention(nn.Module):
    """Multi-head self-attention with a fused qkv projection (rows ordered q, k, v as in the original checkpoints)."""

    def __init__(self, config: ASTConfig) -> None:
        super().__init__()
        self.config = config
        self.num_heads = config.num_attention_heads
        self.head_dim = config.hidden_size // config.num_attention_heads
        self.scale = self.head_dim**-0.5
        self.qkv = nn.Linear(config.hidden_size, 3 * config.hidden_size, bias=config.qkv_bias)
        self.attn_drop = config.attention_probs_dropout_prob
        self.proj = nn.Linear(config.hidden_size, config.hidden_size)
        self.proj_drop = nn.Dropout(config.hidden_dropout_prob)

    def forward(
        self, hidden_states: torch.Tensor, key_mask: torch.Tensor | None = None, output_attentions: bool = False
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(B, N, D) -> (B, N, D), and the attention probabilities (B, heads, N, N) when asked.

        `key_mask` (B, 1, 1, N) is True for tokens that may be attended to (real patches and the two special tokens).
        """
        batch_size, num_tokens, hidden_size = hidden_states.shape
        qkv = self.qkv(hidden_states).view(batch_size, num_tokens, 3, self.num_heads, self.head_dim)
        query, key, value = qkv.permute(2, 0, 3, 1, 4).unbind(0)  # each (B, heads, N, head_dim)
        dropout = self.attn_drop if self.training else 0.0
        if output_attentions or self.config._attn_implementation == "eager":
            scores = (query * self.scale) @ key.transpose(-2, -1)
            if key_mask is not None:
                scores = scores.masked_fill(~key_mask, torch.finfo(scores.dtype).min)
            probs = F.dropout(scores.softmax(dim=-1), p=dropout, training=self.training)
            context = probs @ value
        else:
            context = F.scaled_dot_product_attention(query, key, value, attn_mask=key_mask, dropout_p=dropout)
            probs = None
        context = context.transpose(1, 2).reshape(batch_size, num_tokens, hidden_size)
        return self.proj_drop(self.proj(context)), probs


class ASTMLP(nn.Module):
    """Position-wise feed-forward network: (B, N, D) -> (B, N, D)."""

    def __init__(self, config: ASTConfig) -> None:
        super().__init__()
        self.fc1 = nn.Linear(config.hidden_size, config.intermediate_size)
        self.act = ACT2FN[config.hidden_act]
        self.fc2 = nn.Linear(config.intermediate_size, config.hidden_size)
        self.drop = nn.Dropout(config.hidden_dropout_prob)

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        return self.drop(self.fc2(self.drop(self.act(self.fc1(hidden_states)))))


class ASTBlock(GradientCheckpointingLayer):
    """Pre-norm Transformer block: x + attn(norm1(x)), then x + mlp(norm2(x))."""

    def __init__(self, config: ASTConfig) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.attn = ASTAttention(config)
        self.norm2 = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.mlp = ASTMLP(config)

    def forward(
        self, hidden_states: torch.Tensor, key_mask: torch.Tensor | None = None, output_attentions: bool = False
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        attended, probs = self.attn(self.norm1(hidden_states), key_mask, output_attentions)
        hidden_states = hidden_states + attended
        return hidden_states + self.mlp(self.norm2(hidden_states)), probs


class ASTPreTrainedModel(PreTrainedModel):
    """Weight initialisation and the transformers plumbing shared by the AST models."""

    config_class = ASTConfig
    config: ASTConfig
    base_model_prefix = "ast"
    main_input_name = "input_values"
    input_modalities = ("audio",)
    supports_gradient_checkpointing = True
    _no_split_modules = ["ASTEmbeddings", "ASTBlock"]
    _supports_sdpa = True

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path: str | os.PathLike, *model_args, **kwargs):
        """`PreTrainedModel.from_pretrained`, which also reads transformers' built-in AST checkpoints.

        A directory or Hub repository whose config.json says model_type "audio-spectrogram-transformer" (such as the
        MIT `ast-finetuned-*` models) is converted on the fly into a temporary directory in our format (see
        `modeling_ast.conversion.transformers_ast`) and loaded from there with every other argument unchanged.
        Exported as Hub remote code (`modeling_ast.remote_code`) this file runs without the `conversion` subpackage
        and loads checkpoints in our format only.
        """
        conversion = _checkpoint_conversion()
        if conversion is None:  # running as Hub remote code, without the conversion subpackage
            return super().from_pretrained(pretrained_model_name_or_path, *model_args, **kwargs)
        hub_kwargs = conversion.hub_arguments(kwargs)
        is_local_file = os.path.isfile(pretrained_model_name_or_path)
        config_dict = (
            None if is_local_file else conversion.read_config_dict(pretrained_model_name_or_path, **hub_kwargs)
        )
        if not conversion.is_transformers_ast(config_dict):
            return super().from_pretrained(pretrained_model_name_or_path, *model_args, **kwargs)
        with tempfile.TemporaryDirectory() as converted:
            conversion.convert_transformers_checkpoint(
                pretrained_model_name_or_path, converted, overwrite=True, with_feature_extractor=False, **hub_kwargs
            )
            remaining = {key: value for key, value in kwargs.items() if key not in hub_kwargs}
            model = super().from_pretrained(converted, *model_args, **remaining)
        model.config._name_or_path = str(pretrained_model_name_or_path)
        return model

    @torch.no_grad()
    def _init_weights(self, module: nn.Module) -> None:
        """Truncated-normal weights (std `initializer_range`), zero biases, unit LayerNorms, as timm's ViT."""
        std = self.config.initializer_range
        if isinstance(module, (nn.Linear, nn.Conv2d)):
            init.trunc_normal_(module.weight, std=std)
            if module.bias is not None:
                init.zeros_(module.bias)
        elif isinstance(module, nn.LayerNorm):
            init.ones_(module.weight)
            init.zeros_(module.bias)
        elif isinstance(module, ASTEmbeddings):
            for parameter in (module.cls_token, module.dist_token, module.pos_embed):
                init.trunc_normal_(parameter, std=std)


def _checkpoint_conversion() -> ModuleType | None:
    """This package's `conversion.transformers_ast`, or None where this file runs as Hub remote code, without it.

    Imported by name, not with a `from .conversion... import` statement: transformers' remote-code export follows
    every such line, even inside a function, and cannot ship a subpackage (it would look for `conversion.xxx.py`).
    """
    try:
        return importlib.import_module(".conversion.transformers_ast", __package__)
    except ModuleNotFoundError as err:
        if err.name in (f"{__package__}.conversion", f"{__package__}.conversion.transformers_ast"):
            return None
        raise


def _check_input_values(input_values: torch.Tensor, config: ASTConfig) -> None:
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


def _clip_time_patches(attention_mask: torch.Tensor, config: ASTConfig) -> list[int] | None:
    """Real time patches of each clip from a (B, T) frame mask of right-padded clips; None when nothing is padded.

    A patch is real when all its frames are. A clip shorter than one patch (under about 175 ms) keeps its first
    patch, completed by the padding frames that follow it, as the fixed-length AST sees such a clip; a clip with no
    real frame at all is an error.
    """
    mask = attention_mask.bool()
    if bool(mask.all()):
        return None
    if bool((mask[:, 1:] & ~mask[:, :-1]).any()):
        raise ValueError("attention_mask must mark real frames first and padding after them (right padding)")
    frames = mask.sum(dim=1).tolist()
    empty = [index for index, count in enumerate(frames) if count == 0]
    if empty:
        raise ValueError(f"clips {empty} have no real frame in attention_mask")
    return [max(1, (count - config.patch_size) // config.time_stride + 1) for count in frames]


def _key_mask(clip_time: list[int], num_frequency: int, num_time: int, device: torch.device) -> torch.Tensor:
    """(B, 1, 1, N) mask, True for the two special tokens and each clip's real patches."""
    real_columns = torch.arange(num_time, device=device) < torch.tensor(clip_time, device=device)[:, None]
    patches = real_columns[:, None, :].expand(-1, num_frequency, -1).flatten(1)  # frequency-major, like the tokens
    special = torch.ones(len(clip_time), 2, dtype=torch.bool, device=device)
    return torch.cat([special, patches], dim=1)[:, None, None, :]


@dataclass
class ASTEmbeddingOutput(ModelOutput):
    """Clip and patch embeddings, as returned by `ASTModel.embed`.

    Args:
        clip_embedding: (B, D) pooled ([CLS] + [DIST]) / 2 state after the final LayerNorm.
        patch_embeddings: (B, f, t, D) final patch states on their (frequency, time) grid; patch (i, j) covers mel bins
            [i * frequency_stride, i * frequency_stride + 16) and frames [j * time_stride, j * time_stride + 16).
        patch_mask: (B, t) True for time columns made only of real frames (None when no attention mask was given).
    """

    clip_embedding: torch.Tensor | None = None
    patch_embeddings: torch.Tensor | None = None
    patch_mask: torch.Tensor | None = None


class ASTModel(ASTPreTrainedModel):
    """The AST encoder: spectrogram -> token states and the pooled ([CLS] + [DIST]) / 2 clip embedding."""

    def __init__(self, config: ASTConfig) -> None:
        super().__init__(config)
        self.embeddings = ASTEmbeddings(config)
        self.patchout = ASTPatchout(config)
        self.blocks = nn.ModuleList([ASTBlock(config) for _ in range(config.num_hidden_layers)])
        self.norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.post_init()

    def get_input_embeddings(self) -> ASTPatchEmbed:
        return self.embeddings.patch_embed

    def embed(self, input_values: torch.Tensor, attention_mask: torch.Tensor | None = None) -> ASTEmbeddingOutput:
        """Clip embedding (B, D) and patch embeddings on their grid (B, f, t, D) for inputs of any length.

        Same arguments as `forward`. With an attention mask, `patch_mask` marks each clip's real time columns.
        """
        output = self(input_values, attention_mask=attention_mask, return_dict=True)
        num_time = (input_values.shape[1] - self.config.patch_size) // self.config.time_stride + 1
        patches = output.last_hidden_state[:, 2:].unflatten(1, (self.embeddings.grid_frequency, num_time))
        patch_mask = None
        if attention_mask is not None:
            clip_time = _clip_time_patches(attention_mask, self.config) or [num_time] * input_values.shape[0]
            patch_mask = torch.arange(num_time, device=patches.device) < torch.tensor(
                clip_time, device=patches.device
            )[:, None]
        return ASTEmbeddingOutput(
            clip_embedding=output.pooler_output, patch_embeddings=patches, patch_mask=patch_mask
        )

    def forward(
        self,
        input_values: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        output_attentions: bool | None = None,
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
    ) -> BaseModelOutputWithPooling | tuple:
        r"""
        Args:
            input_values: (B, T, F) normalised log-mel spectrogram from `ASTFeatureExtractor`; any T >= patch_size.
            attention_mask: optional (B, T) frame mask, 1 for real frames and 0 for right padding (as returned by the
                feature extractor with `return_attention_mask=True`). Patches touching padding are hidden from
                attention, and each clip gets the positional grid of its own length, so every clip of a padded batch
                gives the result it gives alone. Without a mask, padding frames are seen like any input, as in the
                original fixed-length model.
            output_attentions: return the attention probabilities of every block, (B, heads, N, N) each.
            output_hidden_states: return the embeddings and the output of every block, (B, N, D) each.

        Returns:
            `BaseModelOutputWithPooling` with `last_hidden_state` (B, N, D) after the final LayerNorm (fewer tokens
            in training mode with patchout) and
            `pooler_output` (B, D) = mean of the [CLS] and [DIST] states.
        """
        output_attentions = self.config.output_attentions if output_attentions is None else output_attentions
        output_hidden_states = (
            self.config.output_hidden_states if output_hidden_states is None else output_hidden_states
        )
        return_dict = self.config.return_dict if return_dict is None else return_dict
        if output_attentions and self.config._attn_implementation != "eager":
            logger.warning_once(
                "output_attentions=True computes attention eagerly; load the model with attn_implementation='eager' "
                "to make that the default."
            )
        _check_input_values(input_values, self.config)

        clip_time = None if attention_mask is None else _clip_time_patches(attention_mask, self.config)
        hidden_states, num_time = self.embeddings(input_values, clip_time)
        key_mask = None
        if clip_time is not None:
            key_mask = _key_mask(clip_time, self.embeddings.grid_frequency, num_time, hidden_states.device)
        hidden_states, key_mask = self.patchout(hidden_states, key_mask, self.embeddings.grid_frequency, num_time)

        all_hidden_states = (hidden_states,) if output_hidden_states else None
        all_attentions = () if output_attentions else None
        for block in self.blocks:
            hidden_states, probs = block(hidden_states, key_mask, output_attentions)
            if output_hidden_states:
                all_hidden_states += (hidden_states,)
            if output_attentions:
                all_attentions += (probs,)

        sequence_output = self.norm(hidden_states)
        pooled_output = (sequence_output[:, 0] + sequence_output[:, 1]) / 2
        if not return_dict:
            extras = tuple(value for value in (all_hidden_states, all_attentions) if value is not None)
            return (sequence_output, pooled_output) + extras
        return BaseModelOutputWithPooling(
            last_hidden_state=sequence_output,
            pooler_output=pooled_output,
            hidden_states=all_hidden_states,
            attentions=all_attentions,
        )


class ASTClassifierHead(nn.Module):
    """LayerNorm + Linear over the pooled embedding: (B, D) -> (B, num_labels)."""

    def __init__(self, config: ASTConfig) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(config.hidden_size, eps=config.head_layer_norm_eps)
        self.fc = nn.Linear(config.hidden_size, config.num_labels)

    def forward(self, pooled_output: torch.Tensor) -> torch.Tensor:
        return self.fc(self.norm(pooled_output))


def classification_loss(logits: torch.Tensor, labels: torch.Tensor, config: ASTConfig) -> torch.Tensor:
    """The loss `config.problem_type` names, inferred as transformers does when unset (and stored in the config).

    logits (B, num_labels); labels (B,) class indices or (B, num_labels) class probabilities (soft targets, e.g. from
    mixup) for single-label, (B, num_labels) targets in [0, 1] for multi-label, (B,) or (B, num_labels) values for
    regression.
    """
    if config.problem_type is None:
        if config.num_labels == 1:
            config.problem_type = "regression"
        elif labels.dtype in (torch.long, torch.int):
            config.problem_type = "single_label_classification"
        else:
            config.problem_type = "multi_label_classification"
    if config.problem_type == "regression":
        return F.mse_loss(logits.squeeze(-1) if config.num_labels == 1 else logits, labels.to(logits.dtype))
    if config.problem_type == "single_label_classification":
        soft_targets = labels.dtype.is_floating_point and labels.shape == logits.shape
        if not soft_targets and (labels.dim() != 1 or labels.dtype.is_floating_point):
            raise ValueError(
                f"single-label classification needs (batch,) integer class indices or (batch, num_labels) class "
                f"probabilities (e.g. from mixup), got {tuple(labels.shape)} {labels.dtype} labels"
            )
        return F.cross_entropy(logits, labels)
    if labels.shape != logits.shape:
        raise ValueError(
            f"multi-label classification needs (batch, num_labels={config.num_labels}) targets, "
            f"got shape {tuple(labels.shape)}"
        )
    return F.binary_cross_entropy_with_logits(logits, labels.to(logits.dtype))


def class_scores(logits: torch.Tensor, problem_type: str | None, function_to_apply: str | None = None) -> torch.Tensor:
    """Scores users read from logits (..., num_labels): the one place that maps `problem_type` to an output function.

    Sigmoid for "multi_label_classification", none for "regression", softmax otherwise (single-label, or unset as in
    transformers' pipeline). `function_to_apply` ("softmax", "sigmoid" or "none") overrides the choice.
    """
    if function_to_apply is None:
        function_to_apply = {"regression": "none", "multi_label_classification": "sigmoid"}.get(problem_type, "softmax")
    if function_to_apply == "softmax":
        return logits.softmax(dim=-1)
    if function_to_apply == "sigmoid":
        return logits.sigmoid()
    if function_to_apply == "none":
        return logits
    raise ValueError(f"function_to_apply must be 'softmax', 'sigmoid' or 'none', got {function_to_apply!r}")


class ASTForAudioClassification(ASTPreTrainedModel):
    """AST with the paper's head: logits = Linear(LayerNorm((CLS + DIST) / 2)). Sigmoid (multi-label) or softmax
    (single-label) is applied outside the model, by the pipeline or the loss."""

    def __init__(self, config: ASTConfig) -> None:
        super().__init__(config)
        self.ast = ASTModel(config)
        self.classifier = ASTClassifierHead(config)
        self.post_init()

    def forward(
        self,
        input_values: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        output_attentions: bool | None = None,
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
    ) -> SequenceClassifierOutput | tuple:
        r"""
        Args:
            input_values, attention_mask, output_attentions, output_hidden_states: as in `ASTModel.forward`.
            labels: optional targets; the loss follows `config.problem_type` (see `classification_loss`).

        Returns:
            `SequenceClassifierOutput` with `logits` (B, num_labels) and `loss` when labels are given.
        """
        return_dict = self.config.return_dict if return_dict is None else return_dict
        outputs = self.ast(
            input_values,
            attention_mask=attention_mask,
            output_attentions=output_attentions,
            output_hidden_states=output_hidden_states,
            return_dict=True,
        )
        logits = self.classifier(outputs.pooler_output)
        loss = None if labels is None else classification_loss(logits, labels, self.config)
        if not return_dict:
            extras = tuple(value for value in (outputs.hidden_states, outputs.attentions) if value is not None)
            return ((loss,) if loss is not None else ()) + (logits,) + extras
        return SequenceClassifierOutput(
            loss=loss, logits=logits, hidden_states=outputs.hidden_states, attentions=outputs.attentions
        )


__all__ = ["ASTEmbeddingOutput", "ASTForAudioClassification", "ASTModel", "ASTPreTrainedModel", "class_scores"]
