"""timm ViT/DeiT and original-AST state-dict layouts filled with deterministic analytic weights (no RNG).

Shared by `tests/fixtures/make_imagenet_adaptation_reference.py`, which loads these weights into the authors' code
(timm 0.4.5, in a separate environment), and `tests/test_convert_imagenet.py`, which rebuilds the identical tensors
and converts them with this package. Only `torch` is needed, so the module imports in either environment.

Every tensor is a closed-form function of its name and flat index k:

    u(k) = frac(0.6180339887498949 k + 1.1e-7 k^2 + phase(name)),   phase(name) = crc32(name) / 2^32
    g(k) = 4 |u(k) - 1/2| - 1          (a triangle wave of a quadratic Weyl sequence, in [-1, 1])

evaluated in float64 (k^2 is exact below 2^53, so only IEEE-specified multiply / add / floor are involved and the
values do not depend on any math library) and rounded to float32. The k^2 term couples row and column of a reshaped
weight matrix, so the matrices are far from low rank and transposed or permuted blocks change the results. It is
also cheap: the 86 M values of a base model take about a second.
Scales: LayerNorm weights 1 + 0.1 g, positional embedding and tokens 0.5 g, other weights 0.05 g, biases 0.02 g.
"""

from __future__ import annotations

import math
import re
import zlib

import torch

IMAGENET_CLASSES = 1000

_LAYER_NORM_WEIGHT = re.compile(r"(^|\.)(norm\d?|mlp_head\.0)\.weight$")
_EMBEDDING = re.compile(r"(^|\.)(pos_embed|cls_token|dist_token)$")


def phase(name: str) -> float:
    """A fixed offset in [0, 1) derived from the tensor's name."""
    return zlib.crc32(name.encode()) / 2**32


def analytic_values(name: str, numel: int) -> torch.Tensor:
    """g(k) of the module docstring for k = 0 .. numel - 1, float64."""
    if numel >= 2**26:
        raise ValueError("k^2 must stay exact in float64: tensors are limited to 2^26 elements")
    k = torch.arange(numel, dtype=torch.float64)
    u = 0.6180339887498949 * k + 1.1e-7 * (k * k) + phase(name)
    u = u - torch.floor(u)
    return 4.0 * (u - 0.5).abs() - 1.0


def analytic_tensor(name: str, shape: tuple[int, ...]) -> torch.Tensor:
    """The float32 tensor stored under `name` (scaled by kind, see the module docstring)."""
    values = analytic_values(name, math.prod(shape)).view(shape)
    if _LAYER_NORM_WEIGHT.search(name):
        values = 1.0 + 0.1 * values
    elif _EMBEDDING.search(name):
        values = 0.5 * values
    elif name.endswith(".bias"):
        values = 0.02 * values
    else:
        values = 0.05 * values
    return values.to(torch.float32)


def analytic_state_dict(shapes: dict[str, tuple[int, ...]], prefix: str = "") -> dict[str, torch.Tensor]:
    """{prefix + name: analytic_tensor(name, shape)} — the prefix does not change the values."""
    return {prefix + name: analytic_tensor(name, shape) for name, shape in shapes.items()}


def timm_vit_shapes(
    embed_dim: int,
    depth: int,
    mlp_dim: int,
    num_patches: int,
    distilled: bool = True,
    in_chans: int = 3,
    patch_size: int = 16,
    num_classes: int = IMAGENET_CLASSES,
) -> dict[str, tuple[int, ...]]:
    """Names and shapes of a timm ViT (`distilled=False`) or distilled DeiT state dict, in timm's order.

    The same in timm 0.4.5 (`vit_deit_*`) and timm 1.x (`deit_*`), as the fixture script checks against timm 0.4.5.
    """
    tokens = 2 if distilled else 1
    shapes: dict[str, tuple[int, ...]] = {
        "cls_token": (1, 1, embed_dim),
        "pos_embed": (1, tokens + num_patches, embed_dim),
    }
    if distilled:
        shapes["dist_token"] = (1, 1, embed_dim)
    shapes["patch_embed.proj.weight"] = (embed_dim, in_chans, patch_size, patch_size)
    shapes["patch_embed.proj.bias"] = (embed_dim,)
    for i in range(depth):
        shapes.update(
            {
                f"blocks.{i}.norm1.weight": (embed_dim,),
                f"blocks.{i}.norm1.bias": (embed_dim,),
                f"blocks.{i}.attn.qkv.weight": (3 * embed_dim, embed_dim),
                f"blocks.{i}.attn.qkv.bias": (3 * embed_dim,),
                f"blocks.{i}.attn.proj.weight": (embed_dim, embed_dim),
                f"blocks.{i}.attn.proj.bias": (embed_dim,),
                f"blocks.{i}.norm2.weight": (embed_dim,),
                f"blocks.{i}.norm2.bias": (embed_dim,),
                f"blocks.{i}.mlp.fc1.weight": (mlp_dim, embed_dim),
                f"blocks.{i}.mlp.fc1.bias": (mlp_dim,),
                f"blocks.{i}.mlp.fc2.weight": (embed_dim, mlp_dim),
                f"blocks.{i}.mlp.fc2.bias": (embed_dim,),
            }
        )
    shapes["norm.weight"] = (embed_dim,)
    shapes["norm.bias"] = (embed_dim,)
    shapes["head.weight"] = (num_classes, embed_dim)
    shapes["head.bias"] = (num_classes,)
    if distilled:
        shapes["head_dist.weight"] = (num_classes, embed_dim)
        shapes["head_dist.bias"] = (num_classes,)
    return shapes


# timm DeiT-Tiny-224 (the fixture's ImageNet model): 192-d, 12 blocks, MLP 768, 14 x 14 patches.
DEIT_TINY_224 = dict(embed_dim=192, depth=12, mlp_dim=768, num_patches=14 * 14)
# timm DeiT-Base-384: 768-d, 12 blocks, MLP 3072, 24 x 24 patches.
DEIT_BASE_384 = dict(embed_dim=768, depth=12, mlp_dim=3072, num_patches=24 * 24)


def original_ast_shapes(
    label_dim: int = 527, depth: int = 12, embed_dim: int = 768, mlp_dim: int = 3072, grid: tuple[int, int] = (12, 101)
) -> dict[str, tuple[int, ...]]:
    """An AST checkpoint of the authors' code, without the DataParallel `module.` prefix: the timm DeiT under `v.`
    with a 1-channel patch kernel and a (1, 2 + f * t, D) positional embedding, plus `mlp_head.{0,1}`."""
    timm_shapes = timm_vit_shapes(embed_dim, depth, mlp_dim, grid[0] * grid[1], distilled=True, in_chans=1)
    shapes = {f"v.{name}": shape for name, shape in timm_shapes.items()}
    shapes.update(
        {
            "mlp_head.0.weight": (embed_dim,),
            "mlp_head.0.bias": (embed_dim,),
            "mlp_head.1.weight": (label_dim, embed_dim),
            "mlp_head.1.bias": (label_dim,),
        }
    )
    return shapes


def head_shapes(label_dim: int, embed_dim: int) -> dict[str, tuple[int, ...]]:
    """The original's audio head `mlp_head` = LayerNorm + Linear."""
    return {
        "mlp_head.0.weight": (embed_dim,),
        "mlp_head.0.bias": (embed_dim,),
        "mlp_head.1.weight": (label_dim, embed_dim),
        "mlp_head.1.bias": (label_dim,),
    }


def analytic_input(batch: int, frames: int, mel_bins: int = 128) -> torch.Tensor:
    """A fixed (batch, frames, mel_bins) float32 spectrogram-like input, roughly unit scale."""
    t = torch.arange(frames, dtype=torch.float64)[None, :, None]
    f = torch.arange(mel_bins, dtype=torch.float64)[None, None, :]
    b = torch.arange(batch, dtype=torch.float64)[:, None, None]
    values = torch.sin(0.05 * t + 0.11 * f + 0.7 * b) + 0.5 * torch.cos(0.013 * t * (1 + b) - 0.07 * f)
    return values.to(torch.float32)


DIGEST_CHANNELS = (0, 1, -2, -1)


def grid_digest(pos_embed: torch.Tensor) -> dict[str, torch.Tensor]:
    """Compact fingerprint of a (1, N, D) positional embedding for fixtures too large to store whole.

    rows_proj (N, 4): every row projected on 4 fixed analytic directions (touches every channel);
    channels (N, 4): channels 0, 1, D-2, D-1 verbatim; row_sum (N,). Sums are taken in float64 and stored as float32.
    """
    rows = pos_embed[0].detach()
    projection = analytic_values("digest_projection", rows.shape[1] * 4).view(rows.shape[1], 4)
    return {
        "rows_proj": (rows.to(torch.float64) @ projection).to(torch.float32),
        "channels": rows[:, list(DIGEST_CHANNELS)].clone(),
        "row_sum": rows.to(torch.float64).sum(dim=1).to(torch.float32),
    }
