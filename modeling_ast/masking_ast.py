"""Which patch tokens take part: padding masks for mixed-length batches, and patchout.

A padded batch comes with the feature extractor's (B, T) frame mask. `real_frames` checks it and counts each clip's
real frames, `clip_time_patches` its real time patches, `time_column_mask` makes a (B, t) mask over the grid's time
columns, `token_mask` a (B, N) mask over the tokens (shapes as in `modeling_ast`), and `mask_for_attention` the form
the configured attention implementation takes. `ASTPatchout` drops patch tokens (and their mask entries) during
training.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import nn
from transformers.masking_utils import create_bidirectional_mask

from .configuration_ast import ASTConfig

if TYPE_CHECKING:
    from torch.nn.attention.flex_attention import BlockMask

__all__ = [
    "ASTPatchout",
    "clip_time_patches",
    "length_groups",
    "mask_for_attention",
    "real_frames",
    "time_column_mask",
    "token_mask",
]


def real_frames(attention_mask: torch.Tensor) -> list[int] | None:
    """Real frames of each clip from a (B, T) frame mask of right-padded clips; None when nothing is padded.

    Raises ValueError for a mask that is not right padding, or a clip with no real frame at all."""
    mask = attention_mask.bool()
    if bool(mask.all()):
        return None
    if bool((mask[:, 1:] & ~mask[:, :-1]).any()):
        raise ValueError("attention_mask must mark real frames first and padding after them (right padding)")
    frames = mask.sum(dim=1).tolist()
    empty = [index for index, count in enumerate(frames) if count == 0]
    if empty:
        raise ValueError(f"clips {empty} have no real frame in attention_mask")
    return frames


def clip_time_patches(attention_mask: torch.Tensor, config: ASTConfig) -> list[int] | None:
    """Real time patches of each clip from a (B, T) frame mask of right-padded clips (see `real_frames`); None when
    nothing is padded.

    A patch is real when all its frames are. A clip shorter than one patch (under about 175 ms) keeps its first
    patch, completed by the padding frames that follow it, as the fixed-length AST sees such a clip.
    """
    frames = real_frames(attention_mask)
    return None if frames is None else [max(1, config.time_patches(count)) for count in frames]


def length_groups(frames: list[int], max_padding: float = 0.05) -> list[list[int]]:
    """Indices of clips with `frames` real frames each, in groups of similar length, shortest first.

    Clips are taken in order of length; a group grows while its frames padded to its longest clip stay within
    (1 + max_padding) times its real frames, so running each group alone computes little padding. Every index
    appears in exactly one group.

    Why 5 %: on a 2-core CPU batching saves only the per-call overhead (8 clips of 1 s together: 30 % less time than
    one by one; of 5 s: 3 % more), while padded frames cost at least their share. Base model, 8 clips, time of the
    batch against the sum of the clips run alone (higher is better), max_padding 0.25 / 0.1 / 0.05: 1-10 s mixed
    0.84 / 0.96 / 1.00; 1-1.5 s 0.97 / 1.06 / 1.08; 5-6 s 0.84 / 0.84 / 0.96.
    """
    groups: list[list[int]] = []
    real = 0
    for index in sorted(range(len(frames)), key=lambda index: frames[index]):
        if groups and (len(groups[-1]) + 1) * frames[index] <= (1 + max_padding) * (real + frames[index]):
            groups[-1].append(index)
            real += frames[index]
        else:
            groups.append([index])
            real = frames[index]
    return groups


def time_column_mask(clip_time: list[int], num_time: int, device: torch.device) -> torch.Tensor:
    """(B, t) mask of a batch grid with `num_time` time columns, True for each clip's real ones."""
    return torch.arange(num_time, device=device) < torch.tensor(clip_time, device=device)[:, None]


def token_mask(clip_time: list[int], num_frequency: int, num_time: int, device: torch.device) -> torch.Tensor:
    """(B, N) mask, True for the two special tokens and each clip's real patches."""
    real_columns = time_column_mask(clip_time, num_time, device)
    patches = real_columns[:, None, :].expand(-1, num_frequency, -1).flatten(1)  # frequency-major, like the tokens
    special = torch.ones(len(clip_time), 2, dtype=torch.bool, device=device)
    return torch.cat([special, patches], dim=1)


def mask_for_attention(
    config: ASTConfig, hidden_states: torch.Tensor, token_mask: torch.Tensor | None
) -> torch.Tensor | BlockMask | None:
    """The (B, N) token mask in the form `config._attn_implementation` takes; None when every token is real.

    Eager and SDPA get (B, 1, 1, N), broadcast over heads and queries: transformers' `create_bidirectional_mask`
    materialises (B, 1, N, N), which costs CPU SDPA about 10 % more time at N = 1214. The other implementations
    (flex attention's block mask, flash attention's unpadding) get what that function builds for them.
    """
    if token_mask is None:
        return None
    if config._attn_implementation in ("eager", "sdpa"):
        return token_mask[:, None, None, :]
    return create_bidirectional_mask(config, hidden_states, token_mask)


class ASTPatchout(nn.Module):
    """Patchout (Koutini et al., PaSST): drop patch tokens during training only, for speed and regularisation.

    Each training step drops `config.patchout_time` random time columns and `config.patchout_frequency` random
    frequency rows of the patch grid (the same ones for the whole batch, so the batch stays rectangular), then a
    `config.patchout_random` fraction of the remaining patches. [CLS] and [DIST] are always kept, and at least one
    patch. Positional embeddings were added before, so kept patches keep their positions. Identity in eval mode.
    """

    def __init__(self, config: ASTConfig) -> None:
        super().__init__()
        self.drop_time = config.patchout_time
        self.drop_frequency = config.patchout_frequency
        self.drop_fraction = config.patchout_random

    @property
    def active(self) -> bool:
        return self.training and bool(self.drop_time or self.drop_frequency or self.drop_fraction)

    def forward(
        self, tokens: torch.Tensor, token_mask: torch.Tensor | None, num_frequency: int, num_time: int
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """tokens (B, 2 + f * t, D) and token mask (B, 2 + f * t) -> the same for the kept patches only."""
        if not self.active:
            return tokens, token_mask
        special, patches = tokens[:, :2], tokens[:, 2:].unflatten(1, (num_frequency, num_time))  # (B, f, t, D)
        keep_frequency = _random_subset(num_frequency, num_frequency - self.drop_frequency, tokens.device)
        keep_time = _random_subset(num_time, num_time - self.drop_time, tokens.device)
        patches = patches[:, keep_frequency][:, :, keep_time].flatten(1, 2)
        kept = _random_subset(patches.shape[1], round(patches.shape[1] * (1 - self.drop_fraction)), tokens.device)
        tokens = torch.cat([special, patches[:, kept]], dim=1)
        if token_mask is not None:
            patch_mask = token_mask[:, 2:].unflatten(1, (num_frequency, num_time))
            patch_mask = patch_mask[:, keep_frequency][:, :, keep_time].flatten(1)[:, kept]
            token_mask = torch.cat([token_mask[:, :2], patch_mask], dim=1)
        return tokens, token_mask


def _random_subset(size: int, keep: int, device: torch.device) -> torch.Tensor:
    """Sorted indices of `keep` (at least 1) of `size` positions, drawn from torch's global RNG."""
    return torch.randperm(size, device=device)[: max(keep, 1)].sort().values
