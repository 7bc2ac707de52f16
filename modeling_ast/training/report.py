"""What a training run reports: the headline metrics, an evaluation plot, the model card, and a `pipeline` check."""

from __future__ import annotations

import shlex
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import transformers
from huggingface_hub import EvalResult, ModelCard, ModelCardData
from transformers import TrainingArguments
from transformers.trainer_utils import PredictionOutput

from .decoding import decode_example
from .labels import LabelSpace, list_names
from .metrics import per_class_average_precision
from .recipes import RecipeArguments
from .sources import Example
from .task import TaskData

__all__ = ["headline", "pipeline_top3", "save_plot", "training_summary", "write_model_card"]

_PLOT_FILES = {"single": "confusion_matrix.png", "multi": "per_class_ap.png"}
# Trainer's bookkeeping metrics, left out of the model card's table.
_BOOKKEEPING = ("_runtime", "_per_second", "_loss")


def headline(metrics: dict[str, float], multi_label: bool, prefix: str = "eval") -> str:
    """The main numbers of an evaluation, e.g. "accuracy 0.950, top-5 0.990" or "mAP 0.412, mAUC 0.950, d' 2.3"
    (or PSDS and F1 for sound event detection)."""
    if f"{prefix}_psds1" in metrics:
        names = {"psds1": "PSDS1", "psds2": "PSDS2", "event_f1": "event F1", "segment_f1": "segment F1"}
        return ", ".join(f"{name} {metrics[f'{prefix}_{key}']:.4f}" for key, name in names.items())
    if multi_label:
        return (
            f"mAP {metrics[f'{prefix}_mAP']:.4f}, mAUC {metrics[f'{prefix}_mAUC']:.4f}, "
            f"d' {metrics[f'{prefix}_d_prime']:.3f}, accuracy {metrics[f'{prefix}_accuracy']:.4f}"
        )
    return f"accuracy {metrics[f'{prefix}_accuracy']:.4f}, top-5 {metrics[f'{prefix}_top5_accuracy']:.4f}"


def save_plot(prediction: PredictionOutput, label_space: LabelSpace, output_dir: Path) -> Path | None:
    """A confusion matrix (single-label) or per-class AP bars (multi-label) as PNG; None without matplotlib."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        from matplotlib import pyplot
    except ImportError:
        print("note: matplotlib is not installed; no evaluation plot (pip install matplotlib)")
        return None
    logits = prediction.predictions[0] if isinstance(prediction.predictions, tuple) else prediction.predictions
    names = list(label_space.labels)
    if label_space.multi_label:
        figure = _per_class_ap_figure(pyplot, per_class_average_precision(logits, prediction.label_ids), names)
        path = output_dir / _PLOT_FILES["multi"]
    else:
        figure = _confusion_figure(pyplot, np.asarray(prediction.label_ids), np.argmax(logits, axis=-1), names)
        path = output_dir / _PLOT_FILES["single"]
    figure.savefig(path, dpi=100, bbox_inches="tight")
    pyplot.close(figure)
    return path


def _confusion_figure(pyplot: Any, truth: np.ndarray, predicted: np.ndarray, names: list[str]) -> Any:
    """Row-normalised confusion matrix; counts written in the cells for up to 30 classes."""
    count = len(names)
    matrix = np.zeros((count, count), dtype=np.int64)
    np.add.at(matrix, (truth, predicted), 1)
    rates = matrix / np.maximum(matrix.sum(axis=1, keepdims=True), 1)
    size = min(max(4.0, 0.45 * count + 2), 30.0)
    figure, axes = pyplot.subplots(figsize=(size, size))
    axes.imshow(rates, cmap="Blues", vmin=0, vmax=1)
    if count <= 30:
        axes.set_xticks(range(count), names, rotation=90)
        axes.set_yticks(range(count), names)
        for row in range(count):
            for column in range(count):
                if matrix[row, column]:
                    colour = "white" if rates[row, column] > 0.5 else "black"
                    axes.text(column, row, matrix[row, column], ha="center", va="center", color=colour, fontsize=8)
    axes.set_xlabel("predicted")
    axes.set_ylabel("true")
    axes.set_title(f"confusion matrix ({int(matrix.sum())} clips, accuracy {np.trace(matrix) / matrix.sum():.3f})")
    return figure


def _per_class_ap_figure(pyplot: Any, average_precision: np.ndarray, names: list[str]) -> Any:
    """Per-class average precision, sorted; class names shown for up to 60 classes."""
    scored = [(ap, name) for ap, name in zip(average_precision, names) if not np.isnan(ap)]
    scored.sort(reverse=True)
    values = [ap for ap, _ in scored]
    figure, axes = pyplot.subplots(figsize=(max(6.0, min(0.25 * len(values) + 2, 40.0)), 4))
    axes.bar(range(len(values)), values, color="tab:blue")
    if len(values) <= 60:
        axes.set_xticks(range(len(values)), [name for _, name in scored], rotation=90)
    axes.set_ylim(0, 1)
    axes.set_ylabel("average precision")
    axes.set_title(f"per-class AP ({len(values)} classes with positives, mAP {np.mean(values):.3f})")
    return figure


def _metrics_table(results: dict[str, dict[str, float]], prefix: str) -> str:
    """A markdown table: one row per evaluated model, one column per metric (Trainer's bookkeeping left out)."""
    keys = [key for key in next(iter(results.values())) if not key.endswith(_BOOKKEEPING)]
    header = "| model | " + " | ".join(key.removeprefix(f"{prefix}_") for key in keys) + " |"
    rows = [f"| {name} | " + " | ".join(f"{metrics[k]:.4f}" for k in keys) + " |" for name, metrics in results.items()]
    return "\n".join([header, "|" + " --- |" * (len(keys) + 1), *rows])


def training_summary(
    training: TrainingArguments, recipe: RecipeArguments, patchout: dict[str, int | float]
) -> list[str]:
    """Markdown bullet points of the settings that shape training."""
    length = f"{training.max_steps} steps" if training.max_steps > 0 else f"{training.num_train_epochs:g} epochs"
    if recipe.lr_decay_start_epoch is None:
        schedule = f"{getattr(training.lr_scheduler_type, 'value', training.lr_scheduler_type)} schedule"
    else:
        schedule = (
            f"x{recipe.lr_decay_factor:g} every {recipe.lr_decay_every_epochs} epoch(s) after epoch "
            f"{recipe.lr_decay_start_epoch}"
        )
    optimizer = "Adam (coupled L2)" if recipe.paper_optimizer else training.optim
    lines = [
        f"- {length}, batch {training.per_device_train_batch_size} per device x {training.world_size} process(es), "
        f"{optimizer}, learning rate {training.learning_rate:g}, weight decay {training.weight_decay:g}, "
        f"warm-up {training.warmup_steps:g}{' of the steps' if 0 < training.warmup_steps < 1 else ' steps'}, "
        f"{schedule}.",
        f"- Augmentation: {recipe.augment().describe()}; balanced sampling: "
        f"{'yes' if recipe.balanced_sampling else 'no'}; patchout: {_describe_patchout(patchout)}.",
    ]
    if recipe.weight_averaging:
        lines.append(
            f"- Weight averaging of epochs {recipe.weight_averaging_start_epoch}-{recipe.weight_averaging_end_epoch}."
        )
    return lines


def _without_secrets(argv: Sequence[str]) -> list[str]:
    """`argv` with the values of token options (`--hub_token X`, `--hub_token=X`) replaced by "***": the card is
    pushed to the Hub."""
    shown, hide_next = [], False
    for argument in argv:
        name, equals, _ = argument.partition("=")
        if hide_next:
            shown.append("***")
        elif name.startswith("--") and "token" in name and equals:
            shown.append(f"{name}=***")
        else:
            shown.append(argument)
        hide_next = not hide_next and argument.startswith("--") and "token" in argument and not equals
    return shown


def _describe_patchout(patchout: dict[str, int | float]) -> str:
    """Patchout settings in words: "2 time columns, 1 frequency row and 20% of the other patches dropped per step"."""
    words = {"patchout_time": "{:g} time column(s)", "patchout_frequency": "{:g} frequency row(s)",
             "patchout_random": "{:.0%} of the other patches"}  # fmt: skip
    parts = [words[name].format(value) for name, value in patchout.items() if value]
    if not parts:
        return "none"
    listed = parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]
    return f"{listed} dropped per step"


def _card_metadata(
    name: str,
    task: TaskData,
    metrics: dict[str, float],
    base_model: str | None = None,
    dataset_id: str | None = None,
    prefix: str = "eval",
) -> ModelCardData:
    """The model card's metadata: library, task, tags, `base_model` (a Hub id) and the `model-index` results of
    `metrics` (keys starting with `prefix`; Trainer's bookkeeping left out) on the evaluation split of the data
    (`dataset_id`, a Hub dataset id, else "custom", named by the task's source)."""
    sed = f"{prefix}_psds1" in metrics
    results = [
        EvalResult(
            task_type="sound-event-detection" if sed else "audio-classification",
            task_name="Sound Event Detection" if sed else "Audio Classification",
            dataset_type=dataset_id or "custom",
            dataset_name=task.source,
            dataset_split="evaluation",
            metric_type=key.removeprefix(f"{prefix}_"),
            metric_value=round(float(value), 6),
        )
        for key, value in metrics.items()
        if key.startswith(f"{prefix}_") and not key.endswith(_BOOKKEEPING)
    ]
    return ModelCardData(
        model_name=name,
        library_name="transformers",
        pipeline_tag="audio-classification",
        tags=["audio-classification", "audio-spectrogram-transformer", "modeling_ast"],
        base_model=base_model,
        datasets=[dataset_id] if dataset_id else None,
        eval_results=results,
    )


def _hub_id(name: str | None) -> str | None:
    """`name` when it names a Hub repository (the card's metadata can only link those), None for a local path."""
    return name if name and not Path(name).exists() else None


def _task_words(kind: str, metrics: dict[str, float], prefix: str) -> str:
    """What the card says the model does: sound event detection (a frame model, whose metrics are PSDS and F1; it
    runs in `pipeline("sound-event-detection")`), else clip classification."""
    if f"{prefix}_psds1" in metrics:
        return 'sound event detection (frame-level, multi-label; `pipeline("sound-event-detection")`)'
    return f"{kind} classification"


def write_model_card(
    output_dir: Path,
    task: TaskData,
    results: dict[str, dict[str, float]],
    summary: list[str],
    script: str,
    argv: Sequence[str],
    start: str | None,
    plot: Path | None = None,
    prefix: str = "eval",
    dataset_name: str | None = None,
) -> Path:
    """README.md in output_dir: metadata (`_card_metadata`: the first of `results` in `model-index`, `start` as
    `base_model` and `dataset_name` as the dataset when they are Hub ids), what the model is, the data, the metrics
    of every evaluated model (`results`, keys starting with `prefix`), the settings (`summary`, from
    `training_summary`) and the command (`script` run with `argv`) that trained it, starting from `start` (the
    pretrained model's path or Hub id, None for a random initialisation)."""
    space = task.label_space
    kind = "multi-label" if space.multi_label else "single-label"
    metrics = next(iter(results.values()))
    metadata = _card_metadata(output_dir.name, task, metrics, _hub_id(start), _hub_id(dataset_name), prefix)
    lines = [
        "---",
        metadata.to_yaml(),
        "---",
        "",
        f"# {output_dir.name}",
        "",
        f"An Audio Spectrogram Transformer (`modeling_ast`) trained for {_task_words(kind, metrics, prefix)} of "
        f"{space.num_labels} classes with `{script}`, starting from {start or 'random initialisation'}.",
        "",
        f"- Data: {task.source}; evaluated on the evaluation split (no model selection on it).",
        f"- Labels: {list_names(space.labels, shown=30)}.",
        f"- problem_type: `{space.problem_type}`.",
        "",
        "## Evaluation",
        "",
        _metrics_table(results, prefix),
        "",
    ]
    if plot is not None:
        lines += [f"![evaluation plot]({plot.name})", ""]
    command = f"python {script} {shlex.join(_without_secrets(argv))}"
    lines += ["## Training", "", *summary, "", "```bash", command, "```", ""]
    path = output_dir / "README.md"
    ModelCard("\n".join(lines)).save(path)
    return path


def pipeline_top3(model_dir: Path, example: Example) -> list[dict[str, Any]]:
    """Reloads the saved model with `pipeline("audio-classification")` and returns its top-3 for `example`."""
    classifier = transformers.pipeline("audio-classification", model=str(model_dir))
    audio = example["audio"]
    if not isinstance(audio, str):
        sampling_rate = classifier.feature_extractor.sampling_rate
        audio = {"raw": decode_example(example, sampling_rate).numpy(), "sampling_rate": sampling_rate}
    return classifier(audio, top_k=3)
