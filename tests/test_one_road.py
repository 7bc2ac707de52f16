"""One road for audio: every door reads, downmixes, resamples and pads a recording the same way.

The recording is real speech from the repository's FSDD subset made into a 44.1 kHz stereo file (left: one speaker,
right: another, at half level), written as WAV, FLAC, OGG, MP3 and (with ffmpeg) M4A. Each test compares two doors
on it; before `audio_io` (one loader) they differed by 4e-2 to 7e-2 in class scores (paths vs bytes), read channel 0
only (a silent left channel scored as silence), skipped m4a in training and padded long-audio windows of checkpoints
without masks differently from their plain calls.
"""

from __future__ import annotations

import io
import json
import subprocess
from pathlib import Path

import numpy as np
import pytest
import soundfile
import torch
from transformers import pipeline

from conftest import requires_ffmpeg
from modeling_ast import ASTFeatureExtractor
from modeling_ast.audio_io import load_audio
from modeling_ast.audio_utils import resample
from modeling_ast.tagging import tag_collection
from modeling_ast.training.collator import AudioCollator
from modeling_ast.training.decoding import decode_example
from modeling_ast.training.sources import folder_examples
from tiny_models import save_tiny_digit_classifier

RATE = 44100
# Two doors that read the same samples give the same scores up to float rounding of the model (measured 0.0).
SCORE_ATOL = 1e-5
SOUNDFILE_FORMATS = ("wav", "flac", "ogg", "mp3")


def scores(result: list[dict]) -> dict[str, float]:
    return {item["label"]: item["score"] for item in result}


def assert_same_scores(got: list[dict], expected: list[dict]) -> None:
    got, expected = scores(got), scores(expected)
    assert sorted(got) == sorted(expected)
    np.testing.assert_allclose([got[k] for k in expected], list(expected.values()), atol=SCORE_ATOL, rtol=0)


@pytest.fixture(scope="module")
def masked_dir(tmp_path_factory) -> Path:
    """The tiny digit classifier saved with a feature extractor that returns masks (real-length inputs)."""
    directory = save_tiny_digit_classifier(tmp_path_factory.mktemp("masked") / "model")
    ASTFeatureExtractor(max_length=128, return_attention_mask=True).save_pretrained(directory)
    return directory


@pytest.fixture(scope="module")
def classifier(masked_dir):
    return pipeline("audio-classification", model=str(masked_dir))


@pytest.fixture(scope="module")
def stereo(fsdd_dir) -> np.ndarray:
    """(samples, 2) float32 at 44.1 kHz: two speakers' digits, the right one at half level."""
    left, right = (load_audio(fsdd_dir / name, 8000) for name in ("3_jackson_0.wav", "7_nicolas_12.wav"))
    length = max(len(left), len(right))
    channels = torch.zeros(2, length)
    channels[0, : len(left)], channels[1, : len(right)] = left, right * 0.5
    return resample(channels, 8000, RATE).T.contiguous().numpy()


@pytest.fixture(scope="module")
def encoded(tmp_path_factory, stereo) -> dict[str, Path]:
    """The stereo recording in every format soundfile writes (and m4a when ffmpeg is installed)."""
    folder = tmp_path_factory.mktemp("formats")
    files = {}
    for fmt in SOUNDFILE_FORMATS:
        files[fmt] = folder / f"speech.{fmt}"
        soundfile.write(files[fmt], stereo, RATE, format=fmt.upper() if fmt != "ogg" else "OGG")
    return files


@pytest.mark.parametrize("fmt", SOUNDFILE_FORMATS)
def test_a_path_its_bytes_and_its_file_object_score_alike(classifier, encoded, fmt):
    path = encoded[fmt]
    from_path = classifier(str(path), top_k=10)
    assert_same_scores(classifier(path.read_bytes(), top_k=10), from_path)
    with path.open("rb") as handle:
        assert_same_scores(classifier(handle, top_k=10), from_path)


@requires_ffmpeg
def test_m4a_bytes_are_read_like_the_m4a_file(classifier, encoded, tmp_path):
    """ffmpeg cannot seek a pipe, so m4a bytes once failed ('Malformed soundfile'); they go through a temporary file."""
    m4a = tmp_path / "speech.m4a"
    subprocess.run(["ffmpeg", "-v", "error", "-i", str(encoded["wav"]), "-c:a", "alac", str(m4a)], check=True)
    from_path = classifier(str(m4a), top_k=10)
    assert_same_scores(classifier(m4a.read_bytes(), top_k=10), from_path)
    assert_same_scores(from_path, classifier(str(encoded["wav"]), top_k=10))  # ALAC is lossless


def test_mono_8k_recordings_score_alike_as_paths_and_bytes(classifier, fsdd_dir):
    """Bytes once went through ffmpeg's resampler (up to 6.9e-3 apart from the path); now both through ours."""
    paths = sorted(fsdd_dir.glob("*.wav"))[:12]
    for path, from_path in zip(paths, classifier([str(path) for path in paths], top_k=10)):
        assert_same_scores(classifier(path.read_bytes(), top_k=10), from_path)


def test_channels_are_averaged_by_every_door(classifier, masked_dir, stereo, tmp_path):
    """A recording whose left channel is silent: every door hears the right one, as the mean of the channels that
    soundfile reads (computed here with numpy); channel 0 alone would be silence."""
    silent_left = stereo.copy()
    silent_left[:, 0] = 0.0
    folder = tmp_path / "in"
    folder.mkdir()
    path = folder / "right_only.wav"
    soundfile.write(path, silent_left, RATE, subtype="FLOAT")
    samples, rate = soundfile.read(path, dtype="float32")
    expected = classifier({"raw": samples.mean(axis=1), "sampling_rate": rate}, top_k=10)
    silence = classifier({"raw": np.zeros(len(samples), np.float32), "sampling_rate": rate}, top_k=10)
    assert max(abs(scores(expected)[k] - scores(silence)[k]) for k in scores(silence)) > 100 * SCORE_ATOL

    assert_same_scores(classifier(str(path), top_k=10), expected)
    assert_same_scores(classifier(str(path), top_k=10, chunk_length_s=30), expected)
    record = tagged(tag_collection(str(masked_dir), folder, tmp_path / "tags.jsonl", progress=False))
    assert_same_scores(record["labels"], expected[: len(record["labels"])])
    waveform = decode_example({"audio": str(path), "labels": [], "name": "right_only"})
    torch.testing.assert_close(waveform, load_audio({"raw": samples.mean(axis=1), "sampling_rate": rate}, 16000))


def tagged(output: Path) -> dict:
    [record] = [json.loads(line) for line in output.read_text().splitlines()]
    return record


def test_the_doors_give_the_pipelines_features(classifier, encoded):
    """The same file's raw (un-normalised) filter banks as the pipeline computes them, from the training collator
    (decode_example, then the collator's log-mel) and from HEAR (its raw features of the loaded audio)."""
    from modeling_ast.hear import ASTHearModel

    path = encoded["flac"]
    extractor = classifier.feature_extractor
    from_pipeline = classifier.preprocess(str(path))["input_values"][0]
    waveform = decode_example({"audio": str(path), "labels": []})
    collated, mask = AudioCollator(extractor, padding="longest").log_mel([waveform])
    torch.testing.assert_close(collated[0][mask[0]], from_pipeline, atol=0, rtol=0)
    hear_model = ASTHearModel(classifier.model.base_model, extractor)
    from_hear = hear_model.raw_features(load_audio(str(path), hear_model.sample_rate)[None])[0]
    torch.testing.assert_close(from_hear, from_pipeline, atol=0, rtol=0)


@requires_ffmpeg
def test_training_reads_every_listed_format_from_a_folder(tmp_path, encoded):
    """A folder holding an m4a: once left out without a word (its extension was not in training's list) and, once
    listed, a failed read mid-training (no ffmpeg fallback); now listed, in any case, and decoded like the pipeline."""
    folder = tmp_path / "data" / "speech"
    folder.mkdir(parents=True)
    for fmt, path in encoded.items():
        (folder / path.name).write_bytes(path.read_bytes())
    subprocess.run(["ffmpeg", "-v", "error", "-i", str(encoded["wav"]), "-c:a", "alac", str(folder / "UPPER.M4A")],
                   check=True)
    examples = folder_examples(tmp_path / "data")["train"]
    assert sorted(Path(example["audio"]).name for example in examples) == sorted(
        [path.name for path in encoded.values()] + ["UPPER.M4A"]
    )
    m4a = next(example for example in examples if example["audio"].endswith(".M4A"))
    torch.testing.assert_close(decode_example(m4a), load_audio(encoded["wav"], 16000), atol=0, rtol=0)


@requires_ffmpeg
def test_a_saved_dataset_of_m4a_bytes_is_tagged_like_its_folder(tmp_path, masked_dir, fsdd_dir):
    """Rows once failed with "Error opening <_io.BytesIO object at 0x...>" (no name, no ffmpeg fallback)."""
    from datasets import Audio, Dataset

    folder = tmp_path / "m4a"
    folder.mkdir()
    for path in sorted(fsdd_dir.glob("*.wav"))[:3]:
        subprocess.run(["ffmpeg", "-v", "error", "-i", str(path), "-c:a", "aac", str(folder / f"{path.stem}.m4a")],
                       check=True)
    rows = [{"bytes": path.read_bytes(), "path": path.name} for path in sorted(folder.iterdir())]
    Dataset.from_dict({"audio": rows}).cast_column("audio", Audio(decode=False)).save_to_disk(str(tmp_path / "saved"))
    from_folder = tag_collection(str(masked_dir), folder, tmp_path / "a.jsonl", progress=False)
    from_dataset = tag_collection(str(masked_dir), tmp_path / "saved", tmp_path / "b.jsonl", progress=False)
    folder_records = [json.loads(line) for line in from_folder.read_text().splitlines()]
    dataset_records = [json.loads(line) for line in from_dataset.read_text().splitlines()]
    assert [record["error"] for record in dataset_records] == [None] * 3
    assert [record["input"] for record in dataset_records] == [record["input"] for record in folder_records]
    for got, expected in zip(dataset_records, folder_records):
        assert_same_scores(got["labels"], expected["labels"])


def test_windows_of_a_checkpoint_without_masks_are_padded_as_its_plain_calls(tmp_path, fsdd_dir):
    """A 0.93 s clip under `chunk_length_s=10` is one window; a checkpoint trained without masks sees it padded to
    `max_length` frames, as in a plain call (it once ran at its 91 frames: 3.4e-2 apart)."""
    unmasked = pipeline("audio-classification", model=str(save_tiny_digit_classifier(tmp_path / "unmasked")))
    clip = io.BytesIO((fsdd_dir / "0_george_4.wav").read_bytes())
    assert_same_scores(unmasked(clip.getvalue(), top_k=10, chunk_length_s=10), unmasked(clip.getvalue(), top_k=10))


@requires_ffmpeg
def test_long_audio_of_a_format_only_ffmpeg_reads_is_read_window_by_window(tmp_path):
    """An m4a in long-audio mode once sat in memory whole, every channel at the file's rate (3.34 GB for an hour of
    44.1 kHz stereo, against 0.75 GB as WAV); now ffmpeg decodes it to a temporary file read window by window. Python
    allocations (the decoded bytes and numpy arrays are traced) stay a small fraction of the decoded audio."""
    import tracemalloc

    from modeling_ast.audio_io import AudioFile

    seconds, rate = 60, 44100
    noise = np.random.default_rng(0).normal(0, 0.1, (seconds * rate, 2)).astype(np.float32)
    soundfile.write(tmp_path / "source.wav", noise, rate, subtype="PCM_16")
    m4a = tmp_path / "long.m4a"
    subprocess.run(["ffmpeg", "-v", "error", "-i", str(tmp_path / "source.wav"), "-c:a", "aac", str(m4a)], check=True)
    decoded_bytes = seconds * rate * 2 * 4  # float32, both channels: what the old reader held
    tracemalloc.start()
    try:
        windows = AudioFile(m4a, 16000)
        for start in range(0, windows.num_samples - 16000, 16000):  # 1 s windows: what one holds is ~0.7 MB
            windows.read(start, start + 16000)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < decoded_bytes / 8, f"peak {peak / 2**20:.1f} MiB for {decoded_bytes / 2**20:.1f} MiB decoded"
