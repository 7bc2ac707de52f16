"""Learning-rate schedule and optimiser of the AST recipes, for `transformers.Trainer(optimizers=(opt, sched))`.

The schedule is a `LambdaLR` stepped once per optimiser step (Trainer steps it after every optimiser step). For
optimiser step s (0-based: the first update is s = 0), with E = steps_per_epoch and epoch e = s // E (0-based):

    lr(s) = base_lr * warmup(s) * decay_factor ** num_decays(e)
    warmup(s) = min(1, s / warmup_steps)          (1 when warmup_steps == 0)
    num_decays(e) = 0 if e < decay_start_epoch else (e - decay_start_epoch) // decay_every_epochs + 1
                    (capped at max_decays when given)

In the 1-based epoch numbering of the original code and its logs: epochs 1 .. M (M = decay_start_epoch) run at the
base LR; the LR is multiplied by the factor at the start of epochs M + 1, M + 1 + every, M + 1 + 2 * every, ...
This is exactly the original's `MultiStepLR(optimizer, milestones=range(M, 1000, every), gamma)` stepped at the end of
every epoch (its internal counter reaches M after epoch M, so epoch M + 1 is the first decayed one), and matches the
LR column of the authors' published logs (`egs/*/exp/*/result.csv`), e.g.

    AudioSet full      (M=2,  every=1, x0.5):  epochs 1-2: 1e-5, 3: 5e-6, 4: 2.5e-6, 5: 1.25e-6
    AudioSet balanced  (M=10, every=5, x0.5):  1-10: 5e-5, 11-15: 2.5e-5, 16-20: 1.25e-5, 21-25: 6.25e-6
    ESC-50 / SC-V2     (M=5,  every=1, x0.85): 1-5: base, epoch n > 5: base * 0.85 ** (n - 5)

Differences from the original, all irrelevant to the four recipes:
  * The original warm-up overwrites the LR with (global_step / 1000) * base_lr at every 50th step up to step 1000,
    i.e. a staircase that starts at 0 (the first 50 updates have LR 0). `warmup_update_every=50` reproduces that
    staircase exactly; the default (1) is the smooth ramp s / warmup_steps.
  * Because the original overwrites the LR, a decay milestone reached during warm-up would be lost there; here the
    factors multiply. The recipes' 1000 warm-up steps end inside epoch 1 (AudioSet balanced: ~1,700 steps per epoch
    at batch 12; full: ~160,000), long before the first decay.
  * The original's milestones stop at epoch 999; here decays continue (use `max_decays` to stop them). The published
    Speech Commands log (30 epochs) was made with the older hard-coded milestones range(5, 26): its LR stops falling
    after epoch 26. `max_decays=21` reproduces that log; the current original script keeps decaying.

With `fp16` AMP, Trainer may skip an optimiser step on gradient overflow; whether the scheduler still steps then is
Trainer's business, so epoch boundaries can drift by those few steps.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn
from transformers import TrainingArguments

__all__ = ["build_lr_scheduler", "build_optimizer", "trainer_steps_per_epoch"]

# Parameters whose last name component is one of these are the learned tokens / positional table of ASTEmbeddings.
_TOKEN_PARAMETERS = ("cls_token", "dist_token", "pos_embed")


def _check_int(value: object, name: str, minimum: int) -> int:
    """`value` as an int >= minimum, or ValueError."""
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return value


@dataclass(frozen=True)
class _EpochStepDecay:
    """LR multiplier of optimiser step s: linear warm-up times a step decay by epoch (see the module docstring).

    Its fields are plain numbers, so `LambdaLR.state_dict()` stores them and Trainer checkpoints reload with
    `torch.load(weights_only=True)`.
    """

    steps_per_epoch: int
    decay_start_epoch: int
    decay_every_epochs: int = 1
    decay_factor: float = 0.5
    warmup_steps: int = 0
    warmup_update_every: int = 1
    max_decays: int | None = None

    def __post_init__(self) -> None:
        _check_int(self.steps_per_epoch, "steps_per_epoch", 1)
        _check_int(self.decay_start_epoch, "decay_start_epoch", 0)
        _check_int(self.decay_every_epochs, "decay_every_epochs", 1)
        _check_int(self.warmup_steps, "warmup_steps", 0)
        _check_int(self.warmup_update_every, "warmup_update_every", 1)
        if self.max_decays is not None:
            _check_int(self.max_decays, "max_decays", 0)
        if not (isinstance(self.decay_factor, (int, float)) and 0 < self.decay_factor <= 1):
            raise ValueError(f"decay_factor must be in (0, 1], got {self.decay_factor!r}")

    def warmup(self, step: int) -> float:
        """Warm-up multiplier: (step rounded down to a multiple of warmup_update_every) / warmup_steps, capped at 1."""
        if self.warmup_steps == 0:
            return 1.0
        held_step = step - step % self.warmup_update_every
        return min(1.0, held_step / self.warmup_steps)

    def num_decays(self, epoch: int) -> int:
        """Decays applied during 0-based `epoch` (epoch `epoch + 1` in the original's numbering)."""
        if epoch < self.decay_start_epoch:
            return 0
        count = (epoch - self.decay_start_epoch) // self.decay_every_epochs + 1
        return count if self.max_decays is None else min(count, self.max_decays)

    def __call__(self, step: int) -> float:
        epoch = step // self.steps_per_epoch
        return self.warmup(step) * self.decay_factor ** self.num_decays(epoch)


def build_lr_scheduler(
    optimizer: torch.optim.Optimizer,
    steps_per_epoch: int,
    *,
    decay_start_epoch: int,
    decay_every_epochs: int = 1,
    decay_factor: float = 0.5,
    warmup_steps: int = 0,
    warmup_update_every: int = 1,
    max_decays: int | None = None,
) -> torch.optim.lr_scheduler.LambdaLR:
    """The AST schedule as a per-optimiser-step `LambdaLR` (semantics in the module docstring).

    Args:
        optimizer: its param groups' current `lr` is the base LR.
        steps_per_epoch: optimiser steps per epoch (see `trainer_steps_per_epoch`).
        decay_start_epoch: M; 1-based epochs 1..M keep the base LR.
        decay_every_epochs: epochs between decays.
        decay_factor: multiplier per decay, in (0, 1].
        warmup_steps: linear warm-up length in optimiser steps (0: none).
        warmup_update_every: hold the warm-up LR for this many steps (50 reproduces the original's staircase).
        max_decays: stop decaying after this many decays (None: never).

    Example (AudioSet full, `examples/recipes/audioset_full.json`): `build_lr_scheduler(opt, steps,
    decay_start_epoch=2, decay_every_epochs=1, decay_factor=0.5, warmup_steps=1000)`.
    """
    lr_lambda = _EpochStepDecay(
        steps_per_epoch=steps_per_epoch,
        decay_start_epoch=decay_start_epoch,
        decay_every_epochs=decay_every_epochs,
        decay_factor=decay_factor,
        warmup_steps=warmup_steps,
        warmup_update_every=warmup_update_every,
        max_decays=max_decays,
    )
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lr_lambda)


def trainer_steps_per_epoch(num_examples: int, args: TrainingArguments) -> int:
    """Optimiser steps per epoch of `transformers.Trainer` (5.x) for `num_examples` training clips per epoch.

    Trainer gives each of the `args.world_size` processes every world_size-th batch of the global batch sequence
    (accelerate pads the last round so all processes get ceil(batches / world_size) batches, or drops it with
    `dataloader_drop_last`) and makes one optimiser step per `gradient_accumulation_steps` batches, the last
    possibly shorter. `num_examples` is `len(train_dataset)`, or the sampler's draws per epoch.
    """
    _check_int(num_examples, "num_examples", 1)
    batch, world = args.per_device_train_batch_size, args.world_size
    if args.dataloader_drop_last:
        per_process = (num_examples // batch) // world
    else:
        per_process = math.ceil(math.ceil(num_examples / batch) / world)
    return max(math.ceil(per_process / args.gradient_accumulation_steps), 1)


def _is_exempt_from_decay(name: str, parameter: nn.Parameter, norm_parameters: set[int]) -> bool:
    """Biases, normalisation weights, and the class/distillation tokens and positional embedding."""
    return (
        name.endswith("bias")
        or id(parameter) in norm_parameters
        or name.rsplit(".", 1)[-1] in _TOKEN_PARAMETERS
    )


def build_optimizer(
    model: nn.Module,
    lr: float,
    weight_decay: float = 5e-7,
    betas: tuple[float, float] = (0.95, 0.999),
    exclude_norms_biases_tokens: bool = False,
) -> torch.optim.Adam:
    """Adam as in the AST recipes, over the model's trainable parameters.

    Args:
        model: the model to train; parameters with `requires_grad=False` are left out (as the original does).
        lr: base learning rate (1e-5 AudioSet full, 5e-5 balanced, 1e-5/1e-4 ESC-50, 2.5e-4 Speech Commands).
        weight_decay: L2 coefficient. `torch.optim.Adam` adds it to the gradient (coupled L2, not AdamW's decoupled
            decay), as the original.
        betas: Adam betas (0.95, 0.999) as the original.
        exclude_norms_biases_tokens: by default every trainable parameter is decayed, which is what the original
            does (`Adam(trainables, weight_decay=5e-7)`), so reproductions match it. With True, biases, LayerNorm
            weights, the CLS/distillation tokens and the positional embedding get weight_decay 0 in a second param
            group (the usual ViT practice). At 5e-7 with Adam's per-coordinate normalisation the choice makes no
            measurable difference; it matters only with larger weight_decay values.
    """
    named = [(name, p) for name, p in model.named_parameters() if p.requires_grad]
    if not named:
        raise ValueError("the model has no trainable parameters")
    if not exclude_norms_biases_tokens:
        return torch.optim.Adam([p for _, p in named], lr=lr, weight_decay=weight_decay, betas=betas)
    norm_parameters = {
        id(p) for module in model.modules() if isinstance(module, nn.LayerNorm) for p in module.parameters()
    }
    decayed = [p for name, p in named if not _is_exempt_from_decay(name, p, norm_parameters)]
    exempt = [p for name, p in named if _is_exempt_from_decay(name, p, norm_parameters)]
    groups = [{"params": decayed, "weight_decay": weight_decay}, {"params": exempt, "weight_decay": 0.0}]
    return torch.optim.Adam([g for g in groups if g["params"]], lr=lr, betas=betas)
