"""Export an AST checkpoint as Hub "remote code": loadable with `trust_remote_code=True` where this package is absent.

`export_remote_code(model, feature_extractor, destination)` saves the weights, configs and our module files into a
folder (or, with `push_to_hub=True`, into a Hub repository in one commit), and writes `auto_map` entries so that

    AutoConfig / AutoModel / AutoModelForAudioClassification / AutoFeatureExtractor.from_pretrained(
        destination, trust_remote_code=True)
    pipeline("audio-classification", model=destination, trust_remote_code=True)

import the copied files instead of `modeling_ast`. The copying is transformers' own (`custom_object_save`, triggered
by `register_for_auto_class`): it copies the module file defining each class plus, recursively, the sibling modules it
imports with `from .name import ...`. On load, transformers imports those files as
`transformers_modules.<repo or folder>.<module>`, so `modeling_ast.py` is a module of that package and never clashes
with this package's name.

What the exported code may import is therefore limited: sibling modules through `from .name import ...` only (no
subpackages, no `from . import name`, no parent packages) and never `modeling_ast` by absolute name.
`remote_code_problems` checks this before anything is written and `export_remote_code` refuses with the list of
offending lines.
"""

from __future__ import annotations

import ast
import contextlib
import json
import os
import sys
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from huggingface_hub import CommitInfo, HfApi
from transformers.dynamic_module_utils import get_relative_imports

from .configuration_ast import ASTConfig
from .feature_extraction_ast import ASTFeatureExtractor
from .modeling_ast import ASTForAudioClassification, ASTModel, ASTPreTrainedModel

_PACKAGE_NAME = __name__.partition(".")[0]
_UNSET = object()

_MODEL_CARD = """---
library_name: transformers
pipeline_tag: audio-classification
tags:
- audio-classification
- audio-spectrogram-transformer
- custom_code
---

# Audio Spectrogram Transformer

An Audio Spectrogram Transformer (AST) with its modeling code included: load it with `trust_remote_code=True`.

```python
from transformers import pipeline

classifier = pipeline("audio-classification", model="{name}", trust_remote_code=True)
```
"""


class RemoteCodeError(ValueError):
    """The package's source cannot be shipped as remote code, or an export came out incomplete."""


def export_remote_code(
    model: ASTPreTrainedModel,
    feature_extractor: ASTFeatureExtractor | None,
    destination: str | os.PathLike,
    *,
    push_to_hub: bool = False,
    commit_message: str = "Upload AST model with remote code",
    private: bool | None = None,
    token: str | bool | None = None,
    revision: str | None = None,
) -> Path | CommitInfo:
    """Save (`push_to_hub=False`) or push (`push_to_hub=True`) a model, its feature extractor and their code.

    Args:
        model: an `ASTModel` or `ASTForAudioClassification` (or a subclass whose module obeys the same rules).
        feature_extractor: its `ASTFeatureExtractor`, or None to export the model alone.
        destination: output folder, or with `push_to_hub=True` a Hub repo id ("org/name"; created if missing).
        push_to_hub: push to the Hub in a single commit instead of saving to a folder.
        commit_message, private, token, revision: Hub options, used only with `push_to_hub=True`.

    Returns:
        The output folder, or the Hub commit's `CommitInfo`.

    Raises:
        RemoteCodeError: the module files cannot work as remote code (see `remote_code_problems`), or the export
            lacks a file its `auto_map` or imports need.
        TypeError: `model` or `feature_extractor` is not one of this package's classes.
    """
    if not push_to_hub:
        return _save_remote_code(model, feature_extractor, destination)
    return _push_remote_code(
        model,
        feature_extractor,
        str(destination),
        commit_message=commit_message,
        private=private,
        token=token,
        revision=revision,
    )


def _save_remote_code(
    model: ASTPreTrainedModel, feature_extractor: ASTFeatureExtractor | None, output_dir: str | os.PathLike
) -> Path:
    """Write model, feature extractor, module files and `auto_map` into `output_dir`; returns it as a Path."""
    _check_objects(model, feature_extractor)
    problems = remote_code_problems(_source_files(model, feature_extractor))
    if problems:
        raise RemoteCodeError("this package's code cannot be exported as remote code:\n- " + "\n- ".join(problems))
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    with _registered_for_auto_classes(model, feature_extractor):
        model.save_pretrained(output_dir)
        if feature_extractor is not None:
            feature_extractor.save_pretrained(output_dir)
    readme = output_dir / "README.md"
    if not readme.exists():
        readme.write_text(_MODEL_CARD.replace("{name}", output_dir.name), encoding="utf-8")
    _verify_remote_code_folder(output_dir)
    return output_dir


def _push_remote_code(
    model: ASTPreTrainedModel,
    feature_extractor: ASTFeatureExtractor | None,
    repo_id: str,
    *,
    commit_message: str = "Upload AST model with remote code",
    private: bool | None = None,
    token: str | bool | None = None,
    revision: str | None = None,
) -> CommitInfo:
    """`_save_remote_code` into a temporary folder, then upload it to `repo_id` (created if missing) in one commit,
    so the repository never holds an `auto_map` without its code. Nothing is created when the export fails."""
    api = HfApi(token=token, library_name=_PACKAGE_NAME)
    with tempfile.TemporaryDirectory() as staging:
        folder = _save_remote_code(model, feature_extractor, Path(staging) / "export")
        repo_id = api.create_repo(repo_id, private=private, exist_ok=True).repo_id
        (folder / "README.md").write_text(_MODEL_CARD.replace("{name}", repo_id), encoding="utf-8")
        return api.upload_folder(repo_id=repo_id, folder_path=folder, commit_message=commit_message, revision=revision)


# ----------------------------------------------------------------------------------------------------------------------
# Registration, scoped to one export
# ----------------------------------------------------------------------------------------------------------------------


def _auto_class_of(model: ASTPreTrainedModel) -> str:
    return "AutoModelForAudioClassification" if isinstance(model, ASTForAudioClassification) else "AutoModel"


def _class_reference(cls: type) -> str:
    """How `auto_map` names a class: "<module file stem>.<class name>", as transformers' `custom_object_save` does."""
    return f"{cls.__module__.rpartition('.')[2]}.{cls.__name__}"


@contextlib.contextmanager
def _registered_for_auto_classes(
    model: ASTPreTrainedModel, feature_extractor: ASTFeatureExtractor | None
) -> Iterator[None]:
    """Register the classes for their Auto classes for the duration of a save, then restore the previous state.

    `register_for_auto_class` sets a class attribute and the save writes `auto_map` into the config objects; both
    would otherwise outlive the export and make every later `save_pretrained` in the process copy code. Not
    thread-safe: do not save these classes from another thread during an export.
    """
    config = model.config
    registrations: list[tuple[type, str]] = [(type(config), "AutoConfig"), (type(model), _auto_class_of(model))]
    if feature_extractor is not None:
        registrations.append((type(feature_extractor), "AutoFeatureExtractor"))
    saved_classes = [(cls, cls.__dict__.get("_auto_class", _UNSET)) for cls, _ in registrations]
    saved_maps = [(obj, obj.__dict__.get("auto_map", _UNSET)) for obj in (config, feature_extractor) if obj is not None]
    # Entries the save would not write on its own: the bare encoder for AutoModel, and the feature extractor in the
    # model config too (AutoFeatureExtractor reads it there when preprocessor_config.json has none).
    encoder_class = ASTModel if isinstance(model, ASTForAudioClassification) else type(model)
    extra_map = {"AutoModel": _class_reference(encoder_class)}
    if feature_extractor is not None:
        extra_map["AutoFeatureExtractor"] = _class_reference(type(feature_extractor))
    try:
        for cls, auto_class in registrations:
            cls.register_for_auto_class(auto_class)
        config.auto_map = {**(getattr(config, "auto_map", None) or {}), **extra_map}
        yield
    finally:
        for cls, previous in saved_classes:
            if previous is _UNSET:
                with contextlib.suppress(AttributeError):
                    delattr(cls, "_auto_class")
            else:
                cls._auto_class = previous
        for obj, previous in saved_maps:
            if previous is _UNSET:
                obj.__dict__.pop("auto_map", None)
            else:
                obj.auto_map = previous


def _check_objects(model: Any, feature_extractor: Any) -> None:
    if not isinstance(model, ASTPreTrainedModel):
        raise TypeError(f"model must be an ASTModel or ASTForAudioClassification, got {type(model).__name__}")
    if not isinstance(model.config, ASTConfig):
        raise TypeError(f"model.config must be an ASTConfig, got {type(model.config).__name__}")
    if feature_extractor is not None and not isinstance(feature_extractor, ASTFeatureExtractor):
        kind = type(feature_extractor).__name__
        raise TypeError(f"feature_extractor must be an ASTFeatureExtractor or None, got {kind}")


# ----------------------------------------------------------------------------------------------------------------------
# Checks
# ----------------------------------------------------------------------------------------------------------------------


def _source_files(model: ASTPreTrainedModel, feature_extractor: ASTFeatureExtractor | None) -> list[Path]:
    classes = [type(model.config), type(model)] + ([type(feature_extractor)] if feature_extractor is not None else [])
    return [Path(sys.modules[cls.__module__].__file__) for cls in classes]


def remote_code_problems(module_files: Iterable[str | os.PathLike]) -> list[str]:
    """Reasons why these module files, and the sibling modules they import, would not work as remote code.

    transformers ships a module's relative imports by matching `from .name import` lines and copying (or, from the
    Hub, downloading) `name.py` beside it. Every relative import must hence name an existing sibling module, in that
    exact form; and the files must not import this package by absolute name, which remote-code users do not have.
    An empty list means the files export cleanly.
    """
    problems: list[str] = []
    pending = [Path(file) for file in module_files]
    seen: set[Path] = set()
    while pending:
        file = pending.pop()
        if file in seen:
            continue
        seen.add(file)
        problems.extend(_import_problems(file))
        for name in get_relative_imports(file):  # exactly what transformers will follow
            sibling = file.parent / f"{name}.py"
            if "." not in name and sibling.is_file():
                pending.append(sibling)
    return problems


def _import_problems(file: Path) -> list[str]:
    """Problems with the import statements of one module file (anywhere in it, function bodies included)."""
    problems = []
    for node in ast.walk(ast.parse(file.read_text(encoding="utf-8"), filename=str(file))):
        where = f"{file.name}:{getattr(node, 'lineno', '?')}"
        if isinstance(node, ast.ImportFrom) and node.level > 0:
            target = "." * node.level + (node.module or "")
            if node.level > 1:
                problems.append(f"{where} imports from the parent package ({target}), which remote code does not have")
            elif node.module is None:
                names = ", ".join(alias.name for alias in node.names)
                problems.append(
                    f"{where} uses `from . import {names}`, which transformers does not ship; write `from .{names} "
                    "import ...`"
                )
            elif "." in node.module:
                problems.append(
                    f"{where} imports `{target}` from a subpackage; remote code only ships sibling modules "
                    f"(transformers would look for a file named `{node.module}.py`)"
                )
            elif not (file.parent / f"{node.module}.py").is_file():
                problems.append(f"{where} imports `{target}`, but there is no {node.module}.py beside {file.name}")
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and _top_level(node.module) == _PACKAGE_NAME:
            problems.append(f"{where} imports the `{_PACKAGE_NAME}` package by absolute name ({node.module})")
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if _top_level(alias.name) == _PACKAGE_NAME:
                    problems.append(f"{where} imports the `{_PACKAGE_NAME}` package by absolute name ({alias.name})")
    return problems


def _top_level(module: str | None) -> str:
    return (module or "").partition(".")[0]


def _verify_remote_code_folder(folder: str | os.PathLike) -> None:
    """Check an exported folder: every `auto_map` target's module is there and defines its class, and every module's
    relative imports are there. Raises RemoteCodeError listing what is missing."""
    folder = Path(folder)
    problems = remote_code_problems(sorted(folder.glob("*.py")))
    references: set[str] = set()
    for name in ("config.json", "preprocessor_config.json"):
        path = folder / name
        if path.is_file():
            references.update(_auto_map_references(json.loads(path.read_text(encoding="utf-8")).get("auto_map", {})))
    for reference in sorted(references):
        module, _, class_name = reference.rpartition(".")
        module_file = folder / f"{module}.py"
        if not module_file.is_file():
            problems.append(f"auto_map names {reference}, but {module_file.name} was not exported")
        elif class_name not in _defined_classes(module_file):
            problems.append(f"auto_map names {reference}, but {module_file.name} defines no class {class_name}")
    if problems:
        raise RemoteCodeError(f"incomplete remote-code export in {folder}:\n- " + "\n- ".join(problems))


def _auto_map_references(auto_map: dict[str, Any]) -> Iterator[str]:
    for value in auto_map.values():
        for reference in value if isinstance(value, (list, tuple)) else [value]:
            if reference and "--" not in reference:  # "repo--module.Class" lives in another repo
                yield reference


def _defined_classes(module_file: Path) -> set[str]:
    tree = ast.parse(module_file.read_text(encoding="utf-8"), filename=str(module_file))
    return {node.name for node in tree.body if isinstance(node, ast.ClassDef)}


__all__ = ["RemoteCodeError", "export_remote_code", "remote_code_problems"]
