"""Configuration of the Audio Spectrogram Transformer (AST, Gong, Chung & Glass, Interspeech 2021)."""

from __future__ import annotations

import os
from typing import Any

from transformers import PretrainedConfig
from transformers.utils import logging

logger = logging.get_logger(__name__)

# transformers' built-in AST (`transformers.ASTConfig`): its model_type, the fields it shares with ours, and the label
# count of the MIT AudioSet checkpoints.
TRANSFORMERS_MODEL_TYPE = "audio-spectrogram-transformer"
TRANSFORMERS_SHARED_FIELDS = (
    "hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size", "hidden_act",
    "hidden_dropout_prob", "attention_probs_dropout_prob", "initializer_range", "patch_size", "qkv_bias",
    "frequency_stride", "time_stride", "max_length", "num_mel_bins", "id2label", "label2id", "problem_type",
    "architectures",
)  # fmt: skip
_AUDIOSET_LABELS = 527


class ASTConfig(PretrainedConfig):
    r"""
    Hyper-parameters of an Audio Spectrogram Transformer. The defaults are the paper's model: a DeiT-Base encoder over
    16x16 patches of a 128-bin log-mel spectrogram, taken with stride 10 along both axes (overlapping patches), for
    1024-frame (10.24 s) AudioSet inputs: a 12 x 101 patch grid.

    Args:
        hidden_size: width D of every token.
        num_hidden_layers: number of pre-norm Transformer blocks.
        num_attention_heads: heads per block; `hidden_size` must be a multiple of it.
        intermediate_size: width of the MLP inside each block.
        hidden_act: MLP activation (`"gelu"` is the exact erf GELU of the original model).
        hidden_dropout_prob: dropout after the positional embedding, the attention projection and the MLP.
        attention_probs_dropout_prob: dropout on attention probabilities.
        initializer_range: std of the truncated-normal initialisation of linear layers and embeddings.
        layer_norm_eps: epsilon of the LayerNorms inside the encoder (1e-6 in the original model).
        head_layer_norm_eps: epsilon of the classifier head's LayerNorm (1e-5, PyTorch's default, in the original).
        patch_size: side of the square spectrogram patches.
        qkv_bias: whether the fused query/key/value projection has a bias.
        frequency_stride: patch stride along the mel axis (10 = 6 bins of overlap).
        time_stride: patch stride along the time axis.
        max_length: number of frames the learned positional grid was built for (1024 for AudioSet, 128 for Speech
            Commands). Inputs of any other length still run: see `ASTEmbeddings`.
        num_mel_bins: mel bins of the input spectrogram.
        patchout_time: training only (PaSST's structured patchout): whole time columns of patches dropped at random
            each training step, the same columns for the whole batch. Inference is unchanged.
        patchout_frequency: training only: whole frequency rows of patches dropped at random each step.
        patchout_random: training only: fraction of the remaining patches dropped uniformly at random each step.
        event_options: frame models: how their scores become sound events unless a caller says otherwise (keys of
            `events.EventOptions`: `threshold`, `low`, `median_window`); None: its defaults. The training script
            stores here the settings it chose on validation clips, so the pipeline, `ast-tag --events` and
            `ast-listen` use them.

    The label maps (`id2label`, `label2id`, `num_labels`) and `problem_type` (`"single_label_classification"`,
    `"multi_label_classification"` or `"regression"`) come from `PretrainedConfig`. `problem_type` chooses both the
    training loss and the pipeline's output function (sigmoid for multi-label, softmax otherwise).
    """

    model_type = "ast"

    # Every field is declared at class level as well as set in `__init__`: transformers >= 5.2x treats configs as
    # dataclasses and only accepts `max_length` (also a generation-parameter name) on save when it is a declared
    # field, while transformers 5.0 accepts it when `__init__` sets it.
    hidden_size: int = 768
    num_hidden_layers: int = 12
    num_attention_heads: int = 12
    intermediate_size: int = 3072
    hidden_act: str = "gelu"
    hidden_dropout_prob: float = 0.0
    attention_probs_dropout_prob: float = 0.0
    initializer_range: float = 0.02
    layer_norm_eps: float = 1e-6
    head_layer_norm_eps: float = 1e-5
    patch_size: int = 16
    qkv_bias: bool = True
    frequency_stride: int = 10
    time_stride: int = 10
    max_length: int = 1024
    num_mel_bins: int = 128
    patchout_time: int = 0
    patchout_frequency: int = 0
    patchout_random: float = 0.0
    event_options: dict[str, Any] | None = None

    def __init__(
        self,
        hidden_size: int = 768,
        num_hidden_layers: int = 12,
        num_attention_heads: int = 12,
        intermediate_size: int = 3072,
        hidden_act: str = "gelu",
        hidden_dropout_prob: float = 0.0,
        attention_probs_dropout_prob: float = 0.0,
        initializer_range: float = 0.02,
        layer_norm_eps: float = 1e-6,
        head_layer_norm_eps: float = 1e-5,
        patch_size: int = 16,
        qkv_bias: bool = True,
        frequency_stride: int = 10,
        time_stride: int = 10,
        max_length: int = 1024,
        num_mel_bins: int = 128,
        patchout_time: int = 0,
        patchout_frequency: int = 0,
        patchout_random: float = 0.0,
        event_options: dict[str, Any] | None = None,
        **kwargs,
    ) -> None:
        self.hidden_size = hidden_size
        self.num_hidden_layers = num_hidden_layers
        self.num_attention_heads = num_attention_heads
        self.intermediate_size = intermediate_size
        self.hidden_act = hidden_act
        self.hidden_dropout_prob = hidden_dropout_prob
        self.attention_probs_dropout_prob = attention_probs_dropout_prob
        self.initializer_range = initializer_range
        self.layer_norm_eps = layer_norm_eps
        self.head_layer_norm_eps = head_layer_norm_eps
        self.patch_size = patch_size
        self.qkv_bias = qkv_bias
        self.frequency_stride = frequency_stride
        self.time_stride = time_stride
        self.max_length = max_length
        self.num_mel_bins = num_mel_bins
        self.patchout_time = patchout_time
        self.patchout_frequency = patchout_frequency
        self.patchout_random = patchout_random
        self.event_options = event_options
        super().__init__(**kwargs)
        if self.id2label and not getattr(self, "label2id", None):
            self.label2id = {label: index for index, label in self.id2label.items()}
        self._check_geometry()

    @classmethod
    def get_config_dict(
        cls, pretrained_model_name_or_path: str | os.PathLike, **kwargs: Any
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        """`PretrainedConfig.get_config_dict`, which also reads the config.json of transformers' built-in AST
        (model_type "audio-spectrogram-transformer", e.g. the MIT `ast-finetuned-*` models) as ours: see
        `from_transformers_dict`. `from_pretrained` goes through here, so `ASTConfig.from_pretrained` reads both."""
        config_dict, kwargs = super().get_config_dict(pretrained_model_name_or_path, **kwargs)
        if config_dict.get("model_type") == TRANSFORMERS_MODEL_TYPE:
            config_dict = cls.from_transformers_dict(config_dict)
        return config_dict, kwargs

    @classmethod
    def from_transformers_dict(cls, config_dict: dict[str, Any]) -> dict[str, Any]:
        """Our config dict for the config dict of transformers' built-in AST.

        The built-in model has one `layer_norm_eps` for the encoder and the head; both of ours get it, so the logits
        are unchanged. The MIT AudioSet checkpoints (527 labels) never set `problem_type`, which makes pipelines apply
        softmax to a multi-label model; such configs get "multi_label_classification".
        """
        fields = {key: config_dict[key] for key in TRANSFORMERS_SHARED_FIELDS if key in config_dict}
        fields["layer_norm_eps"] = fields["head_layer_norm_eps"] = config_dict.get("layer_norm_eps", 1e-12)
        if fields.get("problem_type") is None and len(fields.get("id2label") or ()) == _AUDIOSET_LABELS:
            fields["problem_type"] = "multi_label_classification"
            logger.info("527-label AudioSet checkpoint without problem_type: multi_label_classification (sigmoid)")
        return {"model_type": cls.model_type, **fields}

    def _check_geometry(self) -> None:
        """Reject shapes that cannot form a patch grid, naming the offending field."""
        if self.hidden_size % self.num_attention_heads:
            raise ValueError(
                f"hidden_size ({self.hidden_size}) must be a multiple of num_attention_heads "
                f"({self.num_attention_heads})"
            )
        for name in ("patch_size", "frequency_stride", "time_stride", "max_length", "num_mel_bins"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        for name in ("patchout_time", "patchout_frequency"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise ValueError(f"{name} must be a non-negative integer (patches dropped per step), got {value!r}")
        if not 0 <= self.patchout_random < 1:
            raise ValueError(f"patchout_random is a fraction of patches in [0, 1), got {self.patchout_random!r}")
        for name in ("num_mel_bins", "max_length"):
            if getattr(self, name) < self.patch_size:
                raise ValueError(f"{name} ({getattr(self, name)}) must be at least patch_size ({self.patch_size})")

    @property
    def patch_grid(self) -> tuple[int, int]:
        """(frequency, time) patches of the positional grid, e.g. (12, 101) for 128 x 1024 with stride 10."""
        return self.num_patches(self.num_mel_bins, self.frequency_stride), self.time_patches(self.max_length)

    def time_patches(self, frames: int) -> int:
        """Time patches of an input of `frames` frames (>= patch_size), e.g. 101 for 1024 frames at stride 10."""
        return self.num_patches(frames, self.time_stride)

    def num_patches(self, size: int, stride: int) -> int:
        """Patches of `patch_size` every `stride` along an axis of `size` (>= patch_size): the one grid formula."""
        return (size - self.patch_size) // stride + 1


__all__ = ["TRANSFORMERS_MODEL_TYPE", "TRANSFORMERS_SHARED_FIELDS", "ASTConfig"]
