"""Safe checkpoint reading and atomic output directories and files, shared by every converter.

Reading never runs code from a file (safetensors, or `torch.load(weights_only=True)`), and every failure names the
file. Writing goes through `atomic_output_dir`: a hidden staging directory beside the target, renamed into place only
when complete. A run killed half-way (`kill -9`, power loss) leaves only hidden `.NAME.partial-PID-*` /
`.NAME.old-PID` directories, which the next run for the same target cleans up, putting the previous output back first
when the kill fell between the two renames of a replacement. Single files (the ONNX exports) go through
`atomic_output_file`: written as `.NAME.partial-PID`, then renamed into place; the next run removes a killed one's.

No writer deletes or replaces its own inputs (`check_not_an_input`), and `overwrite` replaces only a directory that
this package wrote (`check_replaceable`): a model directory of known files, never a folder that holds anything else.
"""

from __future__ import annotations

import contextlib
import json
import os
import pickle
import re
import shutil
import tempfile
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file
from transformers.utils import cached_file, logging

from ..configuration_ast import TRANSFORMERS_MODEL_TYPE, ASTConfig

__all__ = [
    "WEIGHT_FILES",
    "atomic_output_dir",
    "atomic_output_file",
    "check_not_an_input",
    "check_output_dir",
    "check_output_parent",
    "input_paths",
    "load_checkpoint_dir",
    "load_state_dict",
    "preview_keys",
    "read_checkpoint_weights",
    "read_config_dict",
    "read_json_file",
    "read_saved_config_dict",
    "recover_interrupted_output",
    "warn_non_finite",
]

logger = logging.get_logger(__name__)

# Weight files of a transformers-style checkpoint, in order of preference.
WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin", "pytorch_model.bin.index.json")
# Containers that training scripts commonly wrap a state dict in.
_WRAPPER_KEYS = ("state_dict", "model", "model_state_dict", "module")
# What follows `.NAME.` in the hidden directories of `atomic_output_dir`: staging or backup, and the writer's pid.
_LEFTOVER = re.compile(r"(?P<kind>partial|old)-(?P<pid>\d+)(?:-.*)?")
_MAX_LISTED = 20
# The files loading a saved model directory reads: configs and weights, single or sharded.
_LOADED_FILE = re.compile(
    r"config\.json|preprocessor_config\.json"
    r"|(model(-\d+-of-\d+)?\.safetensors|pytorch_model(-\d+-of-\d+)?\.bin)(\.index\.json)?"
)
# What a model directory written by this package may hold besides those: model card, averaging record, ONNX exports.
# `overwrite` only replaces a directory made of these files, so it never deletes anything a user put there.
_WRITTEN_FILE = re.compile(rf"{_LOADED_FILE.pattern}|README\.md|weight_averaging\.json|model(\.int8)?\.onnx")


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
        if tensor.is_floating_point() and tensor.device.type != "meta" and _holds_non_finite(tensor)
    )
    if bad:
        logger.warning(f"{source}: NaN or infinite values in {preview_keys(bad)}")
    return bad


def _holds_non_finite(tensor: torch.Tensor) -> bool:
    # A sum is NaN or infinite whenever an element is, and costs far less than a mask of every element (base model:
    # 0.07 s against 1-2.5 s); only a sum that overflows on finite values sends the elements to decide.
    return not bool(torch.isfinite(tensor.sum())) and not bool(torch.isfinite(tensor).all())


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
    if path.stat().st_size == 0:  # torch.load would say "Ran out of input", safetensors "header too small"
        raise ValueError(f"checkpoint {path} is empty (0 bytes): an interrupted download or copy?")
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


def input_paths(*sources: object) -> list[Path]:
    """The local files and directories among a command's `sources`, resolved: what its output must not replace.

    A source may be a path, a Hub id or comma-separated labels (kept only when the path exists), a model (its
    `name_or_path`, the directory it was loaded from), or anything else (a state dict, a list of labels: skipped)."""
    paths = []
    for source in sources:
        source = getattr(source, "name_or_path", source)
        if isinstance(source, (str, os.PathLike)) and os.fspath(source) and os.path.exists(source):
            paths.append(Path(source).resolve())
    return paths


def saved_model_files(directory: str | os.PathLike) -> list[Path]:
    """The files of a saved model directory that loading it reads (configs and weights); [] if it is no directory."""
    directory = Path(directory)
    if not directory.is_dir():
        return []
    return sorted(path for path in directory.iterdir() if _LOADED_FILE.fullmatch(path.name))


def check_not_an_input(output: Path, inputs: Iterable[Path]) -> None:
    """Raise ValueError when writing the absolute path `output` would replace or delete one of `inputs`: it is one of
    them, contains one, or is a file that loading an input model directory reads."""
    for source in inputs:
        source = Path(source).resolve()
        if output == source:
            relation = "is"
        elif output in source.parents:
            relation = "contains"
        elif output in saved_model_files(source):
            relation = "is a file of the model directory"
        else:
            continue
        raise ValueError(
            f"refusing to write {output}: it {relation} {source}, an input of this command, which "
            "overwrite (--overwrite) never replaces or deletes; choose another output"
        )


def _model_type(config_file: Path) -> Any:
    """The model_type of a config.json; None when there is no readable JSON object."""
    try:
        config = read_json_file(config_file)
    except (OSError, ValueError):
        return None
    return config.get("model_type") if isinstance(config, dict) else None


def check_replaceable(directory: Path) -> None:
    """Raise ValueError unless `directory` looks like a model directory this package wrote: a config.json of an AST
    model and only files such a directory holds (`_WRITTEN_FILE`). Replacing deletes it, so a folder holding anything
    else (a user's files, a training run, the current directory) is refused, naming what would be lost."""
    strangers = sorted(
        path.name for path in directory.iterdir() if not (path.is_file() and _WRITTEN_FILE.fullmatch(path.name))
    )
    if strangers:
        raise ValueError(
            f"refusing to replace {directory}: it holds {preview_keys(strangers)}, which no model directory written "
            "by this package holds, and replacing would delete them; delete or move them yourself, or choose "
            "another output"
        )
    model_type = _model_type(directory / "config.json")
    if model_type not in (ASTConfig.model_type, TRANSFORMERS_MODEL_TYPE):
        raise ValueError(
            f"refusing to replace {directory}: it holds no config.json of an AST model (model_type {model_type!r}), "
            "so this package did not write it; delete it yourself, or choose another output"
        )


def check_output_dir(
    output_dir: str | os.PathLike, overwrite: bool = False, inputs: Iterable[Path] = ()
) -> Path:
    """`output_dir` made absolute, after cleaning up the leftovers of killed runs for it
    (`recover_interrupted_output`) and checking that it may be written.

    Raises ValueError when `output_dir` is a file, lies below a file, is, contains or is part of one of `inputs`
    (`check_not_an_input`), or is a non-empty directory and either `overwrite` is False or this package did not
    write it (`check_replaceable`). Converters call it before reading their inputs, so a bad output fails fast.
    """
    target = check_output_parent(output_dir)
    recover_interrupted_output(target)
    check_not_an_input(target, inputs)
    if target.exists() and not target.is_dir():
        raise ValueError(f"output path {target} exists and is not a directory")
    if target.is_dir() and any(target.iterdir()):
        if not overwrite:
            raise ValueError(
                f"output directory {target} is not empty; pass overwrite=True (--overwrite) to replace it"
            )
        check_replaceable(target)
    return target


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
        if path.is_dir():
            shutil.rmtree(path, ignore_errors=True)
        else:  # a partial file of `atomic_output_file`
            path.unlink(missing_ok=True)
        logger.warning(f"removed {path}, left by an interrupted run")


@contextlib.contextmanager
def atomic_output_dir(
    output_dir: str | os.PathLike, overwrite: bool = False, inputs: Iterable[Path] = ()
) -> Iterator[Path]:
    """Yield a fresh temporary directory beside `output_dir`; on success it replaces `output_dir` in one rename.

    On any exception the temporary directory is removed and `output_dir` is left exactly as it was, so a failed
    conversion never leaves half-written files. An existing non-empty `output_dir` is only replaced when `overwrite`,
    and only when this package wrote it; it is never one of `inputs` nor holds one. Leftovers of earlier runs that
    were killed are cleaned up first. Raises ValueError as `check_output_dir`.
    """
    target = check_output_dir(output_dir, overwrite, inputs)
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
    """Yield `.<name>.partial-<pid>` beside `path` to write; on success it replaces `path` in one rename. The partial
    file is deleted whatever happens, so a failed write leaves `path` as it was and no half-written file beside it;
    the one a killed run left is removed first (`recover_interrupted_output`)."""
    path = Path(path)
    recover_interrupted_output(path)
    partial = path.with_name(f".{path.name}.partial-{os.getpid()}")
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
