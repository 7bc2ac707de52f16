"""Long-audio tagging: window plans, lazy file windows, and the pipeline's chunked mode checked against windows
classified one by one by hand."""

import numpy as np
import pytest
import soundfile
import torch
import transformers

import modeling_ast  # noqa: F401  (registers the pipeline)
from modeling_ast import ASTFeatureExtractor, ASTForAudioClassification
from modeling_ast.audio_io import AudioFile, read_audio
from modeling_ast.audio_utils import resample
from modeling_ast.long_audio import plan_windows
from tiny_models import tiny_config

MIN_SAMPLES = 400 + 15 * 160  # one 16-frame patch at 16 kHz


@pytest.fixture(scope="module")
def tagger(tmp_path_factory):
    directory = tmp_path_factory.mktemp("tagger")
    config = tiny_config(max_length=300, num_labels=6, problem_type="multi_label_classification")
    torch.manual_seed(0)
    model = ASTForAudioClassification(config).eval()
    with torch.no_grad():
        model.classifier.fc.weight.normal_(0, 3.0)
    model.save_pretrained(directory)
    ASTFeatureExtractor(max_length=300).save_pretrained(directory)
    return transformers.pipeline("audio-classification", model=str(directory))


@pytest.fixture(scope="module")
def recording(fsdd_dir, tmp_path_factory):
    """About 13 s of real speech at 8 kHz: 30 FSDD clips in a row, written as one wav file."""
    clips = [read_audio(path)[0].numpy() for path in sorted(fsdd_dir.glob("*_jackson_1*.wav"))[:30]]
    waveform = np.concatenate(clips)
    path = tmp_path_factory.mktemp("long") / "speech.wav"
    soundfile.write(path, waveform, 8000)
    return path, waveform


def test_window_plan_covers_the_recording_without_padding():
    plan = plan_windows(16000 * 25 + 123, 16000, chunk_length_s=10, stride_length_s=2, min_samples=MIN_SAMPLES)
    assert plan.starts == [0, 128000, 16000 * 25 + 123 - 160000]  # hop 8 s, then the end-aligned last window
    assert all(end - start == 160000 for start, end in zip(plan.starts, plan.ends))
    assert plan.ends[-1] == 16000 * 25 + 123  # the last window ends exactly at the end, sample-accurate
    assert plan.seconds(2) == ((16000 * 25 + 123 - 160000) / 16000, (16000 * 25 + 123) / 16000)
    short = plan_windows(20000, 16000, chunk_length_s=10, stride_length_s=0, min_samples=MIN_SAMPLES)
    assert (short.starts, short.ends) == ([0], [20000])
    exact = plan_windows(48000, 16000, chunk_length_s=1, stride_length_s=0, min_samples=MIN_SAMPLES)
    assert exact.starts == [0, 16000, 32000]


@pytest.mark.parametrize(
    "chunk, stride, samples, message",
    [
        (0.1, 0, 16000, r"gives 1600 samples per window; the model needs at least 2800"),
        (2, 2, 16000, r"stride_length_s \(2 s\) must be smaller than chunk_length_s \(2 s\)"),
        (2, -1, 16000, "cannot be negative"),
        (0, 0, 16000, "chunk_length_s must be a positive number"),
        (2, 0, 1000, r"the audio has 1000 samples \(0.062 s\); the model needs at least 2800"),
    ],
)
def test_bad_window_settings_are_rejected_with_the_reason(chunk, stride, samples, message):
    with pytest.raises(ValueError, match=message):
        plan_windows(samples, 16000, chunk, stride, MIN_SAMPLES)


@pytest.mark.parametrize("rate", [8000, 16000, 44100])
def test_file_windows_equal_the_whole_file_resampled(tmp_path, rate, recording):
    _, speech_8k = recording
    waveform = resample(torch.from_numpy(speech_8k), 8000, rate).numpy()
    path = tmp_path / "speech.wav"
    soundfile.write(path, waveform, rate, subtype="FLOAT")
    whole = resample(torch.from_numpy(waveform), rate, 16000)
    windows = AudioFile(path, 16000)
    assert windows.num_samples == whole.shape[0]
    for start, end in [(0, 16000), (12345, 40000), (whole.shape[0] - 20000, whole.shape[0])]:
        torch.testing.assert_close(windows.read(start, end), whole[start:end], atol=1e-5, rtol=0)


def by_hand(pipe, waveform_16k: np.ndarray, plan) -> torch.Tensor:
    """Sigmoid scores of each window, each featurised and classified alone."""
    rows = []
    for start, end in zip(plan.starts, plan.ends):
        features = pipe.feature_extractor(waveform_16k[start:end], sampling_rate=16000, padding="longest",
                                          truncation=False, return_tensors="pt")
        with torch.no_grad():
            rows.append(pipe.model(**features).logits[0].sigmoid())
    return torch.stack(rows)


@pytest.mark.parametrize("aggregation", ["max", "mean"])
def test_chunked_pipeline_aggregates_window_scores(tagger, recording, aggregation):
    path, speech_8k = recording
    result = tagger(str(path), chunk_length_s=3.0, stride_length_s=1.0, aggregation=aggregation,
                    return_timestamps=True, top_k=6, window_batch_size=3)
    waveform = resample(torch.from_numpy(speech_8k), 8000, 16000).numpy()
    plan = plan_windows(len(waveform), 16000, 3.0, 1.0, MIN_SAMPLES)
    expected = by_hand(tagger, waveform, plan)
    assert [(w["start"], w["end"]) for w in result["windows"]] == [plan.seconds(i) for i in range(len(plan.starts))]
    for window, row in zip(result["windows"], expected):
        got = torch.tensor([item["score"] for item in sorted(window["labels"], key=lambda item: item["label"])])
        torch.testing.assert_close(got, row, atol=1e-5, rtol=0)
    clip = expected.amax(0) if aggregation == "max" else expected.mean(0)
    got = torch.tensor([item["score"] for item in sorted(result["labels"], key=lambda item: item["label"])])
    torch.testing.assert_close(got, clip, atol=1e-5, rtol=0)
    assert len(result["windows"]) == len(plan.starts) > 3


def test_threshold_keeps_only_confident_labels_and_arrays_match_files(tagger, recording):
    path, speech_8k = recording
    from_file = tagger(str(path), chunk_length_s=3.0, return_timestamps=True, threshold=0.5)
    from_array = tagger({"raw": speech_8k, "sampling_rate": 8000}, chunk_length_s=3.0, return_timestamps=True,
                        threshold=0.5)
    for window_file, window_array in zip(from_file["windows"], from_array["windows"]):
        assert all(item["score"] >= 0.5 for item in window_file["labels"])
        assert [item["label"] for item in window_file["labels"]] == [item["label"] for item in window_array["labels"]]
    plain = tagger(str(path), chunk_length_s=3.0)
    assert isinstance(plain, list) and plain == from_file["labels"]
    # against window scores computed by hand: the labels scoring >= 0.5 in each window, in score order
    waveform = resample(torch.from_numpy(speech_8k), 8000, 16000).numpy()
    plan = plan_windows(len(waveform), 16000, 3.0, 0.0, MIN_SAMPLES)
    expected = by_hand(tagger, waveform, plan)
    assert ((expected - 0.5).abs() > 1e-3).all()  # no score so near the threshold that float noise could flip it
    kept = [[str(index) for index in row.argsort(descending=True).tolist() if row[index] >= 0.5] for row in expected]
    for result in (from_file, from_array):
        assert len(result["windows"]) == len(plan.starts) > 3
        assert [[item["label"] for item in window["labels"]] for window in result["windows"]] == [
            [tagger.model.config.id2label[int(index)] for index in labels] for labels in kept
        ]
    assert any(kept) and not all(len(labels) == 6 for labels in kept)  # the threshold keeps some labels, not all


def test_bad_long_audio_input_is_named(tagger):
    with pytest.raises(ValueError, match="pass chunk_length_s"):
        tagger(np.zeros(16000, dtype=np.float32), stride_length_s=1.0)
    with pytest.raises(ValueError, match="aggregation must be one of"):
        tagger(np.zeros(16000, dtype=np.float32), chunk_length_s=1.0, aggregation="median")
    noisy = np.zeros(32000, dtype=np.float32)
    noisy[100] = np.nan
    with pytest.raises(ValueError, match="NaN or infinite"):
        tagger(noisy, chunk_length_s=1.0)
    with pytest.raises(ValueError, match=r"the audio has 800 samples"):
        tagger(np.zeros(800, dtype=np.float32), chunk_length_s=1.0)
    with pytest.raises(ValueError, match=r"one mono clip \(a 1-D array\)"):
        tagger({"raw": np.zeros((2, 16000), dtype=np.float32), "sampling_rate": 16000}, chunk_length_s=1.0)
