"""Masked batches of mixed lengths run in groups of similar length (inference, logits only): each group cut to its
longest clip, the logits equal to each clip classified alone and in input order."""

import numpy as np
import pytest
import torch

from modeling_ast import ASTFeatureExtractor
from modeling_ast.masking_ast import length_groups
from tiny_models import tiny_model

SECONDS = [1.0, 10.0, 2.5, 7.0, 0.1, 1.2, 4.0, 9.0, 3.0]


@pytest.fixture(scope="module")
def model():
    return tiny_model(max_length=1024, num_labels=5)


@pytest.fixture(scope="module")
def batch():
    extractor = ASTFeatureExtractor(max_length=1024, return_attention_mask=True)
    rng = np.random.default_rng(0)
    clips = [rng.standard_normal(int(16000 * seconds)).astype("f4") * 0.1 for seconds in SECONDS]
    return extractor, clips, extractor(clips, sampling_rate=16000, padding="longest", return_tensors="pt")


def frames_seen(model, **inputs) -> list[tuple[int, int]]:
    shapes = []
    handle = model.ast.register_forward_pre_hook(lambda module, args: shapes.append(tuple(args[0].shape[:2])))
    try:
        with torch.no_grad():
            model(**inputs)
    finally:
        handle.remove()
    return shapes


def test_length_groups_cover_every_clip_once_with_little_padding():
    frames = [98, 998, 248, 698, 8, 118, 398, 898, 298]
    groups = length_groups(frames)
    assert sorted(index for group in groups for index in group) == list(range(len(frames)))
    for group in groups:
        lengths = [frames[index] for index in group]
        assert lengths == sorted(lengths)
        assert len(group) * max(lengths) <= 1.05 * sum(lengths)
    assert [frames[group[0]] for group in groups] == sorted(frames[group[0]] for group in groups)
    assert length_groups([100] * 4) == [[0, 1, 2, 3]]
    # 7, 9 and 10 s: padding 7 s to 10 s costs more than running it alone saves (attention is quadratic).
    assert length_groups([698, 898, 998]) == [[0], [1], [2]]
    assert length_groups([98, 100, 104, 140]) == [[0, 1, 2], [3]]


def test_grouped_logits_equal_each_clip_alone_in_input_order(model, batch):
    extractor, clips, features = batch
    with torch.no_grad():
        logits = model(**features).logits
        alone = []
        for clip in clips:
            frames = 1 + (len(clip) - 400) // 160
            single = extractor(clip, sampling_rate=16000, padding="max_length", max_length=max(frames, 16),
                               return_tensors="pt")
            alone.append(model(**single).logits[0])
    torch.testing.assert_close(logits, torch.stack(alone), atol=1e-5, rtol=0)
    assert (logits[0] - logits[1]).abs().max() > 1e-3  # clips give different logits: the order is checked


def test_groups_are_cut_to_their_longest_clip(model, batch):
    _, clips, features = batch
    frames = features["attention_mask"].sum(dim=1).tolist()
    shapes = frames_seen(model, **features)
    expected = [(len(group), max(16, max(frames[index] for index in group))) for group in length_groups(frames)]
    assert shapes == expected and len(shapes) > 1
    assert sum(size * length for size, length in shapes) < 0.6 * len(clips) * features["input_values"].shape[1]


def test_single_padded_batch_when_states_are_asked_or_training(model, batch):
    _, clips, features = batch
    full = (len(clips), features["input_values"].shape[1])
    assert frames_seen(model, **features, output_hidden_states=True) == [full]
    with torch.no_grad():
        states = model(**features, output_hidden_states=True)
        grouped = model(**features)
    assert states.hidden_states is not None
    torch.testing.assert_close(states.logits, grouped.logits, atol=1e-5, rtol=0)
    model.train()
    try:
        assert frames_seen(model, **features) == [full]
    finally:
        model.eval()
    unmasked = {"input_values": features["input_values"]}
    assert frames_seen(model, **unmasked) == [full]


def test_float_masks_are_grouped_too(model, batch):
    _, _, features = batch
    as_float = {"input_values": features["input_values"], "attention_mask": features["attention_mask"].float()}
    with torch.no_grad():
        torch.testing.assert_close(model(**as_float).logits, model(**features).logits, atol=0, rtol=0)
