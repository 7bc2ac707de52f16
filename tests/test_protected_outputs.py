"""No command deletes or replaces one of its own inputs, and `--overwrite` never empties a folder this package did not
write (issue 18, item 3); a killed converter or export leaves nothing behind once the next run has started, even a
refused one (item 6). Every case runs the command line on real files and checks that every byte is still there."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import transformers

from modeling_ast import ASTConfig, ASTFeatureExtractor, ASTForAudioClassification
from modeling_ast.conversion.cli import (
    adapt_pretrained_main,
    convert_original_main,
    convert_transformers_main,
    export_onnx_main,
    imagenet_to_ast_main,
)
from modeling_ast.conversion.original import convert_original_checkpoint
from imagenet_layout import timm_vit_shapes
from imagenet_layout import analytic_state_dict as imagenet_state_dict
from original_layout import original_shapes, random_state_dict

REPO_ROOT = Path(__file__).resolve().parents[1]
TINY = dict(hidden_size=32, num_hidden_layers=1, num_attention_heads=4, intermediate_size=64, max_length=128)


def snapshot(folder: Path) -> dict[str, bytes]:
    """Every file below `folder` (relative path -> bytes): what a refused command must leave exactly as it was."""
    return {str(path.relative_to(folder)): path.read_bytes() for path in sorted(folder.rglob("*")) if path.is_file()}


def write_original_checkpoint(path: Path, num_labels: int = 35) -> Path:
    """A small checkpoint in the AST authors' layout (dataset preset from the file name), saved at `path`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(random_state_dict(original_shapes(64, 1, num_labels, 144)), path)
    return path


def write_labels(path: Path, count: int = 35) -> Path:
    path.write_text("\n".join(f"word {index}" for index in range(count)) + "\n", encoding="utf-8")
    return path


def save_tiny_ast(directory: Path, num_labels: int = 3) -> Path:
    ASTForAudioClassification(ASTConfig(**TINY, num_labels=num_labels)).save_pretrained(directory)
    ASTFeatureExtractor(max_length=TINY["max_length"]).save_pretrained(directory)
    return directory


def refused(main, argv: list[str], capsys) -> str:
    """Run a converter's command line, expecting exit status 1; return its error message."""
    assert main([str(arg) for arg in argv]) == 1
    return capsys.readouterr().err


# ------------------------------------------------------------------------------------------ outputs holding inputs


def test_convert_original_into_the_folder_of_its_inputs_deletes_nothing(tmp_path, capsys):
    """The issue's row: `ast-convert-original ckpts/x.pth ckpts --labels ckpts/labels.csv --overwrite` deleted the
    source, the labels file and an unrelated checkpoint."""
    ckpts = tmp_path / "ckpts"
    source = write_original_checkpoint(ckpts / "speechcommands_10_10_0.9812.pth")
    labels = write_labels(ckpts / "labels.txt")
    (ckpts / "other_run.pth").write_bytes(b"someone's other checkpoint")
    before = snapshot(ckpts)
    error = refused(convert_original_main, [source, ckpts, "--labels", labels, "--overwrite"], capsys)
    assert f"refusing to write {ckpts}: it contains {source}, an input" in error
    assert snapshot(ckpts) == before


def test_convert_original_labels_file_inside_the_output_is_protected(tmp_path, capsys):
    source = write_original_checkpoint(tmp_path / "speechcommands_10_10_0.9812.pth")
    out = save_tiny_ast(tmp_path / "out")  # a folder this package wrote, so only the labels file stops the overwrite
    labels = write_labels(out / "labels.txt")
    before = snapshot(out)
    error = refused(convert_original_main, [source, out, "--labels", labels, "--overwrite"], capsys)
    assert f"refusing to write {out}: it contains {labels}, an input" in error
    assert snapshot(out) == before


def test_output_dot_never_empties_the_current_folder(tmp_path, monkeypatch, capsys):
    """With output `.`, --overwrite emptied the current folder."""
    source = write_original_checkpoint(tmp_path / "sources" / "speechcommands_10_10_0.9812.pth")
    work = tmp_path / "work"
    work.mkdir()
    (work / "notes.txt").write_text("mine")
    (work / "data").mkdir()
    (work / "data" / "clip.wav").write_bytes(b"RIFF")
    monkeypatch.chdir(work)
    before = snapshot(work)
    error = refused(convert_original_main, [source, ".", "--overwrite"], capsys)
    assert f"refusing to replace {work}: it holds data, notes.txt, which no model directory" in error
    assert snapshot(work) == before
    monkeypatch.chdir(tmp_path / "sources")  # and when the current folder holds the source: named as the input
    error = refused(convert_original_main, [source, ".", "--overwrite"], capsys)
    assert f"it contains {source}, an input" in error
    assert [path.name for path in (tmp_path / "sources").iterdir()] == [source.name]


def test_overwrite_refuses_a_folder_with_a_foreign_config(tmp_path, capsys):
    """A model directory of another library (only names a model directory holds, but not an AST config)."""
    source = write_original_checkpoint(tmp_path / "speechcommands_10_10_0.9812.pth")
    out = tmp_path / "bert"
    out.mkdir()
    (out / "config.json").write_text(json.dumps({"model_type": "bert"}))
    (out / "model.safetensors").write_bytes(b"bert weights")
    before = snapshot(out)
    error = refused(convert_original_main, [source, out, "--overwrite"], capsys)
    assert f"refusing to replace {out}: it holds no config.json of an AST model (model_type 'bert')" in error
    assert snapshot(out) == before


def test_overwrite_replaces_an_output_this_package_wrote(tmp_path):
    """What --overwrite is for: a previous conversion (model card included) is replaced."""
    source = write_original_checkpoint(tmp_path / "speechcommands_10_10_0.9812.pth")
    out = tmp_path / "out"
    convert_original_checkpoint(source, out)
    write_original_checkpoint(source, num_labels=2)
    convert_original_checkpoint(source, out, overwrite=True)
    assert ASTForAudioClassification.from_pretrained(out).config.num_labels == 2


def test_adapt_into_its_source_directory_is_refused(tmp_path, capsys):
    source = save_tiny_ast(tmp_path / "pretrained")
    before = snapshot(source)
    error = refused(adapt_pretrained_main, [source, source, "--max_length", "64", "--num_labels", "2", "--overwrite"],
                    capsys)
    assert f"refusing to write {source}: it is {source}, an input" in error
    assert snapshot(source) == before


def test_adapt_labels_file_inside_the_output_is_protected(tmp_path, capsys):
    source = save_tiny_ast(tmp_path / "pretrained")
    out = save_tiny_ast(tmp_path / "out")
    labels = write_labels(out / "labels.txt", 2)
    before = snapshot(out)
    error = refused(adapt_pretrained_main, [source, out, "--max_length", "64", "--labels", labels, "--overwrite"],
                    capsys)
    assert f"it contains {labels}, an input" in error
    assert snapshot(out) == before


def test_imagenet_to_ast_into_the_folder_of_its_source_is_refused(tmp_path, capsys):
    folder = tmp_path / "deit"
    folder.mkdir()
    source = folder / "deit_tiny.pth"
    torch.save(imagenet_state_dict(timm_vit_shapes(embed_dim=128, depth=1, mlp_dim=256, num_patches=64)), source)
    before = snapshot(folder)
    error = refused(imagenet_to_ast_main, [source, folder, "--max_length", "128", "--num_labels", "2", "--overwrite"],
                    capsys)
    assert f"refusing to write {folder}: it contains {source}, an input" in error
    assert snapshot(folder) == before


@pytest.mark.parametrize("direction", ["import", "export"])
def test_convert_transformers_into_its_source_is_refused(tmp_path, capsys, direction):
    source = tmp_path / "model"
    if direction == "import":  # a checkpoint of transformers' built-in AST
        builtin = transformers.ASTConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=4,
                                         intermediate_size=64, max_length=128, num_labels=2)
        transformers.ASTForAudioClassification(builtin).save_pretrained(source)
    else:
        save_tiny_ast(source)
    before = snapshot(source)
    error = refused(convert_transformers_main, [direction, source, source, "--overwrite"], capsys)
    assert f"refusing to write {source}: it is {source}, an input" in error
    assert snapshot(source) == before


@pytest.mark.parametrize("name", ["model.safetensors", "config.json"])
def test_export_onnx_never_replaces_a_file_of_its_model_directory(tmp_path, capsys, name):
    """The issue's row: `ast-export-onnx D D/model.safetensors --overwrite` replaced the weights with ONNX bytes."""
    directory = save_tiny_ast(tmp_path / "D")
    before = snapshot(directory)
    error = refused(export_onnx_main, [directory, directory / name, "--overwrite"], capsys)
    assert f"refusing to write {directory / name}: it is a file of the model directory {directory}" in error
    assert snapshot(directory) == before


# ----------------------------------------------------------------------------------- killed writers leave nothing


def start_and_kill(code: str, ready: Path) -> None:
    """Run `code` in a fresh interpreter, wait until it creates `ready` (it is then inside its final write, which it
    holds), and kill it with SIGKILL, as a user or the OOM killer would."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO_ROOT), str(REPO_ROOT / "tests")]),
           "OMP_NUM_THREADS": "1"}
    process = subprocess.Popen([sys.executable, "-c", code], env=env, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 300
    while not ready.exists():
        assert process.poll() is None, process.stderr.read()
        assert time.monotonic() < deadline, "the writer never reached its final write"
        time.sleep(0.2)
    process.send_signal(signal.SIGKILL)
    process.wait()


HOLD_IN_QUANTIZE = """
import time
from pathlib import Path
import onnxruntime.quantization
from modeling_ast.conversion.cli import export_onnx_main

def hold(source, target, **kwargs):  # the int8 file half-written when the kill comes
    Path(target).write_bytes(b"half an int8 model")
    Path({ready!r}).touch()
    time.sleep(600)

onnxruntime.quantization.quantize_dynamic = hold
export_onnx_main([{model!r}, {output!r}, "--quantize_int8"])
"""


def test_a_killed_export_leaves_no_partial_file_after_the_next_run(tmp_path, capsys):
    """kill -9 while the int8 file is written leaves its partial file; the next run removes it, even when that run
    is refused (here: model.onnx exists and there is no --overwrite)."""
    directory = save_tiny_ast(tmp_path / "D")
    output = tmp_path / "onnx" / "model.onnx"
    ready = tmp_path / "ready"
    start_and_kill(HOLD_IN_QUANTIZE.format(ready=str(ready), model=str(directory), output=str(output)), ready)
    assert [path for path in output.parent.iterdir() if "partial" in path.name]  # the kill left one
    assert "already exists" in refused(export_onnx_main, [directory, output, "--quantize_int8"], capsys)
    assert sorted(path.name for path in output.parent.iterdir()) == ["model.onnx"]


HOLD_IN_SAVE = """
import time
from pathlib import Path
from modeling_ast import ASTFeatureExtractor
from modeling_ast.conversion.cli import convert_original_main

def hold(self, directory, **kwargs):  # the model is written, the feature extractor not yet
    Path({ready!r}).touch()
    time.sleep(600)

ASTFeatureExtractor.save_pretrained = hold
convert_original_main([{source!r}, {output!r}])
"""


def test_a_killed_conversion_leaves_no_staging_after_a_refused_next_run(tmp_path, capsys):
    """kill -9 during a conversion's final write leaves its hidden staging directory; the next run for the same
    output removes it first, even when that run then fails on its input (a labels file of the wrong size)."""
    source = write_original_checkpoint(tmp_path / "in" / "speechcommands_10_10_0.9812.pth")
    output = tmp_path / "out"
    ready = tmp_path / "ready"
    start_and_kill(HOLD_IN_SAVE.format(ready=str(ready), source=str(source), output=str(output)), ready)
    assert [path.name for path in tmp_path.iterdir() if path.name.startswith(".out.partial-")]
    labels = write_labels(tmp_path / "in" / "labels.txt", 3)
    assert "gives 3 labels" in refused(convert_original_main, [source, output, "--labels", labels], capsys)
    assert sorted(path.name for path in tmp_path.iterdir()) == ["in", "ready"]
