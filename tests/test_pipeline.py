"""`pipeline("audio-classification")` and the Auto classes on checkpoints saved by this package: our classes are
used (not the built-in AST of the same names), the output function follows problem_type, and files, arrays, tensors and
{"raw", "sampling_rate"} dicts at any rate are accepted."""

import json
import subprocess
import sys

import numpy as np
import pytest
import torch
import transformers

import modeling_ast
from modeling_ast import ASTConfig, ASTFeatureExtractor, ASTForAudioClassification
from modeling_ast.audio_io import load_audio, read_audio
from modeling_ast.pipeline_ast import ASTAudioClassificationPipeline
from conftest import requires_ffmpeg
from tiny_models import tiny_config

DIGITS = {i: str(i) for i in range(10)}


def save_tiny_checkpoint(directory, problem_type: str) -> ASTForAudioClassification:
    config = tiny_config(max_length=256, id2label=DIGITS, problem_type=problem_type)
    torch.manual_seed(0)
    model = ASTForAudioClassification(config).eval()
    with torch.no_grad():
        model.classifier.fc.weight.normal_(0, 2.0)  # spread the logits so the ranking is meaningful
    model.save_pretrained(directory)
    ASTFeatureExtractor(max_length=256).save_pretrained(directory)
    return model


@pytest.fixture(scope="module")
def multi_label_dir(tmp_path_factory):
    directory = tmp_path_factory.mktemp("multi")
    save_tiny_checkpoint(directory, "multi_label_classification")
    return directory


@pytest.fixture(scope="module")
def classifier(multi_label_dir):
    return transformers.pipeline("audio-classification", model=str(multi_label_dir))


def expected_scores(pipe, waveform, sampling_rate, activation) -> torch.Tensor:
    """Scores computed by hand: our feature extractor, the model, then the activation."""
    features = pipe.feature_extractor(waveform, sampling_rate=sampling_rate, return_tensors="pt")
    with torch.no_grad():
        logits = pipe.model(**features).logits[0]
    return activation(logits)


def as_vector(result: list[dict]) -> torch.Tensor:
    return torch.tensor([item["score"] for item in sorted(result, key=lambda item: int(item["label"]))])


RESAMPLING_ATOL = 2e-3  # measured 6.9e-4: our resampler at 22050 Hz -> 16 kHz against FSDD's 8 kHz upsampled
BFLOAT16_ATOL = 0.015  # measured 7.6e-3 (bfloat16 keeps 8 significant bits)
OTHER_RECORDINGS = ("3_jackson_0", "5_nicolas_1", "7_theo_2", "9_yweweler_3", "2_lucas_0", "0_george_4", "6_theo_3")


def distance_to_other_recordings(pipe, fsdd_dir, scores: torch.Tensor) -> float:
    """The smallest largest-score difference between `scores` and those of the other recordings (sigmoid, all
    labels): how far apart two different inputs are, against which a tolerance must be small."""
    distances = []
    for name in OTHER_RECORDINGS:
        other = as_vector(pipe(str(fsdd_dir / f"{name}.wav"), top_k=10))
        distance = (other - scores).abs().max().item()
        if distance > 1e-3:  # not the same recording
            distances.append(distance)
    assert len(distances) >= len(OTHER_RECORDINGS) - 1
    return min(distances)


def test_pipeline_and_auto_classes_resolve_to_our_classes(classifier, multi_label_dir):
    assert type(classifier) is ASTAudioClassificationPipeline
    assert type(classifier.model) is ASTForAudioClassification
    assert type(classifier.model).__module__ == "modeling_ast.modeling_ast"
    assert type(classifier.feature_extractor) is ASTFeatureExtractor
    assert type(classifier.feature_extractor).__module__ == "modeling_ast.feature_extraction_ast"
    extractor = transformers.AutoFeatureExtractor.from_pretrained(multi_label_dir)
    assert type(extractor) is ASTFeatureExtractor
    stored = json.loads((multi_label_dir / "preprocessor_config.json").read_text())
    assert "feature_extractor_type" not in stored  # a saved class name would resolve to the built-in AST extractor


def test_multi_label_checkpoint_gets_sigmoid_scores(classifier, fsdd_dir):
    path = fsdd_dir / "3_jackson_0.wav"
    result = classifier(str(path), top_k=10)
    assert [sorted(item) for item in result] == [["label", "score"]] * 10
    waveform = load_audio(path, sampling_rate=16000)
    expected = expected_scores(classifier, waveform, 16000, torch.sigmoid)
    torch.testing.assert_close(as_vector(result), expected, atol=1e-6, rtol=0)
    assert as_vector(result).sum() != pytest.approx(1.0, abs=1e-3)  # not a softmax


def test_single_label_checkpoint_gets_softmax_scores(tmp_path, fsdd_dir):
    save_tiny_checkpoint(tmp_path, "single_label_classification")
    pipe = transformers.pipeline("audio-classification", model=str(tmp_path))
    waveform = load_audio(fsdd_dir / "7_theo_2.wav", sampling_rate=16000)
    result = pipe(waveform, top_k=10)
    torch.testing.assert_close(as_vector(result).sum(), torch.tensor(1.0), atol=1e-5, rtol=0)
    expected = expected_scores(pipe, waveform, 16000, lambda logits: logits.softmax(-1))
    torch.testing.assert_close(as_vector(result), expected, atol=1e-6, rtol=0)


def test_top_k_returns_the_best_labels_in_order(classifier, fsdd_dir):
    result = classifier(str(fsdd_dir / "5_nicolas_1.wav"), top_k=3)
    assert len(result) == 3
    scores = [item["score"] for item in result]
    assert scores == sorted(scores, reverse=True)
    assert all(item["label"] in DIGITS.values() for item in result)
    # the k best of the full score vector computed by hand, not any k labels in score order
    path = fsdd_dir / "5_nicolas_1.wav"
    full = expected_scores(classifier, load_audio(path, sampling_rate=16000), 16000, torch.sigmoid)
    best = full.topk(3)
    assert [item["label"] for item in result] == [DIGITS[index] for index in best.indices.tolist()]
    torch.testing.assert_close(torch.tensor(scores), best.values, atol=1e-6, rtol=0)
    assert set(best.indices.tolist()) != {0, 1, 2}  # the first three labels are not the best: the check can fail
    for k in (1, 5):
        assert [item["label"] for item in classifier(str(path), top_k=k)] == [
            DIGITS[index] for index in full.topk(k).indices.tolist()
        ]


@pytest.mark.parametrize("rate", [8000, 22050, 44100])
def test_dict_input_at_any_rate_is_resampled_without_torchaudio(classifier, fsdd_dir, rate):
    waveform_8k, _ = read_audio(fsdd_dir / "0_george_4.wav")
    raw = load_audio(fsdd_dir / "0_george_4.wav", sampling_rate=rate)
    assert len(raw) == pytest.approx(len(waveform_8k) * rate / 8000, abs=1)
    result = classifier({"raw": raw, "sampling_rate": rate}, top_k=10)
    expected = expected_scores(classifier, raw, rate, torch.sigmoid)
    torch.testing.assert_close(as_vector(result), expected, atol=1e-6, rtol=0)
    # the same recording at 16 kHz gives nearly the same scores whatever rate it arrived at: the resamplers differ
    # by at most 6.9e-4 in score (measured, 22050 Hz), while other recordings differ by over 10x this bound
    reference = as_vector(classifier(load_audio(fsdd_dir / "0_george_4.wav", sampling_rate=16000), top_k=10))
    torch.testing.assert_close(as_vector(result), reference, atol=RESAMPLING_ATOL, rtol=0)
    assert distance_to_other_recordings(classifier, fsdd_dir, reference) > 10 * RESAMPLING_ATOL


def test_array_tensor_and_datasets_dict_inputs_agree(classifier, fsdd_dir):
    waveform = load_audio(fsdd_dir / "9_yweweler_3.wav", sampling_rate=16000).numpy()
    from_array = as_vector(classifier(waveform, top_k=10))
    from_tensor = as_vector(classifier(torch.from_numpy(waveform), top_k=10))
    from_dataset_row = as_vector(
        classifier({"array": waveform, "sampling_rate": 16000, "path": "ignored.wav"}, top_k=10)
    )
    torch.testing.assert_close(from_tensor, from_array, atol=0, rtol=0)
    torch.testing.assert_close(from_dataset_row, from_array, atol=0, rtol=0)


@requires_ffmpeg
def test_formats_soundfile_cannot_read_fall_back_to_ffmpeg(classifier, fsdd_dir, tmp_path):
    source = fsdd_dir / "2_lucas_0.wav"
    encoded = tmp_path / "clip.m4a"
    subprocess.run(["ffmpeg", "-loglevel", "error", "-i", str(source), "-c:a", "alac", str(encoded)], check=True)
    result = as_vector(classifier(str(encoded), top_k=10))
    reference = as_vector(classifier(str(source), top_k=10))
    # lossless ALAC, decoded by ffmpeg at its own rate and resampled by ours: the WAV's scores exactly
    torch.testing.assert_close(result, reference, atol=0, rtol=0)


def test_bad_pipeline_inputs_are_named(classifier):
    with pytest.raises(ValueError, match=r"one mono clip \(a 1-D array\), got shape \(2, 16000\)"):
        classifier(np.zeros((2, 16000), dtype=np.float32))
    with pytest.raises(ValueError, match='"sampling_rate"'):
        classifier({"raw": np.zeros(16000, dtype=np.float32)})


_COUNT_REGISTRATIONS = """
import importlib, json
import modeling_ast
importlib.import_module("modeling_ast")
modeling_ast.registration.register()
importlib.reload(modeling_ast)  # runs the package's register() once more
from transformers.models.auto import configuration_auto, feature_extraction_auto, modeling_auto
from transformers.pipelines import PIPELINE_REGISTRY
ours = lambda item: "modeling_ast" in repr(item)
mappings = {
    "AutoConfig": configuration_auto.CONFIG_MAPPING,
    "AutoModel": modeling_auto.MODEL_MAPPING,
    "AutoModelForAudioClassification": modeling_auto.MODEL_FOR_AUDIO_CLASSIFICATION_MAPPING,
    "AutoModelForAudioFrameClassification": modeling_auto.MODEL_FOR_AUDIO_FRAME_CLASSIFICATION_MAPPING,
    "AutoFeatureExtractor": feature_extraction_auto.FEATURE_EXTRACTOR_MAPPING,
}
counts = {name: sum(ours(item) for item in mapping._extra_content.items()) for name, mapping in mappings.items()}
counts["pipeline tasks"] = sum(ours(task) for task in PIPELINE_REGISTRY.supported_tasks.values())
task = PIPELINE_REGISTRY.supported_tasks["audio-classification"]
print(json.dumps({"counts": counts, "impl": task["impl"].__name__, "default": task["default"]["model"][0]}))
"""


def test_importing_the_package_twice_keeps_one_registration():
    # a fresh interpreter: import, import again, register() by hand and reload the package (a third register())
    result = subprocess.run([sys.executable, "-c", _COUNT_REGISTRATIONS], capture_output=True, text=True, check=True)
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["counts"] == {
        "AutoConfig": 1,
        "AutoModel": 1,
        "AutoModelForAudioClassification": 1,
        "AutoModelForAudioFrameClassification": 1,
        "AutoFeatureExtractor": 1,
        "pipeline tasks": 2,  # audio-classification (our implementation class) and our sound-event-detection
    }
    # only the implementation class is swapped: the task keeps transformers' default model, and nothing is overwritten
    assert report["impl"] == "ASTAudioClassificationPipeline"
    assert report["default"] == "superb/wav2vec2-base-superb-ks"
    assert "Overwriting" not in result.stderr
    modeling_ast.registration.register()
    assert transformers.AutoConfig.for_model("ast").__class__ is ASTConfig


def test_bfloat16_pipeline_follows_float32(classifier, multi_label_dir, fsdd_dir):
    half = transformers.pipeline("audio-classification", model=str(multi_label_dir), dtype=torch.bfloat16)
    assert half.model.dtype == torch.bfloat16
    path = str(fsdd_dir / "6_theo_3.wav")
    full = as_vector(classifier(path, top_k=10))
    torch.testing.assert_close(as_vector(half(path, top_k=10)), full, atol=BFLOAT16_ATOL, rtol=0)
    long_half = half(path, chunk_length_s=0.5, stride_length_s=0.1, top_k=10)
    long_full = classifier(path, chunk_length_s=0.5, stride_length_s=0.1, top_k=10)
    torch.testing.assert_close(as_vector(long_half), as_vector(long_full), atol=BFLOAT16_ATOL, rtol=0)
    # bfloat16 differs from float32 by 7.1e-3 (7.6e-3 in long mode), measured; other recordings by several times more
    assert distance_to_other_recordings(classifier, fsdd_dir, full) > 3 * BFLOAT16_ATOL
