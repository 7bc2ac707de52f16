"""The test suite's one source of tiny AST models, as transformers' `ModelTester` classes are for its model tests.

`tiny_config(**overrides)` is a 2-block, 32-wide AST for 128-frame inputs (`TINY_SIZES`) with any `ASTConfig` field or
keyword overridden; `tiny_builtin_config` is the same for transformers' built-in AST; `tiny_model` builds and seeds a
model of it; `randomized` gives every weight a seeded random value; `save_tiny_checkpoint` saves a model with the
feature extractor for its input length. Two named models serve several test modules: a saved digit classifier for
the commands around the model (ast-tag, the demo page) and a trained-like model for the ONNX and int8 tests.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
import transformers

from modeling_ast import ASTConfig, ASTFeatureExtractor, ASTForAudioClassification, ASTPreTrainedModel

TINY_SIZES = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64, max_length=128)


def tiny_config(**overrides: Any) -> ASTConfig:
    """`ASTConfig` of `TINY_SIZES`, with `overrides` (sizes, `num_labels`, `id2label`, `problem_type`, ...)."""
    return ASTConfig(**{**TINY_SIZES, **overrides})


def tiny_builtin_config(**overrides: Any) -> transformers.ASTConfig:
    """transformers' built-in `ASTConfig` of `TINY_SIZES`, with `overrides` (its own field names)."""
    return transformers.ASTConfig(**{**TINY_SIZES, **overrides})


def tiny_model(
    model_class: type[ASTPreTrainedModel] = ASTForAudioClassification, *, seed: int = 0, perturb: float = 0.0,
    **overrides: Any,
) -> ASTPreTrainedModel:
    """`model_class(tiny_config(**overrides))` initialised after `torch.manual_seed(seed)`, in eval mode; `perturb`
    adds that much standard normal noise to every weight (drawn from the same global generator), so that outputs
    differ from clip to clip as a trained model's do rather than sitting near the initialisation's."""
    torch.manual_seed(seed)
    model = model_class(tiny_config(**overrides))
    if perturb:
        with torch.no_grad():
            for parameter in model.parameters():
                parameter.add_(perturb * torch.randn_like(parameter))
    return model.eval()


def randomized(model: torch.nn.Module, seed: int = 0, std: float = 0.3) -> torch.nn.Module:
    """Every weight replaced by N(0, std) draws of a generator seeded with `seed` (the default initialisation leaves
    LayerNorms at 1 / 0, which would hide their bugs), in eval mode; the global random state is left alone."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.copy_(torch.randn(parameter.shape, generator=generator) * std)
    return model.eval()


def save_tiny_checkpoint(directory: Path, model: ASTPreTrainedModel | None = None, **extractor_options: Any) -> Path:
    """`model` (default `tiny_model()`) saved in `directory` with an `ASTFeatureExtractor` for its `max_length`
    (`extractor_options`, e.g. `return_attention_mask=True`, go to the extractor); returns `directory`."""
    model = tiny_model() if model is None else model
    model.save_pretrained(directory)
    ASTFeatureExtractor(max_length=model.config.max_length, **extractor_options).save_pretrained(directory)
    return directory


def save_tiny_digit_classifier(directory: Path) -> Path:
    """A 1-block, width-32 classifier of 10 "digit i" labels for 128-frame inputs, saved with its feature extractor;
    weights perturbed from the initialisation so that different recordings get different top labels."""
    model = tiny_model(
        seed=0, perturb=0.5, num_hidden_layers=1, num_attention_heads=2,
        id2label={i: f"digit {i}" for i in range(10)}, problem_type="single_label_classification",
    )
    return save_tiny_checkpoint(directory, model)


def small_trained_like_model() -> ASTForAudioClassification:
    """Two 64-wide blocks, 1024 frames, 5 labels; weights perturbed off their initialisation so that the logits
    differ from clip to clip, as a trained model's do."""
    return tiny_model(seed=0, perturb=0.05, hidden_size=64, intermediate_size=128, max_length=1024, num_labels=5)
