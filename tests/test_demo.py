"""examples/demo_app.py: the Gradio page served on a loopback port, driven through its HTTP API (gradio_client) with
real recordings; the labels it returns are the pipeline's."""

from __future__ import annotations

import os
import shutil
import socket
from pathlib import Path

import numpy as np
import pytest
from conftest import import_example
import soundfile

gradio = pytest.importorskip("gradio")  # the optional "demo" extra
from gradio_client import Client, handle_file  # noqa: E402  (comes with gradio)
from transformers import pipeline  # noqa: E402

from tiny_models import save_tiny_digit_classifier  # noqa: E402

SCORE_TOLERANCE = 1e-5  # the same pipeline call in the app and here: equal up to JSON's float printing


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    return save_tiny_digit_classifier(tmp_path_factory.mktemp("model") / "tiny")


@pytest.fixture(scope="module")
def served(model_dir, tmp_path_factory):
    """(client, pipeline): the app on a free loopback port for the module's tests, closed at teardown."""
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    demo_app = import_example("demo_app")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    demo = demo_app.build_demo(str(model_dir), top_k=3, device="cpu")
    demo.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True)
    try:
        client = Client(f"http://127.0.0.1:{port}/", verbose=False,
                        download_files=str(tmp_path_factory.mktemp("downloads")))
        yield client, pipeline("audio-classification", model=str(model_dir), device="cpu")
    finally:
        demo.close()


def confidences(label_output: dict) -> dict[str, float]:
    return {item["label"]: item["confidence"] for item in label_output["confidences"]}


def test_short_clip_gets_the_pipelines_top_labels(served, fsdd_dir):
    client, classifier = served
    path = sorted(fsdd_dir.glob("*.wav"))[3]
    labels, timeline = client.predict(handle_file(str(path)), api_name="/classify")
    expected = classifier(str(path), top_k=3)
    assert labels["label"] == expected[0]["label"]
    got = confidences(labels)
    assert list(got) == [item["label"] for item in expected]
    np.testing.assert_allclose(list(got.values()), [item["score"] for item in expected], atol=SCORE_TOLERANCE, rtol=0)
    assert timeline is None


def test_long_audio_gets_window_labels_and_a_timeline(served, fsdd_dir, tmp_path):
    client, classifier = served
    clips = [soundfile.read(path, dtype="float32")[0] for path in sorted(fsdd_dir.glob("*.wav"))[:8]]
    path = tmp_path / "long.wav"
    soundfile.write(path, np.concatenate(clips), 8000)
    labels, timeline = client.predict(handle_file(str(path)), api_name="/classify")
    expected = classifier(str(path), top_k=3, chunk_length_s=1.28, stride_length_s=0.64)
    assert list(confidences(labels)) == [item["label"] for item in expected]
    np.testing.assert_allclose(list(confidences(labels).values()), [item["score"] for item in expected],
                               atol=SCORE_TOLERANCE, rtol=0)
    assert Path(timeline).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    shutil.rmtree(Path(timeline).parent, ignore_errors=True)


def test_the_live_tab_step_gives_the_offline_windows(fsdd_dir, model_dir, tmp_path):
    """The live tab's stream handler, fed a recording in 0.5 s chunks as Gradio streams them ((rate, int16)), then
    stopped: its windows are those the offline long-audio pipeline computes over the same spans."""
    demo_app = import_example("demo_app")
    classifier = pipeline("audio-classification", model=str(model_dir), device="cpu")
    step = demo_app.make_live_step(classifier, window_s=1.28, hop_s=0.64, top_k=3)
    speech = np.concatenate([soundfile.read(path, dtype="int16")[0] for path in sorted(fsdd_dir.glob("*.wav"))[:6]])
    state, results = None, []
    for start in range(0, len(speech), 4000):  # 0.5 s at 8 kHz
        state, new = step(state, (8000, speech[start : start + 4000]))
        results += new
    state, new = step(state, None)
    results += new
    assert state is None and results
    path = tmp_path / "speech.wav"
    soundfile.write(path, speech, 8000)
    offline = classifier(str(path), top_k=3, chunk_length_s=1.28, stride_length_s=0.64, return_timestamps=True)
    full = [window for window in results if window["end"] - window["start"] == pytest.approx(1.28)]
    by_span = {(round(w["start"], 3), round(w["end"], 3)): w["labels"] for w in offline["windows"]}
    matched = [w for w in full if (round(w["start"], 3), round(w["end"], 3)) in by_span]
    # every full window but the last (the offline plan moves its last window back to the end) is one the plan has
    assert len(full) >= 4 and len(matched) >= len(full) - 1
    for window in matched:
        expected = by_span[(round(window["start"], 3), round(window["end"], 3))]
        assert [item["label"] for item in window["labels"]] == [item["label"] for item in expected]
        np.testing.assert_allclose([item["score"] for item in window["labels"]], [item["score"] for item in expected],
                                   atol=1e-5, rtol=0)


def test_a_frame_model_gets_the_detectors_events_a_timeline_and_live_events(tmp_path, tmp_path_factory):
    """A frame-level checkpoint (test_sed's energy detector, with its own event settings in config.json) gets the
    events tab: its /detect rows are the pipeline's events (rounded to ms) and a timeline; the live step, at the hop
    the page uses, reports the offline detector's events over the same windows."""
    from test_sed import energy_detector
    from modeling_ast import ASTForAudioFrameClassification

    energy_detector(tmp_path / "sed")
    model = ASTForAudioFrameClassification.from_pretrained(tmp_path / "sed")
    model.config.event_options = {"threshold": 0.6, "median_window": 3}
    model.save_pretrained(tmp_path / "sed")
    rng = np.random.default_rng(0)
    audio = np.zeros(4 * 16000, dtype=np.float32)
    for start, end in ((0.5, 1.1), (2.0, 3.2)):
        audio[int(start * 16000) : int(end * 16000)] = rng.normal(0, 0.3, int((end - start) * 16000))
    path = tmp_path / "bursts.wav"
    soundfile.write(path, audio, 16000)
    detector = pipeline("sound-event-detection", model=str(tmp_path / "sed"), device="cpu")
    expected = detector(str(path))
    assert len(expected) == 2

    demo = import_example("demo_app").build_demo(str(tmp_path / "sed"), device="cpu")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    demo.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True)
    try:
        client = Client(f"http://127.0.0.1:{port}/", verbose=False,
                        download_files=str(tmp_path_factory.mktemp("downloads")))
        table, timeline = client.predict(handle_file(str(path)), api_name="/detect")
    finally:
        demo.close()
    assert [row[0] for row in table["data"]] == [event["label"] for event in expected]
    np.testing.assert_allclose([row[1:] for row in table["data"]],
                               [[event["start"], event["end"], event["score"]] for event in expected], atol=5e-4)
    assert Path(timeline).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    hop_s = import_example("demo_app").live_hop_s(detector, 1.28)
    assert hop_s == pytest.approx(0.6)  # half the window, in whole 0.1 s columns
    step = import_example("demo_app").make_live_step(detector, window_s=1.28, hop_s=hop_s, top_k=3)
    state, events = None, []
    for start in range(0, len(audio), 8000):
        state, new = step(state, (16000, (audio[start : start + 8000] * 32767).astype(np.int16)))
        events += new
    state, new = step(state, None)
    offline = detector(str(path), chunk_length_s=1.28, stride_length_s=0.68)
    assert [(e["label"], e["start"], e["end"]) for e in events + new] == [
        (e["label"], pytest.approx(e["start"]), pytest.approx(e["end"])) for e in offline]
