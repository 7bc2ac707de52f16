"""Every console script setup.cfg declares resolves to a function, answers --help naming its inputs, and spells its
options with underscores (the config field / keyword argument names)."""

from __future__ import annotations

import importlib
import re
import subprocess

import pytest

from entry_points import console_scripts, entry_point_command

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
