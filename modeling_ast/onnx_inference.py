"""A saved classifier run by onnxruntime (int8 on CPU by default), usable wherever the PyTorch model is called.

    ast-export-onnx outputs/demo outputs/demo/model.onnx --quantize_int8
    model = ASTOnnxForAudioClassification.from_pretrained("outputs/demo")          # reads outputs/demo/model.int8.onnx
    tagger = pipeline("audio-classification", model=model, feature_extractor="outputs/demo")

Why onnxruntime's dynamic int8 rather than PyTorch's `quantize_dynamic`: on this project's CPU (2-core AMD EPYC,
AVX-512 VNNI) the 10 s forward of the base model ran 3.4-3.9x faster than our fp32 PyTorch forward with onnxruntime
int8 and 2.5-2.7x with PyTorch's dynamic int8 Linear layers (same run, 1 and 2 threads; `benchmarks/int8.py`).

The graph takes only `input_values`. Checkpoints trained with attention masks give the model a (B, T) frame mask for
padded batches; a masked clip's logits are those of the clip alone (see `masking_ast`), so a padded batch is run as
groups of clips of equal real length, each cropped to that length. Inputs are checked by the PyTorch model's own
check (`input_checks.check_inputs`), so both refuse the same inputs with the same messages.

Loading checks what the file records about its source (`conversion.fingerprint`): its labels and config must be the
config's, and with `from_pretrained` its weights those of the checkpoint directory. A file that belongs to another
model, or to the weights a directory held before it was retrained, is refused with both named; so is a file exported
before the record existed, which cannot be checked (export it again).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import torch
from torch import nn
from transformers.modeling_outputs import SequenceClassifierOutput

from .configuration_ast import ASTConfig
from .conversion.fingerprint import CONFIG_KEY, WEIGHTS_KEY, config_differences, saved_weights_sha256
from .masking_ast import length_groups, real_frames
from .input_checks import check_inputs

__all__ = ["INT8_FILE_NAME", "ASTOnnxForAudioClassification"]

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
        self.export_record = dict(self.session.get_modelmeta().custom_metadata_map)
        self._check_recorded_config()

    @classmethod
    def from_pretrained(
        cls, model_dir: str | os.PathLike, onnx_path: str | os.PathLike | None = None, num_threads: int | None = None
    ) -> ASTOnnxForAudioClassification:
        """The config of `model_dir` (a directory or Hub id) with the ONNX file `onnx_path` (a local file; default
        `model_dir/model.int8.onnx`). `num_threads`: onnxruntime's intra-op threads (default: one per core).

        Raises ValueError when the file was exported from another config or labels, or from other weights than those
        in a local `model_dir` (reading them costs one pass over the weight file; a directory without weights, or a
        Hub id, is checked by its config only)."""
        config = ASTConfig.from_pretrained(model_dir)
        config.name_or_path = os.fspath(model_dir)  # names the directory in the checks' messages
        model = cls(config, onnx_path if onnx_path is not None else Path(model_dir) / INT8_FILE_NAME, num_threads)
        model._check_recorded_weights(model_dir)
        return model

    def _check_recorded_config(self) -> None:
        """Raise ValueError unless the file records the config fields and labels of `self.config` (see
        `conversion.fingerprint`)."""
        model_dir = self.config.name_or_path or None
        source = "the config given" if model_dir is None else f"the config of {model_dir}"
        if CONFIG_KEY not in self.export_record or WEIGHTS_KEY not in self.export_record:
            raise ValueError(
                f"{self.onnx_path} does not record the weights and config it was exported from (it was exported "
                f"before modeling_ast recorded them), so it cannot be checked against {source}; "
                + _export_again(model_dir)
            )
        differences = config_differences(json.loads(self.export_record[CONFIG_KEY]), self.config)
        if differences:
            raise ValueError(
                f"{self.onnx_path} was exported with another config than {source} (exported vs current: "
                f"{'; '.join(differences)}): it belongs to another model or to an earlier version of it; "
                + _export_again(model_dir)
            )

    def _check_recorded_weights(self, model_dir: str | os.PathLike) -> None:
        """Raise ValueError when a local `model_dir` holds other weights than the file was exported from."""
        current = saved_weights_sha256(model_dir) if Path(model_dir).is_dir() else None
        exported = self.export_record[WEIGHTS_KEY]
        if current is not None and current != exported:
            raise ValueError(
                f"{self.onnx_path} was exported from other weights than those in {model_dir} (sha256 {exported[:12]} "
                f"vs {current[:12]}): the model was retrained or replaced after the export; "
                + _export_again(model_dir)
            )

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
        """input_values (B, T, num_mel_bins) float32, attention_mask (B, T) or None -> logits (B, num_labels).

        Checked as the PyTorch model checks them (`check_inputs`, same messages); T must also be at most max_length
        (the range of the exported graph). Other keyword arguments (`return_dict`, ...) are accepted and ignored: the
        output is always a `SequenceClassifierOutput`."""
        check_inputs(input_values, attention_mask, self.config, self.dtype)
        frames = input_values.shape[1]
        if frames > self.config.max_length:
            raise ValueError(
                f"input_values has {frames} frames; the ONNX graph takes {self.config.patch_size} to "
                f"{self.config.max_length} (tag long recordings with chunk_length_s)"
            )
        values = input_values.detach().to("cpu", torch.float32).numpy()  # float32 already, unless under autocast
        lengths = _real_frames(attention_mask, self.config) if attention_mask is not None else None
        if lengths is None:
            return SequenceClassifierOutput(logits=torch.from_numpy(self._run(values)))
        groups = length_groups(lengths, max_padding=0.0)  # equal lengths: the graph has no mask to hide padding
        grouped = np.concatenate(
            [self._run(np.ascontiguousarray(values[rows, : lengths[rows[0]]])) for rows in groups]
        )
        # Rows back in batch order; built from the groups' results only, so no row can be left unwritten.
        order = np.argsort(np.concatenate([np.asarray(rows) for rows in groups]))
        return SequenceClassifierOutput(logits=torch.from_numpy(grouped[order]))

    def _run(self, values: np.ndarray) -> np.ndarray:
        """(B, T, F) float32 -> (B, num_labels) float32 logits."""
        return self.session.run(["logits"], {"input_values": values})[0]


def _export_again(model_dir: str | os.PathLike | None) -> str:
    """How to make a file that matches `model_dir` (MODEL_DIR when unknown), for error messages."""
    output = "MODEL_DIR/model.onnx" if model_dir is None else Path(model_dir) / "model.onnx"
    return f"export it again: ast-export-onnx {model_dir or 'MODEL_DIR'} {output} --quantize_int8 --overwrite"


def _real_frames(attention_mask: torch.Tensor, config: ASTConfig) -> list[int] | None:
    """Frames each clip of a right-padded batch is run with; None when nothing is padded.

    A clip shorter than one patch keeps the padding frames that complete its first patch, as the masked PyTorch
    model does (`clip_time_patches`; `real_frames` rejects masks that are not right padding)."""
    frames = real_frames(attention_mask)
    return None if frames is None else [max(count, config.patch_size) for count in frames]
