"""Sound event detection: the frame-level model, post-processing into events, and pipeline("sound-event-detection")."""

from __future__ import annotations

import math

import numpy as np
import pytest
import soundfile
import torch
from transformers import AutoModelForAudioFrameClassification, pipeline

from modeling_ast import ASTFeatureExtractor, ASTForAudioFrameClassification
from modeling_ast.events import ColumnGrid, EventOptions, detect_events, median_filter, merge_columns
from modeling_ast.pipeline_sed import SoundEventDetectionPipeline, column_aligned_starts
from tiny_models import tiny_config, tiny_model

RATE = 16000


LABELS = {0: "dog", 1: "siren", 2: "speech"}


@pytest.fixture(scope="module")
def model() -> ASTForAudioFrameClassification:
    return tiny_model(ASTForAudioFrameClassification, num_hidden_layers=1, id2label=LABELS)


def test_logits_per_column_and_padding_hidden_from_attention_and_outputs(model):
    features = torch.randn(2, 300, 128)
    mask = torch.ones(2, 300, dtype=torch.long)
    mask[1, 200:] = 0
    out = model(features, attention_mask=mask)
    assert out.logits.shape == (2, 29, 3)  # (300 - 16) // 10 + 1 columns
    assert out.column_mask.sum(dim=1).tolist() == [29, 19]  # (200 - 16) // 10 + 1 real columns in clip 2
    assert torch.all(out.logits[1, 19:] == 0)
    alone = model(features[1:, :200]).logits[0]
    torch.testing.assert_close(out.logits[1, :19], alone, atol=1e-5, rtol=0)  # measured 1e-8


def test_strong_loss_is_bce_over_real_columns_only(model):
    features = torch.randn(2, 300, 128)
    mask = torch.ones(2, 300, dtype=torch.long)
    mask[1, 200:] = 0
    labels = torch.randint(0, 2, (2, 29, 3)).float()
    out = model(features, attention_mask=mask, labels=labels)
    logits = out.logits.detach().numpy()
    real = np.concatenate([logits[0], logits[1, :19]]), np.concatenate([labels[0], labels[1, :19]])
    probabilities = 1 / (1 + np.exp(-real[0].astype(np.float64)))
    expected = -np.mean(real[1] * np.log(probabilities) + (1 - real[1]) * np.log(1 - probabilities))
    assert out.loss.item() == pytest.approx(expected, abs=1e-6)
    changed = labels.clone()
    changed[1, 19:] = 1 - changed[1, 19:]  # padded columns' targets do not count
    assert model(features, attention_mask=mask, labels=changed).loss.item() == pytest.approx(out.loss.item(), abs=1e-7)


def test_weak_clips_train_through_linear_softmax_pooling_and_mix_with_strong_ones(model):
    features = torch.randn(2, 200, 128)
    clip_labels = torch.tensor([[1.0, 0.0, 1.0], [0.0, 0.0, 1.0]])
    out = model(features, clip_labels=clip_labels)
    p = torch.sigmoid(out.logits.detach()).double().numpy()
    pooled = (p**2).sum(axis=1) / p.sum(axis=1)  # Wang, Li & Metze's linear softmax over the columns
    y = clip_labels.double().numpy()
    expected = -np.mean(y * np.log(pooled) + (1 - y) * np.log(1 - pooled))
    assert out.loss.item() == pytest.approx(expected, abs=1e-6)

    labels = torch.randint(0, 2, (2, 19, 3)).float()
    strong = torch.tensor([True, False])
    mixed = model(features, labels=labels, clip_labels=clip_labels, strong=strong).loss.item()
    strong_part = model(features[:1], labels=labels[:1]).loss.item()
    weak_part = model(features[1:], clip_labels=clip_labels[1:]).loss.item()
    assert mixed == pytest.approx(strong_part + weak_part, abs=1e-6)
    with pytest.raises(ValueError, match="weak clips need clip targets"):
        model(features, labels=labels, strong=strong)


def test_column_centres_follow_the_patch_geometry(model):
    # column j spans frames [10 j, 10 j + 16): samples [1600 j, 1600 j + 15 * 160 + 400), centred at 1600 j + 1400
    np.testing.assert_allclose(model.column_centres(4).numpy(), [0.0875, 0.1875, 0.2875, 0.3875], rtol=0, atol=1e-12)


def test_any_classifier_checkpoint_gives_its_encoder(tmp_path):
    classifier = tiny_model(seed=1, id2label={0: "a", 1: "b"})
    classifier.save_pretrained(tmp_path / "clf")
    frames = ASTForAudioFrameClassification.from_pretrained(
        tmp_path / "clf", id2label={0: "x", 1: "y", 2: "z"}, ignore_mismatched_sizes=True
    )
    for name, value in classifier.ast.state_dict().items():
        torch.testing.assert_close(frames.ast.state_dict()[name], value, atol=0, rtol=0)
    assert frames.classifier.fc.out_features == 3
    assert frames.config.problem_type == "multi_label_classification"
    with pytest.raises(ValueError, match="patchout_time and patchout_random"):
        ASTForAudioFrameClassification(tiny_config(patchout_time=2))


def test_events_from_scores_with_median_filter_hysteresis_and_per_class_thresholds():
    grid = ColumnGrid(first=0.0875, hop=0.1, duration=1.0)
    scores = torch.tensor(
        [[0.1, 0.0], [0.9, 0.0], [0.6, 0.7], [0.95, 0.7], [0.1, 0.0], [0.1, 0.9], [0.0, 0.0], [0.0, 0.0],
         [0.0, 0.0], [0.0, 0.0]]
    )  # fmt: skip
    events = detect_events(scores, grid, ["a", "b"], EventOptions(threshold=[0.8, 0.8], low=0.5))
    # a: columns 1-3 (the dip to 0.6 stays above low); b: 2-3 never reach 0.8, 5 does
    assert events == [
        {"label": "a", "start": pytest.approx(0.1375), "end": pytest.approx(0.4375), "score": pytest.approx(0.95)},
        {"label": "b", "start": pytest.approx(0.5375), "end": pytest.approx(0.6375), "score": pytest.approx(0.9)},
    ]
    without_hysteresis = detect_events(scores, grid, ["a", "b"], EventOptions(threshold=0.8))
    assert [(e["label"], round(e["start"], 4)) for e in without_hysteresis] == [("a", 0.1375), ("a", 0.3375),
                                                                                  ("b", 0.5375)]
    spike = torch.tensor([[0.0], [0.0], [1.0], [0.0], [0.0]])
    assert median_filter(spike, [3])[:, 0].tolist() == [0.0] * 5
    assert detect_events(spike, grid, ["a"], EventOptions(median_window=3)) == []
    assert detect_events(torch.ones(10, 1), grid, ["a"])[0]["end"] == 1.0  # clipped to the recording


def test_overlapping_windows_are_averaged_on_one_grid():
    merged = merge_columns([(0, torch.tensor([[1.0], [1.0], [1.0]])), (2, torch.tensor([[0.0], [0.0]]))], 4)
    assert merged[:, 0].tolist() == [1.0, 1.0, 0.5, 0.0]
    with pytest.raises(ValueError, match=r"columns \[3\] are in no window"):
        merge_columns([(0, torch.ones(3, 1))], 4)
    # starts every 3 columns of 1600 samples, then 24000 = ceil((40000 - 16000) / 1600) * 1600, the first column
    # start from which a 16000-sample window reaches the end
    assert column_aligned_starts(40000, 16000, 4800, 1600) == [0, 4800, 9600, 14400, 19200, 24000]


def energy_detector(directory) -> None:
    """A frame model with no Transformer block whose 'loud' logit is positive exactly where most mel bins of a
    column are above the normalisation mean: the patch projection reads the patch mean into dimensions 0 and 1
    with opposite signs, so every LayerNorm keeps only its sign."""
    model = tiny_model(ASTForAudioFrameClassification, num_hidden_layers=0, id2label={0: "loud"})
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.zero_()
        weight = model.ast.embeddings.patch_embed.proj.weight  # (D, 1, 16, 16)
        weight[0], weight[1] = 1 / 256, -1 / 256
        for norm in (model.ast.norm, model.classifier.norm):
            norm.weight.fill_(1.0)
        model.classifier.fc.weight[0, 0] = 1.0
    model.save_pretrained(directory)
    ASTFeatureExtractor(max_length=128, return_attention_mask=True).save_pretrained(directory)


def loudness_detector(directory, labels: tuple[str, ...] = ("click",)) -> None:
    """A frame model with no Transformer block whose score (the same for each of `labels`) rises with the loudness of
    a column: the patch projection reads the patch mean into dimension 0, and both LayerNorms have eps 1, so that
    x / sqrt(var(x) + 1) grows with x instead of keeping only its sign (as eps ~ 0 would): the score is increasing
    in the column's mean over frequency of (increasing functions of) its patch means."""
    model = tiny_model(ASTForAudioFrameClassification, num_hidden_layers=0, id2label=dict(enumerate(labels)),
                       layer_norm_eps=1.0, head_layer_norm_eps=1.0)  # fmt: skip
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.zero_()
        model.ast.embeddings.patch_embed.proj.weight[0] = 1 / 256
        for norm in (model.ast.norm, model.classifier.norm):
            norm.weight.fill_(1.0)
        model.classifier.fc.weight[:, 0] = 1.0
    model.save_pretrained(directory)
    ASTFeatureExtractor(max_length=128, return_attention_mask=True).save_pretrained(directory)


def columns_holding(sample: int, num_columns: int) -> list[int]:
    """The columns whose frames hold `sample`, from the Kaldi framing alone: frame k covers samples
    [160 k, 160 k + 400) and column j frames [10 j, 10 j + 16) (time stride 10, 16-frame patches)."""
    frames = [k for k in range(sample // 160 + 1) if 160 * k <= sample < 160 * k + 400]
    return sorted({j for j in range(num_columns) for k in frames if 10 * j <= k < 10 * j + 16})


def test_a_click_lands_in_the_column_whose_frames_hold_it(tmp_path):
    """A single loud sample in faint noise, 3 s at 16 kHz (three windows of 12 columns, merged): the loudest column
    holds the click. At 1600 j + 1200 the click is in frames 10 j + 6 and 10 j + 7, which only column j holds (its
    neighbours end at frame 10 j + 5 and start at 10 j + 10); elsewhere it may be in two columns."""
    loudness_detector(tmp_path / "model")
    detector = pipeline("sound-event-detection", model=str(tmp_path / "model"))
    rng = np.random.default_rng(0)
    alone = [1600 * column + 1200 for column in (0, 5, 11, 12, 13, 23, 27)]  # 12 and 24: window starts
    samples = alone + rng.integers(400, 3 * RATE - 400, 8).tolist()
    recordings = [{"raw": rng.normal(0, 1e-3, 3 * RATE).astype(np.float32), "sampling_rate": RATE} for _ in samples]
    for sample, recording in zip(samples, recordings):
        recording["raw"][sample] = 1.0
    for sample, output in zip(samples, detector(recordings, return_frame_scores=True)):
        scores = output["frame_scores"][:, 0]
        loudest = int(scores.argmax())
        holding = columns_holding(sample, len(scores))
        assert loudest in holding, (sample, loudest, holding)
        if sample in alone:
            assert holding == [(sample - 1200) // 1600]
        # A column spans 15 x 160 + 400 = 2800 samples: its centre is within 1400 samples of every sample it holds.
        assert abs(float(output["column_centres"][loudest]) * RATE - sample) < 1400


def test_an_event_across_window_seams_is_one_event(tmp_path):
    energy_detector(tmp_path / "model")
    detector = pipeline("sound-event-detection", model=str(tmp_path / "model"))
    assert isinstance(detector, SoundEventDetectionPipeline)
    assert isinstance(AutoModelForAudioFrameClassification.from_pretrained(tmp_path / "model"),
                      ASTForAudioFrameClassification)
    audio = np.zeros(6 * RATE, dtype=np.float32)
    audio[int(1.5 * RATE) : int(3.7 * RATE)] = np.random.default_rng(0).normal(0, 0.3, int(2.2 * RATE))
    path = tmp_path / "burst.wav"
    soundfile.write(path, audio, RATE, subtype="FLOAT")
    for source in (str(path), {"raw": audio, "sampling_rate": RATE}, path.read_bytes()):
        events = detector(source, chunk_length_s=1.0, stride_length_s=0.5, threshold=0.5)
        assert len(events) == 1, events  # windows of 1 s: the burst crosses four seams
        [event] = events
        assert event["label"] == "loud"
        # a column is 175 ms of frames reported as its 100 ms hop: edges within a column of the truth
        assert math.isclose(event["start"], 1.5, abs_tol=0.15) and math.isclose(event["end"], 3.7, abs_tol=0.15)
    whole = detector(str(path), chunk_length_s=10.0, threshold=0.5)
    assert [(e["start"], e["end"]) for e in whole] == [(e["start"], e["end"]) for e in events]


def test_padded_columns_of_an_unmasked_checkpoint_stay_out_of_the_merge(tmp_path):
    """A checkpoint without masks pads a 1 s window to 128 frames and scores 12 columns, of which 9 hold the window's
    audio; the other 3 (padding) must not be averaged into the columns of the next window."""
    model = tiny_model(ASTForAudioFrameClassification, seed=3, num_hidden_layers=1, id2label=LABELS)
    model.save_pretrained(tmp_path)
    extractor = ASTFeatureExtractor(max_length=128)  # no attention masks
    extractor.save_pretrained(tmp_path)
    audio = np.random.default_rng(0).normal(0, 0.3, 3 * RATE).astype(np.float32)
    detector = pipeline("sound-event-detection", model=str(tmp_path))
    merged = detector({"raw": audio, "sampling_rate": RATE}, chunk_length_s=1.0, return_frame_scores=True)
    second = audio[9 * 1600 : 9 * 1600 + RATE]  # windows start every 9 columns of 1600 samples
    alone = model(**extractor(second, sampling_rate=RATE, return_tensors="pt")).logits[0, :9].sigmoid()
    torch.testing.assert_close(merged["frame_scores"][9:18], alone, atol=1e-6, rtol=0)  # measured 0.0
