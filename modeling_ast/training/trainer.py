"""`ASTTrainer`: `transformers.Trainer` with the AST recipe, and what a training run needs around it.

The recipe (`recipes.RecipeArguments`) decides the draws (`sampling.EpochDrawSampler`, balanced or not), the paper's
Adam and step schedule, and weight averaging (`averaging.WeightAveragingCallback`); the model as trained and, with
averaging, the last epoch's weights are both evaluated at the end (`evaluate_trained_models`).
"""

from __future__ import annotations

import atexit
import json
import os
import random
import warnings
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset, Sampler
from transformers import Trainer, TrainerCallback, TrainingArguments
from transformers.trainer_utils import PredictionOutput

from ..conversion.io import WEIGHT_FILES  # the files one of which holds a checkpoint's weights (Trainer.save_model)
from ..locking import output_lock
from .averaging import WeightAveragingCallback
from .recipes import RecipeArguments
from .sampling import EpochDrawSampler
from .schedules import build_lr_scheduler, build_optimizer, trainer_steps_per_epoch

__all__ = [
    "ASTTrainer",
    "check_processes",
    "data_seed",
    "end_processes",
    "finish_run",
    "last_complete_checkpoint",
    "launched_on_cpus",
    "resume_target",
    "start_run",
]

# The output_dir lock of this process's current training run (see `start_run`); released at the latest on exit.
_RUN_LOCK = ExitStack()
atexit.register(_RUN_LOCK.close)


def data_seed(args: TrainingArguments) -> int:
    """The seed of the training draws: `--data_seed`, else `--seed` (as Trainer's own sampler uses them)."""
    return args.data_seed if args.data_seed is not None else args.seed


def launched_on_cpus() -> bool:
    """Several processes (torchrun, accelerate launch) on a machine without an accelerator. accelerate sets up CPU data
    parallelism (gloo) only when told to use the CPU; otherwise every process would train alone on all the data."""
    has_accelerator = torch.accelerator.is_available() if hasattr(torch, "accelerator") else torch.cuda.is_available()
    return int(os.environ.get("WORLD_SIZE", "1")) > 1 and not has_accelerator


def check_processes(args: TrainingArguments) -> None:
    """RuntimeError when the launcher started more processes than Trainer trains together."""
    launched = int(os.environ.get("WORLD_SIZE", "1"))
    if launched > 1 and args.world_size != launched:
        raise RuntimeError(
            f"launched as {launched} processes but Trainer set up {args.world_size}; each would train alone "
            "(on a machine without GPUs, do not pass --use_cpu false)"
        )


def start_run(args: TrainingArguments) -> None:
    """Start a training run: check the launch (`check_processes`) and, in the main process, take the lock of
    `args.output_dir` (`modeling_ast.locking`), so that a second run writing the same folder is refused, naming
    this one. The lock is held until `finish_run`, the next `start_run` in this process (after a run that failed)
    or the end of the process."""
    check_processes(args)
    _RUN_LOCK.close()
    if args.process_index == 0:
        _RUN_LOCK.enter_context(output_lock(args.output_dir, hint="give another --output_dir"))


def finish_run(trainer: Trainer) -> None:
    """End a training run: wait until no process writes any more, then release the lock `start_run` took."""
    trainer.accelerator.wait_for_everyone()
    _RUN_LOCK.close()


def _incomplete_reason(checkpoint: Path) -> str | None:
    """Why `checkpoint` cannot be resumed from, or None when it is complete.

    Trainer writes `trainer_state.json` last (after the weights, optimiser, scheduler and random states), so a
    checkpoint whose state file is missing or cut short was interrupted while it was written."""
    state = checkpoint / "trainer_state.json"
    if not state.is_file():
        return "no trainer_state.json (interrupted while it was written?)"
    try:
        json.loads(state.read_text())
    except (ValueError, UnicodeDecodeError) as error:
        return f"trainer_state.json is not valid JSON ({error})"
    if not any((checkpoint / name).is_file() for name in WEIGHT_FILES):
        return f"no weights file (one of {', '.join(WEIGHT_FILES)})"
    return None


def last_complete_checkpoint(output_dir: str | Path) -> tuple[Path | None, list[tuple[Path, str]]]:
    """The newest complete `checkpoint-N` folder in `output_dir` (None when there is none), and the newer incomplete
    ones skipped to reach it, each with the reason."""
    numbered = []
    for path in Path(output_dir).glob("checkpoint-*"):
        suffix = path.name.removeprefix("checkpoint-")
        if path.is_dir() and suffix.isdigit():
            numbered.append((int(suffix), path))
    skipped = []
    for _, path in sorted(numbered, reverse=True):
        reason = _incomplete_reason(path)
        if reason is None:
            return path, skipped
        skipped.append((path, reason))
    return None, skipped


def resume_target(value: str | None, output_dir: str | Path) -> str | None:
    """`--resume_from_checkpoint` for `Trainer.train`: a checkpoint folder as given, or for "true"/"last" the newest
    complete checkpoint in `output_dir` (newer ones left incomplete by an interruption are skipped with a warning).

    Raises:
        ValueError: "true"/"last" and `output_dir` holds no complete checkpoint.
    """
    if value is None or value.lower() not in ("true", "last"):
        return value
    checkpoint, skipped = last_complete_checkpoint(output_dir)
    for path, reason in skipped:
        warnings.warn(f"skipping incomplete checkpoint {path}: {reason}", stacklevel=2)
    if checkpoint is None:
        found = f" (incomplete: {', '.join(path.name for path, _ in skipped)})" if skipped else ""
        raise ValueError(f"--resume_from_checkpoint {value}: no complete checkpoint-N folder in {output_dir}{found}")
    return str(checkpoint)


def end_processes() -> None:
    """Close the process group of a multi-process run (a process exiting with it open can abort in gloo)."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()


@contextmanager
def _preserved_rng_state() -> Iterator[None]:
    """Runs the body, then puts Python's, NumPy's and torch's (CPU and every initialised CUDA device) global random
    states back as they were, whatever the body drew from them."""
    python_state, numpy_state, torch_state = random.getstate(), np.random.get_state(), torch.get_rng_state()
    cuda_states = torch.cuda.get_rng_state_all() if torch.cuda.is_available() and torch.cuda.is_initialized() else None
    try:
        yield
    finally:
        random.setstate(python_state)
        np.random.set_state(numpy_state)
        torch.set_rng_state(torch_state)
        if cuda_states is not None:
            torch.cuda.set_rng_state_all(cuda_states)


class _FinalWeightsCallback(TrainerCallback):
    """Keeps a CPU copy of the weights training ended with (before weight averaging replaces them)."""

    def __init__(self) -> None:
        self.state_dict: dict[str, torch.Tensor] | None = None

    def on_train_end(self, args: TrainingArguments, state: Any, control: Any, model: Any = None, **kwargs: Any) -> None:
        self.state_dict = {key: value.detach().cpu().clone() for key, value in model.state_dict().items()}


class ASTTrainer(Trainer):
    """`Trainer` with the AST recipe: reproducible (optionally balanced) draws, the paper's Adam and step schedule,
    weight averaging.

    A map-style training dataset is read with `EpochDrawSampler` keys (`datasets.AudioDataset(train=True)` takes
    them), seeded by `data_seed(args)`; a stream orders itself. Optimiser and scheduler are built in
    `create_optimizer` / `create_scheduler`, where Trainer expects them, so a run resumed with
    `resume_from_checkpoint` reloads their states as usual. With weight averaging the callbacks that average the
    epochs and keep the last epoch's weights are added to `callbacks`.

    Args:
        model, args: As for `Trainer`.
        recipe: The recipe's optimiser (`paper_optimizer`), step schedule (`lr_decay_*`) and weight averaging.
        sample_weights: (num_train_clips,) weights of a balanced draw, or None for a permutation per epoch.
        callbacks, kwargs: As for `Trainer`.
    """

    def __init__(
        self,
        model: torch.nn.Module,
        args: TrainingArguments,
        *,
        recipe: RecipeArguments,
        sample_weights: torch.Tensor | None = None,
        callbacks: Sequence[TrainerCallback] = (),
        **kwargs: Any,
    ) -> None:
        self.recipe = recipe
        self.sample_weights = sample_weights
        self.final_weights = _FinalWeightsCallback() if recipe.weight_averaging else None
        callbacks = list(callbacks)
        if self.final_weights is not None:
            averaging = WeightAveragingCallback(
                recipe.weight_averaging_start_epoch,
                recipe.weight_averaging_end_epoch,
                save_epoch_checkpoints=args.save_strategy != "no",
            )
            callbacks += [self.final_weights, averaging]
        super().__init__(model=model, args=args, callbacks=callbacks, **kwargs)

    def evaluate(self, *args: Any, **kwargs: Any) -> dict[str, float]:
        """`Trainer.evaluate`, leaving the global random states as it found them.

        Why: a checkpoint stores the random states of the step it is saved at, and an epoch's evaluation runs after
        the last step's checkpoint (Trainer saves in the step's `on_step_end`, evaluates at the epoch's end) and draws
        from the global generators (creating the evaluation DataLoader's iterator draws its base seed). Without the
        restore, the uninterrupted run would go on from states the checkpoint never saw, and a run resumed from an
        epoch-end checkpoint would drift from it."""
        with _preserved_rng_state():
            return super().evaluate(*args, **kwargs)

    def create_model_card(self, **kwargs: Any) -> None:
        """Trainer's generic card, unless output_dir already holds one (`report.write_model_card`'s, with the
        metrics of every evaluated model and `model-index` metadata), which `push_to_hub` must not replace."""
        if not (Path(self.args.output_dir) / "README.md").is_file():
            super().create_model_card(**kwargs)

    def _get_train_sampler(self, train_dataset: Dataset | None = None) -> Sampler | None:
        dataset = self.train_dataset if train_dataset is None else train_dataset
        if isinstance(dataset, torch.utils.data.IterableDataset):  # a stream: it orders itself
            return super()._get_train_sampler(train_dataset)
        return EpochDrawSampler(len(dataset), data_seed(self.args), self.sample_weights)

    def create_optimizer(self, model: torch.nn.Module | None = None) -> torch.optim.Optimizer:
        if not self.recipe.paper_optimizer:
            return super().create_optimizer(model)
        if self.optimizer is None:
            self.optimizer = build_optimizer(
                self.model if model is None else model,
                lr=self.args.learning_rate,
                weight_decay=self.args.weight_decay,
                betas=(self.args.adam_beta1, self.args.adam_beta2),
            )
        return self.optimizer

    def create_scheduler(
        self, num_training_steps: int, optimizer: torch.optim.Optimizer | None = None
    ) -> torch.optim.lr_scheduler.LRScheduler:
        if self.recipe.lr_decay_start_epoch is None:
            return super().create_scheduler(num_training_steps, optimizer)
        if self.lr_scheduler is None:
            self.lr_scheduler = build_lr_scheduler(
                self.optimizer if optimizer is None else optimizer,
                trainer_steps_per_epoch(len(self.train_dataset), self.args),
                decay_start_epoch=self.recipe.lr_decay_start_epoch,
                decay_every_epochs=self.recipe.lr_decay_every_epochs,
                decay_factor=self.recipe.lr_decay_factor,
                warmup_steps=self.args.get_warmup_steps(num_training_steps),
            )
            self._created_lr_scheduler = True  # rebuilt on the next train(), as Trainer does with its own
        return self.lr_scheduler

    def save_outputs(self, output_dir: Path, train_metrics: dict[str, float], eval_metrics: dict[str, float]) -> None:
        """The model and feature extractor (safetensors) in `output_dir`, and the files transformers' examples write:
        train_results.json, eval_results.json, all_results.json and trainer_state.json (main process only)."""
        self.save_model(str(output_dir))
        self.save_metrics("train", train_metrics)
        self.save_metrics("eval", eval_metrics)
        self.save_state()

    def evaluate_trained_models(
        self, dataset: Dataset, metric_key_prefix: str = "eval"
    ) -> tuple[PredictionOutput, dict[str, dict[str, float]]]:
        """Predictions of the model as trained (weight-averaged when averaging) on `dataset`, and the metrics of every
        model evaluated: {"final": ...} or {"weight-averaged": ..., "last epoch": ...}."""
        prediction = self.predict(dataset, metric_key_prefix=metric_key_prefix)
        if self.final_weights is None:
            return prediction, {"final": prediction.metrics}
        averaged = {key: value.detach().clone() for key, value in self.model.state_dict().items()}
        self.model.load_state_dict(self.final_weights.state_dict)
        last = self.predict(dataset, metric_key_prefix=metric_key_prefix).metrics
        self.model.load_state_dict(averaged)
        return prediction, {"weight-averaged": prediction.metrics, "last epoch": last}
