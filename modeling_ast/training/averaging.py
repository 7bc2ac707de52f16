"""Checkpoint weight averaging and model ensembles, as in the AST recipes.

Weight averaging (the released 0.459-mAP AudioSet model averages epochs 1-5; AudioSet balanced averages 6-25): each
floating-point tensor becomes its mean over the epochs (`torch.optim.swa_utils`' running mean, kept in float64, cast
back to the tensor's dtype); integer/bool tensors come from the last epoch. `WeightAveragingCallback` does it during
`transformers.Trainer` training and `average_checkpoints` (CLI: `examples/average_checkpoints.py`) for saved model
directories or `.safetensors` files, both with `StateDictAverager`: they give bit-identical weights for the same epochs.

Ensembles (the 0.475 / 0.485 AudioSet results): `ensemble_predict` averages the members' sigmoid probabilities
(multi-label models) or softmax probabilities (single-label) over the same inputs
(CLI: `examples/evaluate_ensemble.py`).
"""

from __future__ import annotations

import json
import math
import os
import shutil
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torch import nn
from torch.optim.swa_utils import get_swa_avg_fn
from transformers import PreTrainedModel, TrainerCallback, TrainerControl, TrainerState, TrainingArguments
from transformers.utils import logging

from ..conversion.io import atomic_output_dir, load_checkpoint_dir
from ..modeling_ast import class_scores

logger = logging.get_logger(__name__)

__all__ = [
    "EnsemblePrediction",
    "StateDictAverager",
    "WeightAveragingCallback",
    "average_checkpoints",
    "ensemble_predict",
]

_EPOCH_CHECKPOINT_DIR = "epoch_checkpoints"
_AVERAGED_MODEL_DIR = "weight_averaged"
_AVERAGING_RECORD = "weight_averaging.json"
_COPIED_CONFIGS = ("config.json", "preprocessor_config.json")
# config.json entries that may differ between checkpoints of the same model.
_VOLATILE_CONFIG_KEYS = frozenset({"transformers_version", "_name_or_path", "dtype", "torch_dtype"})

_swa_update = get_swa_avg_fn()


def _running_mean(averaged: torch.Tensor, current: torch.Tensor, num_averaged: int) -> torch.Tensor:
    """swa_utils' `averaged + (current - averaged) / (num_averaged + 1)` for floating-point tensors (the callers keep
    `averaged` in float64); other tensors (step counters, masks) take the latest value instead of a truncated mean."""
    return _swa_update(averaged, current, num_averaged) if averaged.is_floating_point() else current


class StateDictAverager:
    """Running mean (`_running_mean`, float64 on the CPU) of state dicts with identical keys, shapes and kinds."""

    def __init__(self) -> None:
        self._means: dict[str, torch.Tensor] = {}
        self._dtypes: dict[str, torch.dtype] = {}
        self._first_name = ""
        self.count = 0

    def _check_matches(self, state_dict: Mapping[str, torch.Tensor], name: str) -> None:
        """ValueError naming the keys, shapes or kinds in which `state_dict` differs from the first one added."""
        missing, extra = sorted(set(self._means) - set(state_dict)), sorted(set(state_dict) - set(self._means))
        if missing or extra:
            raise ValueError(
                f"{name} does not have the same tensors as {self._first_name}: missing {missing[:10]}, "
                f"unexpected {extra[:10]}"
            )
        for key, tensor in state_dict.items():
            mean = self._means[key]
            if tensor.shape != mean.shape or tensor.is_floating_point() != mean.is_floating_point():
                raise ValueError(
                    f"{key} has shape {tuple(tensor.shape)} and dtype {tensor.dtype} in {name} but shape "
                    f"{tuple(mean.shape)} and dtype {self._dtypes[key]} in the checkpoints before it (the first: "
                    f"{self._first_name})"
                )

    def add(self, state_dict: Mapping[str, torch.Tensor], name: str) -> None:
        """Add one state dict; `name` (e.g. a path) identifies it in error messages."""
        if self.count == 0:
            self._first_name = name
        else:
            self._check_matches(state_dict, name)
        for key, tensor in state_dict.items():
            self._dtypes[key] = tensor.dtype
            dtype = torch.float64 if tensor.is_floating_point() else tensor.dtype
            current = tensor.detach().to("cpu", dtype, copy=True)
            self._means[key] = _running_mean(self._means[key], current, self.count) if self.count else current
        self.count += 1

    def average(self) -> dict[str, torch.Tensor]:
        """The mean state dict: float tensors in the dtype of the last one added, other tensors from the last one."""
        if self.count == 0:
            raise ValueError("no state dict has been added, nothing to average")
        return {key: mean.to(self._dtypes[key], copy=True) for key, mean in self._means.items()}


def _write_record(directory: Path, record: dict[str, Any]) -> None:
    """weight_averaging.json: what was averaged."""
    (directory / _AVERAGING_RECORD).write_text(json.dumps(record, indent=2) + "\n")


class WeightAveragingCallback(TrainerCallback):
    """Average the model weights at the ends of epochs `start_epoch`..`end_epoch` (1-based, inclusive).

    Each epoch end in the range adds the model's state dict to a `StateDictAverager` (a float64 running mean on the
    CPU, as `average_checkpoints` keeps) and, with `save_epoch_checkpoints`, the main process writes the weights to
    `<output_dir>/epoch_checkpoints/epoch_{k}.safetensors` with the configs beside them (for `average_checkpoints`).
    At the end of training the average is loaded into the model on every process, and the main process saves it with
    the feature extractor and `weight_averaging.json` to `<output_dir>/weight_averaged` (replacing an earlier one).

    Epoch k ends when `state.epoch` reaches k (a run stopped by `max_steps` ends its last, partial epoch at the next
    integer). Training that ends before `end_epoch` averages the epochs seen, with a warning; before `start_epoch`,
    `on_train_end` raises ValueError. After a resume from a Trainer checkpoint, the range's epochs that ended before
    it are read back from `epoch_checkpoints/` (use `save_epoch_checkpoints` for runs that may resume; on several
    machines `output_dir` must be shared). Not usable with `load_best_model_at_end` (which model would be final is
    ambiguous) or with sharded parameters (FSDP / DeepSpeed ZeRO-3: `model.state_dict()` is not the full model).

    Attributes (after training): `averaged_epochs` (list of epochs averaged) and `output_path` (the written
    directory, None on non-main processes).
    """

    def __init__(self, start_epoch: int, end_epoch: int, save_epoch_checkpoints: bool = False) -> None:
        if not (isinstance(start_epoch, int) and isinstance(end_epoch, int) and 1 <= start_epoch <= end_epoch):
            raise ValueError(f"need integers 1 <= start_epoch <= end_epoch, got {start_epoch!r} and {end_epoch!r}")
        self.start_epoch = start_epoch
        self.end_epoch = end_epoch
        self.save_epoch_checkpoints = save_epoch_checkpoints
        self.averaged_epochs: list[int] = []
        self.output_path: Path | None = None
        self._averager = StateDictAverager()

    @staticmethod
    def epoch_checkpoint(output_dir: str | os.PathLike, epoch: int) -> Path:
        """Path of the saved weights of `epoch` under a training `output_dir`."""
        return Path(output_dir) / _EPOCH_CHECKPOINT_DIR / f"epoch_{epoch}.safetensors"

    def on_train_begin(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any
    ) -> None:
        if args.load_best_model_at_end:
            raise ValueError("WeightAveragingCallback cannot be combined with load_best_model_at_end=True")
        self.averaged_epochs = []
        self.output_path = None
        self._averager = StateDictAverager()

    def _add(self, state_dict: Mapping[str, torch.Tensor], epoch: int) -> None:
        """Update the running average with `state_dict` as the weights of `epoch` (buffers included, like every
        tensor average_checkpoints reads)."""
        self._averager.add(state_dict, f"epoch {epoch}")
        self.averaged_epochs.append(epoch)

    def _save_epoch(self, args: TrainingArguments, epoch: int, model: nn.Module, processing_class: Any) -> None:
        """Write the epoch's weights (and, the first time, the configs) to `epoch_checkpoints/`."""
        path = self.epoch_checkpoint(args.output_dir, epoch)
        path.parent.mkdir(parents=True, exist_ok=True)
        weights = {key: tensor.detach().cpu().contiguous() for key, tensor in model.state_dict().items()}
        save_file(weights, str(path), metadata={"format": "pt"})
        config = getattr(model, "config", None)
        if config is not None and not (path.parent / "config.json").is_file():
            config.save_pretrained(path.parent)
        if hasattr(processing_class, "save_pretrained") and not (path.parent / "preprocessor_config.json").is_file():
            processing_class.save_pretrained(path.parent)

    def _catch_up(self, args: TrainingArguments, epoch: int) -> None:
        """After a resume, add the range's epochs before `epoch` that are missing from the average, from their files."""
        for earlier in range(self.start_epoch, min(epoch, self.end_epoch + 1)):
            if earlier in self.averaged_epochs:
                continue
            path = self.epoch_checkpoint(args.output_dir, earlier)
            if not path.is_file():
                raise ValueError(
                    f"weight averaging over epochs {self.start_epoch}-{self.end_epoch} needs epoch {earlier}, which "
                    f"ended before training resumed, but {path} does not exist (use save_epoch_checkpoints=True)"
                )
            self._add(load_file(path), earlier)

    def on_epoch_end(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any
    ) -> None:
        model, processing_class = kwargs["model"], kwargs.get("processing_class")
        epoch = math.ceil(state.epoch - 1e-6)
        if not self.start_epoch <= epoch <= self.end_epoch:
            return
        if self.save_epoch_checkpoints and state.is_world_process_zero:
            self._save_epoch(args, epoch, model, processing_class)
        self._catch_up(args, epoch)
        self._add(model.state_dict(), epoch)

    def on_train_end(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any
    ) -> None:
        model, processing_class = kwargs["model"], kwargs.get("processing_class")
        # Resumed after the range: all of it comes from the files.
        self._catch_up(args, math.floor((state.epoch or 0.0) + 1e-6) + 1)
        self.averaged_epochs.sort()
        if not self.averaged_epochs:
            raise ValueError(
                f"weight averaging over epochs {self.start_epoch}-{self.end_epoch}, but training ended at epoch "
                f"{state.epoch:g} before reaching epoch {self.start_epoch}"
            )
        if len(self.averaged_epochs) < self.end_epoch - self.start_epoch + 1:
            logger.warning(
                f"training ended before epoch {self.end_epoch}: averaging only epochs {self.averaged_epochs}"
            )
        model.load_state_dict(self._averager.average())  # the float64 mean rounded to the model's dtypes
        self._averager = StateDictAverager()  # frees the float64 means
        if state.is_world_process_zero:
            target = Path(args.output_dir) / _AVERAGED_MODEL_DIR
            with atomic_output_dir(target, overwrite=True) as staging:
                model.save_pretrained(staging)
                if hasattr(processing_class, "save_pretrained"):
                    processing_class.save_pretrained(staging)
                _write_record(staging, {"averaged_epochs": self.averaged_epochs})
            self.output_path = target.resolve()
        logger.info(f"loaded the average of epochs {self.averaged_epochs} into the model")


def _read_checkpoint(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, Any] | None, Path]:
    """(state dict, config.json contents or None, folder holding its configs) of a model directory or file."""
    if path.is_dir():
        state_dict, config = load_checkpoint_dir(path)
        return state_dict, config, path
    if path.is_file() and path.suffix == ".safetensors":
        config_file = path.parent / "config.json"
        config = json.loads(config_file.read_text()) if config_file.is_file() else None
        return load_file(path), config, path.parent
    raise ValueError(f"{path} is neither a saved model directory nor a .safetensors file")


def _config_differences(reference: dict[str, Any], other: dict[str, Any]) -> list[str]:
    """'key: a vs b' for every config.json entry (besides version/dtype/name bookkeeping) that differs."""
    keys = (set(reference) | set(other)) - _VOLATILE_CONFIG_KEYS
    return [
        f"{key}: {reference.get(key, '<absent>')!r} vs {other.get(key, '<absent>')!r}"
        for key in sorted(keys)
        if reference.get(key, "<absent>") != other.get(key, "<absent>")
    ]


def average_checkpoints(
    inputs: Sequence[str | os.PathLike], output_dir: str | os.PathLike, overwrite: bool = False
) -> Path:
    """Write the weight average of several checkpoints of one model as a model directory.

    Args:
        inputs: model directories written by `save_pretrained` (model.safetensors, sharded safetensors or
            pytorch_model.bin, with config.json) and/or `.safetensors` state-dict files (e.g.
            `epoch_checkpoints/epoch_{k}.safetensors`; a config.json beside a file is its config). Read one at a time.
        output_dir: where to write `model.safetensors` (the average), `weight_averaging.json` (the inputs) and the
            config.json / preprocessor_config.json of the last input that has them. Written atomically.
        overwrite: replace a non-empty `output_dir`.

    Returns:
        The resolved `output_dir`.

    Raises:
        ValueError: no inputs, an input that is neither a model directory nor a .safetensors file, or inputs whose
            tensor names, shapes or config.json differ (the message names the input and the difference).
    """
    paths = [Path(p) for p in inputs]
    if not paths:
        raise ValueError("average_checkpoints needs at least one checkpoint")
    averager = StateDictAverager()
    reference_config: tuple[Path, dict[str, Any]] | None = None
    config_dirs: dict[str, Path] = {}
    for path in paths:
        state_dict, config, config_dir = _read_checkpoint(path)
        if config is not None:
            reference_config = reference_config or (path, config)
            differences = "; ".join(_config_differences(reference_config[1], config)[:10])
            if differences:
                raise ValueError(f"config.json of {path} differs from that of {reference_config[0]}: {differences}")
        averager.add(state_dict, str(path))
        del state_dict
        config_dirs.update({name: config_dir for name in _COPIED_CONFIGS if (config_dir / name).is_file()})
    if "config.json" not in config_dirs:
        logger.warning("no input has a config.json: the output holds only weights, which from_pretrained cannot load")
    with atomic_output_dir(output_dir, overwrite=overwrite, inputs=paths) as staging:  # never replaces an input
        save_file(averager.average(), str(staging / "model.safetensors"), metadata={"format": "pt"})
        for name, directory in config_dirs.items():
            shutil.copyfile(directory / name, staging / name)
        _write_record(staging, {"averaged_checkpoints": [str(p.resolve()) for p in paths]})
    return Path(output_dir).resolve()


@dataclass(frozen=True)
class EnsemblePrediction:
    """Outputs of an ensemble of M models over N clips of C classes.

    Attributes:
        probabilities: (N, C) float32 mean of the members' probabilities.
        member_probabilities: (M, N, C) float32 probabilities of each member.
        labels: the batches' "labels" concatenated ((N,) class ids or (N, C) multi-hot), or None if they had none.
    """

    probabilities: torch.Tensor
    member_probabilities: torch.Tensor
    labels: torch.Tensor | None


def _check_same_task(models: Sequence[PreTrainedModel]) -> str | None:
    """The members' shared problem_type; ValueError if num_labels, id2label or problem_type differ."""
    if not models:
        raise ValueError("an ensemble needs at least one model")
    first = models[0].config
    for index, model in enumerate(models[1:], start=1):
        for field in ("num_labels", "id2label", "problem_type"):
            if getattr(model.config, field) != getattr(first, field):
                raise ValueError(
                    f"ensemble members must share {field}: model 0 has {getattr(first, field)!r}, "
                    f"model {index} has {getattr(model.config, field)!r}"
                )
    return first.problem_type


def _class_probabilities(model: PreTrainedModel, inputs: Mapping[str, Any], problem_type: str | None) -> torch.Tensor:
    """(B, C) float32 CPU scores: sigmoid of the logits for multi-label models, softmax for single-label ones
    (`class_scores`, as the pipeline).

    `inputs` is a model batch (e.g. the feature extractor's `input_values` (B, T, F) and `attention_mask`); a
    "labels" entry is ignored. Tensors are moved to the model's device.
    """
    device = next(model.parameters()).device
    model_inputs = {
        key: value.to(device) if isinstance(value, torch.Tensor) else value
        for key, value in inputs.items()
        if key != "labels"
    }
    logits = model(**model_inputs).logits.float()
    return class_scores(logits, problem_type).cpu()


def ensemble_predict(
    models: Sequence[PreTrainedModel], data: Mapping[str, Any] | Iterable[Mapping[str, Any]]
) -> EnsemblePrediction:
    """Average the class probabilities of several models of the same task over the same inputs.

    Args:
        models: classifiers with equal num_labels, id2label and problem_type (ValueError otherwise). They are run in
            eval mode without gradients; their previous train/eval mode is restored afterwards.
        data: one batch of model inputs (a dict / `BatchFeature` with `input_values` (B, T, F), optionally
            `attention_mask` and `labels`) or an iterable of such batches (e.g. a `DataLoader`), read once: every
            model sees each batch before the next one is read.

    Returns:
        `EnsemblePrediction` with the mean (N, C), the per-member (M, N, C) probabilities and the labels if given.
    """
    problem_type = _check_same_task(models)
    batches = [data] if isinstance(data, Mapping) else data
    was_training = [model.training for model in models]
    member_chunks: list[list[torch.Tensor]] = [[] for _ in models]
    label_chunks: list[torch.Tensor] = []
    try:
        for model in models:
            model.eval()
        with torch.inference_mode():
            for batch in batches:
                for chunks, model in zip(member_chunks, models):
                    chunks.append(_class_probabilities(model, batch, problem_type))
                if batch.get("labels") is not None:
                    label_chunks.append(torch.as_tensor(batch["labels"]).cpu())
    finally:
        for model, training in zip(models, was_training):
            model.train(training)
    if not member_chunks[0]:
        raise ValueError("ensemble_predict got no batches")
    if label_chunks and len(label_chunks) != len(member_chunks[0]):
        raise ValueError("some batches have labels and others do not")
    members = torch.stack([torch.cat(chunks) for chunks in member_chunks])
    return EnsemblePrediction(
        probabilities=members.mean(dim=0),
        member_probabilities=members,
        labels=torch.cat(label_chunks) if label_chunks else None,
    )
