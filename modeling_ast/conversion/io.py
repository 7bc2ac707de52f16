"""Safe checkpoint reading and atomic output directories, shared by every converter."""

from __future__ import annotations

import contextlib
import json
import os
import pickle
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file
from transformers.utils import cached_file

# Weight files of a transformers-style checkpoint, in order of preference.
WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin", "pytorch_model.bin.index.json")
# Containers that training scripts commonly wrap a state dict in.
_WRAPPER_KEYS = ("state_dict", "model", "model_state_dict", "module")


def load_state_dict(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Read a checkpoint of tensors without executing code from it.

    `.safetensors` files are read with safetensors; anything else with `torch.load(weights_only=True)`, which refuses
    pickled classes and functions. A dict nested under "state_dict", "model", "model_state_dict" or "module" is
    unwrapped. Raises ValueError naming the file if it cannot be read or holds anything but tensors.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} does not exist")
    if path.suffix == ".safetensors":
        return load_file(path)
    try:
        loaded = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        raise ValueError(
            f"{path} is not a plain tensor checkpoint: refusing to unpickle it (weights_only=True said: {err})"
        ) from err
    except (RuntimeError, EOFError, OSError) as err:
        raise ValueError(f"could not read checkpoint {path}: {err}") from err
    while isinstance(loaded, dict) and len(loaded) == 1 and next(iter(loaded)) in _WRAPPER_KEYS:
        loaded = next(iter(loaded.values()))
    if not isinstance(loaded, dict):
        raise ValueError(f"{path} holds a {type(loaded).__name__}, expected a dict of tensors (a state dict)")
    not_tensors = sorted(key for key, value in loaded.items() if not isinstance(value, torch.Tensor))
    if not_tensors:
        raise ValueError(f"{path} holds non-tensor entries, so it is not a state dict: {not_tensors[:10]}")
    return loaded


@contextlib.contextmanager
def atomic_output_dir(output_dir: str | os.PathLike, overwrite: bool = False) -> Iterator[Path]:
    """Yield a fresh temporary directory beside `output_dir`; on success it replaces `output_dir` in one rename.

    On any exception the temporary directory is removed and `output_dir` is left exactly as it was, so a failed
    conversion never leaves half-written files. An existing non-empty `output_dir` is only replaced when `overwrite`.
    """
    target = Path(output_dir).resolve()
    if target.exists() and not target.is_dir():
        raise ValueError(f"output path {target} exists and is not a directory")
    if target.is_dir() and any(target.iterdir()) and not overwrite:
        raise ValueError(f"output directory {target} is not empty; pass overwrite=True (--overwrite) to replace it")
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.partial-", dir=target.parent))
    umask = os.umask(0)
    os.umask(umask)
    staging.chmod(0o777 & ~umask)  # mkdtemp makes it private (0700); the result is an ordinary directory
    try:
        yield staging
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    backup = None
    if target.exists():
        backup = target.with_name(f".{target.name}.old-{os.getpid()}")
        target.rename(backup)
    staging.rename(target)
    if backup is not None:
        shutil.rmtree(backup, ignore_errors=True)


def read_config_dict(name_or_path: str | os.PathLike, **hub_kwargs: Any) -> dict[str, Any] | None:
    """config.json of a local directory or Hub repository as a dict, or None if there is none."""
    path = cached_file(name_or_path, "config.json", _raise_exceptions_for_missing_entries=False, **hub_kwargs)
    return None if path is None else json.loads(Path(path).read_text())


def read_checkpoint_weights(name_or_path: str | os.PathLike, **hub_kwargs: Any) -> dict[str, torch.Tensor]:
    """All tensors of a transformers-style checkpoint (directory or Hub id; single file or sharded, safetensors
    preferred), read without unpickling code. `hub_kwargs` (revision, token, ...) go to `cached_file`."""
    for filename in WEIGHT_FILES:
        path = cached_file(name_or_path, filename, _raise_exceptions_for_missing_entries=False, **hub_kwargs)
        if path is None:
            continue
        if not filename.endswith(".index.json"):
            return load_state_dict(path)
        state_dict: dict[str, torch.Tensor] = {}
        for shard in sorted(set(json.loads(Path(path).read_text())["weight_map"].values())):
            state_dict.update(load_state_dict(cached_file(name_or_path, shard, **hub_kwargs)))
        return state_dict
    raise FileNotFoundError(f"{name_or_path} has none of the weight files {WEIGHT_FILES}")


def load_checkpoint_dir(path: str | os.PathLike) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """(state dict, config.json as a dict) of a saved model directory or Hub id."""
    config = read_config_dict(path)
    if config is None:
        raise FileNotFoundError(f"{path} has no config.json; expected a saved model directory")
    return read_checkpoint_weights(path), config
