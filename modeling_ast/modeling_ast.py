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

import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from safetensors import SafetensorError
from torch import nn
from transformers import PreTrainedModel
from transformers import initialization as init
from transformers.activations import ACT2FN
from transformers.modeling_layers import GradientCheckpointingLayer
from transformers.modeling_outputs import BaseModelOutputWithPooling, SequenceClassifierOutput
from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS
from transformers.processing_utils import Unpack
from transformers.utils import ModelOutput, TransformersKwargs
from transformers.utils.generic import can_return_tuple

from .configuration_ast import ASTConfig
from .input_checks import check_checkpoint_path, check_inputs, unreadable_safetensors
from .masking_ast import (
    ASTPatchout,
    clip_time_patches,
    length_groups,
    mask_for_attention,
    real_frames,
    time_column_mask,
    token_mask,
)

# The decorator that records hidden states and attentions (`_can_record_outputs`) into the model output. Later 5.x
# releases kept `check_model_inputs` as a name, but it no longer records anything there.
try:
    from transformers.utils.output_capturing import capture_outputs
except ImportError:  # transformers 5.0
    from transformers.utils.generic import check_model_inputs as capture_outputs


class ASTPatchEmbed(nn.Module):
    """Overlapping 16x16 patches of the spectrogram, projected to D: (B, T, F) -> (B, f * t, D)."""

    def __init__(self, config: ASTConfig) -> None:
        super().__init__()
        stride = (config.frequency_stride, config.time_stride)
        self.proj = nn.Conv2d(1, config.hidden_size, kernel_size=config.patch_size, stride=stride)

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


def eager_attention_forward(
    module: nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    scaling: float,
    dropout: float = 0.0,
    **kwargs: Unpack[TransformersKwargs],
) -> tuple[torch.Tensor, torch.Tensor]:
    """Attention written out: the "eager" implementation, and the only one that returns its probabilities.

    query, key, value: (B, heads, N, head_dim); attention_mask: None or (B, 1, 1, N) boolean, True for the keys that
    may be attended to. Returns the context (B, N, heads, head_dim), as every function of transformers' attention
    interface does, and the probabilities (B, heads, N, N), normalised in float32 (exactly, for half precision too).
    """
    scores = (query * scaling) @ key.transpose(-2, -1)
    if attention_mask is not None:
        scores = scores.masked_fill(~attention_mask, torch.finfo(scores.dtype).min)
    probs = F.dropout(scores.softmax(dim=-1, dtype=torch.float32).to(query.dtype), p=dropout, training=module.training)
    return (probs @ value).transpose(1, 2), probs


class ASTAttention(nn.Module):
    """Multi-head self-attention with a fused qkv projection (rows ordered q, k, v as in the original checkpoints).

    The attention itself is the function `config._attn_implementation` names in transformers' attention interface
    (`ALL_ATTENTION_FUNCTIONS`: "sdpa", "flash_attention_2", "flex_attention", ...) or `eager_attention_forward`, read
    on every call so that `model.set_attn_implementation` switches it.
    """

    def __init__(self, config: ASTConfig) -> None:
        super().__init__()
        self.config = config
        self.num_heads = config.num_attention_heads
        self.head_dim = config.hidden_size // config.num_attention_heads
        self.scaling = self.head_dim**-0.5
        self.is_causal = False  # read by transformers' attention functions
        self.qkv = nn.Linear(config.hidden_size, 3 * config.hidden_size, bias=config.qkv_bias)
        self.attention_dropout = config.attention_probs_dropout_prob
        self.proj = nn.Linear(config.hidden_size, config.hidden_size)
        self.proj_drop = nn.Dropout(config.hidden_dropout_prob)

    def forward(
        self,
        hidden_states: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        **kwargs: Unpack[TransformersKwargs],
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(B, N, D) -> (B, N, D), and the attention probabilities (B, heads, N, N) where the implementation gives
        them (eager only). `attention_mask` is the token mask in this implementation's form (`mask_for_attention`)."""
        batch_size, num_tokens, hidden_size = hidden_states.shape
        qkv = self.qkv(hidden_states).view(batch_size, num_tokens, 3, self.num_heads, self.head_dim)
        query, key, value = qkv.permute(2, 0, 3, 1, 4).unbind(0)  # each (B, heads, N, head_dim)
        attention: Callable = eager_attention_forward
        if self.config._attn_implementation != "eager":
            attention = ALL_ATTENTION_FUNCTIONS[self.config._attn_implementation]
        dropout = self.attention_dropout if self.training else 0.0
        context, probs = attention(
            self, query, key, value, attention_mask, dropout=dropout, scaling=self.scaling, **kwargs
        )
        context = context.reshape(batch_size, num_tokens, hidden_size)
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
    """Pre-norm Transformer block: x + attn(norm1(x)), then x + mlp(norm2(x)); (B, N, D) -> (B, N, D)."""

    def __init__(self, config: ASTConfig) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.attn = ASTAttention(config)
        self.norm2 = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.mlp = ASTMLP(config)

    def forward(
        self,
        hidden_states: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        **kwargs: Unpack[TransformersKwargs],
    ) -> torch.Tensor:
        attended, _ = self.attn(self.norm1(hidden_states), attention_mask, **kwargs)
        hidden_states = hidden_states + attended
        return hidden_states + self.mlp(self.norm2(hidden_states))


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
    _supports_flash_attn = True
    _supports_flex_attn = True
    _supports_attention_backend = True
    _can_compile_fullgraph = True
    # Hidden states: the input of the first block, then each block's output (before the final LayerNorm).
    _can_record_outputs = {"hidden_states": ASTBlock, "attentions": ASTAttention}
    # (name or path, from_pretrained kwargs) -> our state dict for a checkpoint in another layout, None for ours (see
    # `from_pretrained`). `modeling_ast.registration` installs the reader of transformers' built-in AST checkpoints;
    # where this file runs as Hub remote code there is none.
    checkpoint_reader: ClassVar[Callable[[str | os.PathLike, dict], dict[str, torch.Tensor] | None] | None] = None

    @classmethod
    def _can_set_attn_implementation(cls) -> bool:
        """True: every attention call dispatches on `config._attn_implementation` (see `ASTAttention`).

        transformers guesses this from the module's source text, by patterns that differ between its releases.
        """
        return True

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path: str | os.PathLike | None, *model_args, **kwargs):
        """`PreTrainedModel.from_pretrained`, which also loads checkpoints `checkpoint_reader` recognises.

        When the reader returns a state dict for `pretrained_model_name_or_path` (for example for transformers'
        built-in AST, `MIT/ast-finetuned-*`), the model is built from the same source's config (which `ASTConfig`
        reads in either format) and that state dict, with every other argument unchanged.

        A local path that does not exist raises FileNotFoundError saying so (transformers would call it a malformed
        Hub id), and a damaged safetensors file is named in the error (pipeline, ast-tag and HEAR load through here).
        """
        check_checkpoint_path(pretrained_model_name_or_path)
        try:
            reader = cls.checkpoint_reader
            state_dict = None
            if reader is not None and pretrained_model_name_or_path is not None and "state_dict" not in kwargs:
                state_dict = reader(pretrained_model_name_or_path, kwargs)
            if state_dict is None:
                return super().from_pretrained(pretrained_model_name_or_path, *model_args, **kwargs)
            kwargs.setdefault("config", pretrained_model_name_or_path)
            model = super().from_pretrained(None, *model_args, state_dict=state_dict, **kwargs)
        except SafetensorError as err:
            # The same type, so code that catches it still does and pipeline passes it on unwrapped.
            raise SafetensorError(
                f"could not read {unreadable_safetensors(pretrained_model_name_or_path)}: {err} (the file is damaged "
                "or was cut short; save or download it again)"
            ) from err
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
        num_time = self.config.time_patches(input_values.shape[1])
        patches = output.last_hidden_state[:, 2:].unflatten(1, (self.config.patch_grid[0], num_time))
        patch_mask = None
        if attention_mask is not None:
            clip_time = clip_time_patches(attention_mask, self.config) or [num_time] * input_values.shape[0]
            patch_mask = time_column_mask(clip_time, num_time, patches.device)
        return ASTEmbeddingOutput(
            clip_embedding=output.pooler_output, patch_embeddings=patches, patch_mask=patch_mask
        )

    @capture_outputs(tie_last_hidden_states=False)
    def forward(
        self,
        input_values: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        **kwargs: Unpack[TransformersKwargs],
    ) -> BaseModelOutputWithPooling:
        r"""
        Args:
            input_values: (B, T, F) normalised log-mel spectrogram from `ASTFeatureExtractor`; any T >= patch_size.
            attention_mask: optional (B, T) frame mask, 1 for real frames and 0 for right padding (as returned by the
                feature extractor with `return_attention_mask=True`). Patches touching padding are hidden from
                attention, and each clip gets the positional grid of its own length, so every clip of a padded batch
                gives the result it gives alone. Without a mask, padding frames are seen like any input, as in the
                original fixed-length model.
            output_attentions: return the attention probabilities of every block, (B, heads, N, N) each (with
                attn_implementation="eager"; the other implementations do not compute them).
            output_hidden_states: return the input of the first block and the output of every block, (B, N, D) each.
            return_dict: False returns the outputs as a tuple.

        Returns:
            `BaseModelOutputWithPooling` with `last_hidden_state` (B, N, D) after the final LayerNorm (fewer tokens
            in training mode with patchout) and
            `pooler_output` (B, D) = mean of the [CLS] and [DIST] states.
        """
        check_inputs(input_values, attention_mask, self.config, self.embeddings.patch_embed.proj.weight.dtype)
        clip_time = None if attention_mask is None else clip_time_patches(attention_mask, self.config)
        hidden_states, num_time = self.embeddings(input_values, clip_time)
        num_frequency = self.config.patch_grid[0]
        tokens = None if clip_time is None else token_mask(clip_time, num_frequency, num_time, hidden_states.device)
        hidden_states, tokens = self.patchout(hidden_states, tokens, num_frequency, num_time)
        mask = mask_for_attention(self.config, hidden_states, tokens)
        for block in self.blocks:
            hidden_states = block(hidden_states, mask, **kwargs)
        sequence_output = self.norm(hidden_states)
        pooled_output = (sequence_output[:, 0] + sequence_output[:, 1]) / 2
        return BaseModelOutputWithPooling(last_hidden_state=sequence_output, pooler_output=pooled_output)


class ASTClassifierHead(nn.Module):
    """LayerNorm + Linear over the pooled embedding: (B, D) -> (B, num_labels)."""

    def __init__(self, config: ASTConfig) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(config.hidden_size, eps=config.head_layer_norm_eps)
        self.fc = nn.Linear(config.hidden_size, config.num_labels)

    def forward(self, pooled_output: torch.Tensor) -> torch.Tensor:
        return self.fc(self.norm(pooled_output))


def _classification_loss(logits: torch.Tensor, labels: torch.Tensor, config: ASTConfig) -> torch.Tensor:
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

    @can_return_tuple
    def forward(
        self,
        input_values: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        **kwargs: Unpack[TransformersKwargs],
    ) -> SequenceClassifierOutput:
        r"""
        Args:
            input_values, attention_mask, output_attentions, output_hidden_states, return_dict: as in
                `ASTModel.forward`.
            labels: optional targets; the loss follows `config.problem_type` (see `_classification_loss`).

        Returns:
            `SequenceClassifierOutput` with `logits` (B, num_labels) and `loss` when labels are given.
        """
        # Before the mask is used to choose the path, so every path refuses bad inputs alike.
        check_inputs(input_values, attention_mask, self.config, self.ast.embeddings.patch_embed.proj.weight.dtype)
        if self._runs_in_length_groups(attention_mask, kwargs):
            logits = self._grouped_logits(input_values, attention_mask)
            loss = None if labels is None else _classification_loss(logits, labels, self.config)
            return SequenceClassifierOutput(loss=loss, logits=logits)
        outputs = self.ast(input_values, attention_mask=attention_mask, **kwargs)
        logits = self.classifier(outputs.pooler_output)
        loss = None if labels is None else _classification_loss(logits, labels, self.config)
        return SequenceClassifierOutput(
            loss=loss, logits=logits, hidden_states=outputs.hidden_states, attentions=outputs.attentions
        )

    def _runs_in_length_groups(self, attention_mask: torch.Tensor | None, kwargs: dict[str, Any]) -> bool:
        """Inference on a padded batch of which only the logits are asked: run it in groups of similar length.

        Training (patchout draws one grid per batch) and calls that ask for hidden states or attentions keep the
        single padded batch."""
        if self.training or attention_mask is None or attention_mask.shape[0] < 2:
            return False
        asked = ("output_hidden_states", "output_attentions")
        return not any(kwargs.get(name, getattr(self.config, name)) for name in asked) and not bool(
            attention_mask.bool().all()
        )

    def _grouped_logits(self, input_values: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """(B, T, F) masked batch -> (B, num_labels) logits, each group of similar length cut to its longest clip
        (at least one patch of frames) and run alone: the same logits as the padded batch, without its padding cost.
        """
        frames = real_frames(attention_mask)  # not None: `_runs_in_length_groups` saw padding
        logits = input_values.new_empty(input_values.shape[0], self.config.num_labels)
        for group in length_groups(frames):
            index = torch.tensor(group, device=input_values.device)
            kept = min(input_values.shape[1], max(self.config.patch_size, max(frames[i] for i in group)))
            pooled = self.ast(input_values[index, :kept], attention_mask=attention_mask[index, :kept]).pooler_output
            logits[index] = self.classifier(pooled)
        return logits


__all__ = ["ASTEmbeddingOutput", "ASTForAudioClassification", "ASTModel", "ASTPreTrainedModel", "class_scores"]
