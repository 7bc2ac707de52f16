"""Every state-dict key table the converters use, and the translation between those layouts and ours.

Our layout (`ASTForAudioClassification`; `ASTModel` has the same keys without the `ast.` prefix):
    ast.embeddings.{cls_token, dist_token, pos_embed}, ast.embeddings.patch_embed.proj.*,
    ast.blocks.{i}.{norm1, attn.qkv, attn.proj, norm2, mlp.fc1, mlp.fc2}.*, ast.norm.*, classifier.{norm, fc}.*

Tables are written as pairs of key templates, theirs and ours, where `{i}` stands for a block index and `{p}` for
`weight` or `bias`; a `KeyMap` renames in both directions, so one table serves reading and error messages (a missing
key is reported in the source's spelling). The layouts:

* timm ViT / DeiT (ImageNet): our `ASTModel` keys without `embeddings.` on the tokens and the patch embedding.
* The AST authors' checkpoints (github.com/YuanGongND/ast): timm 0.4.5's DeiT under `v.` plus the head `mlp_head`,
  saved from `DataParallel` (every key starts with `module.`).
* transformers' ViT / DeiT: encoder keys as in transformers' built-in AST below, under `vit.` / `deit.`.
* transformers' built-in AST (model_type "audio-spectrogram-transformer"): the encoder under
  `audio_spectrogram_transformer.` with separate query/key/value projections, in two spellings: the legacy on-disk
  names of the MIT checkpoints (`encoder.layer.{i}.attention.attention.query`, ...) and the in-memory names of
  transformers >= 5.2x (`layers.{i}.attention.q_proj`, ...). Both read; we write the legacy one, which every 5.x
  release loads.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping

import torch

__all__ = [
    "AST_KEY_PREFIXES",
    "DATA_PARALLEL_PREFIX",
    "KeyMap",
    "ORIGINAL",
    "ORIGINAL_ANCHOR_KEYS",
    "ORIGINAL_UNUSED_PREFIXES",
    "TIMM",
    "TIMM_IGNORED",
    "TRANSFORMERS_VIT_IGNORED",
    "TRANSFORMERS_VIT_PATCH_KEY",
    "TRANSFORMERS_VIT_PREFIXES",
    "WRAPPER_PREFIXES",
    "from_transformers_ast",
    "is_transformers_ast_state_dict",
    "to_transformers_ast",
]

_PLACEHOLDERS = {"i": r"\d+", "p": "weight|bias"}
_BLOCK_PARTS = ("norm1", "attn.qkv", "attn.proj", "norm2", "mlp.fc1", "mlp.fc2")


def _regex(template: str, named: bool = True) -> str:
    """`blocks.{i}.norm1.{p}` -> `blocks\\.(?P<i>\\d+)\\.norm1\\.(?P<p>weight|bias)`."""
    pieces = re.split(r"\{(\w+)\}", template)  # literal, placeholder, literal, ...
    return "".join(
        re.escape(piece) if index % 2 == 0 else f"(?{'P<' + piece + '>' if named else ':'}{_PLACEHOLDERS[piece]})"
        for index, piece in enumerate(pieces)
    )


def _key_pattern(*templates: str) -> re.Pattern:
    """One regex that fully matches any of `templates` (use with `fullmatch`)."""
    return re.compile("|".join(_regex(template, named=False) for template in templates))


class KeyMap:
    """Renames keys between another layout ("theirs") and ours, from (their template, our template) pairs."""

    def __init__(self, pairs: Iterable[tuple[str, str]]) -> None:
        self.pairs = tuple(pairs)
        self._from_theirs = [(re.compile(_regex(theirs)), ours) for theirs, ours in self.pairs]
        self._from_ours = [(re.compile(_regex(ours)), theirs) for theirs, ours in self.pairs]

    def to_ours(self, key: str) -> str | None:
        """Our name of their `key`, or None when no template matches it."""
        return _rename(key, self._from_theirs)

    def to_theirs(self, key: str) -> str | None:
        """Their name of our `key`, or None when no template matches it."""
        return _rename(key, self._from_ours)

    def prefixed(self, theirs: str, ours: str) -> KeyMap:
        """The same table with `theirs` / `ours` put before every template of each side."""
        return KeyMap((theirs + their_key, ours + our_key) for their_key, our_key in self.pairs)

    def __add__(self, other: KeyMap) -> KeyMap:
        return KeyMap(self.pairs + other.pairs)


def _rename(key: str, rules: list[tuple[re.Pattern, str]]) -> str | None:
    for pattern, target in rules:
        match = pattern.fullmatch(key)
        if match:
            return target.format(**match.groupdict())
    return None


# ------------------------------------------------------------------------------------------------ timm and the authors

# timm ViT / DeiT -> our ASTModel.
TIMM = KeyMap(
    [
        ("cls_token", "embeddings.cls_token"),
        ("dist_token", "embeddings.dist_token"),
        ("pos_embed", "embeddings.pos_embed"),
        ("patch_embed.proj.{p}", "embeddings.patch_embed.proj.{p}"),
        *((f"blocks.{{i}}.{part}.{{p}}",) * 2 for part in _BLOCK_PARTS),
        ("norm.{p}", "norm.{p}"),
    ]
)
# ImageNet-only parts of a timm source that the audio model has no use for.
TIMM_IGNORED = _key_pattern("head.{p}", "head_dist.{p}", "pre_logits.fc.{p}")
# Prefixes a training wrapper puts before every key: DataParallel's `module.`, Lightning's `model.`.
WRAPPER_PREFIXES = ("module.", "model.")

DATA_PARALLEL_PREFIX = "module."
# The authors' checkpoints (without `module.`) -> our ASTForAudioClassification: timm's DeiT under `v.` + `mlp_head`.
ORIGINAL = TIMM.prefixed("v.", "ast.") + KeyMap(
    [("mlp_head.0.{p}", "classifier.norm.{p}"), ("mlp_head.1.{p}", "classifier.fc.{p}")]
)
# DeiT's ImageNet classifiers, created by timm and saved by the authors but never used by AST.
ORIGINAL_UNUSED_PREFIXES = ("v.head.", "v.head_dist.")
# Keys the authors' shape inference reads (without `module.`).
ORIGINAL_ANCHOR_KEYS = (
    "v.cls_token",
    "v.pos_embed",
    "v.patch_embed.proj.weight",
    "v.blocks.0.mlp.fc1.weight",
    "mlp_head.1.weight",
)

# -------------------------------------------------------------------------------------------------------- transformers

_TRANSFORMERS_PREFIX = "audio_spectrogram_transformer."
_OUR_PREFIX = "ast."

# transformers' built-in AST, legacy on-disk spelling (without the model prefix) -> ours; q/k/v are separate below.
_TRANSFORMERS_AST = KeyMap(
    [
        ("embeddings.cls_token", "embeddings.cls_token"),
        ("embeddings.distillation_token", "embeddings.dist_token"),
        ("embeddings.position_embeddings", "embeddings.pos_embed"),
        ("embeddings.patch_embeddings.projection.{p}", "embeddings.patch_embed.proj.{p}"),
        ("encoder.layer.{i}.layernorm_before.{p}", "blocks.{i}.norm1.{p}"),
        ("encoder.layer.{i}.layernorm_after.{p}", "blocks.{i}.norm2.{p}"),
        ("encoder.layer.{i}.attention.output.dense.{p}", "blocks.{i}.attn.proj.{p}"),
        ("encoder.layer.{i}.intermediate.dense.{p}", "blocks.{i}.mlp.fc1.{p}"),
        ("encoder.layer.{i}.output.dense.{p}", "blocks.{i}.mlp.fc2.{p}"),
        ("layernorm.{p}", "norm.{p}"),
        ("classifier.layernorm.{p}", "classifier.norm.{p}"),
        ("classifier.dense.{p}", "classifier.fc.{p}"),
    ]
)
# The in-memory spelling of transformers >= 5.2x differs inside the blocks only (read, never written).
_TRANSFORMERS_AST_IN_MEMORY = KeyMap(
    [
        ("layers.{i}.layernorm_before.{p}", "blocks.{i}.norm1.{p}"),
        ("layers.{i}.layernorm_after.{p}", "blocks.{i}.norm2.{p}"),
        ("layers.{i}.attention.o_proj.{p}", "blocks.{i}.attn.proj.{p}"),
        ("layers.{i}.mlp.fc1.{p}", "blocks.{i}.mlp.fc1.{p}"),
        ("layers.{i}.mlp.fc2.{p}", "blocks.{i}.mlp.fc2.{p}"),
    ]
)
_QKV_FROM_TRANSFORMERS = re.compile(
    r"(?:encoder\.layer\.(\d+)\.attention\.attention\.(query|key|value)|layers\.(\d+)\.attention\.([qkv])_proj)"
    r"\.(weight|bias)"
)
_QKV_ORDER = {"query": 0, "key": 1, "value": 2, "q": 0, "k": 1, "v": 2}
_QKV_TO_TRANSFORMERS = "encoder.layer.{i}.attention.attention.{part}.{p}"
_QKV_OURS = re.compile(_regex("blocks.{i}.attn.qkv.{p}"))

# transformers ViT / DeiT: model prefixes, the key that identifies the layout, and ImageNet-only parts.
TRANSFORMERS_VIT_PREFIXES = ("deit.", "vit.")
TRANSFORMERS_VIT_PATCH_KEY = re.compile(r"(?:(?:deit|vit)\.)?embeddings\.patch_embeddings\.projection\.weight")
TRANSFORMERS_VIT_IGNORED = _key_pattern(
    "pooler.dense.{p}", "classifier.{p}", "cls_classifier.{p}", "distillation_classifier.{p}", "embeddings.mask_token"
)
# First parts of audio (AST) checkpoint keys, to point a user who gave one to an ImageNet importer elsewhere.
AST_KEY_PREFIXES = ("v.", "ast.", "audio_spectrogram_transformer.", "mlp_head.")


def is_transformers_ast_state_dict(state_dict: Mapping[str, torch.Tensor]) -> bool:
    """Whether the keys look like transformers' built-in AST (either spelling, with or without the model prefix)."""
    return any(
        key.startswith(_TRANSFORMERS_PREFIX) or key.startswith(("embeddings.distillation_token", "encoder.layer."))
        for key in state_dict
    )


def _split_model_prefix(key: str, prefix: str, replacement: str) -> tuple[str, str]:
    """(`replacement`, rest of `key`) when `key` starts with the model prefix `prefix`, else ("", `key`)."""
    return (replacement, key[len(prefix):]) if key.startswith(prefix) else ("", key)


def _fused_qkv(fused_key: str, parts: dict[int, tuple[str, torch.Tensor]]) -> torch.Tensor:
    """Rows q, k, v of one fused projection; raises ValueError naming the source keys when they do not fit."""
    if sorted(parts) != [0, 1, 2]:
        raise ValueError(f"{fused_key}: the checkpoint lacks some of query/key/value (found {sorted(parts)})")
    shapes = {key: tuple(tensor.shape) for key, tensor in parts.values()}
    if len(set(shapes.values())) != 1:
        listed = ", ".join(f"{key} {shape}" for key, shape in shapes.items())
        raise ValueError(f"cannot fuse query, key and value into {fused_key}: their shapes differ ({listed})")
    return torch.cat([parts[index][1] for index in range(3)], dim=0)


def from_transformers_ast(state_dict: Mapping[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], list[str]]:
    """Translate a built-in AST state dict (either spelling) into our layout.

    Keys under `audio_spectrogram_transformer.` become `ast.` keys (a classification model); unprefixed encoder keys
    stay unprefixed (an `ASTModel`). The separate q, k, v projections (each (D, D) / (D,)) are fused into one qkv
    ((3D, D) / (3D,), rows q, k, v); raises ValueError naming the keys when their shapes differ.

    Returns the translated dict and the keys that matched no rule (for the caller to report).
    """
    converted: dict[str, torch.Tensor] = {}
    qkv_parts: dict[str, dict[int, tuple[str, torch.Tensor]]] = {}
    unknown: list[str] = []
    for key, tensor in state_dict.items():
        prefix, body = _split_model_prefix(key, _TRANSFORMERS_PREFIX, _OUR_PREFIX)
        if qkv := _QKV_FROM_TRANSFORMERS.fullmatch(body):
            layer = qkv.group(1) or qkv.group(3)
            part = qkv.group(2) or qkv.group(4)
            fused_key = f"{prefix}blocks.{layer}.attn.qkv.{qkv.group(5)}"
            qkv_parts.setdefault(fused_key, {})[_QKV_ORDER[part]] = (key, tensor)
            continue
        new_body = _TRANSFORMERS_AST.to_ours(body) or _TRANSFORMERS_AST_IN_MEMORY.to_ours(body)
        if new_body is None:
            unknown.append(key)
        else:
            converted[prefix + new_body] = tensor
    for fused_key, parts in qkv_parts.items():
        converted[fused_key] = _fused_qkv(fused_key, parts)
    return converted, unknown


def to_transformers_ast(state_dict: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Translate our state dict into the legacy built-in layout that every transformers 5.x loads.

    Raises ValueError naming any key that has no counterpart there.
    """
    converted: dict[str, torch.Tensor] = {}
    for key, tensor in state_dict.items():
        prefix, body = _split_model_prefix(key, _OUR_PREFIX, _TRANSFORMERS_PREFIX)
        if qkv := _QKV_OURS.fullmatch(body):
            for part, rows in zip(("query", "key", "value"), tensor.chunk(3, dim=0)):
                converted[prefix + _QKV_TO_TRANSFORMERS.format(part=part, **qkv.groupdict())] = rows.clone()
            continue
        new_body = _TRANSFORMERS_AST.to_theirs(body)
        if new_body is None:
            raise ValueError(f"{key} has no counterpart in transformers' AST layout")
        converted[prefix + new_body] = tensor
    return converted
