"""Frame-level AST for sound event detection: one row of logits per time column of the patch grid.

Shapes (as in `modeling_ast.py`): B batch, T frames, F mel bins, f x t patch grid, D hidden size, C labels.

AST already computes what an event detector needs: a patch state for every 16-frame column, one column every
`time_stride` frames (100 ms for the released models). `ASTForAudioFrameClassification` takes the mean of each
column's final patch states over frequency and applies the classifier head (LayerNorm + Linear) to it: logits
(B, t, C). Column j spans frames [j * time_stride, j * time_stride + 16); its centre in seconds is
`column_centres(t)` (the geometry HEAR's timestamps use, `fbank.FrameSpec.centre_x2`). Events overlap, so the task is
multi-label by default (sigmoid per column and label).

Training takes strong labels (frame targets `labels`, (B, t, C)) and weak labels (clip targets `clip_labels`,
(B, C)), also mixed in one batch (`strong`, (B,) bool, says which clips have frame targets). A weak clip's frame
scores are pooled into a clip score with linear-softmax pooling, sum(p^2) / sum(p) over its real columns (Wang, Li &
Metze, ICASSP 2019), so clip labels train the frames. With an attention mask, padded columns are hidden from
attention, set to 0 in the logits and left out of every loss.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from transformers.processing_utils import Unpack
from transformers.utils import ModelOutput, TransformersKwargs
from transformers.utils.generic import can_return_tuple

from .configuration_ast import ASTConfig
from .events import ColumnGrid
from .fbank import FrameSpec
from .masking_ast import clip_time_patches, time_column_mask
from .modeling_ast import ASTClassifierHead, ASTModel, ASTPreTrainedModel

__all__ = [
    "ASTForAudioFrameClassification", "ASTFrameClassifierOutput", "column_centres", "column_grid", "column_hop",
    "linear_softmax_pool",
]


@dataclass
class ASTFrameClassifierOutput(ModelOutput):
    """Outputs of `ASTForAudioFrameClassification`.

    Args:
        loss: () strong and weak losses together, when targets are given.
        logits: (B, t, C) one row per time column; padded columns hold 0.
        column_mask: (B, t) True for each clip's real columns (all True without an attention mask).
        hidden_states, attentions: as in `ASTModel`, when asked for.
    """

    loss: torch.Tensor | None = None
    logits: torch.Tensor | None = None
    column_mask: torch.Tensor | None = None
    hidden_states: tuple[torch.Tensor, ...] | None = None
    attentions: tuple[torch.Tensor, ...] | None = None


def column_centres(config: ASTConfig, num_time: int, sampling_rate: int = 16000) -> torch.Tensor:
    """(num_time,) float64: the centre in seconds of each time column of a model of `config`; columns are
    `column_hop(config, sampling_rate)` apart."""
    spec = FrameSpec.for_rate(sampling_rate)
    first = spec.centre_x2(0, config.patch_size)
    return first / (2 * sampling_rate) + column_hop(config, sampling_rate) * torch.arange(num_time, dtype=torch.float64)


def column_hop(config: ASTConfig, sampling_rate: int = 16000) -> float:
    """Seconds between the centres of neighbouring time columns: `time_stride` frame shifts (0.1 s at stride 10)."""
    return config.time_stride * FrameSpec.for_rate(sampling_rate).shift / sampling_rate


def column_grid(config: ASTConfig, duration: float, sampling_rate: int = 16000) -> ColumnGrid:
    """Where the columns of a model of `config` sit in a recording of `duration` seconds (`events.ColumnGrid`): the
    one place that turns column indices into event times (pipeline, streaming and training evaluation)."""
    first = FrameSpec.for_rate(sampling_rate).centre_x2(0, config.patch_size) / (2 * sampling_rate)
    return ColumnGrid(first=first, hop=column_hop(config, sampling_rate), duration=duration)


def linear_softmax_pool(scores: torch.Tensor, column_mask: torch.Tensor) -> torch.Tensor:
    """Clip scores (B, C) from frame scores (B, t, C) in [0, 1]: sum(p^2) / sum(p) over the real columns.

    Loud frames weigh most, so a short event gives its clip a high score while silence does not dilute it (a mean
    would), and, unlike max pooling, every frame gets a gradient.
    """
    kept = scores * column_mask[..., None].to(scores.dtype)
    return (kept * kept).sum(dim=1) / kept.sum(dim=1).clamp_min(torch.finfo(scores.dtype).tiny)


class ASTForAudioFrameClassification(ASTPreTrainedModel):
    """AST with a per-column head for sound event detection (see the module docstring)."""

    def __init__(self, config: ASTConfig) -> None:
        if config.patchout_time or config.patchout_random:
            raise ValueError(
                "frame classification needs every time column in training: set patchout_time and patchout_random to "
                f"0 (got {config.patchout_time} and {config.patchout_random}); patchout_frequency may stay"
            )
        if config.problem_type is None:
            config.problem_type = "multi_label_classification"  # events overlap
        if config.problem_type != "multi_label_classification":
            raise ValueError(
                f"frame classification is multi-label (events overlap); got problem_type {config.problem_type!r}"
            )
        super().__init__(config)
        self.ast = ASTModel(config)
        self.classifier = ASTClassifierHead(config)
        self.post_init()

    def column_centres(self, num_time: int, sampling_rate: int = 16000) -> torch.Tensor:
        """(num_time,) float64: the centre of each time column in seconds, for features at `sampling_rate`."""
        return column_centres(self.config, num_time, sampling_rate)

    @can_return_tuple
    def forward(
        self,
        input_values: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        clip_labels: torch.Tensor | None = None,
        strong: torch.Tensor | None = None,
        **kwargs: Unpack[TransformersKwargs],
    ) -> ASTFrameClassifierOutput:
        r"""
        Args:
            input_values, attention_mask, output_attentions, output_hidden_states, return_dict: as in
                `ASTModel.forward`.
            labels: (B, t, C) frame targets in [0, 1] (strong labels, e.g. from onsets and offsets).
            clip_labels: (B, C) clip targets in [0, 1] (weak labels), trained through `linear_softmax_pool`.
            strong: (B,) bool, which clips' `labels` hold frame targets; the others learn from `clip_labels`.
                Default: all clips strong when `labels` is given, else all weak.

        Returns:
            `ASTFrameClassifierOutput` with `logits` (B, t, C), `column_mask` (B, t) and `loss` when targets are
            given: binary cross-entropy over the strong clips' real columns plus over the weak clips' pooled scores.
        """
        outputs = self.ast(input_values, attention_mask=attention_mask, **kwargs)
        num_time = self.config.time_patches(input_values.shape[1])
        patches = outputs.last_hidden_state[:, 2:]
        columns = patches.unflatten(1, (patches.shape[1] // num_time, num_time)).mean(dim=1)  # (B, t, D)
        logits = self.classifier(columns)
        clip_time = None if attention_mask is None else clip_time_patches(attention_mask, self.config)
        column_mask = time_column_mask(clip_time or [num_time] * logits.shape[0], num_time, logits.device)
        logits = logits.masked_fill(~column_mask[..., None], 0.0)
        loss = self._loss(logits, column_mask, labels, clip_labels, strong)
        return ASTFrameClassifierOutput(
            loss=loss, logits=logits, column_mask=column_mask, hidden_states=outputs.hidden_states,
            attentions=outputs.attentions,
        )  # fmt: skip

    def _loss(
        self,
        logits: torch.Tensor,
        column_mask: torch.Tensor,
        labels: torch.Tensor | None,
        clip_labels: torch.Tensor | None,
        strong: torch.Tensor | None,
    ) -> torch.Tensor | None:
        if labels is None and clip_labels is None:
            return None
        batch = logits.shape[0]
        if strong is None:
            strong = torch.full((batch,), labels is not None, dtype=torch.bool, device=logits.device)
        strong = strong.to(device=logits.device, dtype=torch.bool)
        loss = logits.new_zeros(())
        if bool(strong.any()):
            if labels is None or labels.shape != logits.shape:
                raise ValueError(
                    f"strong clips need frame targets `labels` of shape (batch, columns, labels) = "
                    f"{tuple(logits.shape)}, got {None if labels is None else tuple(labels.shape)}"
                )
            real = column_mask & strong[:, None]
            loss = loss + F.binary_cross_entropy_with_logits(logits[real], labels[real].to(logits.dtype))
        if not bool(strong.all()):
            expected = (batch, logits.shape[-1])
            if clip_labels is None or tuple(clip_labels.shape) != expected:
                raise ValueError(
                    f"weak clips need clip targets `clip_labels` of shape (batch, labels) = {expected}, got "
                    f"{None if clip_labels is None else tuple(clip_labels.shape)}"
                )
            weak = ~strong
            pooled = linear_softmax_pool(logits[weak].float().sigmoid(), column_mask[weak])
            targets = clip_labels[weak].float()
            loss = loss + F.binary_cross_entropy(pooled.clamp(1e-7, 1 - 1e-7), targets)
        return loss
