"""ONNX export of `ASTForAudioClassification` with dynamic batch and time axes (needs `pip install ".[onnx]"`).

The graph takes `input_values` (batch, frames, num_mel_bins) — the feature extractor's output, so feature extraction
stays in Python or wherever the caller computes Kaldi fbanks — and returns `logits` (batch, num_labels). Frames may
vary from patch_size (16, about 0.175 s) up to the model's `max_length` (1024 = 10.24 s for AudioSet models): in that
range the positional grid is a prefix crop, a plain Slice in ONNX. Longer recordings are tagged in windows (see the
pipeline's `chunk_length_s`), as the model was trained on windows of at most `max_length` frames.

Each file records the hash of the weights and the config fields it was exported from (`fingerprint`), which
`ASTOnnxForAudioClassification` checks against the checkpoint directory it is loaded beside.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

from ..modeling_ast import ASTForAudioClassification
from .fingerprint import export_metadata
from .io import atomic_output_file, check_not_an_input, check_output_parent, input_paths, recover_interrupted_output

__all__ = ["export_onnx", "quantize_dynamic_int8"]


class _LogitsOnly(torch.nn.Module):
    """input_values (B, T, F) -> logits (B, num_labels), without the output dataclass."""

    def __init__(self, model: ASTForAudioClassification) -> None:
        super().__init__()
        self.model = model

    def forward(self, input_values: torch.Tensor) -> torch.Tensor:
        return self.model(input_values, return_dict=True).logits


def _check_target(path: Path, overwrite: bool, inputs: list[Path]) -> None:
    """Raise ValueError when `path` cannot be written: a directory, below a file, one of `inputs` or a file of an
    input model directory (its weights or configs), or an existing file without `overwrite`."""
    path = check_output_parent(path)
    check_not_an_input(path, inputs)
    if path.is_dir():
        raise ValueError(f"output path {path} is a directory; give the path of the .onnx file to write")
    if path.exists() and not overwrite:
        raise ValueError(f"{path} already exists; pass overwrite=True (--overwrite) to replace it")


def export_onnx(
    model: ASTForAudioClassification,
    output_path: str | os.PathLike,
    opset: int = 18,
    quantize_int8: bool = False,
    overwrite: bool = False,
) -> Path:
    """Write `model` as an ONNX file; with `quantize_int8`, also `<name>.int8.onnx` (dynamic int8 weights).

    Returns the path of the float model. Each file is written to a temporary name and renamed, so a failed export
    leaves nothing behind, and records the weights and config it was made from (`fingerprint.export_metadata`).
    Raises ValueError when an output path is a directory or lies below a file, is a file of the directory `model` was
    loaded from (its weights or configs), or exists and `overwrite` is False.
    """
    config = model.config
    model = model.eval()
    output_path = Path(output_path)
    int8_path = output_path.with_suffix(".int8.onnx")
    for path in (output_path, int8_path):  # first, so a killed export's partial files go even if this one is refused
        recover_interrupted_output(path)
    inputs = input_paths(model)
    _check_target(output_path, overwrite, inputs)
    if quantize_int8:
        _check_target(int8_path, overwrite, inputs)
    output_path.parent.mkdir(parents=True, exist_ok=True)
    example = torch.zeros(2, (config.patch_size + config.max_length) // 2, config.num_mel_bins)  # not at a bound
    frames = torch.export.Dim("frames", min=config.patch_size, max=config.max_length)
    batch = torch.export.Dim("batch", min=1, max=1024)
    with atomic_output_file(output_path) as partial:
        program = torch.onnx.export(
            _LogitsOnly(model).eval(),
            (example,),
            input_names=["input_values"],
            output_names=["logits"],
            dynamic_shapes={"input_values": {0: batch, 1: frames}},
            opset_version=opset,
            dynamo=True,
            external_data=False,
            verbose=False,
        )
        program.model.metadata_props.update(export_metadata(model))
        program.save(str(partial))
    if quantize_int8:
        quantize_dynamic_int8(output_path, int8_path)
    return output_path


def quantize_dynamic_int8(source: str | os.PathLike, target: str | os.PathLike) -> Path:
    """onnxruntime's dynamic quantisation: int8 weights for MatMul/Gemm, activations quantised at run time.

    Weights are quantised per output channel to 7 bits (`reduce_range`): on x86 CPUs without VNNI, onnxruntime's
    u8 x s8 kernel adds pairs of products in saturating int16 (VPMADDUBSW), and full-range int8 weights overflow it
    (logit errors of 10 % were seen on such a machine against 1-2 % with VNNI). With 7-bit weights a pair stays below
    2**15, so the integer results, and the logits, are the same on every x86 CPU.
    """
    from onnxruntime.quantization import QuantType, quantize_dynamic

    target = Path(target)
    with atomic_output_file(target) as partial:
        quantize_dynamic(str(source), str(partial), weight_type=QuantType.QInt8, per_channel=True, reduce_range=True)
    return target
