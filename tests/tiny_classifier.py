"""Small classifiers shared by tests: a saved digit classifier for the commands around the model (ast-tag, the demo
page), and a trained-like model for the ONNX and int8 tests."""

from __future__ import annotations

from pathlib import Path

import torch

from modeling_ast import ASTConfig, ASTFeatureExtractor, ASTForAudioClassification


def save_tiny_digit_classifier(directory: Path) -> Path:
    """A 1-layer, width-32 classifier of 10 "digit i" labels for 128-frame inputs, saved with its feature extractor;
    weights perturbed from the initialisation so that different recordings get different top labels."""
    torch.manual_seed(0)
    config = ASTConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64,
                       max_length=128, id2label={i: f"digit {i}" for i in range(10)},
                       problem_type="single_label_classification")
    model = ASTForAudioClassification(config).eval()
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.add_(0.5 * torch.randn_like(parameter))
    model.save_pretrained(directory)
    ASTFeatureExtractor(max_length=128).save_pretrained(directory)
    return directory


def small_trained_like_model() -> ASTForAudioClassification:
    """Two 64-wide blocks, 1024 frames, 5 labels; weights perturbed off their initialisation so that the logits
    differ from clip to clip, as a trained model's do."""
    config = ASTConfig(hidden_size=64, num_hidden_layers=2, num_attention_heads=4, intermediate_size=128,
                       max_length=1024, num_labels=5)
    torch.manual_seed(0)
    model = ASTForAudioClassification(config).eval()
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.add_(0.05 * torch.randn_like(parameter))
    return model
