"""What an exported ONNX file was made from, stored in its metadata and checked when it is loaded.

`ast-export-onnx` records a sha256 of the model's weights and the config fields that fix what the graph computes and
what its outputs mean (labels, output function, geometry) in the file's `metadata_props` (onnxruntime's dynamic
quantisation keeps them in the int8 file). `ASTOnnxForAudioClassification` compares them with the checkpoint
directory it runs beside, so an export that is older than the weights (the model was retrained into the same
directory) or belongs to another model is refused instead of giving wrong scores under the directory's label names.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from ..configuration_ast import ASTConfig
from .io import WEIGHT_FILES, read_checkpoint_weights
from .transformers_ast import read_transformers_weights

__all__ = ["CONFIG_FIELDS", "CONFIG_KEY", "WEIGHTS_KEY", "config_differences", "config_fingerprint", "export_metadata",
           "file_sha256", "saved_weights_sha256", "weights_sha256"]  # fmt: skip

WEIGHTS_KEY = "modeling_ast.weights_sha256"
CONFIG_KEY = "modeling_ast.config"
# The config fields baked into the graph or giving its outputs their meaning, with "labels" (id2label in index order).
# Named rather than all of config.json, so a bookkeeping field a later transformers release adds (or the dropout
# rates, which inference ignores) does not invalidate every export.
CONFIG_FIELDS = (
    "hidden_size",
    "num_hidden_layers",
    "num_attention_heads",
    "intermediate_size",
    "hidden_act",
    "qkv_bias",
    "layer_norm_eps",
    "head_layer_norm_eps",
    "patch_size",
    "frequency_stride",
    "time_stride",
    "max_length",
    "num_mel_bins",
    "problem_type",
)


def file_sha256(path: str | os.PathLike) -> str:
    """The sha256 of a file's content (what `sha256sum` prints), read 1 MiB at a time."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def weights_sha256(state_dict: Mapping[str, torch.Tensor]) -> str:
    """sha256 over the tensors in key order: each key, shape and value bytes. Floating-point tensors are hashed as
    float32, the precision of the exported graph, so a float16 copy of a float32-exact model hashes alike."""
    digest = hashlib.sha256()
    for key in sorted(state_dict):
        tensor = state_dict[key].detach().to("cpu")
        if tensor.is_floating_point():
            tensor = tensor.to(torch.float32)
        digest.update(json.dumps([key, str(tensor.dtype), list(tensor.shape)]).encode())
        digest.update(tensor.contiguous().reshape(-1).view(torch.uint8).numpy())
    return digest.hexdigest()


def config_fingerprint(config: ASTConfig) -> dict[str, Any]:
    """The fields of `config` an export depends on (`CONFIG_FIELDS`), plus "labels": the label names by index."""
    fields = {name: getattr(config, name) for name in CONFIG_FIELDS}
    fields["labels"] = [config.id2label[index] for index in range(config.num_labels)]
    return fields


def export_metadata(model: torch.nn.Module) -> dict[str, str]:
    """The metadata_props an ONNX export of `model` records: its weights' hash and its config fingerprint."""
    return {
        WEIGHTS_KEY: weights_sha256(model.state_dict()),
        CONFIG_KEY: json.dumps(config_fingerprint(model.config), sort_keys=True),
    }


def config_differences(exported: Mapping[str, Any], config: ASTConfig) -> list[str]:
    """"field: exported vs current" for each fingerprinted field that differs; labels are summarised by count and
    the first names that differ, since AudioSet has 527 of them."""
    current = config_fingerprint(config)
    differences = []
    for name in sorted(set(exported) | set(current)):
        before, now = exported.get(name), current.get(name)
        if before == now:
            continue
        if name == "labels" and isinstance(before, list):
            changed = [f"{i}: {a!r} vs {b!r}" for i, (a, b) in enumerate(zip(before, now)) if a != b][:3]
            differences.append(f"labels: {len(before)} vs {len(now)}" + (f" ({'; '.join(changed)})" if changed else ""))
        else:
            differences.append(f"{name}: {before!r} vs {now!r}")
    return differences


def saved_weights_sha256(model_dir: str | os.PathLike) -> str | None:
    """`weights_sha256` of the weights in a local checkpoint directory (ours or transformers' built-in AST layout,
    read as `from_pretrained` would see them); None when it has no weight file. Reads every tensor once."""
    if not any((Path(model_dir) / name).is_file() for name in WEIGHT_FILES):
        return None
    state_dict = read_transformers_weights(model_dir, {}) or read_checkpoint_weights(model_dir)
    return weights_sha256(state_dict)
