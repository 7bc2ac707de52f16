"""The HEAR 2021 API (modeling_ast.hear): the checks of HEAR's validator, timestamps centred on what each embedding
sees, batch and window independence, and checkpoints loaded from a directory and from the loopback Hub."""

import numpy as np
import pytest
import torch
import transformers

from modeling_ast import ASTFeatureExtractor, ASTForAudioClassification, ASTModel, hear
from tiny_models import tiny_builtin_config, tiny_config

RATE = 16000
# A 64-frame positional grid at stride 10 has 5 time columns; 2 runs per window: windows of 10 timestamps (0.5 s).
TINY = dict(max_length=64)  # overrides of the shared tiny sizes (tests/tiny_models.py)
WINDOW = 10


def tiny_model(num_hidden_layers: int = 2, **overrides) -> hear.ASTHearModel:
    torch.manual_seed(0)
    config = tiny_config(**{**TINY, "num_hidden_layers": num_hidden_layers, **overrides})
    return hear.ASTHearModel(ASTModel(config), ASTFeatureExtractor(max_length=config.max_length))


def noise(*shape: int, seed: int = 1, peak: float = 1.0) -> torch.Tensor:
    return (torch.rand(*shape, generator=torch.Generator().manual_seed(seed)) * 2 - 1) * peak


@pytest.fixture(scope="module")
def model() -> hear.ASTHearModel:
    return tiny_model()


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    """A tiny multi-label classifier saved with its feature extractor, as a user's fine-tuned checkpoint is."""
    directory = tmp_path_factory.mktemp("classifier")
    torch.manual_seed(0)
    classifier = ASTForAudioClassification(tiny_config(**TINY, num_labels=3)).eval()
    classifier.save_pretrained(directory)
    ASTFeatureExtractor(max_length=64).save_pretrained(directory)
    return directory, classifier


@pytest.mark.parametrize("seconds", [1.07, 1.98, 4.0])  # the validator's lengths
def test_validator_checks(model, seconds):
    assert model.sample_rate == RATE and type(model.sample_rate) is int
    assert model.scene_embedding_size == model.timestamp_embedding_size == 32
    assert type(model.scene_embedding_size) is int and type(model.timestamp_embedding_size) is int
    assert isinstance(model, torch.nn.Module)
    audio = noise(2, int(seconds * RATE))
    embeddings, timestamps = hear.get_timestamp_embeddings(audio, model)
    assert embeddings.dtype == torch.float32 and embeddings.shape[0] == 2 and embeddings.shape[2] == 32
    assert timestamps.shape == embeddings.shape[:2]
    assert torch.isfinite(embeddings).all()
    scene = hear.get_scene_embeddings(noise(4, int(2.74 * RATE)), model)
    assert scene.dtype == torch.float32 and scene.shape == (4, 32) and torch.isfinite(scene).all()


@pytest.mark.parametrize("time_stride, hop_ms", [(10, 50), (12, 40), (14, 20), (16, 40)])
@pytest.mark.parametrize("num_samples", [400, 2800, 17120, 31680, 7 * RATE + 123])
def test_timestamps_are_regular_and_cover_the_sound(time_stride, hop_ms, num_samples):
    model = tiny_model(num_hidden_layers=1, time_stride=time_stride)
    embeddings, timestamps = hear.get_timestamp_embeddings(noise(2, num_samples), model)
    assert embeddings.shape == (2, timestamps.shape[1], 32) and torch.isfinite(embeddings).all()
    assert torch.equal(timestamps[0], timestamps[1])
    duration_ms = 1000 * num_samples / RATE
    # 16 frames from 8 frames before the start: centre 10 * (7.5 - 8) + 12.5 ms (a frame is 25 ms every 10 ms)
    expected = 7.5 + hop_ms * np.arange(max(1, int((duration_ms - 7.5) // hop_ms) + 1))
    np.testing.assert_allclose(timestamps[0].numpy(), expected, rtol=0, atol=1e-3)
    if duration_ms >= 7.5:  # every timestamp lies within the sound, the last within one hop of its end
        assert duration_ms - hop_ms < timestamps[0, -1] <= duration_ms


@pytest.mark.parametrize("num_samples", [1, 399])
def test_sounds_shorter_than_one_frame_are_refused_like_the_extractor(num_samples):
    """A sound under one 25 ms frame has no filter banks: HEAR refuses it with the feature extractor's own message
    (it was once padded with silence, so it got embeddings the pipeline would refuse to compute)."""
    model = tiny_model(num_hidden_layers=1)
    message = f"clip 0 has {num_samples} samples, fewer than one 25 ms frame \\(400 samples\\)"
    for embed in (hear.get_timestamp_embeddings, hear.get_scene_embeddings):
        with pytest.raises(ValueError, match=message):
            embed(noise(2, num_samples), model)


@pytest.mark.parametrize("time_stride", [10, 12])
def test_timestamps_are_centred_on_what_each_embedding_sees(time_stride):
    """Without Transformer blocks a column embedding depends on its own frames only: a 5 ms click changes exactly
    the embeddings whose frames hear it, and those must sit around the click."""
    model = tiny_model(num_hidden_layers=0, time_stride=time_stride)
    quiet = noise(1, 2 * RATE, peak=0.01)
    for click_ms in (500, 1000, 1230):
        clicked = quiet.clone()
        centre = click_ms * RATE // 1000
        clicked[0, centre - 40 : centre + 40] = 0.8
        before, timestamps = hear.get_timestamp_embeddings(quiet, model)
        after, _ = hear.get_timestamp_embeddings(clicked, model)
        changed = ((after - before).abs().amax(dim=-1) > 1e-4)[0]
        # The click touches frames centred within 15 ms of it (25 ms frames, a 5 ms click), and a column's frames are
        # centred within 75 ms of its timestamp: every changed timestamp lies within 90 ms of the click.
        heard = timestamps[0, changed]
        indices = changed.nonzero().flatten()
        assert len(indices) >= 3 and torch.equal(indices, torch.arange(indices[0], indices[-1] + 1))
        assert abs(heard.mean().item() - click_ms) <= 10
        assert (heard - click_ms).abs().max() < 90


def test_sounds_do_not_depend_on_their_batch(model):
    audio = noise(3, 35000) * torch.tensor([[0.9], [0.1], [0.5]])  # 2.2 s: more than one window
    embeddings, timestamps = hear.get_timestamp_embeddings(audio, model)
    scene = hear.get_scene_embeddings(audio, model)
    for window_batch_size in (1, 3):
        model.window_batch_size = window_batch_size
        for index in range(3):
            alone, alone_timestamps = hear.get_timestamp_embeddings(audio[index : index + 1], model)
            # measured 0 on CPU (the same windows go through the same kernels)
            torch.testing.assert_close(alone[0], embeddings[index], atol=1e-6, rtol=0)
            assert torch.equal(alone_timestamps[0], timestamps[index])
            torch.testing.assert_close(hear.get_scene_embeddings(audio[index : index + 1], model)[0], scene[index],
                                       atol=1e-6, rtol=0)
    model.window_batch_size = 8
    assert (embeddings[0] - embeddings[1]).abs().max() > 0.01  # the sounds do differ


def test_timestamp_embeddings_depend_only_on_their_window(model):
    """3 s and its first 1.6 s: windows of 10 timestamps; the 1.6 s sound has 32, so its last window is moved back
    to start at 22. The first three windows read the same frames in both; timestamps 30-31 do not."""
    full = noise(1, 3 * RATE)
    part = full[:, : 1600 * RATE // 1000]
    long_embeddings, long_timestamps = hear.get_timestamp_embeddings(full, model)
    embeddings, timestamps = hear.get_timestamp_embeddings(part, model)
    assert timestamps.shape == (1, 32) and torch.equal(timestamps[0], long_timestamps[0, :32])
    torch.testing.assert_close(embeddings[0, :30], long_embeddings[0, :30], atol=1e-6, rtol=0)  # measured 0
    assert (embeddings[0, 30:] - long_embeddings[0, 30:32]).abs().amax(dim=-1).min() > 1e-3


def test_every_timestamp_of_long_audio_is_filled(model):
    """The windows together write every timestamp (the output starts as NaN, so a gap would show)."""
    for num_samples in (WINDOW * 800 + 1, 3 * WINDOW * 800 + 799, 10 * RATE + 7):
        embeddings, timestamps = hear.get_timestamp_embeddings(noise(2, num_samples), model)
        assert torch.isfinite(embeddings).all()
        assert timestamps.shape[1] == int((1000 * num_samples / RATE - 7.5) // 50) + 1


def test_checkpoint_directory_gives_the_classifiers_encoder(checkpoint):
    directory, classifier = checkpoint
    model = hear.load_model(directory)
    assert isinstance(model, hear.ASTHearModel) and not model.encoder.training
    for name, value in classifier.ast.state_dict().items():
        assert torch.equal(model.encoder.state_dict()[name], value), name
    extractor = ASTFeatureExtractor.from_pretrained(directory)

    # Short sound: the clip embedding of the 64-frame padded input that the feature extractor and pipeline make.
    short = noise(2, 6000)
    with torch.no_grad():
        inputs = extractor(list(short), sampling_rate=RATE, return_tensors="pt")
        pooled = classifier.ast(**inputs).pooler_output
        logits = classifier(**inputs).logits
    scene = hear.get_scene_embeddings(short, model)
    torch.testing.assert_close(scene, pooled, atol=1e-6, rtol=0)  # measured 0
    torch.testing.assert_close(classifier.classifier(scene), logits, atol=1e-6, rtol=0)

    # 1.5 s = 148 frames: windows of frames [0, 64), [64, 128) and, moved back, [84, 148), each cut from the samples.
    long = noise(1, 24000, seed=4)
    with torch.no_grad():
        windows = [long[0, 160 * start : 160 * (start + 63) + 400] for start in (0, 64, 84)]
        inputs = extractor(windows, sampling_rate=RATE, return_tensors="pt")
        assert inputs["input_values"].shape[1] == 64
        expected = classifier.ast(**inputs).pooler_output.mean(dim=0)
    torch.testing.assert_close(hear.get_scene_embeddings(long, model)[0], expected, atol=1e-6, rtol=0)


def test_default_model_loads_the_published_transformers_checkpoint(loopback_hub):
    """load_model("") fetches DEFAULT_MODEL, here a tiny checkpoint in transformers' built-in format published under
    that id on the loopback Hub, converted on the fly."""
    config = tiny_builtin_config(**TINY, num_labels=3)
    torch.manual_seed(0)
    builtin = transformers.ASTForAudioClassification(config).eval()
    builtin.push_to_hub(hear.DEFAULT_MODEL)
    transformers.ASTFeatureExtractor(max_length=64).push_to_hub(hear.DEFAULT_MODEL)
    model = hear.load_model()
    spectrogram = torch.randn(2, 64, 128, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        expected = builtin.audio_spectrogram_transformer(spectrogram).pooler_output
        torch.testing.assert_close(model.encoder(spectrogram).pooler_output, expected, atol=1e-6, rtol=0)  # measured 0
    assert model.feature_extractor.max_length == 64 and model.sample_rate == RATE


@pytest.mark.parametrize(
    "audio, message",
    [
        (np.zeros((1, 16000), dtype=np.float32), "must be a torch.Tensor"),
        (torch.zeros(16000), r"\(n_sounds, n_samples\) mono audio"),
        (torch.zeros(1, 1, 16000), r"got shape \(1, 1, 16000\)"),
        (torch.zeros(0, 16000), "at least one sound"),
        (torch.zeros(2, 0), "at least one sound and one sample"),
        (torch.zeros(1, 16000, dtype=torch.int16), "got torch.int16 .divide int16 PCM by 32768"),
        (torch.tensor([[0.0, float("nan")] * 300, [0.0] * 600]), r"sounds \[0\] contain NaN"),
        (torch.tensor([[0.1] * 600, [3000.0] * 600]), r"sounds \[1\] peak at 3000; HEAR audio is float in \[-1, 1\]"),
    ],
)
def test_bad_audio_is_refused_with_what_hear_expects(model, audio, message):
    for function in (hear.get_timestamp_embeddings, hear.get_scene_embeddings):
        with pytest.raises(ValueError, match=message):
            function(audio, model)


def test_bad_models_are_refused(tmp_path, checkpoint):
    with pytest.raises(ValueError, match="ASTHearModel load_model returns"):
        hear.get_scene_embeddings(torch.zeros(1, 16000), torch.nn.Linear(2, 2))
    encoder = ASTModel(tiny_config(**TINY))
    with pytest.raises(ValueError, match="makes 64 mel bins but the model expects 128"):
        hear.ASTHearModel(encoder, ASTFeatureExtractor(num_mel_bins=64))
    with pytest.raises(ValueError, match="window_batch_size must be a positive integer"):
        hear.ASTHearModel(encoder, ASTFeatureExtractor(), window_batch_size=0)
    checkpoint[1].save_pretrained(tmp_path)  # weights without preprocessor_config.json
    with pytest.raises(ValueError, match="has no readable preprocessor_config.json"):
        hear.load_model(str(tmp_path))


def test_slight_overshoot_is_accepted_and_train_mode_keeps_the_encoder_in_eval(model):
    audio = noise(1, 8000, peak=1.5)  # what resampling can leave above full scale
    expected = hear.get_scene_embeddings(audio, model)
    model.train()
    assert model.training and not model.encoder.training
    torch.testing.assert_close(hear.get_scene_embeddings(audio, model), expected, atol=0, rtol=0)
    model.eval()
