"""Safe checkpoint reading and atomic output directories and files, shared by every converter.

Reading never runs code from a file (safetensors, or `torch.load(weights_only=True)`), and every failure names the
file. Writing goes through `atomic_output_dir`: a hidden staging directory beside the target, renamed into place only
when complete. A run killed half-way (`kill -9`, power loss) leaves only hidden `.NAME.partial-PID-*` /
`.NAME.old-PID` directories, which the next run for the same target cleans up, putting the previous output back first
when the kill fell between the two renames of a replacement. Single files (the ONNX exports) go through
`atomic_output_file`: written as `NAME.partial`, then renamed into place.
"""

from __future__ import annotations

import contextlib
import json
import os
import pickle
import re
import shutil
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file
from transformers.utils import cached_file, logging

logger = logging.get_logger(__name__)

# Weight files of a transformers-style checkpoint, in order of preference.
WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin", "pytorch_model.bin.index.json")
# Containers that training scripts commonly wrap a state dict in.
_WRAPPER_KEYS = ("state_dict", "model", "model_state_dict", "module")
# What follows `.NAME.` in the hidden directories of `atomic_output_dir`: staging or backup, and the writer's pid.
_LEFTOVER = re.compile(r"(?P<kind>partial|old)-(?P<pid>\d+)(?:-.*)?")
_MAX_LISTED = 20


def preview_keys(keys: Sequence[str], limit: int = _MAX_LISTED) -> str:
    """The first `limit` keys joined by ", ", then how many more there are: a checkpoint can have hundreds of keys,
    too many for one error or log message."""
    shown = ", ".join(keys[:limit])
    return shown + (f", ... ({len(keys) - limit} more)" if len(keys) > limit else "")


def warn_non_finite(tensors: Mapping[str, torch.Tensor], source: str) -> list[str]:
    """Log a warning naming the floating-point tensors of `tensors` that hold NaN or infinite values; return them.

    A checkpoint with such weights loads and converts, but every output it produces is NaN.
    """
    bad = sorted(
        key
        for key, tensor in tensors.items()
        if tensor.is_floating_point() and tensor.device.type != "meta" and not torch.isfinite(tensor).all()
    )
    if bad:
        logger.warning(f"{source}: NaN or infinite values in {preview_keys(bad)}")
    return bad


def load_state_dict(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Read a checkpoint of tensors without executing code from it.

    `.safetensors` files are read with safetensors; anything else with `torch.load(weights_only=True)`, which refuses
    pickled classes and functions. A dict nested under "state_dict", "model", "model_state_dict" or "module" is
    unwrapped. Raises ValueError naming the file if it cannot be read or holds anything but tensors; warns naming the
    tensors that hold NaN or infinite values.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} does not exist")
    if path.suffix == ".safetensors":
        try:
            loaded = load_file(path)
        except (SafetensorError, OSError) as err:
            raise ValueError(f"could not read safetensors file {path}: {err}") from err
    else:
        loaded = _load_pickle_free(path)
    warn_non_finite(loaded, str(path))
    return loaded


def _load_pickle_free(path: Path) -> dict[str, torch.Tensor]:
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


def check_output_parent(path: str | os.PathLike) -> Path:
    """`path` made absolute, after checking that no existing ancestor of it is a file (else ValueError)."""
    path = Path(path).resolve()
    for ancestor in path.parents:
        if ancestor.exists():
            if not ancestor.is_dir():
                raise ValueError(f"cannot write {path}: {ancestor} is a file, not a directory")
            break
    return path


def _process_alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)  # signal 0: only asks whether the process exists
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def _abandoned(target: Path) -> list[tuple[str, Path]]:
    """("partial" | "old", path) of the hidden directories of `target` whose writing process no longer runs."""
    if not target.parent.is_dir():
        return []
    prefix = f".{target.name}."
    found = []
    for path in target.parent.iterdir():
        match = _LEFTOVER.fullmatch(path.name[len(prefix):]) if path.name.startswith(prefix) else None
        if match and not _process_alive(int(match.group("pid"))):
            found.append((match.group("kind"), path))
    return found


def recover_interrupted_output(target: str | os.PathLike) -> None:
    """Clean up after a run for `target` that was killed: put the previous output back when the kill fell between
    the two renames of a replacement (so nothing is at `target`), and delete abandoned staging directories."""
    target = Path(target)
    leftovers = _abandoned(target)
    backups = sorted((path for kind, path in leftovers if kind == "old"), key=lambda p: p.stat().st_mtime)
    if backups and not target.exists():
        restored = backups.pop()
        restored.rename(target)
        logger.warning(f"restored {target} from {restored.name}, left by a run killed while replacing it")
    for path in backups + [path for kind, path in leftovers if kind == "partial"]:
        shutil.rmtree(path, ignore_errors=True)
        logger.warning(f"removed {path}, left by an interrupted run")


@contextlib.contextmanager
def atomic_output_dir(output_dir: str | os.PathLike, overwrite: bool = False) -> Iterator[Path]:
    """Yield a fresh temporary directory beside `output_dir`; on success it replaces `output_dir` in one rename.

    On any exception the temporary directory is removed and `output_dir` is left exactly as it was, so a failed
    conversion never leaves half-written files. An existing non-empty `output_dir` is only replaced when `overwrite`.
    Leftovers of earlier runs that were killed are cleaned up first (`recover_interrupted_output`).
    Raises ValueError when `output_dir` is a file, lies below a file, or is not empty without `overwrite`.
    """
    target = check_output_parent(output_dir)
    recover_interrupted_output(target)
    if target.exists() and not target.is_dir():
        raise ValueError(f"output path {target} exists and is not a directory")
    if target.is_dir() and any(target.iterdir()) and not overwrite:
        raise ValueError(f"output directory {target} is not empty; pass overwrite=True (--overwrite) to replace it")
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.partial-{os.getpid()}-", dir=target.parent))
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


@contextlib.contextmanager
def atomic_output_file(path: str | os.PathLike) -> Iterator[Path]:
    """Yield `<path>.partial` to write; on success it replaces `path` in one rename. The partial file is deleted
    whatever happens, so a failed write leaves `path` as it was and no half-written file beside it."""
    path = Path(path)
    partial = path.with_name(path.name + ".partial")
    try:
        yield partial
        partial.replace(path)
    finally:
        partial.unlink(missing_ok=True)


def read_json_file(path: str | os.PathLike) -> Any:
    """A JSON file's content; ValueError naming the file when it is not UTF-8 JSON."""
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ValueError(f"{path} is not a valid UTF-8 JSON file ({err})") from err


def read_config_dict(name_or_path: str | os.PathLike, **hub_kwargs: Any) -> dict[str, Any] | None:
    """config.json of a local directory or Hub repository as a dict, or None if there is none."""
    path = cached_file(name_or_path, "config.json", _raise_exceptions_for_missing_entries=False, **hub_kwargs)
    if path is None:
        return None
    config = read_json_file(path)
    if not isinstance(config, dict):
        raise ValueError(f"{path} holds a JSON {type(config).__name__}, expected an object (a model config)")
    return config


def read_checkpoint_weights(name_or_path: str | os.PathLike, **hub_kwargs: Any) -> dict[str, torch.Tensor]:
    """All tensors of a transformers-style checkpoint (directory or Hub id; single file or sharded, safetensors
    preferred), read without unpickling code. `hub_kwargs` (revision, token, ...) go to `cached_file`."""
    for filename in WEIGHT_FILES:
        path = cached_file(name_or_path, filename, _raise_exceptions_for_missing_entries=False, **hub_kwargs)
        if path is None:
            continue
        if not filename.endswith(".index.json"):
            return load_state_dict(path)
        index = read_json_file(path)
        if not isinstance(index, dict) or not isinstance(index.get("weight_map"), dict):
            raise ValueError(f"{path} has no weight_map object, so it is not a sharded checkpoint index")
        state_dict: dict[str, torch.Tensor] = {}
        for shard in sorted(set(index["weight_map"].values())):
            state_dict.update(load_state_dict(cached_file(name_or_path, shard, **hub_kwargs)))
        return state_dict
    raise FileNotFoundError(f"{name_or_path} has none of the weight files {WEIGHT_FILES}")


def read_saved_config_dict(path: str | os.PathLike) -> dict[str, Any]:
    """config.json of a saved model directory or Hub id as a dict; FileNotFoundError when there is none."""
    config = read_config_dict(path)
    if config is None:
        raise FileNotFoundError(f"{path} has no config.json; expected a saved model directory")
    return config


def load_checkpoint_dir(path: str | os.PathLike) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """(state dict, config.json as a dict) of a saved model directory or Hub id."""
    config = read_saved_config_dict(path)
    return read_checkpoint_weights(path), config
