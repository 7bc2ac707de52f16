"""Train an Audio Spectrogram Transformer (AST) classifier with `transformers.Trainer`: the paper's recipes, your data.

With no data arguments it runs a self-contained demo: it writes a synthetic 8-class sound-event dataset
(`synthetic_sounds.py`) to `<output_dir>/data`, trains a tiny AST from scratch on the CPU, saves the model, its feature
extractor, a model card and a confusion matrix to `output_dir` and classifies a held-out clip with `pipeline`:

    python examples/run_audio_classification.py
    python examples/run_audio_classification.py --data_dir fsdd/recordings --label_regex '^(\\d+)_' \\
        --eval_regex '_[0-4]\\.wav$'                                          # a folder, split by a regex
    python examples/run_audio_classification.py --train_file train.csv --eval_file eval.csv    # CSV / JSONL manifests
    python examples/run_audio_classification.py --dataset_name NAME --eval_split_name test    # a `datasets` dataset
    python examples/run_audio_classification.py examples/recipes/esc50.json --train_file ...  # a recipe, overridden
    python examples/run_audio_classification.py --strong_labels S.tsv --audio_dir A ...  # sound event detection

Every `transformers.TrainingArguments` option is accepted too (this script's defaults: `TRAINING_DEFAULTS`). It runs
unchanged under `torchrun` and `accelerate launch`. The pieces are `modeling_ast.training`'s; examples/README.md
describes the options.
"""

from __future__ import annotations

import functools
import importlib.util
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

import torch
import transformers
from transformers import HfArgumentParser, TrainerCallback, TrainingArguments

from modeling_ast import ASTConfig, ASTForAudioClassification, ASTForAudioFrameClassification  # registers "ast"
from modeling_ast.conversion.imagenet import ast_from_imagenet
from modeling_ast.training.collator import AudioCollator
from modeling_ast.training.metrics import compute_metrics_fn
from modeling_ast.training.recipes import RecipeArguments, check_recipe, parse_args_with_recipe
from modeling_ast.training.report import headline, pipeline_top3, save_plot, training_summary, write_model_card
from modeling_ast.training.sed import SEDArguments, SEDCollator, frame_model, sed_task
from modeling_ast.training.sed_evaluation import choose_event_options, eval_windows, event_options_summary
from modeling_ast.training.sed_evaluation import sed_metrics_fn
from modeling_ast.training.sources import folder_examples, manifest_examples
from modeling_ast.training.starting_points import feature_extractor_for, pretrained_for_task, with_patchout
from modeling_ast.training.task import TaskData, task_from_datasets, task_from_examples
from modeling_ast.training.trainer import ASTTrainer, data_seed, end_processes, finish_run, resume_target, start_run
from modeling_ast.training.trainer import launched_on_cpus
from synthetic_sounds import generate_dataset

SCRIPT = "examples/run_audio_classification.py"
# Input geometry of a new (or ImageNet-initialised) model when not given (a pretrained one keeps its own), and size.
NEW_MODEL = {"max_length": 256, "frequency_stride": 10, "time_stride": 10}
SIZE = ("hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size", "hidden_dropout_prob")

TRAINING_DEFAULTS: dict[str, Any] = {
    "output_dir": "outputs/demo",
    "report_to": "tensorboard" if importlib.util.find_spec("tensorboard") is not None else "none",
    "eval_strategy": "epoch",
    "save_strategy": "no",
    "num_train_epochs": 5,
    "learning_rate": 2e-3,
    "warmup_steps": 0.1,
    "weight_decay": 5e-7,  # the AST recipes' Adam: coupled L2 of 5e-7, betas (0.95, 0.999) (see --paper_optimizer)
    "adam_beta1": 0.95,
    "per_device_train_batch_size": 16,
    "per_device_eval_batch_size": 32,
    "logging_steps": 10,
    "dataloader_pin_memory": torch.cuda.is_available(),
    "use_cpu": launched_on_cpus(),  # several processes on CPUs must train together (gloo), not each alone
    "remove_unused_columns": False,  # the datasets yield raw `audio` that the collator turns into `input_values`
}
"""TrainingArguments defaults of this script, sized for the demo; a recipe file and the command line override them."""


@dataclass
class DataArguments:
    """Where the audio and its labels come from. Give none of these to run the synthetic demo."""

    data_dir: str | None = field(
        default=None,
        metadata={"help": "Folder searched recursively for audio files; labels: each file's folder, or --label_regex."},
    )
    label_regex: str | None = field(
        default=None,
        metadata={
            "help": "Regex searched in each file's path relative to --data_dir (POSIX separators); the label is its "
            "group named 'label', else its first group, else the whole match. FSDD: '^(\\d+)_'."
        },
    )
    eval_regex: str | None = field(default=None, metadata={"help": "Relative paths matching this: evaluation split."})
    audio_extensions: str | None = field(default=None, metadata={"help": "Extensions --data_dir reads (default: all)."})
    train_file: str | None = field(
        default=None,
        metadata={
            "help": "CSV (`path,label`, several labels separated by ';') or JSON Lines (`{\"path\", \"label\"}`) "
            "manifest of the training clips; paths relative to the manifest."
        },
    )
    eval_file: str | None = field(default=None, metadata={"help": "Manifest of the evaluation clips."})
    dataset_name: str | None = field(default=None, metadata={"help": "Hub id, data folder or save_to_disk folder."})
    dataset_config_name: str | None = field(default=None, metadata={"help": "Configuration of --dataset_name."})
    train_split_name: str = field(default="train", metadata={"help": "Training split of --dataset_name."})
    eval_split_name: str = field(default="test", metadata={"help": "Evaluation split of --dataset_name."})
    audio_column_name: str = field(default="audio", metadata={"help": "Audio column of --dataset_name."})
    label_column_name: str = field(
        default="label", metadata={"help": "Label column of --dataset_name: a class label, a string, or a list."}
    )
    streaming: bool = field(
        default=False, metadata={"help": "Stream --dataset_name (needs --max_steps and ClassLabel labels)."})
    shuffle_buffer_size: int = field(default=1000, metadata={"help": "With --streaming: the shuffle buffer."})
    problem_type: Literal["auto", "single_label_classification", "multi_label_classification"] = field(
        default="auto", metadata={"help": "auto: single-label when each training clip has one label, else multi-label."}
    )
    on_bad_file: Literal["error", "skip"] = field(
        default="error",
        metadata={"help": "Unreadable audio (and bad SED label rows): stop naming it, or skip it and count it."})
    synthetic_train_per_class: int = field(default=200, metadata={"help": "Demo: training clips per class."})
    synthetic_eval_per_class: int = field(default=15, metadata={"help": "Demo: evaluation clips per class."})
    synthetic_seed: int = field(default=0, metadata={"help": "Demo: seed of the synthetic dataset."})

    def __post_init__(self) -> None:
        given = {
            "--data_dir": self.data_dir is not None,
            "--train_file/--eval_file": bool(self.train_file or self.eval_file),
            "--dataset_name": self.dataset_name is not None,
        }
        sources = [name for name, is_given in given.items() if is_given]
        if len(sources) > 1:
            raise ValueError(f"give one data source, not {' and '.join(sources)}")
        if self.data_dir is not None and not self.eval_regex:
            raise ValueError("--data_dir needs --eval_regex to choose the evaluation clips")
        if self.data_dir is None and (self.label_regex or self.eval_regex):
            raise ValueError("--label_regex and --eval_regex apply to the files of --data_dir; give --data_dir too")
        if bool(self.train_file) != bool(self.eval_file):
            missing = "--eval_file" if self.train_file else "--train_file"
            raise ValueError(f"manifests come in pairs: {missing} is missing")
        if self.streaming and self.dataset_name is None:
            raise ValueError("--streaming applies to --dataset_name")

    @property
    def is_demo(self) -> bool:
        return self.data_dir is None and self.train_file is None and self.dataset_name is None

    @property
    def multi_label(self) -> bool | None:
        """The task asked for by --problem_type, or None to infer it from the labels."""
        return None if self.problem_type == "auto" else self.problem_type == "multi_label_classification"


@dataclass
class ModelArguments:
    """The model to train and its features: a new AST, a pretrained AST, or an ImageNet ViT/DeiT turned into one."""

    model_name_or_path: str | None = field(
        default=None,
        metadata={
            "help": "Fine-tune this AST (folder or Hub id, this package's or transformers' AST). Its head is replaced "
            "when the labels differ; the size arguments are ignored, --max_length and the strides re-target it."
        },
    )
    imagenet_checkpoint: str | None = field(
        default=None,
        metadata={"help": "Start from this ImageNet ViT/DeiT (timm file, transformers/timm folder or Hub id)."},
    )
    hidden_size: int = field(default=128, metadata={"help": "Token width D of a new model."})
    num_hidden_layers: int = field(default=2, metadata={"help": "Transformer blocks of a new model."})
    num_attention_heads: int = field(default=4, metadata={"help": "Attention heads of a new model."})
    intermediate_size: int = field(default=256, metadata={"help": "MLP width of a new model."})
    hidden_dropout_prob: float = field(default=0.1, metadata={"help": "Dropout on token states of a new model."})
    max_length: int | None = field(
        default=None,
        metadata={
            "help": "Frames (~100 per second) of the positional grid and the feature extractor (new model: 256; "
            "pretrained: its own, another value re-targets it). Longer training clips are cropped at random."
        },
    )
    frequency_stride: int | None = field(default=None, metadata={"help": "Patch stride along mel (new model: 10)."})
    time_stride: int | None = field(default=None, metadata={"help": "Patch stride along time (new model: 10)."})
    patchout_time: int | None = field(default=None, metadata={"help": "Time columns of patches dropped per step."})
    patchout_frequency: int | None = field(default=None, metadata={"help": "Frequency rows dropped per step."})
    patchout_random: float | None = field(default=None, metadata={"help": "Fraction of other patches dropped."})
    fbank_mean: float | None = field(default=None, metadata={"help": "Normalisation mean (compute_fbank_stats.py)."})
    fbank_std: float | None = field(default=None, metadata={"help": "Normalisation std; default the checkpoint's."})
    padding: Literal["longest", "max_length"] = field(
        default="longest", metadata={"help": "Pad each batch to its longest clip, or to max_length (the original)."})
    attention_mask: bool = field(default=True, metadata={"help": "Mask the padding frames (the original: false)."})

    def __post_init__(self) -> None:
        if self.model_name_or_path and self.imagenet_checkpoint:
            raise ValueError("give --model_name_or_path or --imagenet_checkpoint, not both")
        if (self.fbank_mean is None) != (self.fbank_std is None):
            raise ValueError("give --fbank_mean and --fbank_std together")
        if not self.model_name_or_path:
            for name, value in NEW_MODEL.items():
                setattr(self, name, getattr(self, name) or value)

    def patchout(self) -> dict[str, int | float]:
        """The patchout settings given on the command line (config field -> value)."""
        names = ("patchout_time", "patchout_frequency", "patchout_random")
        return {name: getattr(self, name) for name in names if getattr(self, name) is not None}

    def config(self, new_model: bool, **labels: Any) -> ASTConfig:
        """The config of a new model (`new_model`: its size too) or of an ImageNet one (geometry and patchout)."""
        names = (*SIZE, *NEW_MODEL) if new_model else tuple(NEW_MODEL)
        return ASTConfig(**{name: getattr(self, name) for name in names}, **self.patchout(), **labels)


def parse_args(argv: Sequence[str]) -> tuple[ModelArguments, DataArguments, SEDArguments, RecipeArguments,
                                             TrainingArguments]:  # fmt: skip
    """The five argument groups: this script's defaults, replaced by a recipe file's values when the first argument is
    one, overridden by the rest of `argv`."""
    parser = HfArgumentParser((ModelArguments, DataArguments, SEDArguments, RecipeArguments, TrainingArguments))
    parser.set_defaults(**TRAINING_DEFAULTS)
    (model_args, data_args, sed_args, recipe, training_args), recipe_file, notes = parse_args_with_recipe(parser, argv)
    if recipe_file is not None and data_args.is_demo and not sed_args.is_sed:
        raise ValueError(f"recipe {recipe_file} needs data: {notes.get('_data', 'a data source')}")
    return model_args, data_args, sed_args, recipe, training_args


def read_task_data(data_args: DataArguments, output_dir: Path) -> TaskData:
    """The clips named by `data_args`; for the demo, a synthetic dataset written to `output_dir/data` first."""
    multi_label, check_files = data_args.multi_label, data_args.on_bad_file == "error"
    if data_args.dataset_name is not None:
        return task_from_datasets(
            data_args.dataset_name, data_args.dataset_config_name, data_args.train_split_name,
            data_args.eval_split_name, data_args.audio_column_name, data_args.label_column_name,
            data_args.streaming, multi_label,
        )  # fmt: skip
    if data_args.data_dir is not None:
        splits = folder_examples(
            data_args.data_dir, data_args.label_regex, data_args.eval_regex, data_args.audio_extensions
        )
        return task_from_examples(splits["train"], splits["eval"], f"folder {data_args.data_dir}", multi_label,
                                  check_files)  # fmt: skip
    if data_args.is_demo:
        seed = data_args.synthetic_seed
        train_file, eval_file = generate_dataset(
            output_dir / "data", data_args.synthetic_train_per_class, data_args.synthetic_eval_per_class, seed
        )
        source = f"synthetic sound events (examples/synthetic_sounds.py, seed {seed})"
    else:
        train_file, eval_file = Path(data_args.train_file), Path(data_args.eval_file)
        source = f"manifests {train_file} / {eval_file}"
    train, evaluation = manifest_examples(train_file), manifest_examples(eval_file)
    return task_from_examples(train, evaluation, source, multi_label, check_files)


def main(argv: Sequence[str] | None = None, callbacks: Sequence[TrainerCallback] = ()) -> dict[str, Any]:
    """Runs the whole recipe (with extra `callbacks`); returns the metrics, the trained model and what was written."""
    # 1. Arguments: this script's defaults, then the recipe file (if the first argument is one), then the command line.
    argv = list(sys.argv[1:] if argv is None else argv)
    model_args, data_args, sed_args, recipe, training_args = parse_args(argv)
    sed = sed_args.is_sed  # sound event detection: a frame model trained on events
    check_recipe(recipe, training_args, data_args.streaming)
    start_run(training_args)  # checks the launch; output_dir is locked until finish_run: a second run is refused
    transformers.set_seed(training_args.seed)
    output_dir, is_main = Path(training_args.output_dir), training_args.process_index == 0

    # 2. Data: the training and evaluation clips (and events) and their label space.
    with training_args.main_process_first(desc="reading the data"):
        data = sed_task(sed_args, data_args.on_bad_file) if sed else read_task_data(data_args, output_dir)
    space = data.label_space
    if is_main:
        print(data.summary())
        if not training_args.report_to and importlib.util.find_spec("tensorboard") is None:
            print("note: tensorboard is not installed, so no training curves are logged (pip install tensorboard)")

    # 3. Model and feature extractor: a new AST, an ImageNet ViT/DeiT turned into one, or a pretrained AST.
    if model_args.imagenet_checkpoint:
        config = model_args.config(new_model=False, **space.config_kwargs())
        model = ast_from_imagenet(model_args.imagenet_checkpoint, config, seed=training_args.seed).train()
    elif model_args.model_name_or_path and sed:
        model = frame_model(model_args.model_name_or_path, space).train()
    elif model_args.model_name_or_path:
        model = pretrained_for_task(
            model_args.model_name_or_path, space, model_args.max_length, model_args.frequency_stride,
            model_args.time_stride, seed=training_args.seed,
        )  # fmt: skip
        model = with_patchout(model, model_args.patchout()).train()
    else:
        model_class = ASTForAudioFrameClassification if sed else ASTForAudioClassification
        model = model_class(model_args.config(new_model=True, **space.config_kwargs()))
    feature_extractor = feature_extractor_for(
        model.config, model_args.model_name_or_path, model_args.fbank_mean, model_args.fbank_std,
        model_args.attention_mask,
    )  # fmt: skip
    if is_main:
        print(f"model: {model.num_parameters():,} parameters, {model.config.max_length} frames")

    # 4. Datasets and collator: training clips cropped and augmented per draw, evaluation clips plain (for sound event
    # detection whole, in the windows the pipeline runs).
    if sed:
        data = replace(data, eval=eval_windows(data.eval, model.config, feature_extractor))
    augment = recipe.augment()
    train_set, eval_set = data.datasets(
        feature_extractor, augment, data_seed(training_args), data_args.on_bad_file, data_args.shuffle_buffer_size
    )
    collator_class = functools.partial(SEDCollator, config=model.config, label_space=space) if sed else AudioCollator
    collator = collator_class(
        feature_extractor, augment, model_args.padding, model_args.attention_mask, min_frames=model.config.patch_size
    )

    # 5. Training, then evaluation of the model as trained (and, with weight averaging, of the last epoch's weights).
    weights = data.balanced_sample_weights() if recipe.balanced_sampling else None
    trainer = ASTTrainer(
        model, training_args, recipe=recipe, sample_weights=weights, train_dataset=train_set, eval_dataset=eval_set,
        data_collator=collator, processing_class=feature_extractor, callbacks=callbacks,
        compute_metrics=sed_metrics_fn(data.eval, model.config, space, feature_extractor) if sed
        else compute_metrics_fn(space.problem_type, space.id2label),
    )  # fmt: skip
    train_result = trainer.train(resume_from_checkpoint=resume_target(training_args.resume_from_checkpoint, output_dir))
    choice = None
    if data.validation:  # sound event detection: the model's event settings, chosen on validation clips, saved with it
        choice = choose_event_options(trainer.model, feature_extractor, data.validation)
        trainer.model.config.event_options = choice.settings
    prediction, results = trainer.evaluate_trained_models(eval_set)
    trainer.save_outputs(output_dir, train_result.metrics, prediction.metrics)
    result: dict[str, Any] = {
        "metrics": prediction.metrics,
        "results": results,
        "eval_accuracy": prediction.metrics.get("eval_accuracy"),
        "num_eval_clips": len({example["name"] for example in data.eval}) if sed else len(prediction.label_ids),
        "skipped_files": {"train": train_set.bad_files.total, "eval": eval_set.bad_files.last_pass_count},
        "skipped_label_rows": {split: len(rows) for split, rows in data.skipped_rows.items()},
        "output_dir": output_dir,
        "model": trainer.model,
        "problem_type": space.problem_type,
        "log_history": trainer.state.log_history,
        "event_options": choice,
    }

    # 6. Report (main process): metrics, plot, model card, and the saved model reloaded in `pipeline`.
    if is_main:
        clips = result["num_eval_clips"]
        for name, metrics in results.items():
            print(f"eval {headline(metrics, space.multi_label)} ({clips} clips, {name} model)")
        if data_args.on_bad_file == "skip":
            skipped = result["skipped_files"]
            print(f"skipped unreadable audio: {skipped['train']} training clip(s), {skipped['eval']} eval clip(s)")
            if sed:
                rows = ", ".join(f"{count} {'training' if split == 'train' else split} row(s)"
                                 for split, count in result["skipped_label_rows"].items())  # fmt: skip
                print(f"skipped bad label rows: {rows}")
        result["plot"] = None if sed else save_plot(prediction, space, output_dir)
        start = model_args.imagenet_checkpoint or model_args.model_name_or_path
        summary = training_summary(training_args, recipe, model_args.patchout())
        if choice is not None:
            summary.append(event_options_summary(choice, len(data.validation)))
            print(summary[-1].removeprefix("- "))
        result["model_card"] = write_model_card(
            output_dir, data, results, summary, SCRIPT, argv, start, result["plot"], dataset_name=data_args.dataset_name
        )
        if not sed:
            held_out = data.first_eval_example()
            result["top3"] = pipeline_top3(output_dir, held_out)
            guesses = ", ".join(f"{guess['label']} {guess['score']:.3f}" for guess in result["top3"])
            print(f"pipeline on held-out {held_out.get('name', 'clip')} (labels {held_out['labels']}): {guesses}")
        if not space.multi_label:
            print(f"eval accuracy: {result['eval_accuracy']:.3f} ({clips} clips)")
    if training_args.push_to_hub:  # the output folder as written, model card included (every process saves)
        result["hub_commit"] = trainer.push_to_hub(commit_message="End of training")
    finish_run(trainer)  # no process leaves while the main one still writes; then output_dir is unlocked
    return result


if __name__ == "__main__":
    main()
    end_processes()
