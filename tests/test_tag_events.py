"""ast-tag --events: the events of a saved frame-level model are the same from the model and post-processing by
hand, from pipeline("sound-event-detection") and from ast-tag in every output format; an interrupted run resumes
with every recording once; other event options are refused (or redone with --overwrite); a model of the other kind
is named with what to do; --plot draws the events.

The model is test_sed's energy detector: 'loud' exactly where the audio is loud, so the recordings below have known
events (a noise burst is one event; silence has none)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soundfile
import torch
from transformers import pipeline

from test_sed import RATE, energy_detector
from tiny_models import save_tiny_digit_classifier
from modeling_ast import ASTFeatureExtractor, ASTForAudioFrameClassification
from modeling_ast.events import EventOptions, detect_events
from modeling_ast.modeling_ast_frames import column_grid
from modeling_ast.tagging import TagOptions, tag_collection
from modeling_ast.tagging.cli import main as ast_tag
from modeling_ast.tagging.records import read_output
from modeling_ast.training.sed_metrics import read_strong_tsv

SCORE_TOLERANCE = 1e-6  # the same forward pass, batched by the pipeline or not (measured equal)
# noise bursts (start, end) in seconds; recordings up to 1.2 s fit the model's 128 frames, one forward pass
BURSTS = {"one.wav": (1.2, [(0.3, 0.8)]), "two.wav": (1.2, [(0.1, 0.4), (0.7, 1.1)]), "silent.wav": (1.0, [])}
LONG = {"long.wav": (3.0, [(0.9, 2.3)])}  # windowed by the pipeline: compared with the pipeline only
OPTIONS = {"threshold": 0.5, "low": 0.3, "median_window": 3}
FLAGS = ["--threshold", "0.5", "--low", "0.3", "--median_window", "3"]


def write_bursts(folder: Path, recordings: dict[str, tuple[float, list[tuple[float, float]]]]) -> None:
    generator = np.random.default_rng(0)
    for name, (duration, bursts) in recordings.items():
        audio = np.zeros(round(duration * RATE), dtype=np.float32)
        for start, end in bursts:
            audio[round(start * RATE) : round(end * RATE)] = generator.normal(0, 0.3, round((end - start) * RATE))
        soundfile.write(folder / name, audio, RATE, subtype="FLOAT")


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    directory = tmp_path_factory.mktemp("model") / "sed"
    energy_detector(directory)
    return directory


@pytest.fixture(scope="module")
def recordings(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("recordings")
    write_bursts(folder, {**BURSTS, **LONG})
    return folder


@pytest.fixture(scope="module")
def detector(model_dir):
    return pipeline("sound-event-detection", model=str(model_dir), device="cpu")


def events_by_hand(model_dir: Path, path: Path, options: EventOptions) -> list[dict]:
    """The model's frame scores of the whole recording (one forward pass) through `events.detect_events`."""
    model = ASTForAudioFrameClassification.from_pretrained(model_dir).eval()
    extractor = ASTFeatureExtractor.from_pretrained(model_dir)
    audio, rate = soundfile.read(path, dtype="float32")
    with torch.no_grad():
        output = model(**extractor(audio, sampling_rate=rate, return_tensors="pt"))
    scores = output.logits[0][output.column_mask[0]].sigmoid()
    labels = [model.config.id2label[index] for index in range(model.config.num_labels)]
    return detect_events(scores, column_grid(model.config, len(audio) / rate, rate), labels, options)


def events_of_rows(path: Path) -> dict[str, list[dict]]:
    """{input: events} from an output's rows, read with pandas (not with the package's reader)."""
    suffix = path.suffix
    table = pd.read_json(path, lines=True) if suffix == ".jsonl" else pd.read_csv(path) if suffix == ".csv" else (
        pd.read_parquet(path))
    events: dict[str, list[dict]] = {}
    for row in table.itertuples():
        events.setdefault(row.input, [])
        if isinstance(row.event_label, str):
            events[row.input].append({"label": row.event_label, "start": row.onset, "end": row.offset,
                                      "score": row.score})
    return events


def assert_same_events(ours: list[dict], theirs: list[dict]) -> None:
    assert [(e["label"], e["start"], e["end"]) for e in ours] == [(e["label"], e["start"], e["end"]) for e in theirs]
    np.testing.assert_allclose([e["score"] for e in ours], [e["score"] for e in theirs], atol=SCORE_TOLERANCE, rtol=0)


def test_the_model_the_pipeline_and_ast_tag_give_the_same_events(tmp_path, model_dir, recordings, detector):
    expected = {name: detector(str(recordings / name), **OPTIONS) for name in sorted({**BURSTS, **LONG})}
    assert [len(expected[name]) for name in ("long.wav", "one.wav", "silent.wav", "two.wav")] == [1, 1, 0, 2]
    for name in BURSTS:
        assert_same_events(events_by_hand(model_dir, recordings / name, EventOptions(**OPTIONS)), expected[name])
    for suffix in (".jsonl", ".csv", ".parquet"):
        output = tmp_path / f"events{suffix}"
        assert ast_tag([str(model_dir), str(recordings), str(output), "--events", *FLAGS]) == 0
        found = events_of_rows(output)
        assert list(found) == list(expected)  # every recording, silent.wav too (its row without an event), in order
        for name, events in expected.items():
            assert_same_events(found[name], events)

    tsv = tmp_path / "events.tsv"
    assert ast_tag([str(model_dir), str(recordings), str(tsv), "--events", *FLAGS]) == 0
    assert tsv.read_text().splitlines()[:3] == ["filename\tonset\toffset\tevent_label", "long.wav\t0.938\t2.237\tloud",
                                                "one.wav\t0.338\t0.738\tloud"]
    assert "silent.wav\t\t\t" in tsv.read_text().splitlines()  # DCASE's row of a clip without events
    rounded = {name: [(float(f"{e['start']:.3f}"), float(f"{e['end']:.3f}"), e["label"]) for e in events]
               for name, events in expected.items()}  # fmt: skip
    assert read_strong_tsv(tsv) == rounded
    assert events_of_rows(tmp_path / "events.tsv.rows.jsonl") == events_of_rows(tmp_path / "events.jsonl")


class StoppingDetector:
    """A pipeline stand-in (the detector's model and settings: the same fingerprint) that records the inputs it is
    asked for and stops the run, as Ctrl-C or a kill would, once it has answered `limit` of them."""

    def __init__(self, detector, limit: float = float("inf")):
        self.detector, self.limit, self.seen = detector, limit, []

    def __call__(self, inputs, **kwargs):
        if len(self.seen) >= self.limit:
            raise KeyboardInterrupt
        self.seen.extend(inputs)
        return self.detector(inputs, **kwargs)

    def __getattr__(self, name):
        return getattr(self.detector, name)


def output_content(output: Path) -> list:
    """What an output holds, comparable across runs: a TSV's lines and its rows' lines, or a Parquet file's rows."""
    if output.suffix == ".tsv":
        return output.read_text().splitlines() + Path(f"{output}.rows.jsonl").read_text().splitlines()
    import pyarrow.parquet

    return pyarrow.parquet.read_table(output).to_pylist()  # empty fields as None (pandas' NaN equals nothing)


@pytest.mark.parametrize("suffix", [".tsv", ".parquet"])
def test_an_interrupted_run_resumes_and_every_recording_is_written_once(tmp_path, recordings, detector, suffix):
    folder = shutil.copytree(recordings, tmp_path / "in")
    options = TagOptions(events=True, **OPTIONS)
    whole = tag_collection(detector, folder, tmp_path / f"whole{suffix}", options, progress=False)
    output = tmp_path / f"events{suffix}"
    stopped = StoppingDetector(detector, limit=1)
    with pytest.raises(KeyboardInterrupt):
        tag_collection(stopped, folder, output, options, group_size=1, progress=False)
    assert not output.exists() and len(stopped.seen) == 1
    resumed = StoppingDetector(detector)
    tag_collection(resumed, folder, output, options, progress=False)
    files = sorted(str(path) for path in folder.iterdir())
    assert sorted(resumed.seen) == [file for file in files if file not in stopped.seen]
    assert output_content(output) == output_content(whole)

    write_bursts(folder, {"late.wav": (1.2, [(0.2, 0.6)])})  # the collection grows: only the new file is tagged
    again = StoppingDetector(detector)
    tag_collection(again, folder, output, options, progress=False)
    assert again.seen == [str(folder / "late.wav")]
    rows = events_of_rows(Path(f"{output}.rows.jsonl") if suffix == ".tsv" else output)
    assert list(rows) == ["late.wav", "long.wav", "one.wav", "silent.wav", "two.wav"]
    assert [len(rows[name]) for name in rows] == [1, 1, 1, 0, 2]  # each recording's events once


def test_other_event_options_are_refused_and_overwrite_tags_again(tmp_path, model_dir, recordings, capsys):
    output = tmp_path / "events.tsv"
    command = [str(model_dir), str(recordings), str(output), "--events"]
    assert ast_tag([*command, "--threshold", "0.5"]) == 0
    written = output_content(output)
    assert ast_tag(command) == 0  # 0.5 is the default threshold: the same run, nothing to tag again
    for change, shown in [
        (["--threshold", "0.6"], "threshold 0.5 -> 0.6"), (["--low", "0.2"], "low null -> 0.2"),
        (["--median_window", "3"], "median_window 1 -> 3"), (["--chunk_length_s", "0.5"], "chunk_length_s null -> 0.5"),
    ]:
        capsys.readouterr()
        assert ast_tag([*command, *change]) == 1
        assert f"4 records tagged with model {model_dir}: {shown}" in capsys.readouterr().err
        assert output_content(output) == written
    assert ast_tag([*command, "--threshold", "0.99", "--overwrite"]) == 0  # above the detector's 0.982: no events
    assert read_strong_tsv(output) == {name: [] for name in sorted({**BURSTS, **LONG})}
    rows = [json.loads(line) for line in Path(f"{output}.rows.jsonl").read_text().splitlines()]
    assert len(rows) == 4 and {row["tagged_with"]["threshold"] for row in rows} == {0.99}


def test_per_label_settings_and_csv_rows_read_back_as_written(tmp_path, model_dir, recordings):
    """A rerun finds its own records current: per-label settings given as tuples are stored as the lists JSON gives
    back, and CSV rows read back as the JSON Lines rows of the same run."""
    options = TagOptions(events=True, threshold=(0.5,), low=(0.3,), median_window=(3,))
    for suffix in (".csv", ".jsonl"):
        tag_collection(model_dir, recordings, tmp_path / f"events{suffix}", options, progress=False)
    written = (tmp_path / "events.csv").read_bytes()
    tag_collection(model_dir, recordings, tmp_path / "events.csv", options, progress=False)  # raises if not current
    assert (tmp_path / "events.csv").read_bytes() == written
    assert read_output(tmp_path / "events.csv", events=True) == read_output(tmp_path / "events.jsonl", events=True)


def test_an_unreadable_recording_is_an_error_row_and_left_out_of_the_tsv(tmp_path, model_dir, recordings):
    folder = shutil.copytree(recordings, tmp_path / "in")
    (folder / "broken.wav").write_bytes(b"RIFF\x00\x00 not audio at all")
    output = tmp_path / "events.tsv"
    assert ast_tag([str(model_dir), str(folder), str(output), "--events"]) == 0
    rows = [json.loads(line) for line in Path(f"{output}.rows.jsonl").read_text().splitlines()]
    [broken] = [row for row in rows if row["input"] == "broken.wav"]
    assert broken["event_label"] is None and "broken.wav" in broken["error"]
    assert all(row["error"] is None for row in rows if row is not broken)
    assert sorted(read_strong_tsv(output)) == sorted({**BURSTS, **LONG})  # DCASE has no row for "not read"


def test_a_model_of_the_other_kind_is_named_with_what_to_do(tmp_path, model_dir, recordings, capsys):
    classifier_dir = save_tiny_digit_classifier(tmp_path / "classifier")
    capsys.readouterr()  # saving's progress bar
    assert ast_tag([str(classifier_dir), str(recordings), str(tmp_path / "events.tsv"), "--events"]) == 1
    assert capsys.readouterr().err == (
        f"error: model {classifier_dir} classifies whole clips; --events needs a frame-level sound event detection "
        "checkpoint (ASTForAudioFrameClassification, README 'Sound event detection'), or leave out --events to write "
        "clip labels\n"
    )
    assert ast_tag([str(model_dir), str(recordings), str(tmp_path / "tags.jsonl")]) == 1
    assert capsys.readouterr().err == (
        f"error: model {model_dir} is a frame-level sound event detection checkpoint (ASTForAudioFrameClassification):"
        " pass --events to write its events, one row per event\n"
    )
    classifier = pipeline("audio-classification", model=str(classifier_dir), device="cpu")
    with pytest.raises(ValueError, match=f"model {classifier_dir} classifies whole clips"):
        tag_collection(classifier, recordings, tmp_path / "events.jsonl", TagOptions(events=True))
    assert sorted(path.name for path in tmp_path.iterdir()) == ["classifier"]  # nothing written


@pytest.mark.parametrize(
    "arguments, message",
    [
        (["events.tsv", "--events", "--threshold", "0.5", "0.6"], "threshold needs one value or one per label (1)"),
        (["tags.jsonl", "--low", "0.3"], "low and median_window decide where sound events end: pass events=True"),
        (["tags.tsv"], "a .tsv output holds sound events: --events"),
        (["events.jsonl", "--events", "--aggregation", "max"], "events (--events) take none"),
        (["events.tsv", "--events", "--top_k", "3"], "events (--events) take neither"),
        (["events.tsv", "--events", "--batch_size", "4"], "events (--events) take neither"),
    ],
)
def test_event_options_that_do_not_fit_stop_before_anything_is_written(tmp_path, model_dir, recordings, capsys,
                                                                        arguments, message):
    output, *options = arguments
    assert ast_tag([str(model_dir), str(recordings), str(tmp_path / output), *options]) == 1
    assert message in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


def test_clip_records_and_events_never_share_an_output(tmp_path, model_dir, recordings, capsys):
    output = tmp_path / "tags.jsonl"
    assert ast_tag([str(model_dir), str(recordings), str(output), "--events"]) == 0
    written = output.read_bytes()
    classifier_dir = save_tiny_digit_classifier(tmp_path / "classifier")
    for overwrite in ([], ["--overwrite"]):
        assert ast_tag([str(classifier_dir), str(recordings), str(output), *overwrite]) == 1
        assert f"output {output} holds sound events" in capsys.readouterr().err
        assert output.read_bytes() == written
    reference = tmp_path / "reference.tsv"  # a TSV that ast-tag did not write: an annotation, never written over
    reference.write_text("filename\tonset\toffset\tevent_label\none.wav\t0.3\t0.8\tloud\n")
    assert ast_tag([str(model_dir), str(recordings), str(reference), "--events", "--overwrite"]) == 1
    assert "no reference.tsv.rows.jsonl beside it" in capsys.readouterr().err
    assert reference.read_text().count("\n") == 2


def test_plot_draws_the_events_of_every_recording(tmp_path, model_dir, recordings):
    output = tmp_path / "events.csv"
    assert ast_tag([str(model_dir), str(recordings), str(output), "--events", "--plot"]) == 0
    timelines = tmp_path / "events.csv.timelines"
    assert sorted(path.name for path in timelines.iterdir()) == [f"{name}.png" for name in sorted({**BURSTS, **LONG})]
    for path in timelines.iterdir():
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
