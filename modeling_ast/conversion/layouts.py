"""State-dict layouts of other AST implementations, and their translation to and from ours.

Our layout (`ASTForAudioClassification`; `ASTModel` has the same keys without the `ast.` prefix):
    ast.embeddings.{cls_token, dist_token, pos_embed}, ast.embeddings.patch_embed.proj.*,
    ast.blocks.{i}.{norm1, attn.qkv, attn.proj, norm2, mlp.fc1, mlp.fc2}.*, ast.norm.*, classifier.{norm, fc}.*

transformers' built-in AST (model_type "audio-spectrogram-transformer") stores the encoder under
`audio_spectrogram_transformer.` with separate query/key/value projections, in two spellings: the legacy on-disk names
of the MIT checkpoints (`encoder.layer.{i}.attention.attention.query`, ...) and the in-memory names of transformers
>= 5.2x (`layers.{i}.attention.q_proj`, ...). Both read; we write the legacy one, which every 5.x release loads.
"""

from __future__ import annotations

import re

import torch

TRANSFORMERS_PREFIX = "audio_spectrogram_transformer."
OUR_PREFIX = "ast."

# (pattern over a built-in key without its prefix, our key) — both spellings of the built-in layout.
_FROM_TRANSFORMERS = [
    (r"embeddings\.cls_token", "embeddings.cls_token"),
    (r"embeddings\.distillation_token", "embeddings.dist_token"),
    (r"embeddings\.position_embeddings", "embeddings.pos_embed"),
    (r"embeddings\.patch_embeddings\.projection\.(weight|bias)", r"embeddings.patch_embed.proj.\1"),
    (r"(?:encoder\.layer|layers)\.(\d+)\.layernorm_before\.(weight|bias)", r"blocks.\1.norm1.\2"),
    (r"(?:encoder\.layer|layers)\.(\d+)\.layernorm_after\.(weight|bias)", r"blocks.\1.norm2.\2"),
    (r"(?:encoder\.layer|layers)\.(\d+)\.(?:attention\.output\.dense|attention\.o_proj)\.(weight|bias)",
     r"blocks.\1.attn.proj.\2"),
    (r"(?:encoder\.layer\.(\d+)\.intermediate\.dense|layers\.(\d+)\.mlp\.fc1)\.(weight|bias)", r"blocks.\1\2.mlp.fc1.\3"),
    (r"(?:encoder\.layer\.(\d+)\.output\.dense|layers\.(\d+)\.mlp\.fc2)\.(weight|bias)", r"blocks.\1\2.mlp.fc2.\3"),
    (r"layernorm\.(weight|bias)", r"norm.\1"),
    (r"classifier\.layernorm\.(weight|bias)", r"classifier.norm.\1"),
    (r"classifier\.dense\.(weight|bias)", r"classifier.fc.\1"),
]
_QKV_FROM_TRANSFORMERS = re.compile(
    r"(?:encoder\.layer\.(\d+)\.attention\.attention\.(query|key|value)|layers\.(\d+)\.attention\.([qkv])_proj)"
    r"\.(weight|bias)"
)
_QKV_ORDER = {"query": 0, "key": 1, "value": 2, "q": 0, "k": 1, "v": 2}

# Our key (without prefix) -> legacy built-in key (without prefix), for export.
_TO_TRANSFORMERS = [
    (r"embeddings\.cls_token", "embeddings.cls_token"),
    (r"embeddings\.dist_token", "embeddings.distillation_token"),
    (r"embeddings\.pos_embed", "embeddings.position_embeddings"),
    (r"embeddings\.patch_embed\.proj\.(weight|bias)", r"embeddings.patch_embeddings.projection.\1"),
    (r"blocks\.(\d+)\.norm1\.(weight|bias)", r"encoder.layer.\1.layernorm_before.\2"),
    (r"blocks\.(\d+)\.norm2\.(weight|bias)", r"encoder.layer.\1.layernorm_after.\2"),
    (r"blocks\.(\d+)\.attn\.proj\.(weight|bias)", r"encoder.layer.\1.attention.output.dense.\2"),
    (r"blocks\.(\d+)\.mlp\.fc1\.(weight|bias)", r"encoder.layer.\1.intermediate.dense.\2"),
    (r"blocks\.(\d+)\.mlp\.fc2\.(weight|bias)", r"encoder.layer.\1.output.dense.\2"),
    (r"norm\.(weight|bias)", r"layernorm.\1"),
    (r"classifier\.norm\.(weight|bias)", r"classifier.layernorm.\1"),
    (r"classifier\.fc\.(weight|bias)", r"classifier.dense.\1"),
]
_QKV_OURS = re.compile(r"blocks\.(\d+)\.attn\.qkv\.(weight|bias)")


def _rename(key: str, rules: list[tuple[str, str]]) -> str | None:
    for pattern, replacement in rules:
        if re.fullmatch(pattern, key):
            return re.sub(pattern, replacement, key)
    return None


def is_transformers_ast_state_dict(state_dict: dict[str, torch.Tensor]) -> bool:
    """Whether the keys look like transformers' built-in AST (either spelling, with or without the model prefix)."""
    return any(
        key.startswith(TRANSFORMERS_PREFIX) or key.startswith(("embeddings.distillation_token", "encoder.layer."))
        for key in state_dict
    )


def from_transformers_ast(state_dict: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], list[str]]:
    """Translate a built-in AST state dict (either spelling) into our layout.

    Keys under `audio_spectrogram_transformer.` become `ast.` keys (a classification model); unprefixed encoder keys
    stay unprefixed (an `ASTModel`). The separate q, k, v projections are fused into one qkv (rows q, k, v).

    Returns the translated dict and the keys that matched no rule (for the caller to report).
    """
    converted: dict[str, torch.Tensor] = {}
    qkv_parts: dict[str, dict[int, torch.Tensor]] = {}
    unknown: list[str] = []
    for key, tensor in state_dict.items():
        prefix = ""
        body = key
        if key.startswith(TRANSFORMERS_PREFIX):
            prefix, body = OUR_PREFIX, key[len(TRANSFORMERS_PREFIX):]
        qkv = _QKV_FROM_TRANSFORMERS.fullmatch(body)
        if qkv:
            layer = qkv.group(1) or qkv.group(3)
            part = qkv.group(2) or qkv.group(4)
            fused_key = f"{prefix}blocks.{layer}.attn.qkv.{qkv.group(5)}"
            qkv_parts.setdefault(fused_key, {})[_QKV_ORDER[part]] = tensor
            continue
        new_body = _rename(body, _FROM_TRANSFORMERS)
        if new_body is None:
            unknown.append(key)
        else:
            converted[prefix + new_body] = tensor
    for fused_key, parts in qkv_parts.items():
        if sorted(parts) != [0, 1, 2]:
            raise ValueError(f"{fused_key}: the checkpoint lacks some of query/key/value (found {sorted(parts)})")
        converted[fused_key] = torch.cat([parts[0], parts[1], parts[2]], dim=0)
    return converted, unknown


def to_transformers_ast(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Translate our state dict into the legacy built-in layout that every transformers 5.x loads.

    Raises ValueError naming any key that has no counterpart there.
    """
    converted: dict[str, torch.Tensor] = {}
    for key, tensor in state_dict.items():
        prefix, body = ("", key)
        if key.startswith(OUR_PREFIX):
            prefix, body = TRANSFORMERS_PREFIX, key[len(OUR_PREFIX):]
        qkv = _QKV_OURS.fullmatch(body)
        if qkv:
            layer, kind = qkv.groups()
            for name, part in zip(("query", "key", "value"), tensor.chunk(3, dim=0)):
                converted[f"{prefix}encoder.layer.{layer}.attention.attention.{name}.{kind}"] = part.clone()
            continue
        new_body = _rename(body, _TO_TRANSFORMERS)
        if new_body is None:
            raise ValueError(f"{key} has no counterpart in transformers' AST layout")
        converted[prefix + new_body] = tensor
    return converted
