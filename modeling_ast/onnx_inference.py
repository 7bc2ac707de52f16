"""A saved classifier run by onnxruntime (int8 on CPU by default), usable wherever the PyTorch model is called.

    ast-export-onnx outputs/demo outputs/demo/model.onnx --quantize_int8
    model = ASTOnnxForAudioClassification.from_pretrained("outputs/demo")          # reads outputs/demo/model.int8.onnx
    tagger = pipeline("audio-classification", model=model, feature_extractor="outputs/demo")

Why onnxruntime's dynamic int8 rather than PyTorch's `quantize_dynamic`: on this project's CPU (2-core AMD EPYC,
AVX-512 VNNI) the 10 s forward of the base model ran 3.4-3.9x faster than our fp32 PyTorch forward with onnxruntime
int8 and 2.5-2.7x with PyTorch's dynamic int8 Linear layers (same run, 1 and 2 threads; `benchmarks/int8.py`).

The graph takes only `input_values`. Checkpoints trained with attention masks give the model a (B, T) frame mask for
padded batches; a masked clip's logits are those of the clip alone (see `masking_ast`), so a padded batch is run as
groups of clips of equal real length, each cropped to that length.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
from torch import nn
from transformers.modeling_outputs import SequenceClassifierOutput

from .configuration_ast import ASTConfig
from .masking_ast import length_groups, real_frames

INT8_FILE_NAME = "model.int8.onnx"


class ASTOnnxForAudioClassification(nn.Module):
    """`ASTForAudioClassification`'s inference interface over an onnxruntime session on CPU.

    It has the attributes `pipeline` reads (`config`, `device`, `dtype`, `can_generate`, `input_modalities`), so
    `pipeline("audio-classification", model=this, feature_extractor=model_dir)` runs it, long-audio mode included.
    """

    main_input_name = "input_values"
    input_modalities = ("audio",)

    def __init__(self, config: ASTConfig, onnx_path: str | os.PathLike, num_threads: int | None = None) -> None:
        super().__init__()
        import onnxruntime

        self.config = config
        self.onnx_path = Path(onnx_path)
        if not self.onnx_path.is_file():
            raise ValueError(
                f"no ONNX file at {self.onnx_path}; write one with `ast-export-onnx MODEL_DIR "
                "MODEL_DIR/model.onnx --quantize_int8` (model.int8.onnx is written beside model.onnx)"
            )
        options = onnxruntime.SessionOptions()
        if num_threads is not None:
            options.intra_op_num_threads = num_threads
        self.session = onnxruntime.InferenceSession(
            str(self.onnx_path), options, providers=["CPUExecutionProvider"]
        )

    @classmethod
    def from_pretrained(
        cls, model_dir: str | os.PathLike, onnx_path: str | os.PathLike | None = None, num_threads: int | None = None
    ) -> ASTOnnxForAudioClassification:
        """The config of `model_dir` (a directory or Hub id) with the ONNX file `onnx_path` (a local file; default
        `model_dir/model.int8.onnx`). `num_threads`: onnxruntime's intra-op threads (default: one per core)."""
        config = ASTConfig.from_pretrained(model_dir)
        return cls(config, onnx_path if onnx_path is not None else Path(model_dir) / INT8_FILE_NAME, num_threads)

    @property
    def device(self) -> torch.device:
        return torch.device("cpu")

    @property
    def dtype(self) -> torch.dtype:
        return torch.float32

    @staticmethod
    def can_generate() -> bool:
        return False

    def forward(
        self, input_values: torch.Tensor, attention_mask: torch.Tensor | None = None, **kwargs
    ) -> SequenceClassifierOutput:
        """input_values (B, T, num_mel_bins), attention_mask (B, T) or None -> logits (B, num_labels).

        T must lie in [patch_size, max_length] (the range of the exported graph). Other keyword arguments
        (`return_dict`, ...) are accepted and ignored: the output is always a `SequenceClassifierOutput`."""
        batch, frames, _ = input_values.shape
        if not self.config.patch_size <= frames <= self.config.max_length:
            raise ValueError(
                f"input_values has {frames} frames; the ONNX graph takes {self.config.patch_size} to "
                f"{self.config.max_length} (pad short clips to one patch, tag long ones with chunk_length_s)"
            )
        values = input_values.detach().to("cpu", torch.float32).numpy()
        lengths = _real_frames(attention_mask, self.config) if attention_mask is not None else None
        if lengths is None:
            return SequenceClassifierOutput(logits=torch.from_numpy(self._run(values)))
        logits = np.empty((batch, self.config.num_labels), dtype=np.float32)
        for rows in length_groups(lengths, max_padding=0.0):  # equal lengths: the graph has no mask to hide padding
            logits[rows] = self._run(np.ascontiguousarray(values[rows, : lengths[rows[0]]]))
        return SequenceClassifierOutput(logits=torch.from_numpy(logits))

    def _run(self, values: np.ndarray) -> np.ndarray:
        """(B, T, F) float32 -> (B, num_labels) float32 logits."""
        return self.session.run(["logits"], {"input_values": values})[0]


def _real_frames(attention_mask: torch.Tensor, config: ASTConfig) -> list[int] | None:
    """Frames each clip of a right-padded batch is run with; None when nothing is padded.

    A clip shorter than one patch keeps the padding frames that complete its first patch, as the masked PyTorch
    model does (`clip_time_patches`; `real_frames` rejects masks that are not right padding)."""
    frames = real_frames(attention_mask)
    return None if frames is None else [max(count, config.patch_size) for count in frames]
