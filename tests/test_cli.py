"""Every console script setup.cfg declares resolves to a function, answers --help naming its inputs, and spells its
options with underscores (the config field / keyword argument names); each converter's script in convert/ runs from
the clone as its command does."""

from __future__ import annotations

import importlib
import os
import re
import site
import subprocess
import sys
import sysconfig
import tempfile
from pathlib import Path

import pytest
import torch
import transformers

from entry_points import console_scripts, entry_point_command
from tiny_models import save_tiny_checkpoint, tiny_model

# The positional inputs each command's --help must name.
INPUTS = {
    "ast-convert-original": ("checkpoint_path", "output_dir"),
    "ast-convert-transformers": ("direction", "source", "output_dir"),
    "ast-imagenet-to-ast": ("source", "output_dir"),
    "ast-adapt-pretrained": ("source_dir", "output_dir"),
    "ast-export-onnx": ("model_dir", "output_path"),
    "ast-tag": ("model", "inputs", "output"),
    "ast-listen": ("model", "source"),
}


def test_every_command_is_declared():
    assert sorted(console_scripts()) == sorted(INPUTS)


@pytest.mark.parametrize("name", sorted(INPUTS))
def test_entry_point_resolves_to_a_function(name):
    module, function = console_scripts()[name].split(":")
    assert callable(getattr(importlib.import_module(module), function))


@pytest.mark.parametrize("name", sorted(INPUTS))
def test_help_names_inputs_and_uses_underscores(name):
    result = subprocess.run([*entry_point_command(name), "--help"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    usage = result.stdout
    assert usage.startswith(f"usage: {name} ")
    for argument in INPUTS[name]:
        assert argument in usage
    options = set(re.findall(r"(?<![\w-])--[a-z][a-z0-9_-]*", usage)) - {"--help"}
    assert options, usage
    assert not [option for option in options if "-" in option[2:]], usage


# ------------------------------------------------------------------------------------ convert/ scripts of a clone

REPO_ROOT = Path(__file__).resolve().parents[1]
# convert/<script> -> the console command it is the same as.
CONVERT_SCRIPTS = {
    "convert_original_ast.py": "ast-convert-original",
    "convert_transformers_ast.py": "ast-convert-transformers",
    "convert_imagenet_to_ast.py": "ast-imagenet-to-ast",
    "adapt_pretrained.py": "ast-adapt-pretrained",
    "export_onnx.py": "ast-export-onnx",
}


def run_convert_script(script: str, *argv: str) -> subprocess.CompletedProcess:
    """`python convert/<script> argv...` from outside the clone, as in a clone that was never installed: `-S` skips
    the site-packages .pth files (an editable install of the package is one), and PYTHONPATH names the standard
    library, then site-packages (their usual order, so that no package there shadows a standard module), so the
    dependencies import but `modeling_ast` only through the script itself."""
    search_path = [sysconfig.get_path("stdlib"), *site.getsitepackages()]
    env = os.environ | {"PYTHONPATH": os.pathsep.join(search_path), "COLUMNS": "100"}
    return subprocess.run(
        [sys.executable, "-S", str(REPO_ROOT / "convert" / script), *argv],
        capture_output=True, text=True, timeout=180, cwd=Path(tempfile.gettempdir()), env=env,
    )


def test_every_converter_command_has_a_convert_script():
    converters = {name for name, target in console_scripts().items() if ".conversion." in target}
    assert sorted(CONVERT_SCRIPTS.values()) == sorted(converters)
    assert sorted(path.name for path in (REPO_ROOT / "convert").glob("[!_]*.py")) == sorted(CONVERT_SCRIPTS)


@pytest.mark.parametrize("script", sorted(CONVERT_SCRIPTS))
def test_convert_script_prints_the_help_of_its_command(script, monkeypatch, capsys):
    monkeypatch.setenv("COLUMNS", "100")
    module, function = console_scripts()[CONVERT_SCRIPTS[script]].split(":")
    with pytest.raises(SystemExit) as exit_info:
        getattr(importlib.import_module(module), function)(["--help"])
    assert exit_info.value.code == 0
    expected = capsys.readouterr().out
    result = run_convert_script(script, "--help")
    assert result.returncode == 0, result.stderr
    assert result.stdout == expected


def test_convert_script_exports_a_checkpoint_that_stock_transformers_loads(tmp_path):
    model = tiny_model(num_labels=3, head_layer_norm_eps=1e-6)  # transformers' head has the encoder's eps
    source = save_tiny_checkpoint(tmp_path / "ours", model)
    result = run_convert_script("convert_transformers_ast.py", "export", str(source), str(tmp_path / "stock"))
    assert result.returncode == 0, result.stderr
    stock = transformers.ASTForAudioClassification.from_pretrained(tmp_path / "stock").eval()
    spectrogram = torch.randn(2, 128, 128, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        torch.testing.assert_close(stock(spectrogram).logits, model(spectrogram).logits, atol=1e-6, rtol=0)
