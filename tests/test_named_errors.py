"""Errors that name the thing (issue 18, item 6): a damaged model.safetensors in `pipeline`, `ast-tag` and HEAR, a
missing local checkpoint path in HEAR, an empty checkpoint file in the converters."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch
from safetensors import SafetensorError
from transformers import pipeline

from modeling_ast import ASTConfig, ASTFeatureExtractor, ASTForAudioClassification, hear
from modeling_ast.conversion.cli import convert_original_main
from modeling_ast.conversion.io import load_state_dict, warn_non_finite

TINY = dict(hidden_size=32, num_hidden_layers=1, num_attention_heads=4, intermediate_size=64, max_length=128)


@pytest.fixture(scope="module")
def saved_model(tmp_path_factory) -> Path:
    directory = tmp_path_factory.mktemp("named-errors") / "model"
    ASTForAudioClassification(ASTConfig(**TINY, num_labels=3)).save_pretrained(directory)
    ASTFeatureExtractor(max_length=TINY["max_length"]).save_pretrained(directory)
    return directory


def damaged_copy(saved_model: Path, destination: Path, damage: str) -> Path:
    """A copy of the model directory whose model.safetensors is cut in half, or overwritten with text."""
    shutil.copytree(saved_model, destination)
    weights = destination / "model.safetensors"
    data = weights.read_bytes()
    weights.write_bytes(data[: len(data) // 2] if damage == "truncated" else b"<html>Not Found</html>")
    return destination


def ast_tag_error(model_dir: Path, tmp_path: Path, fsdd_dir: Path, capsys) -> str:
    """The error `ast-tag MODEL_DIR INPUT OUT` stops with (raised, or printed with a failing status)."""
    from modeling_ast.tagging.cli import main

    clips = tmp_path / "in"
    clips.mkdir()
    shutil.copy(sorted(fsdd_dir.glob("*.wav"))[0], clips)
    try:
        assert main([str(model_dir), str(clips), str(tmp_path / "tags.jsonl")]) != 0
    except (SafetensorError, OSError, ValueError) as error:
        return str(error)
    return capsys.readouterr().err


@pytest.mark.parametrize("damage", ["truncated", "text"])
def test_a_damaged_weight_file_is_named_by_every_loader(saved_model, tmp_path, fsdd_dir, capsys, damage):
    """Before, all three said only "Error while deserializing header: ..." (which file, of which model?)."""
    directory = damaged_copy(saved_model, tmp_path / "model", damage)
    expected = f"could not read {directory / 'model.safetensors'}: Error while deserializing header"
    with pytest.raises(SafetensorError, match="deserializing") as error:
        pipeline("audio-classification", model=str(directory))
    assert expected in str(error.value)
    with pytest.raises(SafetensorError, match="deserializing") as error:
        hear.load_model(str(directory))
    assert expected in str(error.value)
    assert expected in ast_tag_error(directory, tmp_path, fsdd_dir, capsys)


@pytest.mark.parametrize("relative", [False, True], ids=["absolute", "relative"])
def test_hear_load_model_says_a_missing_path_does_not_exist(tmp_path, monkeypatch, relative):
    """Before: "Repo id must be in the form 'repo_name' or 'namespace/repo_name'"."""
    monkeypatch.chdir(tmp_path)
    missing = Path("checkpoints") / "run-1" / "best" if relative else tmp_path / "checkpoints" / "run-1"
    with pytest.raises(FileNotFoundError, match=f"^{missing} does not exist"):
        hear.load_model(str(missing))


def test_an_empty_checkpoint_file_is_said_to_be_empty(tmp_path, capsys):
    empty = tmp_path / "audioset_10_10_0.4593.pth"
    empty.touch()
    assert convert_original_main([str(empty), str(tmp_path / "out")]) == 1
    assert f"error: checkpoint {empty} is empty (0 bytes)" in capsys.readouterr().err
    (tmp_path / "weights.safetensors").touch()
    with pytest.raises(ValueError, match=r"weights\.safetensors is empty \(0 bytes\)"):
        load_state_dict(tmp_path / "weights.safetensors")
    assert not (tmp_path / "out").exists()



def test_non_finite_weights_are_found_by_their_sum_without_false_alarms():
    """warn_non_finite checks each tensor's sum first: finite values whose float32 sum overflows are not reported,
    a single NaN or infinity anywhere is."""
    tensors = {
        "overflowing sum": torch.full((10,), 1e38),
        "half precision": torch.full((4,), 60000.0, dtype=torch.float16),
        "one nan": torch.tensor([1.0, float("nan"), 2.0]),
        "infinities": torch.tensor([float("inf"), -float("inf")]),
        "integers": torch.arange(3),
    }
    assert warn_non_finite(tensors, "test") == ["infinities", "one nan"]
