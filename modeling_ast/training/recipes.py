"""The paper's training recipes as arguments: `RecipeArguments` and the recipe files (`examples/recipes/*.json`).

A recipe file is a JSON object of argument names and values (any argument of the command it is given to); keys
starting with "_" are notes (the paper's number, the data a recipe needs). `parse_args_with_recipe` reads a command
line whose first argument may be such a file: its values replace the parser's defaults and the arguments after it
override them.
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from transformers import HfArgumentParser, TrainingArguments

from .augment import AugmentConfig

__all__ = ["RecipeArguments", "check_recipe", "parse_args_with_recipe", "read_recipe"]


@dataclass
class RecipeArguments:
    """The paper's training recipe: augmentation, sampling, optimiser, learning-rate schedule, weight averaging."""

    mixup: float = field(default=0.0, metadata={"help": "Probability of waveform mixup per training clip."})
    mixup_alpha: float = field(default=10.0, metadata={"help": "Beta(alpha, alpha) of the mixup weight."})
    freqm: int = field(default=0, metadata={"help": "Largest SpecAugment frequency mask, in mel bins (0: none)."})
    timem: int = field(default=0, metadata={"help": "Largest SpecAugment time mask, in frames (0: none)."})
    noise: bool = field(default=False, metadata={"help": "Noise and time roll after normalisation (Speech Commands)."})
    balanced_sampling: bool = field(
        default=False,
        metadata={"help": "Draw training clips with the AST balanced weights (1000 / (label count + 0.01) summed)."},
    )
    paper_optimizer: bool = field(
        default=True,
        metadata={
            "help": "Adam with coupled L2 weight decay as in the AST recipes (--learning_rate, --weight_decay, "
            "--adam_beta1/2 apply); false uses TrainingArguments' --optim."
        },
    )
    lr_decay_start_epoch: int | None = field(
        default=None,
        metadata={
            "help": "The paper's step schedule: epochs 1..N keep the learning rate, then it is multiplied by "
            "--lr_decay_factor every --lr_decay_every_epochs epochs (after --warmup_steps of linear warm-up). "
            "Default: TrainingArguments' --lr_scheduler_type."
        },
    )
    lr_decay_every_epochs: int = field(default=1, metadata={"help": "Epochs between decays of the step schedule."})
    lr_decay_factor: float = field(default=0.5, metadata={"help": "Learning-rate factor per decay."})
    weight_averaging_start_epoch: int | None = field(
        default=None, metadata={"help": "Average the weights of epochs start..end (1-based) into the final model."}
    )
    weight_averaging_end_epoch: int | None = field(default=None, metadata={"help": "Last epoch averaged."})

    def __post_init__(self) -> None:
        if (self.weight_averaging_start_epoch is None) != (self.weight_averaging_end_epoch is None):
            raise ValueError("give --weight_averaging_start_epoch and --weight_averaging_end_epoch together")

    @classmethod
    def from_recipe(cls, path: str | os.PathLike) -> RecipeArguments:
        """The recipe part of a recipe file (its other arguments ignored; those it does not set keep the defaults)."""
        values, _ = read_recipe(Path(path))
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{key: value for key, value in values.items() if key in names})

    def augment(self) -> AugmentConfig:
        return AugmentConfig(
            mixup=self.mixup, mixup_alpha=self.mixup_alpha, freqm=self.freqm, timem=self.timem, noise=self.noise
        )

    @property
    def weight_averaging(self) -> bool:
        return self.weight_averaging_start_epoch is not None


def read_recipe(path: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """(argument values, notes) of a recipe JSON file; keys starting with "_" are notes."""
    if not path.is_file():
        raise FileNotFoundError(f"recipe {path} does not exist")
    try:
        values = json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise ValueError(f"recipe {path} is not valid JSON: {error}") from None
    if not isinstance(values, dict):
        raise ValueError(f"recipe {path} must hold a JSON object of argument names and values")
    notes = {key: value for key, value in values.items() if key.startswith("_")}
    return {key: value for key, value in values.items() if not key.startswith("_")}, notes


def parse_args_with_recipe(
    parser: HfArgumentParser, argv: Sequence[str] | None = None
) -> tuple[tuple[Any, ...], Path | None, dict[str, Any]]:
    """The parser's dataclasses from the command line (or `argv`), the recipe file and its notes.

    A first argument ending in .json is a recipe file: its values replace the parser's defaults (every key must be
    one of the parser's arguments; `parser` keeps them) and the arguments after it override them. Without one:
    (dataclasses, None, {}).
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    recipe_file, notes = None, {}
    if argv and argv[0].endswith(".json"):
        recipe_file = Path(argv.pop(0))
        values, notes = read_recipe(recipe_file)
        known = {f.name for cls in parser.dataclass_types for f in dataclasses.fields(cls)}
        unknown = sorted(key for key in values if key not in known)
        if unknown:
            raise ValueError(f"recipe {recipe_file} sets unknown arguments {unknown}")
        parser.set_defaults(**values)
    return tuple(parser.parse_args_into_dataclasses(args=argv)), recipe_file, notes


def check_recipe(recipe: RecipeArguments, training: TrainingArguments, streaming: bool) -> None:
    """Reject recipe settings the run cannot honour, before any data is read: options that count epochs on a stream
    (which has no length), and weight averaging with `load_best_model_at_end`."""
    if streaming:
        if training.max_steps <= 0:
            raise ValueError("--streaming needs --max_steps: a stream has no length to count epochs with")
        for flag, used in (
            ("--balanced_sampling", recipe.balanced_sampling),
            ("--lr_decay_start_epoch", recipe.lr_decay_start_epoch is not None),
            ("--weight_averaging_start_epoch", recipe.weight_averaging),
        ):
            if used:
                raise ValueError(f"{flag} counts epochs of a dataset with a length; it does not work with --streaming")
    if recipe.weight_averaging and training.load_best_model_at_end:
        raise ValueError("weight averaging cannot be combined with --load_best_model_at_end")
