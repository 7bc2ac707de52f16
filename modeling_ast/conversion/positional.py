"""Conversion-time adaptation of a learned 2-D positional grid, as the original AST code does it.

All grids are `(1, D, rows, cols)` tensors: rows index frequency patches, columns time patches, which is the layout
the original code reshapes its positional embedding into. (A positional embedding `(1, 2 + rows * cols, D)` holds
two token rows, then the patches in frequency-major order; `grid_from_tokens` / `tokens_from_grid` convert.)

Along one axis, a grid of `old` positions becomes one of `new` positions by

* a **middle crop** when shrinking: positions `[start, start + new)` with

      start = old // 2 - new // 2

  which is what the original writes as `int(hw / 2) - int(t_dim / 2)` for the 24x24 (DeiT-384) and 14x14 (DeiT-224)
  ImageNet grids, e.g. `12 - t // 2`, and as the literals `50 - t // 2` (= 101 // 2 - t // 2) and `6 - f // 2`
  (= 12 // 2 - f // 2) for the 12 x 101 AudioSet grid;
* **bilinear interpolation** (`align_corners=False`) when growing. Interpolating to the same size is exactly the
  identity (source coordinate = target coordinate, interpolation weight 0), so the original's `<=` (ImageNet path)
  and `<` (AudioSet path) comparisons give identical grids and one rule serves both.

The time axis is adapted first, then the frequency axis, each with the same `F.interpolate` call the original makes
(on the whole 2-D grid, the other axis kept at its current size), so results are bit-identical to the original.

This is *not* the runtime adaptation of `ASTEmbeddings` (which prefix-crops or stretches the time axis of an
already converted model per input length); it builds the stored grid of a new checkpoint.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = [
    "adapt_axis",
    "adapt_grid",
    "grid_from_tokens",
    "middle_crop_start",
    "resample_axis_at",
    "tokens_from_grid",
]

_TIME_AXIS = 3
_FREQUENCY_AXIS = 2


def middle_crop_start(old: int, new: int) -> int:
    """First index of the middle `new` of `old` positions: `old // 2 - new // 2` (requires 0 < new <= old).

    >>> middle_crop_start(24, 12), middle_crop_start(101, 50), middle_crop_start(12, 10)
    (6, 25, 1)
    """
    if not 0 < new <= old:
        raise ValueError(f"a middle crop needs 0 < new <= old, got new={new}, old={old}")
    return old // 2 - new // 2


def _check_grid(grid: torch.Tensor) -> None:
    if grid.dim() != 4 or grid.shape[0] != 1:
        raise ValueError(f"expected a (1, D, rows, cols) positional grid, got shape {tuple(grid.shape)}")


def adapt_axis(grid: torch.Tensor, size: int, axis: int) -> torch.Tensor:
    """Resize one axis of a (1, D, rows, cols) grid to `size`: middle crop if smaller, bilinear if larger.

    `axis` is 2 (frequency rows) or 3 (time columns). Equal sizes return the grid unchanged.
    """
    _check_grid(grid)
    if axis not in (_FREQUENCY_AXIS, _TIME_AXIS):
        raise ValueError(f"axis must be 2 (rows) or 3 (columns), got {axis}")
    if size <= 0:
        raise ValueError(f"target size must be positive, got {size}")
    old = grid.shape[axis]
    if size == old:
        return grid
    if size < old:
        start = middle_crop_start(old, size)
        return grid.narrow(axis, start, size)
    target = (grid.shape[2], size) if axis == _TIME_AXIS else (size, grid.shape[3])
    return F.interpolate(grid, size=target, mode="bilinear", align_corners=False)


def adapt_grid(grid: torch.Tensor, rows: int, cols: int) -> torch.Tensor:
    """The original code's grid adaptation: (1, D, r0, c0) -> (1, D, rows, cols), time (columns) first.

    Examples (DeiT-384, 24 x 24): 128 x 1024 frames at stride 10 -> columns stretched to 101, then rows 6..17 kept:
    (12, 101). AudioSet (12, 101) -> ESC-50 (12, 50): columns 25..74.
    """
    return adapt_axis(adapt_axis(grid, cols, _TIME_AXIS), rows, _FREQUENCY_AXIS)


def resample_axis_at(grid: torch.Tensor, positions: torch.Tensor, axis: int) -> torch.Tensor:
    """Sample one axis of a (1, D, rows, cols) grid at fractional indices, linearly between neighbours.

    `positions` (n,) are source indices (float); values outside [0, old - 1] take the nearest edge value. Returns the
    grid with `n` positions along `axis`. Used to move a grid to another patch stride (see `adapt`).
    """
    _check_grid(grid)
    old = grid.shape[axis]
    positions = positions.to(torch.float64).clamp(0, old - 1)
    lower = positions.floor().long()
    upper = (lower + 1).clamp(max=old - 1)
    weight = (positions - lower).to(grid.dtype)
    shape = [1, 1, 1, 1]
    shape[axis] = -1
    weight = weight.view(shape)
    below = grid.index_select(axis, lower)
    above = grid.index_select(axis, upper)
    return below + weight * (above - below)


def grid_from_tokens(pos_embed: torch.Tensor, rows: int, cols: int, num_tokens: int) -> torch.Tensor:
    """Split a positional embedding (1, num_tokens + rows * cols, D) into its token rows and patch grid.

    Returns the patch grid (1, D, rows, cols); the caller keeps `pos_embed[:, :num_tokens]` for the tokens.
    """
    if pos_embed.dim() != 3 or pos_embed.shape[0] != 1:
        raise ValueError(f"expected a (1, tokens, D) positional embedding, got shape {tuple(pos_embed.shape)}")
    expected = num_tokens + rows * cols
    if pos_embed.shape[1] != expected:
        raise ValueError(
            f"positional embedding has {pos_embed.shape[1]} rows; a {rows} x {cols} grid with {num_tokens} token "
            f"rows needs {expected}"
        )
    patches = pos_embed[:, num_tokens:]  # (1, rows * cols, D), frequency-major
    return patches.transpose(1, 2).reshape(1, pos_embed.shape[2], rows, cols)


def tokens_from_grid(token_rows: torch.Tensor, grid: torch.Tensor) -> torch.Tensor:
    """Inverse of `grid_from_tokens`: token rows (1, k, D) + grid (1, D, rows, cols) -> (1, k + rows * cols, D)."""
    _check_grid(grid)
    patches = grid.flatten(2).transpose(1, 2)  # (1, rows * cols, D)
    return torch.cat([token_rows, patches], dim=1)
