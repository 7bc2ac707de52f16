"""State dicts in the layout of the AST authors' checkpoints, built without their code (shared by tests and fixtures).

The layout is that of `ASTModel` in github.com/YuanGongND/ast (timm 0.4.5 DeiT under `v.`, audio head `mlp_head`),
saved from `DataParallel` (`module.` prefix):

    v.cls_token, v.dist_token (1, 1, D); v.pos_embed (1, 2 + patches, D); v.patch_embed.proj.weight (D, 1, p, p), .bias
    v.blocks.{i}.norm1 / norm2 (D,); attn.qkv (3D, D); attn.proj (D, D); mlp.fc1 (M, D); mlp.fc2 (D, M)
    v.norm (D,); v.head, v.head_dist (1000, D) unused ImageNet heads; mlp_head.0 (D,) LayerNorm; mlp_head.1 (labels, D)

`analytic_state_dict` fills it with values that are a closed-form function of each tensor's name and flat index
(no random generator), so `tests/fixtures/make_original_ast_reference.py` (which loads them into the authors' model)
and the tests (which convert them with our converter) rebuild bit-identical weights from nothing.
"""

from __future__ import annotations

import math
import zlib

import numpy as np
import torch

DATA_PARALLEL_PREFIX = "module."
IMAGENET_CLASSES = 1000

# Quadratic Weyl sequence frac(ALPHA * k + BETA * k^2 + phase): equidistributed in [0, 1) and, unlike a sinusoid of k,
# not low-rank when reshaped into a matrix. Only float64 multiply/add/floor are used, which IEEE makes exact-to-spec on
# every platform, so the values do not depend on a math library.
_ALPHA = (math.sqrt(5.0) - 1.0) / 2.0
_BETA = (math.sqrt(2.0) - 1.0) * 1e-3


def original_shapes(
    hidden_size: int,
    num_layers: int,
    num_labels: int,
    num_patches: int,
    intermediate_size: int | None = None,
    patch_size: int = 16,
    imagenet_heads: bool = True,
) -> dict[str, tuple[int, ...]]:
    """Parameter names (without `module.`) and shapes of an original AST with `num_patches` positional patches."""
    d = hidden_size
    m = 4 * hidden_size if intermediate_size is None else intermediate_size
    shapes: dict[str, tuple[int, ...]] = {
        "v.cls_token": (1, 1, d),
        "v.pos_embed": (1, num_patches + 2, d),
        "v.dist_token": (1, 1, d),
        "v.patch_embed.proj.weight": (d, 1, patch_size, patch_size),
        "v.patch_embed.proj.bias": (d,),
    }
    for i in range(num_layers):
        block = f"v.blocks.{i}."
        shapes.update(
            {
                block + "norm1.weight": (d,),
                block + "norm1.bias": (d,),
                block + "attn.qkv.weight": (3 * d, d),
                block + "attn.qkv.bias": (3 * d,),
                block + "attn.proj.weight": (d, d),
                block + "attn.proj.bias": (d,),
                block + "norm2.weight": (d,),
                block + "norm2.bias": (d,),
                block + "mlp.fc1.weight": (m, d),
                block + "mlp.fc1.bias": (m,),
                block + "mlp.fc2.weight": (d, m),
                block + "mlp.fc2.bias": (d,),
            }
        )
    shapes.update({"v.norm.weight": (d,), "v.norm.bias": (d,)})
    if imagenet_heads:
        for head in ("v.head", "v.head_dist"):
            shapes.update({f"{head}.weight": (IMAGENET_CLASSES, d), f"{head}.bias": (IMAGENET_CLASSES,)})
    shapes.update(
        {
            "mlp_head.0.weight": (d,),
            "mlp_head.0.bias": (d,),
            "mlp_head.1.weight": (num_labels, d),
            "mlp_head.1.bias": (num_labels,),
        }
    )
    return shapes


def _is_layer_norm(name: str) -> bool:
    return any(part in name for part in ("norm1.", "norm2.", "v.norm.", "mlp_head.0."))


def _offset_and_amplitude(name: str, shape: tuple[int, ...]) -> tuple[float, float]:
    """Values lie in [offset - amplitude, offset + amplitude): LayerNorm gains near 1, biases and tokens small,
    weight matrices scaled by 1.5 / sqrt(fan_in) so activations neither vanish nor explode through 12 blocks."""
    if _is_layer_norm(name):
        return (1.0, 0.1) if name.endswith(".weight") else (0.0, 0.05)
    if name.endswith(".bias"):
        return 0.0, 0.02
    if name in ("v.cls_token", "v.dist_token", "v.pos_embed"):
        return 0.0, 0.05
    if name.startswith(("v.head.", "v.head_dist.")):
        return 0.0, 0.02
    fan_in = math.prod(shape[1:])
    gain = 2.0 if name.startswith("mlp_head.1.") else 1.5
    return 0.0, gain / math.sqrt(fan_in)


def analytic_tensor(name: str, shape: tuple[int, ...]) -> torch.Tensor:
    """float32 tensor whose element k (row-major) is offset + amplitude * (2 u_k - 1), u_k = frac(a k + b k^2 + c),
    with c = crc32(name) / 2^32 and offset/amplitude from the parameter's role (`_offset_and_amplitude`)."""
    offset, amplitude = _offset_and_amplitude(name, shape)
    phase = zlib.crc32(name.encode("utf-8")) / 2.0**32
    k = np.arange(math.prod(shape), dtype=np.float64)  # numpy: single-threaded, IEEE float64 like torch
    t = k * _ALPHA + (k * k) * _BETA + phase
    u = t - np.floor(t)
    return torch.from_numpy((offset + amplitude * (2.0 * u - 1.0)).astype(np.float32).reshape(shape))


def analytic_state_dict(
    shapes: dict[str, tuple[int, ...]], prefix: str = DATA_PARALLEL_PREFIX
) -> dict[str, torch.Tensor]:
    """Deterministic weights for every key of `shapes` (names without prefix), keyed `prefix + name`."""
    return {prefix + name: analytic_tensor(name, shape) for name, shape in shapes.items()}


def random_state_dict(
    shapes: dict[str, tuple[int, ...]], seed: int = 0, prefix: str = DATA_PARALLEL_PREFIX
) -> dict[str, torch.Tensor]:
    """Seeded N(0, 0.02^2) weights (LayerNorm gains around 1) for shape-inference tests."""
    generator = torch.Generator().manual_seed(seed)
    state_dict = {}
    for name, shape in shapes.items():
        tensor = torch.randn(shape, generator=generator) * 0.02
        if _is_layer_norm(name) and name.endswith(".weight"):
            tensor += 1.0
        state_dict[prefix + name] = tensor
    return state_dict


def checksum(state_dict: dict[str, torch.Tensor]) -> float:
    """Order-independent float64 fingerprint of a state dict: sum over tensors of sum_k (k + 1) * x_k."""
    total = 0.0
    for tensor in state_dict.values():
        flat = tensor.detach().reshape(-1).numpy().astype(np.float64)
        total += float(flat @ np.arange(1, flat.size + 1, dtype=np.float64))
    return total
