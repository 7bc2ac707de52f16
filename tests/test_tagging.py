"""ast-tag / tag_collection: every input form, every output format, error rows, resume, SIGKILL at random moments,
two processes, long audio with timelines. Expected records come from the pipeline called on each file by hand."""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile
from transformers import pipeline

from entry_points import entry_point_command
from tiny_models import save_tiny_digit_classifier
from modeling_ast.tagging import TagOptions, collect_inputs, tag_collection
from modeling_ast.tagging.fingerprints import Provenance, input_identities, run_fingerprint
from modeling_ast.tagging.records import Journal, journal_dir, read_output

# Batched and single-file forward passes of the same padded input: measured equal to ~1e-7 on scores below 1.
SCORE_TOLERANCE = 1e-5
NUM_FILES = 12


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    return save_tiny_digit_classifier(tmp_path_factory.mktemp("model") / "tiny")


@pytest.fixture(scope="module")
def recordings(tmp_path_factory, fsdd_dir) -> Path:
    """NUM_FILES FSDD recordings, two of them in a subfolder (folders are searched recursively)."""
    folder = tmp_path_factory.mktemp("recordings")
    files = sorted(fsdd_dir.glob("*.wav"))[:NUM_FILES]
    (folder / "more").mkdir()
    for index, path in enumerate(files):
        shutil.copy(path, folder / ("more" if index < 2 else "") / path.name)
    return folder


@pytest.fixture(scope="module")
def classifier(model_dir):
    return pipeline("audio-classification", model=str(model_dir), device="cpu")


@pytest.fixture(scope="module")
def expected(classifier, recordings) -> dict[str, list[dict]]:
    """{relative path: top-5 labels} from the pipeline, one file per call."""
    paths = sorted(p for p in recordings.rglob("*.wav"))
    return {path.relative_to(recordings).as_posix(): classifier(str(path), top_k=5) for path in paths}


def assert_records_match(records: list[dict], expected: dict[str, list[dict]]) -> None:
    assert [record["input"] for record in records] == sorted(expected)
    for record in records:
        assert record["error"] is None
        want = expected[record["input"]]
        assert [item["label"] for item in record["labels"]] == [item["label"] for item in want]
        np.testing.assert_allclose([item["score"] for item in record["labels"]], [item["score"] for item in want],
                                   atol=SCORE_TOLERANCE, rtol=0)


@pytest.mark.parametrize("suffix", [".jsonl", ".csv", ".parquet"])
def test_folder_to_each_format(tmp_path, model_dir, recordings, expected, suffix):
    output = tag_collection(model_dir, recordings, tmp_path / f"tags{suffix}", TagOptions(batch_size=4),
                            device="cpu", progress=False)
    assert_records_match(read_output(output), expected)
    assert sorted(path.name for path in tmp_path.iterdir()) == [f"tags{suffix}"]  # no journal, no temporary file


def test_manifest_glob_and_dataset_inputs(tmp_path, classifier, recordings, expected):
    keys = sorted(expected)
    (tmp_path / "list.csv").write_text("path,speaker\n" + "".join(f"{recordings / key},x\n" for key in keys))
    (tmp_path / "list.jsonl").write_text("".join(json.dumps({"file": key}) + "\n" for key in keys))
    shutil.copytree(recordings, tmp_path, dirs_exist_ok=True)  # relative paths are read from the manifest's folder
    by_csv = read_output(tag_collection(classifier, tmp_path / "list.csv", tmp_path / "a.jsonl", progress=False))
    assert [record["input"] for record in by_csv] == [str(recordings / key) for key in keys]
    by_jsonl = read_output(tag_collection(classifier, tmp_path / "list.jsonl", tmp_path / "b.jsonl",
                                          path_column="file", progress=False))
    assert_records_match(by_jsonl, expected)
    by_glob = read_output(tag_collection(classifier, str(recordings / "*.wav"), tmp_path / "c.jsonl", progress=False))
    assert [record["input"] for record in by_glob] == sorted(str(p) for p in recordings.glob("*.wav"))

    from datasets import Audio, Dataset

    dataset = Dataset.from_dict({"audio": [str(recordings / key) for key in keys]}).cast_column("audio", Audio())
    dataset.save_to_disk(str(tmp_path / "saved"))
    by_dataset = read_output(tag_collection(classifier, tmp_path / "saved", tmp_path / "d.jsonl", progress=False))
    assert len(by_dataset) == len(keys)
    for record, key in zip(by_dataset, keys):
        assert record["input"].endswith(Path(key).name) and record["error"] is None
        assert record["labels"][0]["label"] == expected[key][0]["label"]
        assert record["labels"][0]["score"] == pytest.approx(expected[key][0]["score"], abs=SCORE_TOLERANCE)


def test_a_stereo_dataset_row_is_tagged_as_its_file(tmp_path, classifier, fsdd_dir):
    """A dataset row and its file go through the same loader (`audio_io`): the same channel rule (their mean), the
    same scores."""
    import soundfile
    from datasets import Audio, Dataset

    folder = tmp_path / "in"
    folder.mkdir()
    for path in sorted(fsdd_dir.glob("*.wav"))[:3]:
        speech, rate = soundfile.read(path, dtype="float32")
        other = np.random.default_rng(0).uniform(-0.5, 0.5, len(speech)).astype("float32")
        soundfile.write(folder / path.name, np.stack([speech, other], axis=1), rate)
    from_folder = read_output(tag_collection(classifier, folder, tmp_path / "a.jsonl", progress=False))
    files = sorted(str(path) for path in folder.iterdir())
    Dataset.from_dict({"audio": files}).cast_column("audio", Audio()).save_to_disk(str(tmp_path / "saved"))
    from_dataset = read_output(tag_collection(classifier, tmp_path / "saved", tmp_path / "b.jsonl", progress=False))
    assert [record["input"] for record in from_dataset] == [Path(file).name for file in files]
    assert_records_match(from_dataset, {record["input"]: record["labels"] for record in from_folder})


def test_unreadable_file_gives_an_error_row_and_the_run_goes_on(tmp_path, monkeypatch, classifier, recordings,
                                                                 expected):
    """Clip mode asks the pipeline for error entries, so each file is decoded once; before, a group holding a bad
    file was run again one file at a time (every good file of the group decoded twice)."""
    folder = tmp_path / "in"
    shutil.copytree(recordings, folder)
    (folder / "broken.wav").write_bytes(b"RIFF\x00\x00 not audio at all")
    decoded = []
    preprocess = classifier.preprocess

    def counting_preprocess(item, **params):
        decoded.append(item)
        return preprocess(item, **params)

    monkeypatch.setattr(classifier, "preprocess", counting_preprocess)
    records = read_output(tag_collection(classifier, folder, tmp_path / "tags.csv", TagOptions(batch_size=4),
                                         progress=False))
    assert len(decoded) == NUM_FILES + 1 == len(set(map(str, decoded)))
    broken = [record for record in records if record["input"] == "broken.wav"]
    assert len(broken) == 1 and broken[0]["labels"] == [] and broken[0]["error"].startswith("ValueError: ")
    assert "broken.wav" in broken[0]["error"]
    assert_records_match([record for record in records if record["input"] != "broken.wav"], expected)


class CountingClassifier:
    """A pipeline stand-in that records which inputs it was asked for (the pipeline's model and settings otherwise:
    the same fingerprint)."""

    def __init__(self, classifier):
        self.classifier, self.seen = classifier, []

    def __call__(self, inputs, **kwargs):
        self.seen.extend(inputs)
        return self.classifier(inputs, **kwargs)

    def __getattr__(self, name):
        return getattr(self.classifier, name)


def test_second_run_tags_only_what_is_missing(tmp_path, classifier, recordings, expected):
    folder = tmp_path / "in"
    shutil.copytree(recordings, folder)
    new = folder / "more" / "late.wav"
    shutil.move(folder / sorted(expected)[-1], new)
    tag_collection(classifier, folder, tmp_path / "tags.parquet", progress=False)
    new.rename(folder / sorted(expected)[-1])  # back under its own name: one new input, one input gone
    counting = CountingClassifier(classifier)
    records = read_output(tag_collection(counting, folder, tmp_path / "tags.parquet", progress=False))
    assert counting.seen == [str(folder / sorted(expected)[-1])]
    assert_records_match([record for record in records if record["input"] != "more/late.wav"], expected)
    assert records[-1]["input"] == "more/late.wav"  # no longer listed, still kept


def test_torn_journal_line_is_dropped_and_the_file_tagged_again(tmp_path, classifier, recordings, expected):
    output = tmp_path / "tags.jsonl"
    journal = Journal(journal_dir(output), rank=0)
    first = sorted(expected)[0]
    record = {"input": first, "labels": expected[first], "error": None}
    run = run_fingerprint(classifier, None, None, TagOptions())
    Provenance(run, input_identities(collect_inputs(recordings), recordings)).stamp(record)
    journal.append([record])
    journal.close()
    with open(journal.path, "ab") as handle:
        handle.write(b'{"input": "' + sorted(expected)[1].encode() + b'", "lab')  # killed mid-line
    counting = CountingClassifier(classifier)
    assert_records_match(read_output(tag_collection(counting, recordings, output, progress=False)), expected)
    assert str(recordings / first) not in counting.seen and str(recordings / sorted(expected)[1]) in counting.seen


def journal_lines(path: Path) -> int:
    return path.read_bytes().count(b"\n") if path.exists() else 0


def test_sigkill_at_random_moments_loses_nothing_and_repeats_nothing(tmp_path, model_dir, fsdd_dir):
    # Three copies of the recordings (384 files): on an idle machine the tiny model tags ~20 files in the 50 ms
    # before a kill, and with the 128 recordings alone a run could finish, and remove its journal, before its kill.
    folder = tmp_path / "in"
    for copy in range(3):
        shutil.copytree(fsdd_dir, folder / f"copy{copy}", ignore=shutil.ignore_patterns("*.md"))
    output = tmp_path / "tags.jsonl"
    command = [*entry_point_command("ast-tag"), str(model_dir), str(folder), str(output), "--batch_size", "1",
               "--device", "cpu"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    generator = random.Random(0)
    journal = journal_dir(output) / "process-0.jsonl"
    for attempt in range(3):
        # kill once the journal holds a random number more records (+ a random few ms: mid-batch or mid-write)
        written = journal_lines(journal)
        target = written + generator.randint(1, 30)
        with open(tmp_path / f"run{attempt}.log", "wb") as log:
            process = subprocess.Popen(command, env=env, stdout=log, stderr=log)
            deadline = time.monotonic() + 300
            while process.poll() is None and time.monotonic() < deadline and journal_lines(journal) < target:
                time.sleep(0.002)
            time.sleep(generator.uniform(0, 0.05))
            assert process.poll() is None, (tmp_path / f"run{attempt}.log").read_text()[-3000:]
            process.send_signal(signal.SIGKILL)
            process.wait()
        assert journal_lines(journal) > written  # each killed run got somewhere
    assert not output.exists()
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    records = read_output(output)
    files = sorted(path.relative_to(folder).as_posix() for path in folder.rglob("*.wav"))
    assert len(files) == 384 and [record["input"] for record in records] == files  # each once, in input order
    assert all(record["error"] is None for record in records)
    assert not journal_dir(output).exists()


def test_two_processes_give_the_records_of_one(tmp_path, model_dir, recordings):
    single = read_output(tag_collection(model_dir, recordings, tmp_path / "one.jsonl", device="cpu", progress=False))
    launcher = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
                "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no", "-m",
                "modeling_ast.tagging.cli"]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join(filter(None, [
        str(Path(__file__).resolve().parents[1]), os.environ.get("PYTHONPATH")]))}
    result = subprocess.run([*launcher, str(model_dir), str(recordings), str(tmp_path / "two.jsonl"),
                             "--device", "cpu", "--batch_size", "4"],
                            env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    double = read_output(tmp_path / "two.jsonl")
    assert [record["input"] for record in double] == [record["input"] for record in single]
    for ours, theirs in zip(double, single):
        assert [item["label"] for item in ours["labels"]] == [item["label"] for item in theirs["labels"]]
        np.testing.assert_allclose([item["score"] for item in ours["labels"]],
                                   [item["score"] for item in theirs["labels"]], atol=SCORE_TOLERANCE, rtol=0)


def test_long_audio_windows_and_timeline(tmp_path, classifier, fsdd_dir):
    folder = tmp_path / "long"
    folder.mkdir()
    clips = [soundfile.read(path, dtype="float32")[0] for path in sorted(fsdd_dir.glob("*.wav"))[:8]]
    soundfile.write(folder / "long.wav", np.concatenate(clips), 8000)
    shutil.copy(sorted(fsdd_dir.glob("*.wav"))[0], folder / "short.wav")
    options = TagOptions(top_k=3, chunk_length_s=1.0, stride_length_s=0.25)
    output = tag_collection(classifier, folder, tmp_path / "tags.jsonl", options, plot=True, progress=False)
    records = {record["input"]: record for record in read_output(output)}
    direct = classifier(str(folder / "long.wav"), top_k=3, chunk_length_s=1.0, stride_length_s=0.25,
                        return_timestamps=True)
    long = records["long.wav"]
    assert len(long["windows"]) == len(direct["windows"]) > 1
    for ours, theirs in zip(long["windows"], direct["windows"]):
        assert (ours["start"], ours["end"]) == (theirs["start"], theirs["end"])
        assert [item["label"] for item in ours["labels"]] == [item["label"] for item in theirs["labels"]]
    timelines = tmp_path / "tags.jsonl.timelines"
    assert sorted(path.name for path in timelines.iterdir()) == ["long.wav.png"]  # one window: no timeline
    assert (timelines / "long.wav.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize(
    "inputs, output, kwargs, error, message",
    [
        ("{recordings}", "tags.txt", {}, ValueError, "use a .jsonl, .csv or .parquet"),
        ("{tmp}/absent", "tags.jsonl", {}, FileNotFoundError, "absent does not exist"),
        ("{tmp}/list.csv", "tags.jsonl", {}, ValueError, "no 'path' column"),
        ("{recordings}", "tags.jsonl", {"plot": True}, ValueError, "pass chunk_length_s"),
    ],
)
def test_bad_input_names_what_is_wrong(tmp_path, classifier, recordings, inputs, output, kwargs, error, message):
    (tmp_path / "list.csv").write_text("file\na.wav\n")
    with pytest.raises(error, match=message):
        tag_collection(classifier, inputs.format(recordings=recordings, tmp=tmp_path), tmp_path / output, **kwargs)


def test_collect_inputs_rejects_a_repeated_recording(tmp_path):
    (tmp_path / "list.jsonl").write_text('{"path": "a.wav"}\n{"path": "a.wav"}\n')
    with pytest.raises(ValueError, match=r"more than once: \['a.wav'\]"):
        collect_inputs(tmp_path / "list.jsonl")


def test_files_stream_through_one_set_of_workers(tmp_path, monkeypatch, classifier, recordings, expected):
    """Groups of files are journaled one by one but decoded by one DataLoader for the whole run; before, every group
    started its own workers (a tiny model over the 3000 FSDD files with 2 workers: 15.9 s before, 9.2 s after)."""
    import modeling_ast.pipeline_batches as batching

    loaders = []
    data_loader = batching.DataLoader

    def counting_loader(*args, **kwargs):
        loaders.append(kwargs.get("num_workers"))
        return data_loader(*args, **kwargs)

    monkeypatch.setattr(batching, "DataLoader", counting_loader)
    output = tmp_path / "tags.jsonl"
    tag_collection(classifier, recordings, output, TagOptions(top_k=5, batch_size=2, num_workers=1), group_size=4,
                   progress=False)
    assert loaders == [1]  # 12 files in 3 journaled groups, one loader
    records = read_output(output)
    assert_records_match(records, expected)
