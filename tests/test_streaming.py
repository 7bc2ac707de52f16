"""Live audio (`modeling_ast.streaming`, `modeling_ast.listen`): chunked streams at any rate give the offline
resampling, features, window results and events; bounded memory; the sources; overload; SIGINT in `ast-listen`."""

from __future__ import annotations

import itertools
import json
import signal
import subprocess
import threading
import time
from io import BytesIO
from pathlib import Path

import numpy as np
import pytest
import soundfile
import torch
import transformers
from entry_points import entry_point_command
from test_sed import LABELS, energy_detector
from tiny_models import tiny_model

import modeling_ast  # noqa: F401  (registers the pipelines)
from modeling_ast import ASTConfig, ASTFeatureExtractor, ASTForAudioClassification, ASTForAudioFrameClassification
from modeling_ast.audio_io import load_audio
from modeling_ast.audio_utils import IncrementalResampler, resample
from modeling_ast.events import EventOptions
from modeling_ast.fbank import kaldi_fbank
from modeling_ast.listen import file_chunks, pcm_chunks, run_stream
from modeling_ast.streaming import StreamingTagger, stream_step

RATE = 16000
RATES = (8000, 22050, 44100, 48000)


@pytest.fixture(autouse=True)
def one_thread():
    """The front end's operations are tiny (a hop of frames, a block of resampling); on a busy 2-core machine
    OpenMP's second thread turns each into tens of milliseconds of waiting."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def random_chunks(samples: np.ndarray, rate: int, seed: int) -> list[np.ndarray]:
    """`samples` cut at random, sizes log-uniform from 1 sample to 10 s (many small chunks, a few large ones)."""
    rng = np.random.default_rng(seed)
    chunks, start = [], 0
    while start < len(samples):
        size = int(np.exp(rng.uniform(0, np.log(10 * rate))))
        chunks.append(samples[start : start + size])
        start += size
    return chunks


def noise(seconds: float, rate: int, seed: int = 0) -> np.ndarray:
    """Speech-band noise under a slow envelope: spectra that change from window to window."""
    rng = np.random.default_rng(seed)
    count = int(seconds * rate)
    envelope = 0.2 + 0.8 * np.abs(np.sin(np.arange(count) / rate * 2.3))
    return (0.3 * envelope * rng.standard_normal(count)).astype(np.float32)


def save_classifier(directory, masked: bool, max_length: int = 150) -> transformers.Pipeline:
    """A one-layer multi-label classifier whose scores differ from window to window, with or without masks."""
    config = ASTConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64,
                       max_length=max_length, num_labels=6, problem_type="multi_label_classification")
    torch.manual_seed(0)
    model = ASTForAudioClassification(config).eval()
    with torch.no_grad():
        model.classifier.fc.weight.normal_(0, 3.0)
    model.save_pretrained(directory)
    ASTFeatureExtractor(max_length=max_length, return_attention_mask=masked).save_pretrained(directory)
    return transformers.pipeline("audio-classification", model=str(directory))


@pytest.fixture(scope="module")
def classifiers(tmp_path_factory) -> dict[bool, transformers.Pipeline]:
    """{masked: pipeline}: windows of 2 s exceed max_length (1.5 s), the early ones (0.5-1.5 s) do not."""
    return {masked: save_classifier(tmp_path_factory.mktemp(f"masked{masked}"), masked) for masked in (True, False)}


def scores_by_label(result: dict) -> dict[str, float]:
    return {item["label"]: item["score"] for item in result["labels"]}


def max_score_difference(results: list[dict], expected: list[dict]) -> float:
    np.testing.assert_allclose([(r["start"], r["end"]) for r in results], [(e["start"], e["end"]) for e in expected],
                               rtol=0, atol=1e-9)  # fmt: skip
    return max(abs(scores_by_label(r)[label] - score) for r, e in zip(results, expected)
               for label, score in scores_by_label(e).items())  # fmt: skip


def stream(tagger: StreamingTagger, chunks: list[np.ndarray]) -> list[dict]:
    return [result for chunk in chunks for result in tagger.push(chunk)] + tagger.flush()


# ---------------------------------------------------------------- resampling and features


@pytest.mark.parametrize("rate", RATES)
def test_incremental_resampling_equals_offline_resampling_for_any_chunking(rate):
    samples = noise(3.7, rate)
    offline = resample(torch.from_numpy(samples), rate, RATE)
    for seed in range(3):
        resampler = IncrementalResampler(rate, RATE)
        pieces = [resampler.push(torch.from_numpy(chunk)) for chunk in random_chunks(samples, rate, seed)]
        streamed = torch.cat([*pieces, resampler.flush()])
        assert streamed.shape == offline.shape
        torch.testing.assert_close(streamed, offline, atol=1e-6, rtol=0)  # measured 2.4e-7: float rounding
        assert resampler._pending.numel() < 2 * resampler._width + 2 * resampler._orig  # bounded state


def test_rates_without_a_filter_bank_are_refused_naming_them():
    with pytest.raises(ValueError, match="cannot resample 16001 Hz to 16000 Hz"):
        IncrementalResampler(16001, RATE)


@pytest.mark.parametrize("rate", [RATE, 44100])
def test_window_frames_are_the_offline_features_of_the_streamed_samples(classifiers, rate):
    """Each window's frames equal `kaldi_fbank` over the same samples; at 16 kHz those are the input itself, at
    other rates the incremental resampler's output (equal to offline resampling to float rounding, above)."""
    samples = noise(6.3, rate, seed=1)
    chunks = random_chunks(samples, rate, seed=rate)
    resampler = IncrementalResampler(rate, RATE)  # the same samples the tagger resamples, chunk by chunk
    streamed = torch.cat([resampler.push(torch.from_numpy(chunk)) for chunk in chunks] + [resampler.flush()])
    offline_frames = kaldi_fbank(streamed[None])[0]
    tagger = StreamingTagger(classifiers[True], window_s=2.0, hop_s=0.5, sampling_rate=rate)
    windows = [window for chunk in chunks for window in tagger.windows(chunk)] + tagger.final_windows()
    assert len(windows) == 3 + 9 + 1  # early windows 0.5-1.5 s, full ones ending 2.0-6.0 s, the last at 6.3 s
    for window in windows:
        if window.start % 160:  # the end-aligned last window starts off the frame grid
            expected = kaldi_fbank(streamed[None, window.start : window.end])[0]
        else:
            expected = offline_frames[window.start // 160 : window.start // 160 + window.frames.shape[0]]
        torch.testing.assert_close(window.frames, expected, atol=1e-6, rtol=0)  # measured 0.0


# ---------------------------------------------------------------- clip classifiers


@pytest.mark.parametrize("rate, masked", [(RATE, True), (8000, False), (22050, True), (44100, False), (48000, True)])
def test_window_results_equal_the_offline_long_audio_pipeline(classifiers, rate, masked):
    pipe = classifiers[masked]
    samples = noise(7.33, rate, seed=2)
    tagger = StreamingTagger(pipe, window_s=2.0, hop_s=0.5, sampling_rate=rate, top_k=6)
    results = stream(tagger, random_chunks(samples, rate, seed=3))
    early, full = results[:3], results[3:]
    offline_input = {"raw": resample(torch.from_numpy(samples), rate, RATE).numpy(), "sampling_rate": RATE}
    offline = pipe(offline_input, chunk_length_s=2.0, stride_length_s=1.5, return_timestamps=True, top_k=6)
    assert full[-1]["end"] == pytest.approx(len(offline_input["raw"]) / RATE)  # the last window ends at the end
    assert max_score_difference(full, offline["windows"]) <= 1e-5  # measured 6.0e-7
    for result in early:  # each early window is the offline result of the stream so far
        assert result["start"] == 0.0 and result["end"] in (0.5, 1.0, 1.5)
        prefix = {"raw": offline_input["raw"][: round(result["end"] * RATE)], "sampling_rate": RATE}
        expected = pipe(prefix, chunk_length_s=2.0, return_timestamps=True, top_k=6)["windows"]
        assert max_score_difference([result], expected) <= 1e-5  # measured 4.2e-7


def test_a_stream_shorter_than_a_window_is_one_window_of_its_own_length(classifiers):
    samples = noise(1.23, RATE, seed=4)
    results = stream(StreamingTagger(classifiers[False], window_s=2.0, hop_s=0.5, top_k=6), [samples])
    assert [(r["start"], r["end"]) for r in results] == [(0.0, 0.5), (0.0, 1.0), (0.0, 1.23)]
    offline = classifiers[False](samples, chunk_length_s=2.0, return_timestamps=True, top_k=6)
    assert max_score_difference(results[-1:], offline["windows"]) <= 1e-5


def test_labels_follow_top_k_and_threshold(classifiers):
    samples = noise(2.0, RATE, seed=5)
    top = stream(StreamingTagger(classifiers[True], window_s=2.0, hop_s=1.0, top_k=2), [samples])
    assert [len(result["labels"]) for result in top] == [2, 2]
    above = stream(StreamingTagger(classifiers[True], window_s=2.0, hop_s=1.0, threshold=0.5), [samples])
    every = stream(StreamingTagger(classifiers[True], window_s=2.0, hop_s=1.0, top_k=6), [samples])
    for kept, scored in zip(above, every):
        assert kept["labels"] == [item for item in scored["labels"] if item["score"] >= 0.5]


# ---------------------------------------------------------------- frame models


@pytest.fixture(scope="module")
def detectors(tmp_path_factory) -> dict[str, transformers.Pipeline]:
    """"energy": `test_sed.energy_detector` (masked; 'loud' exactly where the audio is loud); "random": three labels
    from perturbed random weights, without masks, so windows shorter than max_length are padded."""
    energy_dir, random_dir = tmp_path_factory.mktemp("energy"), tmp_path_factory.mktemp("random")
    energy_detector(energy_dir)
    model = tiny_model(ASTForAudioFrameClassification, seed=3, num_hidden_layers=1, num_attention_heads=2,
                       id2label=LABELS)
    with torch.no_grad():
        model.classifier.fc.weight.normal_(0, 2.0)
    model.save_pretrained(random_dir)
    ASTFeatureExtractor(max_length=128).save_pretrained(random_dir)
    return {name: transformers.pipeline("sound-event-detection", model=str(directory))
            for name, directory in (("energy", energy_dir), ("random", random_dir))}  # fmt: skip


def bursts(seconds: float, spans: list[tuple[float, float]], seed: int = 1) -> np.ndarray:
    audio = np.zeros(int(seconds * RATE), dtype=np.float32)
    rng = np.random.default_rng(seed)
    for start, end in spans:
        audio[int(start * RATE) : int(end * RATE)] = rng.normal(0, 0.3, int(end * RATE) - int(start * RATE))
    return audio


SPANS = [(1.5, 3.7), (5.0, 5.4), (7.9, 11.0), (12.0, 12.37)]  # the last one runs to the stream's end


@pytest.mark.parametrize("name, options", [("energy", {"threshold": 0.5}),
                                           ("random", {"threshold": 0.6, "low": 0.4, "median_window": 5})])
@pytest.mark.parametrize("window_s, hop_s", [(2.0, 0.5), (1.0, 0.3), (1.28, 1.0)])
def test_events_equal_the_offline_detector_each_reported_once(detectors, name, options, window_s, hop_s):
    audio = bursts(12.37, SPANS)
    tagger = StreamingTagger(detectors[name], window_s, hop_s, events=EventOptions(**options))
    events = stream(tagger, random_chunks(audio, RATE, seed=4))
    # one window per batch: a padded batch would pad its shorter last window further (no masks: seen by the model)
    offline = detectors[name]({"raw": audio, "sampling_rate": RATE}, chunk_length_s=window_s,
                              stride_length_s=window_s - hop_s, window_batch_size=1, **options)  # fmt: skip
    events = sorted(events, key=lambda event: (event["start"], event["label"]))
    assert [(e["label"], e["start"], e["end"]) for e in events] == [
        (e["label"], pytest.approx(e["start"]), pytest.approx(e["end"])) for e in offline]
    assert max(abs(e["score"] - o["score"]) for e, o in zip(events, offline)) <= 1e-5  # measured 0.0
    if name == "energy":  # each burst crosses several windows and is still one event
        assert [(e["start"], e["end"]) for e in events] == [pytest.approx(span, abs=0.15) for span in SPANS]


def test_events_are_reported_when_they_end_or_reach_the_maximum_length(detectors):
    audio = bursts(9.0, [(1.5, 6.2)])
    tagger = StreamingTagger(detectors["energy"], window_s=2.0, hop_s=0.5, max_event_s=1.0)
    reported = []  # (stream seconds when reported, event)
    for start in range(0, len(audio), 1600):
        reported += [((start + 1600) / RATE, event) for event in tagger.push(audio[start : start + 1600])]
    assert tagger.flush() == []
    pieces = [event for _, event in reported]
    [whole] = detectors["energy"]({"raw": audio, "sampling_rate": RATE}, chunk_length_s=2.0, stride_length_s=1.5)
    assert pieces[0]["start"] == pytest.approx(whole["start"]) and pieces[-1]["end"] == pytest.approx(whole["end"])
    assert all(a["end"] == pytest.approx(b["start"]) for a, b in itertools.pairwise(pieces))  # contiguous
    assert all(piece["end"] - piece["start"] <= 1.0 + 1e-9 for piece in pieces)
    # decided one window (2 s) and one hop after the columns' audio, not at the end of the stream
    assert all(when - event["end"] <= 2.0 + 0.5 + 0.1 for when, event in reported)


# ---------------------------------------------------------------- memory and errors


def state_bytes(value: object, seen: set[int] | None = None) -> int:
    """Bytes of the tensors reachable from a tagger's state objects (not its model or feature extractor)."""
    seen = set() if seen is None else seen
    if id(value) in seen or isinstance(value, (torch.nn.Module, ASTFeatureExtractor, ASTConfig)):
        return 0
    seen.add(id(value))
    if isinstance(value, torch.Tensor):
        return value.numel() * value.element_size()
    if isinstance(value, (list, tuple)):
        return sum(state_bytes(item, seen) for item in value)
    if hasattr(value, "__dict__") and type(value).__module__.startswith("modeling_ast"):
        return sum(state_bytes(item, seen) for item in vars(value).values())
    return 0


@pytest.mark.parametrize("name", ["classifier", "detector"])
def test_memory_is_bounded_by_the_window_whatever_the_stream_length(classifiers, detectors, name):
    pipe = classifiers[True] if name == "classifier" else detectors["energy"]
    tagger = StreamingTagger(pipe, window_s=2.0, hop_s=1.0, sampling_rate=44100)
    rng = np.random.default_rng(0)
    sizes = []
    for seconds in range(60):
        loud = seconds % 7 < 3  # events start and end throughout
        tagger.push((rng.normal(0, 0.3 if loud else 0.0, 44100)).astype(np.float32))
        if seconds in (10, 59):
            sizes.append(state_bytes(tagger))
    assert sizes[0] == sizes[1], sizes
    # the resampler's filter bank (160 x 475 taps), a window of samples and one of frames, a few columns: 0.5 MB
    assert sizes[1] < 1 << 20


def test_bad_options_and_chunks_are_named(classifiers, detectors):
    pipe = classifiers[True]
    with pytest.raises(ValueError, match="hop_s=0.255 is 4080 samples at 16000 Hz, not a multiple of one 10 ms"):
        StreamingTagger(pipe, window_s=2.0, hop_s=0.255)
    with pytest.raises(ValueError, match="not a multiple of one patch column"):
        StreamingTagger(detectors["energy"], window_s=2.0, hop_s=0.25)  # columns every 100 ms
    with pytest.raises(ValueError, match="may be at most 1.2 s"):
        StreamingTagger(detectors["energy"], window_s=1.35, hop_s=1.3)  # 12 columns: at most 1.2 s
    with pytest.raises(ValueError, match=r"must not exceed window_s"):
        StreamingTagger(pipe, window_s=1.0, hop_s=2.0)
    with pytest.raises(ValueError, match="needs at least one patch of frames, 2800 samples"):
        StreamingTagger(pipe, window_s=0.1, hop_s=0.1)
    with pytest.raises(ValueError, match="window_s must be a positive number"):
        StreamingTagger(pipe, window_s=float("nan"), hop_s=0.1)
    with pytest.raises(ValueError, match="cannot resample 16001 Hz"):
        StreamingTagger(pipe, window_s=2.0, hop_s=0.5, sampling_rate=16001)
    tagger = StreamingTagger(pipe, window_s=2.0, hop_s=0.5)
    with pytest.raises(ValueError, match="NaN or infinite"):
        tagger.push(np.array([0.0, np.nan], dtype=np.float32))
    with pytest.raises(ValueError, match="magnitude 1e\\+20"):
        tagger.push(np.array([1e20], dtype=np.float32))
    tagger.flush()
    with pytest.raises(ValueError, match="flush was called"):
        tagger.push(np.zeros(10, dtype=np.float32))


def test_stereo_chunks_are_the_mean_of_their_channels(classifiers):
    left, right = noise(2.5, RATE, seed=6), noise(2.5, RATE, seed=7)
    stereo = stream(StreamingTagger(classifiers[True], 2.0, 0.5, top_k=6), [np.stack([left, right], axis=1)])
    mono = stream(StreamingTagger(classifiers[True], 2.0, 0.5, top_k=6), [(left + right) / 2])
    assert max_score_difference(stereo, mono) <= 1e-6


# ---------------------------------------------------------------- sources


@pytest.fixture(scope="module")
def recording(tmp_path_factory):
    """1.2 s of noise at 44.1 kHz in a wav file."""
    path = tmp_path_factory.mktemp("file") / "noise.wav"
    soundfile.write(path, noise(1.2, 44100, seed=8), 44100, subtype="FLOAT")
    return path


def test_paced_file_source_releases_each_block_when_its_audio_has_played(recording):
    released, started = [], time.monotonic()
    chunks = []
    for chunk in file_chunks(recording, RATE, block_s=0.1, realtime=True):
        released.append(time.monotonic() - started)
        chunks.append(chunk)
    ends = np.cumsum([len(chunk) for chunk in chunks]) / RATE
    assert all(when >= end - 0.01 for when, end in zip(released, ends)), (released, ends)  # never early
    whole = load_audio(str(recording), RATE).numpy()
    np.testing.assert_allclose(np.concatenate(chunks), whole, atol=1e-6, rtol=0)  # the one loader's samples


def test_paced_file_drives_the_live_page_step_with_the_offline_results(classifiers, recording):
    """`stream_step` as a Gradio streaming handler would call it: (rate, int16 samples) chunks, None at the end."""
    tagger, results = None, []
    for chunk in file_chunks(recording, RATE, block_s=0.25, realtime=True):
        tagger, new = stream_step(tagger, (RATE, (chunk * 32767).astype(np.int16)),
                                  lambda rate: StreamingTagger(classifiers[True], 1.0, 0.25, rate, top_k=6))
        results += new
    tagger, last = stream_step(tagger, None, lambda rate: pytest.fail("no new tagger at the end"))
    assert tagger is None
    pcm = (load_audio(str(recording), RATE).numpy() * 32767).astype(np.int16)
    offline = classifiers[True]({"raw": pcm / 32768.0, "sampling_rate": RATE}, chunk_length_s=1.0,
                                stride_length_s=0.75, return_timestamps=True, top_k=6)  # fmt: skip
    assert max_score_difference([r for r in results + last if r["end"] - r["start"] >= 1.0],
                                offline["windows"]) <= 1e-5  # fmt: skip


def test_pcm_chunks_keep_every_sample_across_odd_reads():
    samples = (np.arange(-500, 501) * 60).astype("<i2")
    data = samples.tobytes()

    class Trickle(BytesIO):  # a pipe handing over 7 bytes at a time: samples split between reads
        def read1(self, size: int = -1) -> bytes:
            return super().read1(min(size, 7))

    chunks = list(pcm_chunks(Trickle(data), block_samples=100))
    np.testing.assert_array_equal(np.concatenate(chunks), samples)
    with pytest.warns(UserWarning, match="half a sample"):
        assert np.concatenate(list(pcm_chunks(BytesIO(data + b"\x01"), 100))).shape == samples.shape


# ---------------------------------------------------------------- overload and the command


class SlowClassifier(ASTForAudioClassification):
    """A classifier that takes `delay` seconds more per window than it needs: a model that cannot keep up."""

    delay = 0.05

    def forward(self, *args, **kwargs):
        time.sleep(self.delay)
        return super().forward(*args, **kwargs)


@pytest.fixture(scope="module")
def slow_classifier(tmp_path_factory):
    directory = tmp_path_factory.mktemp("slow")
    save_classifier(directory, masked=True)
    return SlowClassifier.from_pretrained(directory).eval(), ASTFeatureExtractor.from_pretrained(directory)


def expected_windows(model, extractor, chunks) -> int:
    tagger = StreamingTagger(model, 0.5, 0.1, feature_extractor=extractor)
    return sum(len(tagger.windows(chunk)) for chunk in chunks) + len(tagger.final_windows())


@pytest.mark.parametrize("on_overload", ["queue", "skip"])
def test_overload_is_visible_as_lag_or_skipped_windows(slow_classifier, on_overload):
    model, extractor = slow_classifier
    chunks = np.array_split(noise(3.05, RATE, seed=9), 30)  # a source far faster than the model
    total = expected_windows(model, extractor, chunks)
    assert total == 3 + 26 + 1  # early windows ending at 0.2-0.4 s, full ones at 0.5-3.0 s, the last at 3.05 s
    lines = []
    tagger = StreamingTagger(model, 0.5, 0.1, feature_extractor=extractor)
    end = run_stream(tagger, iter(chunks), lines.append, on_overload=on_overload, queue_size=2)
    windows = [line for line in lines if line["type"] == "window"]
    assert lines[-1] is end and end["type"] == "end" and end["duration_s"] == 3.05
    assert end["windows"] == len(windows) and end["windows"] + end["skipped"] == total
    assert windows[-1]["end"] == 3.05  # the end of the stream is never skipped
    if on_overload == "queue":
        assert end["skipped"] == 0
        assert windows[-1]["lag_s"] > windows[0]["lag_s"] + 0.5  # waiting windows: the lag shows it
    else:
        assert end["skipped"] > total // 2
        assert [line["skipped"] for line in windows] == sorted(line["skipped"] for line in windows)


def test_stop_flushes_what_was_read(classifiers):
    stop = threading.Event()

    def source():
        yield from np.array_split(noise(1.3, RATE, seed=10), 13)
        stop.set()
        while True:  # a live source that never ends by itself
            time.sleep(0.01)
            yield np.zeros(0, dtype=np.float32)

    lines = []
    run_stream(StreamingTagger(classifiers[True], 1.0, 0.5), source(), lines.append, stop=stop)
    assert [(line["start"], line["end"]) for line in lines[:-1]] == [(0.0, 0.5), (0.0, 1.0), (0.3, 1.3)]
    assert lines[-1]["duration_s"] == 1.3


def test_run_stream_writes_each_event_of_a_frame_model_once(detectors):
    audio = bursts(6.0, [(1.5, 3.7)])
    lines = []
    run_stream(StreamingTagger(detectors["energy"], 2.0, 0.5), iter(np.array_split(audio, 60)), lines.append)
    *events, end = lines
    assert [(e["type"], e["label"]) for e in events] == [("event", "loud")] and end["type"] == "end"
    assert (events[0]["start"], events[0]["end"]) == pytest.approx((1.5, 3.7), abs=0.15)
    assert events[0]["lag_s"] >= 0 and end["windows"] == 9  # full windows ending at 2.0, 2.5, ..., 6.0 s


def test_ast_listen_flushes_the_last_window_on_sigint_and_exits_0(classifiers, tmp_path):
    output = tmp_path / "live.jsonl"
    model_dir = classifiers[True].model.name_or_path
    command = [*entry_point_command("ast-listen"), model_dir, "-", "--window_s", "1", "--hop_s", "0.5",
               "--output", str(output)]  # fmt: skip
    process = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        pcm = (noise(3.3, RATE, seed=11) * 32767).astype("<i2")
        process.stdin.write(pcm.tobytes())
        process.stdin.flush()  # and kept open: the stream has not ended
        deadline = time.monotonic() + 240  # starting Python, torch and transformers on a busy machine
        while time.monotonic() < deadline:
            line = json.loads(process.stdout.readline())
            if line["end"] == 3.0:
                break
        time.sleep(1.0)  # the reader takes the last 0.3 s
        process.send_signal(signal.SIGINT)
        rest, errors = process.communicate(timeout=120)
    finally:
        process.kill()
    assert process.returncode == 0, errors.decode()
    *windows, end = [json.loads(text) for text in rest.decode().splitlines()]
    assert end["type"] == "end" and end["duration_s"] == pytest.approx(3.3) and end["skipped"] == 0
    assert (windows[-1]["start"], windows[-1]["end"]) == pytest.approx((2.3, 3.3))  # the end-aligned last window
    written = [json.loads(text) for text in output.read_text().splitlines()]
    assert written[-1] == end and written[-2] == windows[-1] and len(written) == end["windows"] + 1
    assert {"wall_time", "lag_s", "queued", "skipped", "labels"} <= set(windows[-1])


def test_microphone_without_sounddevice_says_what_to_install(monkeypatch):
    import builtins

    from modeling_ast.listen import microphone_chunks

    real_import = builtins.__import__

    def without_sounddevice(name, *args, **kwargs):
        if name == "sounddevice":
            raise ImportError("No module named 'sounddevice'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", without_sounddevice)
    with pytest.raises(ValueError, match=r"pip install 'modeling_ast\[listen\]'"):
        microphone_chunks(None, 0.1)


def test_streaming_benchmark_times_full_windows_and_records_the_cpu(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(Path(__file__).resolve().parents[1] / "benchmarks"))
    import streaming as benchmark  # benchmarks/streaming.py

    output = tmp_path / "streaming.md"
    rows = benchmark.main(["--tiny", "--models", "recipe", "--windows", "1:0.5", "--timed", "3", "--threads", "1",
                           "--output", str(output)])  # fmt: skip
    [(model, pair, timed, p50, p95, factor)] = rows
    assert (model, pair, timed) == ("recipe", "1 / 0.5", 3) and 0 < p50 <= p95 and factor > 0
    assert "AVX2" in output.read_text() and "AVX-512 VNNI" in output.read_text()
