"""Hostile inputs (issue 12): huge amplitudes, tensors that torch would reject deep inside, model inputs of the wrong
dtype, and files that cannot be decoded. Each gets either a correct, finite answer or a ValueError that says what and
which clip or file."""

from __future__ import annotations

import math
import subprocess
import sys

import numpy as np
import pytest
import soundfile
import torch
from transformers import pipeline

from conftest import requires_ffmpeg
from modeling_ast import ASTFeatureExtractor
from modeling_ast.audio_io import read_audio
from modeling_ast.fbank import kaldi_mel_banks
from tiny_models import tiny_model

SR = 16000


@pytest.fixture(scope="module")
def extractor() -> ASTFeatureExtractor:
    return ASTFeatureExtractor(max_length=128)


@pytest.fixture(scope="module")
def classifier(extractor):
    model = tiny_model(num_hidden_layers=1, num_attention_heads=2, intermediate_size=37, num_labels=3)
    return pipeline("audio-classification", model=model, feature_extractor=extractor)


@pytest.fixture(scope="module")
def noise() -> np.ndarray:
    return np.random.default_rng(0).standard_normal(SR).astype(np.float32) * 0.1


def raw_fbank(extractor, audio, rate=SR) -> torch.Tensor:
    return extractor(audio, sampling_rate=rate, padding="longest", do_normalize=False, return_tensors="pt").input_values


# --- huge finite amplitudes -------------------------------------------------------------------------------------


@pytest.mark.parametrize("exponent", [50, 100, 127])
@pytest.mark.parametrize("rate", [SR, 44100])
def test_huge_amplitudes_follow_the_log_scaling_law(extractor, noise, exponent, rate):
    # log-mel of c x is log-mel of x + 2 ln c (power spectrum scales with c^2); with c = 2**exponent the scaled input
    # is exact in float32. Before the float64 path these gave inf (float32 power overflows above ~1e14 at 16 kHz).
    floor = math.log(torch.finfo(torch.float32).eps)
    offset = 2 * exponent * math.log(2)
    base = raw_fbank(extractor, noise, rate)
    got = raw_fbank(extractor, noise * np.float32(2.0**exponent), rate)
    assert torch.isfinite(got).all()
    live = base > floor + 1e-4
    # float64 features of values up to ~180 (float32 ulp 1.5e-5) against the float32 ones plus the exact offset:
    # largest difference measured 1.2e-4 (the low bins of the float32 path carry ~1e-4 of cancellation)
    torch.testing.assert_close(got[live], base[live] + offset, atol=3e-4, rtol=0)
    # energies below float32 eps were floored unscaled; scaled they lie between the floor and floor + offset
    assert bool((got[~live] >= floor - 1e-5).all() and (got[~live] <= floor + offset + 1e-4).all())
    # mel filters that catch no FFT bin have zero energy at any scale: they stay on the floor, not floor + offset
    empty = kaldi_mel_banks(128, 512, SR).sum(dim=0) == 0
    torch.testing.assert_close(got[..., empty], torch.full_like(got[..., empty], floor), atol=2e-6, rtol=0)


def test_a_huge_clip_in_a_batch_leaves_the_others_unchanged(extractor, noise):
    alone = raw_fbank(extractor, [noise, noise[:8000]])
    mixed = raw_fbank(extractor, [noise, noise[:8000] * np.float32(1e30)])
    assert torch.equal(mixed[0], alone[0])
    assert torch.isfinite(mixed).all()


def test_float32_range_amplitudes_give_finite_pipeline_scores(classifier, noise, tmp_path):
    path = tmp_path / "loud.wav"
    soundfile.write(path, (noise * 1e20 / np.abs(noise).max()).astype(np.float64), SR, subtype="DOUBLE")
    for audio in (str(path), noise * np.float32(1e30)):
        scores = [item["score"] for item in classifier(audio)]
        assert all(math.isfinite(score) for score in scores), scores


def test_float64_beyond_float32_range_names_the_clip(extractor, noise):
    with pytest.raises(ValueError, match=r"clip 1 contains NaN or infinite samples \(or samples beyond float32"):
        extractor([noise, noise.astype(np.float64) * 1e300], sampling_rate=SR)


# --- inputs torch would reject deep inside -------------------------------------------------------------------------


def test_a_tensor_that_requires_grad_is_detached(extractor, noise):
    expected = raw_fbank(extractor, noise)
    for audio in (torch.from_numpy(noise).requires_grad_(), torch.from_numpy(noise)[None].requires_grad_()):
        torch.testing.assert_close(raw_fbank(extractor, audio), expected, atol=0, rtol=0)


def test_negative_strides_just_work(extractor, noise):
    flipped = noise[::-1]
    expected = raw_fbank(extractor, flipped.copy())
    for audio in (flipped, noise[None, ::-1], (noise * 2**15).astype(np.int16)[None, ::-1]):
        got = raw_fbank(extractor, audio)
        assert torch.isfinite(got).all()
        if audio.dtype == np.float32:
            assert torch.equal(got, expected)


@pytest.mark.parametrize(
    ("audio", "message"),
    [
        (torch.ones(SR).to_sparse(), r"clip 0: audio tensors must be dense, got layout torch.sparse_coo"),
        (torch.empty(SR, device="meta"), r"clip 0: audio is a meta tensor"),
        (torch.empty(2, SR, device="meta"), r"raw_speech: audio is a meta tensor"),
        (np.array(5, dtype=np.int16), r"clip 0 has shape \(\) \(0-D\)"),
        (torch.tensor(5, dtype=torch.int16), r"clip 0 has shape \(\) \(0-D\)"),
    ],
    ids=["sparse", "meta", "meta-batch", "0-D int16 array", "0-D int16 tensor"],
)
def test_tensors_torch_cannot_read_get_our_errors(extractor, audio, message):
    with pytest.raises(ValueError, match=message):
        extractor(audio, sampling_rate=SR)


@pytest.mark.parametrize("dtype", [torch.int64, torch.float64, torch.float16])
def test_model_rejects_input_values_of_another_dtype(classifier, dtype):
    model = classifier.model
    values = torch.zeros(1, 128, 128, dtype=dtype)
    with pytest.raises(ValueError, match=rf"input_values has dtype {dtype}; this model's weights are torch.float32"):
        model(input_values=values)


def test_model_accepts_input_values_of_its_own_dtype_under_autocast(classifier):
    model = classifier.model
    with torch.autocast("cpu", dtype=torch.bfloat16):
        logits = model(input_values=torch.zeros(1, 128, 128, dtype=torch.bfloat16)).logits
    assert torch.isfinite(logits.float()).all()


# --- files ---------------------------------------------------------------------------------------------------------


def scores(result) -> dict[str, float]:
    labels = result["labels"] if isinstance(result, dict) else result
    return {item["label"]: item["score"] for item in labels}


@pytest.fixture(scope="module")
def bad_files(tmp_path_factory, fsdd_dir):
    folder = tmp_path_factory.mktemp("files")
    source = fsdd_dir / "2_lucas_0.wav"
    whole = source.read_bytes()
    (folder / "corrupt.wav").write_bytes(b"RIFF" + bytes(100))
    (folder / "truncated.wav").write_bytes(whole[: len(whole) // 2])
    return folder, source


@pytest.mark.parametrize("chunk_length_s", [None, 0.5])
def test_decoding_errors_name_the_file_and_both_decoders_reasons(classifier, bad_files, chunk_length_s):
    folder, _ = bad_files
    kwargs = {} if chunk_length_s is None else {"chunk_length_s": chunk_length_s}
    corrupt = str(folder / "corrupt.wav")
    with pytest.raises(ValueError, match=rf"(?s){corrupt}.*Format not recognised.*ffmpeg could not decode it either"):
        classifier(corrupt, **kwargs)
    missing = str(folder / "missing.wav")
    with pytest.raises(ValueError, match=rf"audio file '{missing}' does not exist"):
        classifier(missing, **kwargs)


def test_a_bad_sampling_rate_is_refused_before_any_decoding(bad_files, monkeypatch):
    """A bad target rate is the caller's error, not the file's: it once made the decoder treat the readable file as
    undecodable and start ffmpeg on it."""
    import modeling_ast.audio_io as audio_io

    _, source = bad_files
    ffmpeg_calls = []
    monkeypatch.setattr(audio_io, "_ffmpeg_to_wav", lambda path, output: ffmpeg_calls.append(path))
    with pytest.raises(ValueError, match="sampling_rate must be positive"):
        audio_io.load_audio(source, sampling_rate=0)
    assert ffmpeg_calls == []


def test_an_unreachable_url_is_named_in_chunk_mode_too(classifier):
    # a URL is downloaded and decoded by the one loader, in long-audio mode as in plain calls
    for kwargs in ({}, {"chunk_length_s": 1.0}):
        with pytest.raises(ValueError, match="could not download audio 'http://127.0.0.1:9/a.wav'"):
            classifier("http://127.0.0.1:9/a.wav", **kwargs)


@requires_ffmpeg
@pytest.mark.parametrize("chunk_length_s", [None, 0.5])
def test_formats_only_ffmpeg_reads_decode_like_the_wav(classifier, bad_files, chunk_length_s):
    # same samples, same rate, same resampler: the lossless m4a must score exactly like its source WAV
    folder, source = bad_files
    # ALAC is lossless: the m4a holds the WAV's 16-bit samples exactly
    subprocess.run(["ffmpeg", "-v", "error", "-y", "-i", str(source), "-c:a", "alac", str(folder / "clip.m4a")],
                   check=True)
    kwargs = {} if chunk_length_s is None else {"chunk_length_s": chunk_length_s, "stride_length_s": 0.1}
    assert scores(classifier(str(folder / "clip.m4a"), **kwargs)) == scores(classifier(str(source), **kwargs))


@pytest.mark.parametrize("chunk_length_s", [None, 0.2])
def test_a_truncated_wav_warns_naming_the_file(classifier, bad_files, chunk_length_s):
    truncated = str(bad_files[0] / "truncated.wav")
    kwargs = {} if chunk_length_s is None else {"chunk_length_s": chunk_length_s}
    with pytest.warns(UserWarning, match=rf"audio file '{truncated}' is truncated"):
        classifier(truncated, **kwargs)
    with pytest.warns(UserWarning, match="is truncated"):
        assert len(read_audio(truncated)[0]) == soundfile.info(truncated).frames


# --- memory --------------------------------------------------------------------------------------------------------

_PEAK_OF_A_LONG_CALL = """
import resource, sys, torch
from modeling_ast import ASTFeatureExtractor
audio = torch.randn(16000 * 600) * 0.1  # 10 minutes: 38 MB of samples, 60,000 frames (31 MB of features)
extractor = ASTFeatureExtractor()
extractor(audio[:16000], sampling_rate=16000)  # warm up: constants and allocator pools
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
extractor(audio, sampling_rate=16000, truncation=False, return_tensors="pt")
print((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024)
"""


def test_a_long_untruncated_call_needs_little_more_than_its_features():
    # Before the frame blocks, one 60,000-frame pass allocated ~490 MB of scratch (3.3 GB for an hour); now the
    # scratch is one 1,024-frame block (~8 MB), so the peak grows by about the 31 MB of features (measured 20 MB).
    result = subprocess.run([sys.executable, "-c", _PEAK_OF_A_LONG_CALL], capture_output=True, text=True, check=True)
    growth_mb = float(result.stdout.strip().splitlines()[-1])
    assert growth_mb < 150, growth_mb


def test_long_clips_computed_in_blocks_equal_their_pieces(extractor):
    # frames are independent: the frames around the 1,024-frame block boundary equal those of the audio cut there
    audio = np.random.default_rng(1).standard_normal(160 * 3000 + 240).astype(np.float32)
    def raw(samples):
        return extractor(samples, sampling_rate=SR, truncation=False, do_normalize=False, return_tensors="pt")

    whole = raw(audio).input_values[0]
    assert whole.shape[0] == 3000
    for first in (1000, 2040):
        piece = raw(audio[160 * first : 160 * (first + 250) + 400]).input_values[0]
        torch.testing.assert_close(whole[first : first + 251], piece, atol=1e-5, rtol=0)
