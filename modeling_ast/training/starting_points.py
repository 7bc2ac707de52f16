"""What training starts from: a pretrained AST fitted to the task's labels, and the feature extractor for a model.

A new AST is `ASTForAudioClassification(ASTConfig(...))` and an ImageNet ViT/DeiT becomes one with
`conversion.imagenet.ast_from_imagenet`; a pretrained AST needs the decisions made here (keep its head or re-target
it, which patchout it trains with).
"""

from __future__ import annotations

import copy

import transformers

from ..configuration_ast import ASTConfig
from ..conversion.common import AUDIOSET_MEAN, AUDIOSET_STD
from ..conversion.adapt import adapt_pretrained_ast
from ..feature_extraction_ast import ASTFeatureExtractor
from ..modeling_ast import ASTForAudioClassification
from .labels import LabelSpace

__all__ = ["feature_extractor_for", "pretrained_for_task", "with_patchout"]


def pretrained_for_task(
    model_name_or_path: str,
    label_space: LabelSpace,
    max_length: int | None = None,
    frequency_stride: int | None = None,
    time_stride: int | None = None,
    seed: int = 0,
) -> ASTForAudioClassification:
    """A pretrained AST (this package's or transformers' AST; folder or Hub id) with a head for `label_space`.

    The checkpoint is re-targeted with `adapt_pretrained_ast` (new randomly initialised head seeded by `seed`,
    positional grid cropped or stretched to `max_length` frames and the given patch strides as the original code does)
    when its labels differ from the task's or a length or stride other than its own is asked for; otherwise it is
    loaded with its head and the task's `problem_type`.
    """
    config = transformers.AutoConfig.from_pretrained(model_name_or_path)
    checkpoint_labels = tuple(config.id2label[index] for index in range(config.num_labels))
    geometry = {"max_length": max_length, "frequency_stride": frequency_stride, "time_stride": time_stride}
    retarget = any(value is not None and value != getattr(config, name) for name, value in geometry.items())
    if retarget or checkpoint_labels != label_space.labels:
        return adapt_pretrained_ast(
            model_name_or_path,
            max_length or config.max_length,
            id2label=label_space.labels,
            frequency_stride=frequency_stride,
            time_stride=time_stride,
            problem_type=label_space.problem_type,
            seed=seed,
        )
    return ASTForAudioClassification.from_pretrained(model_name_or_path, **label_space.config_kwargs())


def with_patchout(model: ASTForAudioClassification, patchout: dict[str, int | float]) -> ASTForAudioClassification:
    """`model`, rebuilt with the patchout settings `patchout` (config field -> value) when its config has other ones
    (weights kept)."""
    if all(getattr(model.config, name) == value for name, value in patchout.items()):
        return model
    config = copy.deepcopy(model.config)
    for name, value in patchout.items():
        setattr(config, name, value)
    rebuilt = ASTForAudioClassification(config)
    rebuilt.load_state_dict(model.state_dict())
    return rebuilt


def feature_extractor_for(
    config: ASTConfig,
    model_name_or_path: str | None = None,
    fbank_mean: float | None = None,
    fbank_std: float | None = None,
    return_attention_mask: bool = True,
) -> ASTFeatureExtractor:
    """The feature extractor for `config.max_length` frames: the normalisation of `model_name_or_path` when it has a
    preprocessor_config.json, else AudioSet's, unless `fbank_mean`/`fbank_std` are given. It returns the attention
    mask by default exactly when training masks the padding, so `pipeline` later feeds the saved model what it
    trained on."""
    feature_extractor = ASTFeatureExtractor(num_mel_bins=config.num_mel_bins, mean=AUDIOSET_MEAN, std=AUDIOSET_STD)
    if model_name_or_path:
        try:
            feature_extractor = ASTFeatureExtractor.from_pretrained(model_name_or_path)
        except OSError:
            print(f"note: {model_name_or_path} has no preprocessor_config.json; using AudioSet statistics")
    feature_extractor.max_length = config.max_length
    feature_extractor.return_attention_mask = return_attention_mask
    if fbank_mean is not None:
        feature_extractor.mean, feature_extractor.std = fbank_mean, fbank_std
    return feature_extractor
