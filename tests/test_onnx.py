"""ONNX export: onnxruntime reproduces PyTorch at 1 s, 5 s and 10 s inputs and several batch sizes."""


import numpy as np
import onnxruntime
import pytest
import torch

from modeling_ast import ASTFeatureExtractor
from modeling_ast.audio_io import load_audio
from modeling_ast.conversion.cli import export_onnx_main
from modeling_ast.conversion.onnx import export_onnx
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
    assert not list((tmp_path / "out").glob("*.partial"))


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
