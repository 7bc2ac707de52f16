"""ast-tag never mixes records or writes over what it should not: records store what made them (model files' hash,
options, each input's identity) and a run that differs is refused saying what differs, or redoes those records with
--overwrite; a second run on the same output is refused naming the first, or waits; a killed writer's lock and
temporary file are cleaned up by the next run; an output that is not an ast-tag file is left alone."""

from __future__ import annotations

import hashlib
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from transformers import pipeline

from entry_points import entry_point_command
from tiny_models import save_tiny_digit_classifier
from modeling_ast import ASTForAudioClassification
from modeling_ast.locking import lock_path
from modeling_ast.tagging import TagOptions, tag_collection
from modeling_ast.tagging.cli import main as ast_tag
from modeling_ast.tagging.records import journal_dir, read_output

SCORE_TOLERANCE = 1e-5  # batched and single-file forward passes of the same padded input (see test_tagging)


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    return save_tiny_digit_classifier(tmp_path_factory.mktemp("model") / "a")


@pytest.fixture(scope="module")
def retrained_dir(model_dir, tmp_path_factory) -> Path:
    """The same architecture and labels as `model_dir`, other weights: a model retrained into another folder."""
    import torch

    directory = tmp_path_factory.mktemp("model") / "b"
    model = ASTForAudioClassification.from_pretrained(model_dir)
    torch.manual_seed(1)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.add_(0.5 * torch.randn_like(parameter))
    model.save_pretrained(directory)
    shutil.copy(model_dir / "preprocessor_config.json", directory)
    return directory


@pytest.fixture
def folder(tmp_path, fsdd_dir) -> Path:
    """Six FSDD recordings, in a folder of their own (tests change them)."""
    folder = tmp_path / "in"
    folder.mkdir()
    for path in sorted(fsdd_dir.glob("*.wav"))[:6]:
        shutil.copy2(path, folder)
    return folder


def top_labels(model: Path, files: list[Path]) -> list[str]:
    classifier = pipeline("audio-classification", model=str(model), device="cpu")
    return [classifier(str(path), top_k=1)[0]["label"] for path in files]


def weights_of(records: list[dict]) -> set[str]:
    return {record["tagged_with"]["weights_sha256"] for record in records}


@pytest.mark.parametrize("suffix", [".jsonl", ".csv", ".parquet"])
def test_records_store_the_model_options_and_input(tmp_path, model_dir, folder, suffix):
    options = TagOptions(top_k=3, chunk_length_s=1.0, stride_length_s=0.25)
    output = tag_collection(model_dir, folder, tmp_path / f"tags{suffix}", options, progress=False)
    records = read_output(output)
    assert len(records) == 6
    moved = shutil.copytree(model_dir, tmp_path / "moved")  # the same files elsewhere: the same model
    assert all(record["tagged_with"] == records[0]["tagged_with"] for record in records)
    assert records[0]["tagged_with"] == {
        "model": str(model_dir), "weights_sha256": records[0]["tagged_with"]["weights_sha256"], "top_k": 3,
        "chunk_length_s": 1.0, "stride_length_s": 0.25, "aggregation": None, "threshold": None,
    }
    for record in records:
        stat = (folder / record["input"]).stat()
        assert record["source"] == f"{stat.st_size} bytes, mtime_ns {stat.st_mtime_ns}"
    again = read_output(tag_collection(moved, folder, output, options, progress=False))  # nothing differs
    assert [record["labels"] for record in again] == [record["labels"] for record in records]


def test_another_model_is_refused_naming_both_then_redone_with_overwrite(tmp_path, model_dir, retrained_dir,
                                                                         folder):
    output = tag_collection(model_dir, folder, tmp_path / "tags.jsonl", progress=False)
    before = output.read_bytes()
    (ours,) = weights_of(read_output(output))
    with pytest.raises(ValueError, match="made otherwise than this run") as refused:
        tag_collection(retrained_dir, folder, output, progress=False)
    assert f"6 records tagged with model {model_dir}, now {retrained_dir}: weights_sha256 {ours[:12]} -> " \
        in str(refused.value)
    assert "--overwrite" in str(refused.value) and output.read_bytes() == before
    records = read_output(tag_collection(retrained_dir, folder, output, overwrite=True, progress=False))
    assert weights_of(records) != {ours} and len(weights_of(records)) == 1
    files = sorted(folder.iterdir())
    assert [record["labels"][0]["label"] for record in records] == top_labels(retrained_dir, files)


@pytest.mark.parametrize(
    "first, second, difference",
    [
        (TagOptions(top_k=5), TagOptions(top_k=3), "top_k 5 -> 3"),
        (TagOptions(), TagOptions(chunk_length_s=1.0), "chunk_length_s null -> 1.0"),
    ],
)
def test_other_options_are_refused_naming_them(tmp_path, model_dir, folder, first, second, difference):
    output = tag_collection(model_dir, folder, tmp_path / "tags.csv", first, progress=False)
    with pytest.raises(ValueError, match=f"(?m)- 6 records tagged with model {model_dir}: {difference}$"):
        tag_collection(model_dir, folder, output, second, progress=False)
    records = read_output(tag_collection(model_dir, folder, output, second, overwrite=True, progress=False))
    assert [len(record["labels"]) for record in records] == [second.top_k] * 6


def test_a_changed_recording_is_refused_then_retagged_alone(tmp_path, model_dir, folder, fsdd_dir):
    output = tag_collection(model_dir, folder, tmp_path / "tags.parquet", progress=False)
    changed = sorted(folder.iterdir())[2]
    old_size = changed.stat().st_size
    other = sorted(fsdd_dir.glob("*.wav"))[-1]
    shutil.copy(other, changed)  # another recording under the same name
    with pytest.raises(ValueError, match=f"1 inputs changed since they were tagged: {changed.name} "
                                         f"\\({changed.name}: {old_size} bytes, mtime_ns \\d+ -> "):
        tag_collection(model_dir, folder, output, progress=False)
    before = {record["input"]: record for record in read_output(output)}
    after = {record["input"]: record for record in
             read_output(tag_collection(model_dir, folder, output, overwrite=True, progress=False))}
    assert {key for key in after if after[key] != before[key]} == {changed.name}
    assert after[changed.name]["labels"][0]["label"] == top_labels(model_dir, [other])[0]


def test_a_rebuilt_dataset_is_refused_then_retagged(tmp_path, model_dir, fsdd_dir):
    """Rows without paths are keyed by their number: before, a rebuilt dataset's rows 0-4 kept the labels of the old
    recordings. The dataset's fingerprint (from its content) tells the two apart."""
    from datasets import Audio, Dataset

    files = sorted(fsdd_dir.glob("*.wav"))[:10]

    def save(paths: list[Path]) -> Path:
        shutil.rmtree(tmp_path / "saved", ignore_errors=True)
        rows = [{"bytes": path.read_bytes(), "path": None} for path in paths]
        Dataset.from_dict({"audio": rows}).cast_column("audio", Audio()).save_to_disk(str(tmp_path / "saved"))
        return tmp_path / "saved"

    output = tag_collection(model_dir, save(files[:5]), tmp_path / "tags.jsonl", progress=False)
    assert [record["input"] for record in read_output(output)] == ["0", "1", "2", "3", "4"]
    with pytest.raises(ValueError, match=r"5 inputs changed since they were tagged: 0, 1, 2, 3, 4 \(0: dataset "
                                         r"fingerprint \w+ -> dataset fingerprint \w+\)"):
        tag_collection(model_dir, save(files[5:]), output, progress=False)
    records = read_output(tag_collection(model_dir, tmp_path / "saved", output, overwrite=True, progress=False))
    assert [record["labels"][0]["label"] for record in records] == top_labels(model_dir, files[5:])


def test_an_output_from_before_fingerprints_is_refused_then_redone(tmp_path, model_dir, folder):
    output = tmp_path / "tags.jsonl"
    output.write_text('{"input": "old.wav", "labels": [], "error": null}\n')
    with pytest.raises(ValueError, match="1 records carry no fingerprint"):
        tag_collection(model_dir, folder, output, progress=False)
    records = read_output(tag_collection(model_dir, folder, output, overwrite=True, progress=False))
    assert [record["input"] for record in records] == sorted(path.name for path in folder.iterdir())


@pytest.mark.parametrize(
    "name, content, reason",
    [
        ("tags.jsonl", b'{"path": "a.wav", "label": "dog"}\n', "record 1 has no input, labels, error"),
        ("tags.jsonl", b"my notes\n", "JSONDecodeError"),
        ("tags.jsonl", b"", "it holds no records"),
        ("tags.csv", b"path,label\na.wav,dog\n", "no input, labels, error column"),
        ("tags.parquet", b"PAR1 not really", "ArrowInvalid"),
    ],
)
@pytest.mark.parametrize("overwrite", [[], ["--overwrite"]])
def test_an_output_that_is_not_an_ast_tag_file_is_never_written_over(tmp_path, model_dir, folder, capsys, name,
                                                                      content, reason, overwrite):
    output = tmp_path / name
    output.write_bytes(content)
    assert ast_tag([str(model_dir), str(folder), str(output), *overwrite]) == 1
    error = capsys.readouterr().err
    assert error.startswith(f"error: output {output} exists and is not an ast-tag output (") and reason in error
    assert output.read_bytes() == content
    assert sorted(path.name for path in tmp_path.iterdir()) == ["in", name]  # no journal, no lock left


@pytest.mark.parametrize("missing", ["{tmp}/models/absent", "./absent/model", "../absent"])
def test_a_missing_model_path_says_it_does_not_exist(tmp_path, folder, capsys, missing):
    """Before: "Repo id must be in the form 'repo_name' or 'namespace/repo_name'" (the path taken for a Hub id)."""
    model = missing.format(tmp=tmp_path)
    assert ast_tag([model, str(folder), str(tmp_path / "tags.jsonl")]) == 1
    assert capsys.readouterr().err == f"error: model {model} does not exist (no such folder)\n"


def test_a_hub_id_is_hashed_as_its_files(tmp_path, model_dir, folder, loopback_hub):
    from huggingface_hub import HfApi

    api = HfApi()
    api.create_repo("org/tiny-digits")
    api.upload_folder(repo_id="org/tiny-digits", folder_path=model_dir)
    local = read_output(tag_collection(model_dir, folder, tmp_path / "local.jsonl", progress=False))
    hub = read_output(tag_collection("org/tiny-digits", folder, tmp_path / "hub.jsonl", progress=False))
    assert {record["tagged_with"]["model"] for record in hub} == {"org/tiny-digits"}
    assert weights_of(hub) == weights_of(local)
    assert [record["labels"] for record in hub] == [record["labels"] for record in local]


def test_onnx_is_part_of_the_fingerprint(tmp_path, exported_classifier, folder):
    _, directory = exported_classifier
    output = tag_collection(directory, folder, tmp_path / "tags.jsonl", progress=False)
    int8 = hashlib.sha256((directory / "model.int8.onnx").read_bytes()).hexdigest()
    with pytest.raises(ValueError, match=f"onnx_sha256 null -> {int8[:12]}"):
        tag_collection(directory, folder, output, onnx="", progress=False)
    records = read_output(tag_collection(directory, folder, output, onnx="", overwrite=True, progress=False))
    assert {record["tagged_with"]["onnx"] for record in records} == {str(directory / "model.int8.onnx")}


# --- real processes: a second run, a killed run ------------------------------------------------------------------


def command(model: Path, inputs: Path, output: Path, *options: str) -> list[str]:
    return [*entry_point_command("ast-tag"), str(model), str(inputs), str(output), "--device", "cpu", *options]


def wait_for(condition, process: subprocess.Popen, what: str) -> None:
    deadline = time.monotonic() + 300
    while not condition():
        assert process.poll() is None, f"the process ended before {what}"
        assert time.monotonic() < deadline, f"no {what} after 300 s"
        time.sleep(0.002)


def holds_lock(output: Path, process: subprocess.Popen) -> bool:
    try:
        return f'"pid": {process.pid}' in lock_path(output).read_text()
    except FileNotFoundError:
        return False


def test_a_second_run_on_the_same_output_is_refused_naming_the_first_or_waits(tmp_path, model_dir, folder, capsys,
                                                                              caplog):
    """Before: both runs exited 0 and the output held 0 records, the journal gone. (The second run is this process.)"""
    output = tmp_path / "tags.jsonl"
    first = subprocess.Popen(command(model_dir, folder, output), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        wait_for(lambda: holds_lock(output, first), first, "lock taken")
        first.send_signal(signal.SIGSTOP)  # holding the lock, at whatever point of its run
        argv = [str(model_dir), str(folder), str(output), "--device", "cpu"]
        assert ast_tag(argv) == 1
        error = capsys.readouterr().err
        assert error.startswith(f"error: {output} is being written by process {first.pid} on {socket.gethostname()}")
        threading.Timer(1.0, first.send_signal, [signal.SIGCONT]).start()  # resumes it while this run waits
        assert ast_tag([*argv, "--wait_for_lock"]) == 0
        assert f"waiting for process {first.pid}" in caplog.text
        assert first.wait(timeout=300) == 0
    finally:
        first.kill()
        first.wait()
    records = read_output(output)
    assert [record["input"] for record in records] == sorted(path.name for path in folder.iterdir())
    assert not journal_dir(output).exists() and not lock_path(output).exists()


def test_a_restart_after_sigkill_with_another_model_mixes_nothing(tmp_path, model_dir, retrained_dir, fsdd_dir,
                                                                  capsys, caplog):
    """Before: the output mixed the killed run's records (model A) with the restart's (model B), silently."""
    inputs = shutil.copytree(fsdd_dir, tmp_path / "in", ignore=shutil.ignore_patterns("*.md"))  # 128 recordings
    output = tmp_path / "tags.jsonl"
    killed = subprocess.Popen(command(model_dir, inputs, output, "--batch_size", "1"), stderr=subprocess.DEVNULL)
    journal = journal_dir(output) / "process-0.jsonl"
    wait_for(lambda: journal.exists() and journal.stat().st_size > 0, killed, "journaled records")
    killed.send_signal(signal.SIGKILL)
    killed.wait()
    assert holds_lock(output, killed)  # SIGKILL: its lock file stays behind, naming it
    argv = [str(retrained_dir), str(inputs), str(output), "--device", "cpu"]
    assert ast_tag(argv) == 1  # the restart (this process) with another model
    assert f"taking over {lock_path(output)} from process {killed.pid}" in caplog.text
    assert f"records tagged with model {model_dir}, now {retrained_dir}: weights_sha256" in capsys.readouterr().err
    assert ast_tag([*argv, "--overwrite"]) == 0
    records = read_output(output)
    assert len(records) == 128 and len(weights_of(records)) == 1
    assert {record["tagged_with"]["model"] for record in records} == {str(retrained_dir)}


KILLED_AT_RENAME = """
import os, signal, sys
from modeling_ast.tagging.cli import main
os.replace = lambda *args: os.kill(os.getpid(), signal.SIGKILL)  # killed as the finished output is renamed
main(sys.argv[1:])
"""


def test_a_kill_during_the_final_write_leaves_no_partial_file_after_the_next_run(tmp_path, model_dir, folder):
    output = tmp_path / "tags.csv"
    killed = subprocess.run([sys.executable, "-c", KILLED_AT_RENAME, str(model_dir), str(folder), str(output),
                             "--device", "cpu"], capture_output=True, timeout=300)
    assert killed.returncode == -signal.SIGKILL
    assert len(list(tmp_path.glob(".tags.csv.*.partial"))) == 1 and not output.exists()
    records = read_output(tag_collection(model_dir, folder, output, progress=False))
    assert len(records) == 6
    assert sorted(path.name for path in tmp_path.iterdir()) == ["in", "tags.csv"]  # no partial, journal or lock
