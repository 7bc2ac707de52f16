"""Shared pytest fixtures: the real recordings the repository ships, a loopback Hub, and an exported small model."""

import importlib
import shutil
import sys
from pathlib import Path
from types import ModuleType

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
FSDD_DIR = REPO_ROOT / "tests" / "data" / "fsdd"
EXAMPLES_DIR = REPO_ROOT / "examples"


def import_example(name: str) -> ModuleType:
    """examples/<name>.py imported as the script runs: with examples/ on sys.path, so that it finds the sibling
    modules it imports by plain name (removed again after the import). Use it as
    `from conftest import import_example`."""
    sys.path.insert(0, str(EXAMPLES_DIR))
    try:
        return importlib.import_module(name)
    finally:
        sys.path.remove(str(EXAMPLES_DIR))

# Formats libsndfile cannot read (m4a) need the ffmpeg binary: CI installs it; a newcomer who skipped that apt line
# sees these tests skipped with this reason instead of errors. Import it as `from conftest import requires_ffmpeg`.
requires_ffmpeg = pytest.mark.skipif(
    shutil.which("ffmpeg") is None, reason="needs the ffmpeg binary (Debian/Ubuntu package ffmpeg)"
)


@pytest.fixture(scope="session")
def fsdd_dir() -> Path:
    """Folder of the Free Spoken Digit Dataset recordings the tests read (8 kHz, `{digit}_{speaker}_{take}.wav`; a
    subset shipped with the repository, see tests/data/fsdd/README.md)."""
    return FSDD_DIR


@pytest.fixture(scope="module")
def loopback_hub(tmp_path_factory):
    """A `LoopbackHub` (tests/hub_server.py) on 127.0.0.1, shared by the tests of a module, with this process's
    huggingface_hub and transformers pointed at it and a fresh HF_HOME; `hub.client_env(hf_home)` gives the
    environment for client subprocesses. The server stops, and environment and constants are restored, at teardown."""
    from hub_server import LoopbackHub, point_client_at  # tests/ is on sys.path: pytest's default "prepend" import mode

    with LoopbackHub(tmp_path_factory.mktemp("hub-storage")) as hub, pytest.MonkeyPatch.context() as monkeypatch:
        point_client_at(hub, tmp_path_factory.mktemp("hf-home"), monkeypatch)
        yield hub


@pytest.fixture(scope="session")
def exported_classifier(tmp_path_factory):
    """(model, directory): `tiny_models.small_trained_like_model()` saved with a feature extractor that returns
    attention masks, and model.onnx and model.int8.onnx exported beside it (one export for test_onnx and test_int8)."""
    from modeling_ast.conversion.onnx import export_onnx
    from tiny_models import save_tiny_checkpoint, small_trained_like_model

    model = small_trained_like_model()
    directory = save_tiny_checkpoint(tmp_path_factory.mktemp("exported") / "model", model, return_attention_mask=True)
    export_onnx(model, directory / "model.onnx", quantize_int8=True)
    return model, directory
