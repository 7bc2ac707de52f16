"""A frame model's own post-processing (`config.event_options`): the pipeline, `ast-tag --events` and the streaming
tagger use it unless told otherwise, and the training script chooses it on validation clips (`best_event_options`:
the grid's best macro event F1, here on hand-made scores whose F1 at each setting is worked out below by hand).

The model is test_sed's energy detector, whose 'loud' score is 0.982 where the audio is loud and 0.018 elsewhere
(sigmoid of +-sqrt(D / 2) = +-4, D = 32): at its own threshold 0.99 it finds nothing, at 0.5 every burst."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile
import torch
from transformers import pipeline

from test_sed import RATE, energy_detector
from modeling_ast import ASTConfig, ASTFeatureExtractor, ASTForAudioFrameClassification
from modeling_ast.events import ColumnGrid, EventOptions, model_event_options
from modeling_ast.streaming import StreamingTagger
from modeling_ast.tagging.cli import main as ast_tag
from modeling_ast.training.sed_evaluation import MEDIAN_WINDOWS, THRESHOLDS, best_event_options

BURSTS = [(0.3, 0.8), (1.6, 2.4)]  # seconds of noise in 3 s of silence


def test_settings_given_win_over_the_models_which_win_over_the_defaults(tmp_path):
    config = ASTConfig(event_options={"threshold": 0.3, "median_window": 5})
    assert model_event_options(ASTConfig()) == EventOptions()
    assert model_event_options(config) == EventOptions(threshold=0.3, median_window=5)
    given = {"threshold": 0.7, "low": None}  # None: not given
    assert model_event_options(config, given) == EventOptions(threshold=0.7, median_window=5)
    config.save_pretrained(tmp_path)
    assert ASTConfig.from_pretrained(tmp_path).event_options == {"threshold": 0.3, "median_window": 5}
    with pytest.raises(ValueError, match=r"config.event_options hold unknown event setting\(s\) \['treshold'\]"):
        model_event_options(ASTConfig(event_options={"treshold": 0.3}))
    with pytest.raises(ValueError, match=r"given options hold unknown event setting\(s\) \['window'\]"):
        model_event_options(config, {"window": 3})


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> dict[str, Path]:
    """"plain": the energy detector; "own": the same weights with its own threshold 0.99 in config.json."""
    folder = tmp_path_factory.mktemp("models")
    energy_detector(folder / "plain")
    model = ASTForAudioFrameClassification.from_pretrained(folder / "plain")
    model.config.event_options = {"threshold": 0.99}
    model.save_pretrained(folder / "own")
    ASTFeatureExtractor.from_pretrained(folder / "plain").save_pretrained(folder / "own")
    return {"plain": folder / "plain", "own": folder / "own"}


@pytest.fixture(scope="module")
def recording(tmp_path_factory) -> Path:
    audio = np.zeros(3 * RATE, dtype=np.float32)
    rng = np.random.default_rng(0)
    for start, end in BURSTS:
        audio[round(start * RATE) : round(end * RATE)] = rng.normal(0, 0.3, round((end - start) * RATE))
    path = tmp_path_factory.mktemp("audio") / "bursts.wav"
    soundfile.write(path, audio, RATE, subtype="FLOAT")
    return path


def test_the_pipeline_uses_the_models_settings_unless_given(models, recording):
    plain = pipeline("sound-event-detection", model=str(models["plain"]))
    own = pipeline("sound-event-detection", model=str(models["own"]))
    found = plain(str(recording))
    assert [(e["start"], e["end"]) for e in found] == [pytest.approx(span, abs=0.15) for span in BURSTS]
    assert plain(str(recording), return_frame_scores=True)["frame_scores"].max() < 0.99
    assert own(str(recording)) == []  # its threshold 0.99 is above every score
    assert own(str(recording), threshold=0.5) == found
    at_init = pipeline("sound-event-detection", model=str(models["own"]), threshold=0.5)
    assert at_init(str(recording)) == found
    # settings given at init and at the call join: the init's threshold with the call's median window (a 31-column
    # median keeps only what is loud in most of 3.1 s: nothing)
    assert at_init(str(recording), median_window=31) == plain(str(recording), median_window=31) == []
    assert at_init(str(recording), median_window=3) == plain(str(recording), median_window=3) != []


def test_a_bad_setting_in_the_model_fails_when_the_pipeline_is_made(models, tmp_path):
    model = ASTForAudioFrameClassification.from_pretrained(models["plain"])
    model.config.event_options = {"threshold": 1.5}
    with pytest.raises(ValueError, match="need 0 <= low <= threshold <= 1 for label 'loud', got 1.5 and 1.5"):
        pipeline("sound-event-detection", model=model,
                 feature_extractor=ASTFeatureExtractor.from_pretrained(models["plain"]))  # fmt: skip


def test_ast_tag_and_the_streaming_tagger_use_the_models_settings(models, recording, tmp_path):
    rows = {}
    for name, flags in (("own", []), ("given", ["--threshold", "0.5"])):
        output = tmp_path / f"{name}.jsonl"
        assert ast_tag([str(models["own"]), str(recording.parent), str(output), "--events", *flags]) == 0
        rows[name] = [json.loads(line) for line in output.read_text().splitlines()]
    assert [row["event_label"] for row in rows["own"]] == [None]  # the recording's row, without an event
    assert rows["own"][0]["tagged_with"]["threshold"] == 0.99  # the record states what it was cut at
    assert [(row["onset"], row["offset"]) for row in rows["given"]] == [
        (event["start"], event["end"]) for event in pipeline("sound-event-detection", model=str(models["plain"]))(
            str(recording))]  # fmt: skip
    assert rows["given"][0]["tagged_with"]["threshold"] == 0.5

    audio, _ = soundfile.read(recording, dtype="float32")
    streamed = {}
    for name in ("plain", "own"):
        tagger = StreamingTagger(pipeline("sound-event-detection", model=str(models[name])), 1.0, 0.5)
        streamed[name] = tagger.push(audio) + tagger.flush()
    assert len(streamed["plain"]) == 2 and streamed["own"] == []


def hand_made_scores() -> tuple[dict, dict]:
    """Two 10 s clips on a 0.1 s column grid, one label. "a.wav" holds one event, 1.0-2.0 s (columns 10-19), scored
    0.6; a one-column spike of 0.95 at 5.0-5.1 s; 0.15 elsewhere. "b.wav": no event, 0.15 everywhere."""
    grid = ColumnGrid(first=0.05, hop=0.1, duration=10.0)
    a = torch.full((100, 1), 0.15)
    a[10:20] = 0.6
    a[50] = 0.95
    return {"a.wav": (a, grid), "b.wav": (torch.full((100, 1), 0.15), grid)}, {"a.wav": [(1.0, 2.0, "x")], "b.wav": []}


def test_the_threshold_and_median_window_with_the_best_event_f1_are_chosen():
    scored, truth = hand_made_scores()
    choice = best_event_options(scored, truth, ["x"])
    # By hand. Threshold 0.1: each clip is one event from 0 to 10 s (onset 1 s away): F1 0. Thresholds 0.2-0.6: the
    # event is found; the spike too (a false alarm, F1 2/3) unless a median of 3 or more columns removes it (F1 1;
    # a 0.6 run of 10 columns survives every median up to 9). Thresholds 0.7-0.9: the event is missed: F1 0.
    expected = {}
    for threshold in THRESHOLDS:
        for window in MEDIAN_WINDOWS:
            found = 0.2 <= threshold <= 0.6
            expected[threshold, window] = 0.0 if not found else 2 / 3 if window == 1 else 1.0
    assert choice.table.keys() == expected.keys()
    for key, value in expected.items():
        assert choice.table[key] == pytest.approx(value, abs=1e-12), key
    assert choice.settings == {"threshold": 0.2, "median_window": 3}  # the first of the best, in grid order
    assert choice.event_f1 == pytest.approx(1.0) and choice.default_event_f1 == pytest.approx(2 / 3)


def test_validation_clips_without_events_choose_nothing():
    scored, _ = hand_made_scores()
    with pytest.raises(ValueError, match="the 2 validation clips have no events"):
        best_event_options(scored, {"a.wav": [], "b.wav": []}, ["x"])
