"""The pipeline at each clip's real length (checkpoints with attention masks), batched with `batch_size`, and its
options: split between construction and call, and validated with errors that name them."""

import math
import os

import numpy as np
import pytest
import torch
import transformers

import modeling_ast  # noqa: F401  (registers the pipeline)
from modeling_ast import ASTFeatureExtractor, ASTForAudioClassification
from modeling_ast.audio_io import load_audio, read_audio
from tiny_models import tiny_config

LABELS = 6
MAX_LENGTH = 300


def save_checkpoint(directory, return_attention_mask: bool) -> None:
    config = tiny_config(max_length=MAX_LENGTH, num_labels=LABELS, problem_type="multi_label_classification")
    torch.manual_seed(0)
    model = ASTForAudioClassification(config).eval()
    with torch.no_grad():
        model.classifier.fc.weight.normal_(0, 1.0)  # spread the scores so that clips differ clearly
    model.save_pretrained(directory)
    ASTFeatureExtractor(max_length=MAX_LENGTH, return_attention_mask=return_attention_mask).save_pretrained(directory)


@pytest.fixture(scope="module")
def masked(tmp_path_factory):
    directory = tmp_path_factory.mktemp("masked")
    save_checkpoint(directory, return_attention_mask=True)
    return transformers.pipeline("audio-classification", model=str(directory))


@pytest.fixture(scope="module")
def unmasked(tmp_path_factory):
    directory = tmp_path_factory.mktemp("unmasked")
    save_checkpoint(directory, return_attention_mask=False)
    return transformers.pipeline("audio-classification", model=str(directory))


@pytest.fixture(scope="module")
def clips(fsdd_dir):
    """Real speech at 16 kHz of mixed lengths, including one shorter than a patch (0.1 s, 8 frames)."""
    paths = sorted(fsdd_dir.glob("*.wav"))[:6]
    waveforms = [load_audio(path, sampling_rate=16000) for path in paths]
    waveforms.append(waveforms[0][:1600])
    return waveforms


class FrameRecorder:
    """Records the (batch, frames) each model call receives."""

    def __init__(self, model):
        self.shapes = []
        self.handle = model.register_forward_pre_hook(self.record, with_kwargs=True)

    def record(self, module, args, kwargs):
        self.shapes.append(tuple(kwargs["input_values"].shape[:2]))

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.handle.remove()


def as_vector(result) -> torch.Tensor:
    return torch.tensor([item["score"] for item in sorted(result, key=lambda item: item["label"])])


def scores_alone(pipe, waveform) -> torch.Tensor:
    """The clip classified by hand at its own length: extractor with padding="longest" (a clip shorter than one
    16-frame patch padded to 16 frames, as the fixed-length model sees it), mask, model, sigmoid."""
    frames = 1 + (len(waveform) - 400) // 160
    features = pipe.feature_extractor(waveform, sampling_rate=16000, padding="max_length", max_length=max(frames, 16),
                                      return_attention_mask=True, return_tensors="pt")
    with torch.no_grad():
        return pipe.model(**features).logits[0].sigmoid()


def test_masked_checkpoint_runs_one_clip_at_its_own_length(masked, clips):
    with FrameRecorder(masked.model) as recorder:
        results = [masked(clip) for clip in clips]
    assert recorder.shapes == [(1, max(16, 1 + (len(clip) - 400) // 160)) for clip in clips]
    for clip, result in zip(clips, results):
        torch.testing.assert_close(as_vector(result), scores_alone(masked, clip), atol=1e-5, rtol=0)


def test_unmasked_checkpoint_keeps_max_length(unmasked, clips):
    with FrameRecorder(unmasked.model) as recorder:
        unmasked(clips[0])
    assert recorder.shapes == [(1, MAX_LENGTH)]


def test_batches_pad_to_their_longest_clip_and_match_clips_alone(masked, clips):
    one_by_one = [as_vector(result) for result in masked(list(clips), batch_size=1)]
    with FrameRecorder(masked.model) as recorder:
        batched = [as_vector(result) for result in masked(list(clips), batch_size=3)]
    frames = [max(16, 1 + (len(clip) - 400) // 160) for clip in clips]
    assert recorder.shapes == [(3, max(frames[0:3])), (3, max(frames[3:6])), (1, frames[6])]
    for clip, alone, in_batch in zip(clips, one_by_one, batched):
        torch.testing.assert_close(in_batch, alone, atol=1e-5, rtol=0)
        torch.testing.assert_close(alone, scores_alone(masked, clip), atol=1e-5, rtol=0)
    # the short clip padded by the batch collator (raw padding, normalised after) still scores as alone
    with_short_last = masked([clips[1], clips[6]], batch_size=2)
    torch.testing.assert_close(as_vector(with_short_last[1]), one_by_one[6], atol=1e-5, rtol=0)
    # and the scores are not all alike: clips differ far more than the tolerance
    assert (one_by_one[0] - one_by_one[1]).abs().max() > 1e-2


def test_long_audio_options_split_between_construction_and_call(masked, fsdd_dir, tmp_path):
    directory = tmp_path / "ckpt"
    save_checkpoint(directory, return_attention_mask=True)
    path = str(fsdd_dir / "6_theo_3.wav")
    split = transformers.pipeline("audio-classification", model=str(directory), chunk_length_s=0.25,
                                  stride_length_s=0.05)
    at_call = masked(path, chunk_length_s=0.25, stride_length_s=0.05, return_timestamps=True)
    result = split(path, return_timestamps=True)
    assert result == at_call
    assert len(result["windows"]) > 1
    assert split(path) == at_call["labels"]  # construction options alone still give long-audio mode
    overridden = split(path, chunk_length_s=0.2, return_timestamps=True)  # a call option overrides construction
    assert overridden == masked(path, chunk_length_s=0.2, stride_length_s=0.05, return_timestamps=True)
    with pytest.raises(ValueError, match=r"stride_length_s \(0.05 s\) must be smaller than chunk_length_s \(0.05 s\)"):
        split(path, chunk_length_s=0.05)  # validated merged with the construction's stride


@pytest.mark.parametrize(
    "options, message",
    [
        ({"chunk_length_s": math.inf}, r"chunk_length_s must be a positive number of seconds \(finite\), got inf"),
        ({"chunk_length_s": math.nan}, r"chunk_length_s must be a positive number of seconds \(finite\), got nan"),
        ({"chunk_length_s": 0}, r"chunk_length_s must be a positive number of seconds \(finite\), got 0"),
        ({"chunk_length_s": -1.0}, r"chunk_length_s must be a positive number of seconds \(finite\), got -1.0"),
        ({"chunk_length_s": "10"}, r"chunk_length_s must be a positive number of seconds \(finite\), got '10'"),
        ({"chunk_length_s": 2, "stride_length_s": math.inf}, r"stride_length_s .* finite number of seconds, got inf"),
        ({"chunk_length_s": 2, "stride_length_s": math.nan}, r"stride_length_s .* finite number of seconds, got nan"),
        ({"chunk_length_s": 2, "stride_length_s": "1"}, r"stride_length_s .* finite number of seconds, got '1'"),
        ({"chunk_length_s": 2, "stride_length_s": -0.5}, r"stride_length_s .* cannot be negative, got -0.5"),
        ({"chunk_length_s": 2, "stride_length_s": 2}, r"stride_length_s \(2 s\) must be smaller than chunk_length_s"),
        ({"top_k": -1}, r"top_k must be a positive integer .*, got -1"),
        ({"top_k": 0}, r"top_k must be a positive integer .*, got 0"),
        ({"top_k": 2.5}, r"top_k must be a positive integer .*, got 2.5"),
        ({"top_k": "3"}, r"top_k must be a positive integer .*, got '3'"),
        ({"chunk_length_s": 1, "window_batch_size": 0}, r"window_batch_size must be a positive integer, got 0"),
        ({"chunk_length_s": 1, "window_batch_size": 2.0}, r"window_batch_size must be a positive integer, got 2.0"),
        ({"chunk_length_s": 1, "window_batch_size": True}, r"window_batch_size must be a positive integer, got True"),
        ({"chunk_length_s": 1, "threshold": "0.5"}, r"threshold is a score in \[0, 1\], got '0.5'"),
    ],
)
def test_bad_options_are_named(masked, clips, options, message):
    with pytest.raises(ValueError, match=message):
        masked(clips[0], **options)


@pytest.fixture(scope="module")
def many_files(fsdd_dir, tmp_path_factory):
    """12 files of real speech, 0.2 to 1.4 s, as wav and flac at 8, 16 and 44.1 kHz, in no order of length."""
    import soundfile

    from modeling_ast.audio_utils import resample

    folder = tmp_path_factory.mktemp("many")
    paths = []
    for index, source in enumerate(sorted(fsdd_dir.glob("*.wav"))[:12]):
        rate = (8000, 16000, 44100)[index % 3]
        waveform = resample(read_audio(source)[0], 8000, rate).numpy()
        waveform = np.tile(waveform, 1 + index % 4)[: int(rate * (0.2 + 0.1 * ((index * 5) % 13)))]
        path = folder / f"clip{index}.{'flac' if index % 2 else 'wav'}"
        soundfile.write(path, waveform, rate)
        paths.append(str(path))
    return paths


def test_many_files_batched_by_length_in_workers_come_back_in_order(masked, many_files, tmp_path, monkeypatch):
    alone = [as_vector(masked(path)) for path in many_files]
    pids = tmp_path / "pids"
    preprocess = masked.preprocess

    def recording_preprocess(inputs, **params):
        with open(pids, "a") as handle:
            handle.write(f"{os.getpid()}\n")
        return preprocess(inputs, **params)

    monkeypatch.setattr(masked, "preprocess", recording_preprocess)
    with FrameRecorder(masked.model) as recorder:
        results = masked(many_files, batch_size=4, num_workers=2)
    assert len(results) == len(many_files)
    for expected, result in zip(alone, results):  # input order, each as if alone
        torch.testing.assert_close(as_vector(result), expected, atol=1e-5, rtol=0)
    worker_pids = set(pids.read_text().split())
    assert str(os.getpid()) not in worker_pids and len(worker_pids) == 2  # decoding ran in the two workers
    frames = [shape[1] for shape in recorder.shapes]
    assert [shape[0] for shape in recorder.shapes] == [4, 4, 4]
    assert frames == sorted(frames)  # one look-ahead block (12 <= 8 batches of 4), grouped shortest first
    durations = sorted(soundfile_duration(path) for path in many_files)
    assert frames[0] < frames[-1] and frames[0] == 1 + (round(durations[3] * 16000) - 400) // 160


def soundfile_duration(path: str) -> float:
    import soundfile

    return soundfile.info(path).duration


def test_an_unreadable_file_is_named_or_returned_as_an_error_entry(masked, many_files, tmp_path):
    broken = tmp_path / "broken.wav"
    broken.write_bytes(b"RIFF\x00\x00\x00\x00WAVEnot audio at all")
    inputs = [many_files[0], str(broken), many_files[1]]
    with pytest.raises(ValueError, match=r"could not classify '.*broken\.wav'"):
        masked(inputs, batch_size=2)
    results = masked(inputs, batch_size=2, num_workers=1, on_error="return")
    assert results[1]["input"] == str(broken)
    assert str(broken) in results[1]["error"] and set(results[1]) == {"error", "input"}
    for index in (0, 2):
        torch.testing.assert_close(as_vector(results[index]), as_vector(masked(inputs[index])), atol=1e-5, rtol=0)
    with pytest.raises(ValueError, match=r"on_error must be one of \('raise', 'return'\), got 'skip'"):
        masked(inputs, on_error="skip")


def test_streamed_inputs_give_the_list_results_one_at_a_time(masked, many_files):
    """`pipeline(StreamedInputs(paths))` is lazy (an iterator, not a list) and gives what the list call gives, in
    input order, grouped by length in the same way."""
    from modeling_ast.pipeline_batches import StreamedInputs

    expected = masked(many_files, batch_size=4)
    with FrameRecorder(masked.model) as recorder:
        streamed = masked(StreamedInputs(many_files), batch_size=4)
        assert not isinstance(streamed, list) and recorder.shapes == []  # nothing has run yet
        first = next(streamed)
        results = [first, *streamed]
    assert len(results) == len(many_files)
    for want, got in zip(expected, results):
        torch.testing.assert_close(as_vector(got), as_vector(want), atol=1e-6, rtol=0)
    frames = [shape[1] for shape in recorder.shapes]
    assert frames == sorted(frames) and frames[0] < frames[-1]
