"""ONNX export: onnxruntime reproduces PyTorch at 1 s, 5 s and 10 s inputs and several batch sizes; each file records
the weights and config it came from, and loading it beside other weights or labels is refused."""

import json
import re
import shutil
from pathlib import Path

import numpy as np
import onnxruntime
import pytest
import torch

from modeling_ast import ASTConfig, ASTFeatureExtractor, ASTForAudioClassification
from modeling_ast.audio_io import load_audio
from modeling_ast.conversion import fingerprint
from modeling_ast.conversion.cli import export_onnx_main
from modeling_ast.conversion.onnx import export_onnx
from modeling_ast.onnx_inference import ASTOnnxForAudioClassification
from tiny_models import tiny_model

# onnxruntime's float32 kernels against PyTorch's: measured <= 3.6e-7 on logits of about 1.
LOGIT_TOLERANCE = 2e-6


def int8_errors_and_checked(expected: np.ndarray, approx: np.ndarray, names: list[str]) -> tuple[list[float], int]:
    """Per clip (rows of logits): max |error| / max |float32 logit|. Asserts that every clip whose float32 winner
    leads by more than 10 % of the logit scale keeps its winner; returns the errors and the number of such clips."""
    errors, checked = [], 0
    for expected_row, approx_row, name in zip(expected, approx, names):
        scale = np.abs(expected_row).max()
        errors.append(np.abs(approx_row - expected_row).max() / scale)
        runner_up, winner = np.sort(expected_row)[-2:]
        if winner - runner_up > 0.1 * scale:
            checked += 1
            assert approx_row.argmax() == expected_row.argmax(), name
    return errors, checked


@pytest.fixture(scope="module")
def exported(exported_classifier):
    model, directory = exported_classifier
    return model, directory / "model.onnx"


@pytest.mark.parametrize("seconds, batch", [(1, 1), (5, 3), (10, 2)])
def test_onnxruntime_matches_pytorch(exported, fsdd_dir, seconds, batch):
    model, path = exported
    speech = np.concatenate([load_audio(p) for p in sorted(fsdd_dir.glob("4_*_1*.wav"))[:40]])
    clips = [speech[i * 16000 : (i + seconds) * 16000] for i in range(batch)]
    features = ASTFeatureExtractor()(clips, sampling_rate=16000, padding="longest", return_tensors="pt")
    assert features["input_values"].shape[1] == 1 + (seconds * 16000 - 400) // 160
    with torch.no_grad():
        expected = model(**features).logits.numpy()
    session = onnxruntime.InferenceSession(str(path))
    actual = session.run(None, {"input_values": features["input_values"].numpy()})[0]
    np.testing.assert_allclose(actual, expected, atol=LOGIT_TOLERANCE, rtol=0)


def test_int8_model_predicts_what_float32_predicts_on_real_speech(exported, fsdd_dir):
    """int8 is for serving, so it is judged by its predictions: on all shipped recordings, every clip whose float32
    winner leads by more than 10 % of the logit scale keeps its winner, and the logit error stays at the scale of
    8-bit quantisation (measured with onnxruntime 1.32: max 2.8 %, mean 1.1 % of the clip's largest |logit|)."""
    model, path = exported
    quantized = onnxruntime.InferenceSession(str(path.with_suffix(".int8.onnx")))
    extractor = ASTFeatureExtractor()
    recordings = sorted(fsdd_dir.glob("*.wav"))
    expected, approx = [], []
    for recording in recordings:
        features = extractor(load_audio(recording), sampling_rate=16000, padding="longest", return_tensors="pt")
        with torch.no_grad():
            expected.append(model(**features).logits.numpy()[0])
        approx.append(quantized.run(None, {"input_values": features["input_values"].numpy()})[0][0])
    errors, checked = int8_errors_and_checked(np.array(expected), np.array(approx), [r.name for r in recordings])
    assert checked >= 100  # the check is not vacuous: most clips have a clear winner
    assert max(errors) < 0.08 and np.mean(errors) < 0.03


def test_int8_weights_fit_the_saturating_avx2_kernel(exported):
    """7-bit weights (reduce_range, |w| <= 64): a pair of u8 x s8 products, 2 * 255 * 64 = 32640, never saturates
    int16 on CPUs without VNNI, so int8 results do not depend on the CPU (full-range weights, |w| <= 127, gave 10 %
    logit errors on an AVX2-only machine)."""
    import onnx
    from onnx import numpy_helper

    _, path = exported
    graph = onnx.load(str(path.with_suffix(".int8.onnx"))).graph
    weights = [numpy_helper.to_array(t) for t in graph.initializer if t.data_type == onnx.TensorProto.INT8]
    assert weights
    for weight in weights:
        assert np.abs(weight.astype(np.int32)).max() <= 64


def test_int8_model_is_smaller(exported):
    _, path = exported
    assert path.with_suffix(".int8.onnx").stat().st_size < 0.6 * path.stat().st_size


@pytest.fixture(scope="module")
def small_saved_model(tmp_path_factory):
    model = tiny_model(num_hidden_layers=1, num_labels=3)
    directory = tmp_path_factory.mktemp("small") / "model"
    model.save_pretrained(directory)
    return model, directory


def test_cli_exports_a_saved_model(tmp_path, small_saved_model):
    model, directory = small_saved_model
    assert export_onnx_main([str(directory), str(tmp_path / "out" / "m.onnx")]) == 0
    session = onnxruntime.InferenceSession(str(tmp_path / "out" / "m.onnx"))
    inputs = torch.randn(1, 60, 128)
    with torch.no_grad():
        np.testing.assert_allclose(session.run(None, {"input_values": inputs.numpy()})[0],
                                   model(inputs).logits.numpy(), atol=LOGIT_TOLERANCE, rtol=0)
    assert [path.name for path in (tmp_path / "out").iterdir()] == ["m.onnx"]  # no partial file left


def test_cli_replaces_an_existing_file_only_with_overwrite(tmp_path, small_saved_model, capsys):
    _, directory = small_saved_model
    target = tmp_path / "notes.onnx"
    target.write_text("someone else's file")
    assert export_onnx_main([str(directory), str(target)]) == 1
    assert "notes.onnx already exists; pass overwrite=True (--overwrite)" in capsys.readouterr().err
    assert target.read_text() == "someone else's file"
    (tmp_path / "fresh.int8.onnx").write_text("someone else's file")  # the int8 output is protected too
    assert export_onnx_main([str(directory), str(tmp_path / "fresh.onnx"), "--quantize_int8"]) == 1
    assert not (tmp_path / "fresh.onnx").exists()
    assert export_onnx_main([str(directory), str(target), "--quantize_int8", "--overwrite"]) == 0
    onnxruntime.InferenceSession(str(target))
    onnxruntime.InferenceSession(str(tmp_path / "notes.int8.onnx"))
    assert sorted(path.name for path in tmp_path.iterdir()) == ["fresh.int8.onnx", "notes.int8.onnx", "notes.onnx"]


@pytest.mark.parametrize(
    "make, target, message",
    [
        (lambda root: (root / "out").mkdir(), "out", r"out is a directory; give the path of the \.onnx file"),
        (lambda root: (root / "out").write_text("x"), "out/m.onnx", r"cannot write .*m\.onnx: .*out is a file"),
    ],
    ids=["directory", "parent-is-a-file"],
)
def test_unusable_output_paths_are_refused(tmp_path, small_saved_model, make, target, message):
    model, _ = small_saved_model
    make(tmp_path)
    with pytest.raises(ValueError, match=message):
        export_onnx(model, tmp_path / target)


# ------------------------------------------------------------------ what an export records, checked on loading


@pytest.fixture(scope="module")
def small_export(small_saved_model, tmp_path_factory):
    """A copy of the small 3-label model directory with model.onnx and model.int8.onnx exported by the CLI."""
    _, directory = small_saved_model
    exported = tmp_path_factory.mktemp("small-export") / "model"
    shutil.copytree(directory, exported)
    ASTFeatureExtractor(max_length=128).save_pretrained(exported)
    assert export_onnx_main([str(exported), str(exported / "model.onnx"), "--quantize_int8"]) == 0
    return exported


def copy_of(directory: Path, destination: Path, *names: str) -> Path:
    """`destination` holding the named files of `directory` (all of them when none is named)."""
    destination.mkdir()
    for path in directory.iterdir():
        if not names or path.name in names:
            shutil.copy(path, destination / path.name)
    return destination


def ast_tag_onnx_error(model_dir: Path, onnx_file: Path | None, tmp_path: Path, fsdd_dir: Path, capsys) -> str:
    """The error `ast-tag MODEL_DIR INPUT OUT --onnx [FILE]` stops with (raised, or printed with a failing status)."""
    from modeling_ast.tagging.cli import main

    clip = tmp_path / "in"
    clip.mkdir()
    shutil.copy(sorted(fsdd_dir.glob("*.wav"))[0], clip)
    argv = [str(model_dir), str(clip), str(tmp_path / "tags.jsonl"), "--onnx"] + ([str(onnx_file)] if onnx_file else [])
    try:
        assert main(argv) != 0
    except ValueError as error:
        return str(error)
    return capsys.readouterr().err


@pytest.mark.parametrize("name", ["model.onnx", "model.int8.onnx"])
def test_exports_record_the_weights_and_config_they_came_from(small_saved_model, small_export, name):
    model, _ = small_saved_model
    record = onnxruntime.InferenceSession(str(small_export / name)).get_modelmeta().custom_metadata_map
    assert record[fingerprint.WEIGHTS_KEY] == fingerprint.weights_sha256(model.state_dict())
    assert json.loads(record[fingerprint.CONFIG_KEY])["labels"] == ["LABEL_0", "LABEL_1", "LABEL_2"]
    ASTOnnxForAudioClassification.from_pretrained(small_export, onnx_path=small_export / name)  # they match


def test_an_export_older_than_the_weights_is_refused(small_export, tmp_path, fsdd_dir, capsys):
    """The issue's row: retraining into D after `ast-export-onnx D D/model.onnx --quantize_int8` made the ONNX model
    and `ast-tag --onnx` run the old weights silently (same config, other weights)."""
    directory = copy_of(small_export, tmp_path / "D")
    retrained = ASTForAudioClassification.from_pretrained(directory)
    with torch.no_grad():
        retrained.classifier.fc.bias.add_(1.0)
    retrained.save_pretrained(directory)
    expected = rf"{directory}/model.int8.onnx was exported from other weights than those in {directory} \(sha256"
    with pytest.raises(ValueError, match=expected):
        ASTOnnxForAudioClassification.from_pretrained(directory)
    assert re.search(expected, ast_tag_onnx_error(directory, None, tmp_path, fsdd_dir, capsys))


def test_another_models_export_under_other_labels_is_refused(small_export, tmp_path, fsdd_dir, capsys):
    """The issue's row: another model's 3-label ONNX file under a 5-label config gave 3 scores with wrong names."""
    other = tmp_path / "five-labels"
    ASTForAudioClassification(ASTConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=4,
                                        intermediate_size=64, max_length=128, num_labels=5)).save_pretrained(other)
    ASTFeatureExtractor(max_length=128).save_pretrained(other)
    onnx_file = small_export / "model.int8.onnx"
    expected = (
        f"{onnx_file} was exported with another config than the config of {other} (exported vs current: labels: 3 vs 5"
    )
    with pytest.raises(ValueError) as error:
        ASTOnnxForAudioClassification.from_pretrained(other, onnx_path=onnx_file)
    assert expected in str(error.value)
    assert expected in ast_tag_onnx_error(other, onnx_file, tmp_path, fsdd_dir, capsys)


def test_renamed_labels_are_refused_even_without_weights_beside_the_file(small_export, tmp_path):
    """A directory of only config.json and the ONNX file is checked by its config: renamed labels would name the
    scores wrongly."""
    directory = copy_of(small_export, tmp_path / "D", "config.json", "model.int8.onnx")
    ASTOnnxForAudioClassification.from_pretrained(directory)  # no weights to compare: the config matches
    config = json.loads((directory / "config.json").read_text())
    config["id2label"]["1"] = "dog"
    (directory / "config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match=r"labels: 3 vs 3 \(1: 'LABEL_1' vs 'dog'\)"):
        ASTOnnxForAudioClassification.from_pretrained(directory)


def test_an_export_without_a_record_is_refused(small_export, tmp_path):
    """Files exported before the record existed cannot be checked: refused, with the command that re-exports."""
    import onnx

    directory = copy_of(small_export, tmp_path / "D")
    legacy = onnx.load(str(directory / "model.int8.onnx"))
    del legacy.metadata_props[:]
    onnx.save(legacy, str(directory / "model.int8.onnx"))
    with pytest.raises(ValueError, match=(
        rf"model.int8.onnx does not record the weights and config it was exported from .*; export it again: "
        rf"ast-export-onnx {directory} {directory}/model.onnx --quantize_int8 --overwrite"
    )):
        ASTOnnxForAudioClassification.from_pretrained(directory)
