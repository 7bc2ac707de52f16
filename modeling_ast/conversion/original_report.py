"""What a conversion of the authors' checkpoints reports: a one-line summary for the CLI and the model card."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

from ..configuration_ast import ASTConfig
from .common import DatasetPreset

__all__ = ["ConversionReport", "parse_reported_metric", "reported_metric_text"]

_METRIC_IN_NAME = re.compile(r"_(0\.\d+|[1-9]\d*\.\d+)$")


def parse_reported_metric(checkpoint_name: str) -> float | None:
    """The score the authors put at the end of a released file name (`audioset_10_10_0.4593.pth` -> 0.4593)."""
    stem = re.sub(r"\.(pth|pt|bin|ckpt|safetensors)$", "", Path(checkpoint_name).name)
    match = _METRIC_IN_NAME.search(stem)
    return float(match.group(1)) if match else None


def reported_metric_text(
    reported_metric: float | str | None, checkpoint_name: str, preset: DatasetPreset | None
) -> str:
    """The model card's "reported metric" cell: the given score, else the one in the file name, else none."""
    note = ""
    if reported_metric is None:
        reported_metric, note = parse_reported_metric(checkpoint_name), " (from the file name)"
    if reported_metric is None:
        return "not reported"
    return f"{preset.metric if preset is not None else 'score'} {reported_metric}{note}"


@dataclasses.dataclass(frozen=True)
class ConversionReport:
    """What a conversion wrote and from what (the CLI prints `summary()`); `config` is the written model's."""

    output_dir: Path
    source_name: str
    source_sha256: str
    config: ASTConfig
    labels_source: str
    dataset: DatasetPreset | None
    mean: float
    std: float
    reported_metric: str
    hub_url: str | None = None

    def summary(self) -> str:
        """One line: strides, grid, input length, architecture, labels, problem type, normalisation and eps."""
        config = self.config
        frequency, time = config.patch_grid
        return (
            f"{self.source_name} -> {self.output_dir}: strides {config.frequency_stride}x{config.time_stride}, "
            f"grid {frequency}x{time} ({frequency * time} patches), {config.max_length} frames x {config.num_mel_bins} "
            f"bins, D={config.hidden_size} L={config.num_hidden_layers} H={config.num_attention_heads} "
            f"MLP={config.intermediate_size}, {config.num_labels} labels from {self.labels_source.replace('`', '')}, "
            f"{config.problem_type}, mean/std {self.mean}/{self.std}, LayerNorm eps {config.layer_norm_eps:g} "
            f"(encoder) / {config.head_layer_norm_eps:g} (head)"
            + (f", pushed to {self.hub_url}" if self.hub_url else "")
        )

    def model_card(self) -> str:
        """README.md of the output directory: source, geometry, labels, problem type, normalisation, usage."""
        config, preset = self.config, self.dataset
        frequency, time = config.patch_grid
        why = preset.why if preset is not None and preset.problem_type == config.problem_type else "set explicitly."
        shown = "; ".join(config.id2label[index] for index in range(min(5, config.num_labels)))
        tags = ["audio-classification", "audio-spectrogram-transformer", "ast"] + ([preset.name] if preset else [])
        return "\n".join(
            [
                "---",
                "license: bsd-3-clause",
                "library_name: transformers",
                "pipeline_tag: audio-classification",
                "tags:",
                *[f"- {tag}" for tag in tags],
                "---",
                "",
                f"# Audio Spectrogram Transformer: {Path(self.source_name).stem}",
                "",
                "The Audio Spectrogram Transformer (AST; Gong, Chung & Glass, Interspeech 2021, arXiv:2104.01778), "
                f"converted from the authors' released checkpoint `{self.source_name}` (github.com/YuanGongND/ast, "
                "BSD-3-Clause) into the `modeling_ast` format. The weights are unchanged; DeiT's unused ImageNet heads "
                "(`v.head`, `v.head_dist`) were dropped.",
                "",
                "| | |",
                "|---|---|",
                f"| source file | `{self.source_name}` (sha256 `{self.source_sha256}`) |",
                f"| patch strides (frequency x time) | {config.frequency_stride} x {config.time_stride} |",
                f"| patch grid | {frequency} x {time} ({frequency * time} patches of "
                f"{config.patch_size} x {config.patch_size}) |",
                f"| input length | {config.max_length} frames x {config.num_mel_bins} mel bins "
                f"(about {config.max_length / 100:.2f} s at 16 kHz, 10 ms hop) |",
                f"| encoder | {config.num_hidden_layers} layers, hidden {config.hidden_size}, "
                f"{config.num_attention_heads} heads, MLP {config.intermediate_size} |",
                f"| LayerNorm eps | {config.layer_norm_eps:g} (encoder), {config.head_layer_norm_eps:g} (head), "
                "as in the original |",
                f"| labels | {config.num_labels}, names from {self.labels_source} (first: {shown}) |",
                f"| problem type | `{config.problem_type}` |",
                f"| input normalisation | (fbank - ({self.mean})) / (2 x {self.std})"
                + (f", {preset.name} statistics |" if preset else " |"),
                f"| reported metric | {self.reported_metric} |",
                "",
                f"Problem type: {why}",
                "",
                "## Usage",
                "",
                "```python",
                "import modeling_ast  # registers model_type \"ast\" with transformers",
                "from transformers import pipeline",
                "",
                "classifier = pipeline(\"audio-classification\", model=\"path/or/hub-id\")",
                "classifier(\"clip.wav\", top_k=5)",
                "```",
                "",
                "The feature extractor computes the original Kaldi log-mel features (128 bins, 25 ms windows every "
                f"10 ms) at 16 kHz, pads or truncates them to {config.max_length} frames and normalises them as above.",
                "",
            ]
        )
