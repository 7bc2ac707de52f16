"""What made a tag record, stored in it, so that a resumed or repeated run never mixes records of two models, two
option sets or two versions of a recording.

Every record carries
- "tagged_with": the model (`model`: the path or Hub id given; `weights_sha256`: the sha256 of its config, feature
  extractor settings and weights files, or of a pipeline object's weights and settings in memory; with --onnx also
  `onnx` and `onnx_sha256`) and the options that change records (`record_options`: `RECORD_OPTIONS`, or with
  --events `"events": true`, `EVENT_RECORD_OPTIONS` and the event settings, defaults filled in);
- "source": its input as it was when tagged: a file's size and modification time, or a saved dataset's fingerprint
  (`datasets` derives it from the rows' content, so a rebuilt dataset with other audio has another one).

A record is current when its "tagged_with" equals this run's (the model's name aside: a moved model is the same
model) and its "source" equals its input's now (inputs no longer listed keep their records, as before).
`Provenance.check` refuses records that are not, saying what differs; under --overwrite they are left out instead
and their inputs tagged again.

Hashing reads every weights file once per run: sha256 ran at 1.1 GB/s on this project's 2-core machine, so the
AudioSet model's 350 MB cost about 0.3 s plus reading them. Nothing is cached: a cache keyed by size and modification
time would trust what the hash is there to check.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..configuration_ast import ASTConfig
from ..conversion.fingerprint import file_sha256, weights_sha256
from .inputs import TagInput

if TYPE_CHECKING:
    from .run import TagOptions

__all__ = [
    "EVENT_RECORD_OPTIONS", "RECORD_OPTIONS", "Provenance", "input_identities", "model_folder", "record_options",
    "run_fingerprint",
]

# The files that decide what a checkpoint folder computes (the training state and checkpoint-N folders do not).
MODEL_FILE_PATTERNS = (
    "config.json", "preprocessor_config.json", "*.safetensors", "*.safetensors.index.json", "pytorch_model*.bin",
    "pytorch_model.bin.index.json",
)
# The TagOptions that change a record (batch sizes, workers and the device only change how fast it is made).
RECORD_OPTIONS = ("top_k", "chunk_length_s", "stride_length_s", "aggregation", "threshold")
# With --events: the windows, then the event settings (`events.EventOptions`: threshold, low, median_window).
EVENT_RECORD_OPTIONS = ("chunk_length_s", "stride_length_s")
NAME_FIELDS = ("model", "onnx")  # what the model was called: shown, not compared
_SHOWN = 5  # inputs named in a message


def model_folder(model: str | os.PathLike) -> Path:
    """The local folder of `model`: the folder itself, or the Hub snapshot of its model files.

    Raises:
        FileNotFoundError: `model` is a local path that does not exist (and cannot be a Hub id).
        OSError: `model` could be a Hub id, but neither a local folder nor the Hub has it.
    """
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HFValidationError
    from huggingface_hub.utils import validate_repo_id

    path, name = Path(model), os.fspath(model)
    if path.is_dir():
        return path
    if path.exists():
        raise ValueError(f"model {name} is a file; give the checkpoint folder (config.json and weights)")
    try:
        validate_repo_id(name)
    except HFValidationError:
        raise FileNotFoundError(f"model {name} does not exist (no such folder)") from None
    try:
        return Path(snapshot_download(name, allow_patterns=list(MODEL_FILE_PATTERNS)))
    except (OSError, ValueError) as err:
        raise OSError(f"model {name}: no local folder of that name, and the Hub does not give it ({err})") from err


def run_fingerprint(model: Any, folder: Path | None, onnx: Path | None, options: TagOptions) -> dict[str, Any]:
    """The "tagged_with" of this run's records: `model` as given, hashed from `folder` (its local files), or from
    memory when it is a pipeline object (`folder` None); `onnx` the ONNX file run instead of PyTorch."""
    if folder is None:
        if not hasattr(model, "model"):
            raise TypeError(f"model: a checkpoint folder, a Hub id or a transformers pipeline, not {type(model)}")
        run = {"model": getattr(model.model, "name_or_path", ""), "weights_sha256": _pipeline_sha256(model)}
    else:
        files = sorted({path for pattern in MODEL_FILE_PATTERNS for path in folder.glob(pattern) if path.is_file()})
        run = {"model": os.fspath(model), "weights_sha256": _files_sha256(files, folder)}
    if onnx is not None:
        run.update(onnx=os.fspath(onnx), onnx_sha256=file_sha256(onnx))
    config = None
    if options.events:  # the model's own event settings fill those not given
        config = model.model.config if folder is None else ASTConfig.from_pretrained(folder)
    return run | record_options(options, config)


def record_options(options: TagOptions, config: Any = None) -> dict[str, Any]:
    """The options stored in "tagged_with". Clip records keep exactly the fields they always had (or every record
    written before --events existed would stop being current); event records say they are events and store the
    event settings as used, those not given filled in from the model's `config` (`TagOptions.event_options`), so a
    record states the threshold it was cut at."""
    if not options.events:
        return {name: getattr(options, name) for name in RECORD_OPTIONS}
    settings = dataclasses.asdict(options.event_options(config))
    # as JSON gives them back: a per-label tuple must compare equal to the list read from a record
    settings = {name: list(value) if isinstance(value, (list, tuple)) else value for name, value in settings.items()}
    return {"events": True, **{name: getattr(options, name) for name in EVENT_RECORD_OPTIONS}, **settings}


def _files_sha256(files: Iterable[Path], folder: Path) -> str:
    """One sha256 over the names (relative to `folder`) and sha256s of `files`."""
    total = hashlib.sha256()
    for path in files:
        total.update(f"{path.relative_to(folder).as_posix()}\0{file_sha256(path)}\n".encode())
    return total.hexdigest()


def _pipeline_sha256(classifier: Any) -> str:
    """One sha256 over a pipeline's weights (`conversion.fingerprint.weights_sha256`, the hash ONNX exports record),
    their dtype (that hash reads float weights as float32), config and feature extractor settings."""
    total = hashlib.sha256(weights_sha256(classifier.model.state_dict()).encode())
    total.update(f"{classifier.model.dtype}\n".encode())
    total.update(classifier.model.config.to_json_string().encode())
    extractor = getattr(classifier, "feature_extractor", None)
    if extractor is not None:
        total.update(extractor.to_json_string().encode())
    return total.hexdigest()


def input_identities(items: Sequence[TagInput], inputs: str | os.PathLike) -> dict[str, str]:
    """{key: "source"}: a file's size and modification time ("missing" when it is not there); for the rows of a
    saved dataset (`inputs`), its fingerprint."""
    identities, dataset = {}, None
    for item in items:
        if item.path is None:
            dataset = dataset or _dataset_identity(inputs)
            identities[item.key] = dataset
        else:
            identities[item.key] = _file_identity(item.path)
    return identities


def _file_identity(path: str) -> str:
    try:
        stat = os.stat(path)
    except FileNotFoundError:
        return "missing"
    return f"{stat.st_size} bytes, mtime_ns {stat.st_mtime_ns}"


def _dataset_identity(folder: str | os.PathLike) -> str:
    from datasets import load_from_disk

    return f"dataset fingerprint {load_from_disk(os.fspath(folder))._fingerprint}"


def _same_run(tagged_with: Any, run: dict[str, Any]) -> bool:
    if not isinstance(tagged_with, dict):
        return False
    fields = (set(tagged_with) | set(run)) - set(NAME_FIELDS)
    return all(tagged_with.get(name) == run.get(name) for name in fields)


@dataclass(frozen=True)
class Provenance:
    """What this run's records are made from: `run` (their "tagged_with", `run_fingerprint`) and the inputs'
    `identities` ({key: "source"}, `input_identities`)."""

    run: dict[str, Any]
    identities: dict[str, str]

    def stamp(self, record: dict[str, Any]) -> None:
        """Add what made it to a record this run made."""
        record.update(source=self.identities[record["input"]], tagged_with=self.run)

    def is_current(self, record: dict[str, Any]) -> bool:
        """Whether `record` is what this run would write for its input (see the module docstring)."""
        if not _same_run(record.get("tagged_with"), self.run):
            return False
        key = record["input"]
        return key not in self.identities or record.get("source") == self.identities[key]

    def check(self, records: Sequence[dict[str, Any]], where: str) -> None:
        """ValueError saying how the records of `where` that are not current differ from this run, if any is not."""
        differences = self._run_differences(records) + self._input_differences(records)
        if differences:
            lines = "\n".join(f"  - {line}" for line in differences)
            raise ValueError(
                f"{where} holds records made otherwise than this run would make them:\n{lines}\n"
                "Pass --overwrite (overwrite=True) to tag those inputs again, or write to another output."
            )

    def _run_differences(self, records: Sequence[dict[str, Any]]) -> list[str]:
        """A line per other model / option set found in `records`."""
        counts: dict[str, int] = {}
        for record in records:
            tagged_with = record.get("tagged_with")
            if not _same_run(tagged_with, self.run):
                key = json.dumps(tagged_with, sort_keys=True)
                counts[key] = counts.get(key, 0) + 1
        lines = []
        for key, count in counts.items():
            other = json.loads(key)
            if not isinstance(other, dict):
                lines.append(f"{count} records carry no fingerprint (written by an ast-tag that did not record one)")
                continue
            fields = sorted((set(other) | set(self.run)) - set(NAME_FIELDS))
            changes = ", ".join(
                f"{name} {_shown(other.get(name))} -> {_shown(self.run.get(name))}"
                for name in fields if other.get(name) != self.run.get(name)
            )
            renamed = "" if other.get("model") == self.run["model"] else f", now {self.run['model']}"
            lines.append(f"{count} records tagged with model {other.get('model')}{renamed}: {changes}")
        return lines

    def _input_differences(self, records: Sequence[dict[str, Any]]) -> list[str]:
        """One line naming the inputs that changed since their (otherwise current) records were made."""
        changed = [
            record for record in records
            if _same_run(record.get("tagged_with"), self.run) and not self.is_current(record)
        ]
        if not changed:
            return []
        first = changed[0]
        shown = ", ".join(record["input"] for record in changed[:_SHOWN])
        more = f" and {len(changed) - _SHOWN} more" if len(changed) > _SHOWN else ""
        return [
            f"{len(changed)} inputs changed since they were tagged: {shown}{more} ({first['input']}: "
            f"{first.get('source')} -> {self.identities[first['input']]})"
        ]


def _shown(value: Any) -> str:
    """A value as a message shows it: hashes cut to 12 characters."""
    if isinstance(value, str) and len(value) == 64 and all(c in "0123456789abcdef" for c in value):
        return value[:12]
    return json.dumps(value)
