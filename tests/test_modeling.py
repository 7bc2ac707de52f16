"""ASTConfig and the AST models: parity with transformers' built-in AST, any-length inputs, padding masks, losses,
attention implementations, saving and loading, and bad input."""

import json

import pytest
import torch
import torch.nn.functional as F
import transformers
from transformers.utils import is_flash_attn_2_available, is_torch_flex_attn_available

from modeling_ast import ASTConfig, ASTForAudioClassification, ASTModel
from modeling_ast.conversion.layouts import from_transformers_ast
from modeling_ast.modeling_ast import class_scores
from tiny_models import randomized, tiny_builtin_config
from tiny_models import tiny_config as shared_tiny_config

# Every attention implementation that runs on this machine's CPU.
CPU_ATTENTION = [
    "eager",
    "sdpa",
    pytest.param(
        "flex_attention", marks=pytest.mark.skipif(not is_torch_flex_attn_available(), reason="no flex attention")
    ),
]


def tiny_config(**overrides) -> ASTConfig:
    """The shared tiny config with 5 labels, which the shapes and label names below assume."""
    return shared_tiny_config(**{"num_labels": 5, **overrides})


def spectrogram(batch: int, frames: int, seed: int = 1) -> torch.Tensor:
    return torch.randn(batch, frames, 128, generator=torch.Generator().manual_seed(seed))


# ---------------------------------------------------------------- config


def test_config_round_trip_keeps_every_field(tmp_path):
    config = ASTConfig(
        max_length=128,
        frequency_stride=12,
        time_stride=14,
        layer_norm_eps=1e-6,
        head_layer_norm_eps=1e-5,
        id2label={0: "dog", 1: "cat"},
        problem_type="multi_label_classification",
    )
    config.save_pretrained(tmp_path)
    stored = json.loads((tmp_path / "config.json").read_text())
    assert stored["model_type"] == "ast"
    assert stored["max_length"] == 128
    loaded = transformers.AutoConfig.from_pretrained(tmp_path)
    assert type(loaded) is ASTConfig
    for name in ("max_length", "frequency_stride", "time_stride", "layer_norm_eps", "head_layer_norm_eps", "problem_type"):
        assert getattr(loaded, name) == getattr(config, name), name
    assert loaded.id2label == {0: "dog", 1: "cat"}
    assert loaded.label2id == {"dog": 0, "cat": 1}


def test_config_defaults_are_the_paper_model():
    config = ASTConfig()
    assert (config.hidden_size, config.num_hidden_layers, config.num_attention_heads, config.intermediate_size) == (
        768,
        12,
        12,
        3072,
    )
    assert (config.patch_size, config.frequency_stride, config.time_stride) == (16, 10, 10)
    assert (config.num_mel_bins, config.max_length) == (128, 1024)
    assert (config.layer_norm_eps, config.head_layer_norm_eps) == (1e-6, 1e-5)
    assert config.patch_grid == (12, 101)
    assert ASTConfig(max_length=128).patch_grid == (12, 12)
    assert ASTConfig(frequency_stride=16, time_stride=16).patch_grid == (8, 64)


def test_base_model_parameter_count_matches_the_original_without_imagenet_heads():
    # 88,132,063 in the original 527-label model, minus its two unused 1000-class ImageNet heads (2 x 769,000).
    model = ASTForAudioClassification(ASTConfig(num_labels=527))
    assert sum(p.numel() for p in model.parameters()) == 88_132_063 - 2 * (768 * 1000 + 1000)


@pytest.mark.parametrize(
    "overrides, message",
    [
        (dict(hidden_size=30), "multiple of num_attention_heads"),
        (dict(time_stride=0), "time_stride must be a positive integer"),
        (dict(max_length=8), r"max_length \(8\) must be at least patch_size"),
        (dict(num_mel_bins=12), r"num_mel_bins \(12\) must be at least patch_size"),
    ],
)
def test_config_rejects_impossible_geometry(overrides, message):
    with pytest.raises(ValueError, match=message):
        tiny_config(**overrides)


# ---------------------------------------------------------------- parity with transformers' AST


def builtin_twin(our_config_overrides: dict, max_length: int):
    """A random built-in AST and our model carrying the same weights (copied through the key translation)."""
    builtin_config = tiny_builtin_config(max_length=max_length, num_labels=5, layer_norm_eps=1e-6)
    builtin = randomized(transformers.ASTForAudioClassification(builtin_config))
    ours = ASTForAudioClassification(
        tiny_config(max_length=max_length, layer_norm_eps=1e-6, head_layer_norm_eps=1e-6, **our_config_overrides)
    ).eval()
    state_dict, unknown = from_transformers_ast(builtin.state_dict())
    assert unknown == []
    ours.load_state_dict(state_dict, strict=True)
    return builtin, ours


def test_logits_equal_builtin_ast_at_native_length():
    builtin, ours = builtin_twin({}, max_length=1024)
    inputs = spectrogram(2, 1024)
    with torch.no_grad():
        expected = builtin(inputs).logits
        actual = ours(inputs).logits
    assert expected.abs().max() > 0.1  # the weights are not degenerate
    torch.testing.assert_close(actual, expected, atol=1e-4, rtol=0)


def test_shorter_input_uses_the_first_columns_of_the_positional_grid():
    # The built-in AST cannot change length: give it a 300-frame grid made of the first columns of the 1024 one.
    builtin, ours = builtin_twin({}, max_length=1024)
    state_dict = dict(builtin.state_dict())
    key = "audio_spectrogram_transformer.embeddings.position_embeddings"
    pos = state_dict[key]  # (1, 2 + 12 * 101, D)
    first_columns = pos[:, 2:].unflatten(1, (12, 101))[:, :, :29]  # 300 frames -> 29 time patches
    state_dict[key] = torch.cat([pos[:, :2], first_columns.flatten(1, 2)], dim=1)
    short_config = tiny_builtin_config(max_length=300, num_labels=5, layer_norm_eps=1e-6)
    short_builtin = transformers.ASTForAudioClassification(short_config).eval()
    short_builtin.load_state_dict(state_dict)
    inputs = spectrogram(2, 300)
    with torch.no_grad():
        torch.testing.assert_close(ours(inputs).logits, short_builtin(inputs).logits, atol=1e-4, rtol=0)


def test_longer_input_interpolates_the_positional_grid_along_time():
    model = randomized(ASTModel(tiny_config(max_length=128)))
    embeddings = model.embeddings
    native = embeddings.pos_embed[0, 2:].unflatten(0, (12, 12))  # (f, t0, D)
    assert torch.equal(embeddings.patch_position_grid(12), native)  # native length: no adaptation at all
    stretched = embeddings.patch_position_grid(30)
    # Independent reference: per (frequency row, channel), linear interpolation with half-pixel centres.
    source = (torch.arange(30) + 0.5) * 12 / 30 - 0.5
    source = source.clamp(min=0)
    left = source.floor().long().clamp(max=11)
    right = (left + 1).clamp(max=11)
    weight = (source - left)[None, :, None]
    expected = native[:, left] * (1 - weight) + native[:, right] * weight
    torch.testing.assert_close(stretched, expected, atol=1e-5, rtol=0)
    assert model(spectrogram(1, 316)).last_hidden_state.shape == (1, 2 + 12 * 31, 32)


@pytest.mark.parametrize("frames", [16, 98, 128, 498, 1024, 1500])
def test_any_length_runs(frames):
    model = randomized(ASTForAudioClassification(tiny_config(max_length=1024)))
    with torch.no_grad():
        output = model(spectrogram(2, frames), output_hidden_states=True)
    time_patches = (frames - 16) // 10 + 1
    assert output.logits.shape == (2, 5)
    assert output.hidden_states[-1].shape == (2, 2 + 12 * time_patches, 32)
    assert torch.isfinite(output.logits).all()


# ---------------------------------------------------------------- padding masks


@pytest.mark.parametrize("attn_implementation", CPU_ATTENTION)
@pytest.mark.parametrize("max_length", [1024, 128])  # 128: some clips are longer than the grid (interpolated)
def test_each_clip_of_a_padded_batch_gives_its_solo_logits(max_length, attn_implementation):
    model = randomized(
        ASTForAudioClassification(tiny_config(max_length=max_length, attn_implementation=attn_implementation))
    )
    assert model.config._attn_implementation == attn_implementation
    lengths = [98, 300, 16, 211]
    clips = [spectrogram(1, n, seed=n)[0] for n in lengths]
    longest = max(lengths)
    batch = torch.zeros(len(clips), longest, 128)
    mask = torch.zeros(len(clips), longest, dtype=torch.long)
    for index, clip in enumerate(clips):
        batch[index, : len(clip)] = clip
        mask[index, : len(clip)] = 1
    with torch.no_grad():
        batched = model(batch, attention_mask=mask).logits
        solo = torch.cat([model(clip[None]).logits for clip in clips])
    torch.testing.assert_close(batched, solo, atol=1e-5, rtol=0)


def test_padding_content_never_reaches_real_tokens():
    model = randomized(ASTForAudioClassification(tiny_config()))
    batch = spectrogram(2, 200)
    mask = torch.ones(2, 200, dtype=torch.long)
    mask[0, 120:] = 0
    garbage = batch.clone()
    garbage[0, 120:] = 1e3 * torch.randn(80, 128)
    with torch.no_grad():
        clean = model(batch, attention_mask=mask, output_hidden_states=True)
        dirty = model(garbage, attention_mask=mask, output_hidden_states=True)
    torch.testing.assert_close(clean.logits, dirty.logits, atol=1e-6, rtol=0)
    real_patches = (120 - 16) // 10 + 1  # patches 0..10 of clip 0 see only real frames
    tokens = torch.cat([torch.arange(2), 2 + (torch.arange(12)[:, None] * 19 + torch.arange(real_patches)).flatten()])
    torch.testing.assert_close(
        clean.hidden_states[-1][0, tokens], dirty.hidden_states[-1][0, tokens], atol=1e-6, rtol=0
    )


def test_clip_shorter_than_a_patch_keeps_its_first_patch():
    # 10 real frames padded to 64: the clip is read as its first 16 frames (6 of them padding), alone or in a batch.
    model = randomized(ASTForAudioClassification(tiny_config()))
    batch = spectrogram(2, 64)
    mask = torch.ones(2, 64, dtype=torch.long)
    mask[1, 10:] = 0
    with torch.no_grad():
        batched = model(batch, attention_mask=mask).logits
        alone = model(batch[1:, :16]).logits
    torch.testing.assert_close(batched[1], alone[0], atol=1e-5, rtol=0)


def test_full_mask_equals_no_mask():
    model = randomized(ASTForAudioClassification(tiny_config()))
    inputs = spectrogram(2, 128)
    with torch.no_grad():
        torch.testing.assert_close(
            model(inputs, attention_mask=torch.ones(2, 128)).logits, model(inputs).logits, atol=0, rtol=0
        )


# ---------------------------------------------------------------- attention, hidden states, checkpointing


def test_eager_and_sdpa_agree_and_eager_returns_attention_maps():
    config = tiny_config()
    sdpa = randomized(ASTForAudioClassification(config))
    eager = ASTForAudioClassification(tiny_config(attn_implementation="eager")).eval()
    eager.load_state_dict(sdpa.state_dict())
    assert eager.config._attn_implementation == "eager"
    inputs = spectrogram(2, 128)
    mask = torch.ones(2, 128)
    mask[1, 60:] = 0
    with torch.no_grad():
        out_sdpa = sdpa(inputs, attention_mask=mask)
        out_eager = eager(inputs, attention_mask=mask, output_attentions=True, output_hidden_states=True)
    torch.testing.assert_close(out_sdpa.logits, out_eager.logits, atol=1e-5, rtol=0)
    tokens = 2 + 12 * 12
    assert len(out_eager.attentions) == 2 and out_eager.attentions[0].shape == (2, 4, tokens, tokens)
    torch.testing.assert_close(out_eager.attentions[0].sum(-1), torch.ones(2, 4, tokens))
    # clip 1 has (60 - 16) // 10 + 1 = 5 real time patches: no query attends to the columns after them
    key_grid = out_eager.attentions[0][1, :, :, 2:].reshape(4, tokens, 12, 12)
    assert key_grid[..., 5:].abs().max() == 0
    assert key_grid[..., :5].abs().min() > 0
    assert len(out_eager.hidden_states) == 3  # embeddings + one per block


def test_set_attn_implementation_switches_the_attention_in_place():
    model = randomized(ASTForAudioClassification(tiny_config()))
    assert model.config._attn_implementation == "sdpa"
    inputs = spectrogram(2, 128)
    mask = torch.ones(2, 128)
    mask[0, 70:] = 0
    with torch.no_grad():
        # asking for attentions keeps the one padded batch (not length groups), as the calls below do
        reference = model(inputs, attention_mask=mask, output_attentions=True).logits
        model.set_attn_implementation("eager")
        assert model.config._attn_implementation == model.ast.config._attn_implementation == "eager"
        eager = model(inputs, attention_mask=mask, output_attentions=True)
        model.set_attn_implementation("sdpa")
        assert model.config._attn_implementation == "sdpa"
        sdpa = model(inputs, attention_mask=mask, output_attentions=True)
    assert len(eager.attentions) == 2 and eager.attentions[1].shape == (2, 4, 2 + 12 * 12, 2 + 12 * 12)
    assert not sdpa.attentions  # SDPA computes no probabilities (transformers warns and returns none)
    torch.testing.assert_close(eager.logits, reference, atol=5e-7, rtol=0)  # measured 1.2e-7
    torch.testing.assert_close(sdpa.logits, reference, atol=0, rtol=0)


@pytest.mark.skipif(is_flash_attn_2_available(), reason="flash-attn is installed: the model would load with it")
def test_flash_attention_2_is_refused_only_for_want_of_the_package():
    # The model supports it (transformers checks the package, not the model); without flash-attn that is the error.
    with pytest.raises(ImportError, match="(?i)flash"):
        ASTForAudioClassification(tiny_config(attn_implementation="flash_attention_2"))


def test_gradient_checkpointing_gives_the_same_gradients():
    model = randomized(ASTForAudioClassification(tiny_config(problem_type="single_label_classification")))
    model.train()
    inputs, labels = spectrogram(2, 64), torch.tensor([1, 3])

    def gradients() -> dict[str, torch.Tensor]:
        model.zero_grad()
        model(inputs, labels=labels).loss.backward()
        return {name: p.grad.clone() for name, p in model.named_parameters()}

    plain = gradients()
    # transformers >= 5.2x renamed the method; 5.0 only has the old name
    getattr(model, "activation_checkpointing_enable", model.gradient_checkpointing_enable)()
    assert all(block.gradient_checkpointing for block in model.ast.blocks)
    checkpointed = gradients()
    for name in plain:
        torch.testing.assert_close(checkpointed[name], plain[name], atol=1e-6, rtol=1e-5, msg=name)


def test_return_dict_false_gives_tuples():
    model = randomized(ASTForAudioClassification(tiny_config()))
    with torch.no_grad():
        loss, logits = model(spectrogram(2, 64), labels=torch.tensor([0, 4]), return_dict=False)
        as_dict = model(spectrogram(2, 64), labels=torch.tensor([0, 4]))
    torch.testing.assert_close(logits, as_dict.logits)
    torch.testing.assert_close(loss, as_dict.loss)


# ---------------------------------------------------------------- losses


def test_losses_follow_problem_type():
    inputs = spectrogram(3, 64)
    multi = randomized(ASTForAudioClassification(tiny_config(problem_type="multi_label_classification")))
    targets = torch.tensor([[1, 0, 0, 1, 0], [0, 0, 0, 0, 0], [0.3, 0.7, 0, 0, 1]])
    with torch.no_grad():
        output = multi(inputs, labels=targets)
    expected = -(targets * F.logsigmoid(output.logits) + (1 - targets) * F.logsigmoid(-output.logits)).mean()
    torch.testing.assert_close(output.loss, expected)

    single = randomized(ASTForAudioClassification(tiny_config()))
    labels = torch.tensor([4, 0, 2])
    with torch.no_grad():
        output = single(inputs, labels=labels)
    assert single.config.problem_type == "single_label_classification"  # inferred from integer labels
    expected = -output.logits.log_softmax(-1)[torch.arange(3), labels].mean()
    torch.testing.assert_close(output.loss, expected)

    soft = torch.tensor([[0.7, 0.3, 0, 0, 0], [0, 0, 1.0, 0, 0], [0.5, 0, 0, 0, 0.5]])  # mixup-style targets
    with torch.no_grad():
        output = single(inputs, labels=soft)
    torch.testing.assert_close(output.loss, -(soft * output.logits.log_softmax(-1)).sum(-1).mean())

    regression = randomized(ASTForAudioClassification(tiny_config(num_labels=1)))
    values = torch.tensor([0.5, -1.0, 2.0])
    with torch.no_grad():
        output = regression(inputs, labels=values)
    assert regression.config.problem_type == "regression"
    torch.testing.assert_close(output.loss, ((output.logits[:, 0] - values) ** 2).mean())


def test_class_scores_follow_problem_type_and_reject_unknown_functions():
    logits = torch.tensor([[2.0, -1.0, 0.5]])
    torch.testing.assert_close(class_scores(logits, "multi_label_classification"), 1 / (1 + torch.exp(-logits)))
    torch.testing.assert_close(class_scores(logits, "single_label_classification"),
                               torch.exp(logits) / torch.exp(logits).sum())
    torch.testing.assert_close(class_scores(logits, None), torch.exp(logits) / torch.exp(logits).sum())
    assert torch.equal(class_scores(logits, "regression"), logits)
    assert torch.equal(class_scores(logits, "multi_label_classification", "none"), logits)
    with pytest.raises(ValueError, match="function_to_apply must be"):
        class_scores(logits, None, "relu")


def test_bad_labels_are_named():
    single = randomized(ASTForAudioClassification(tiny_config(problem_type="single_label_classification")))
    with pytest.raises(ValueError, match="integer class indices"):
        single(spectrogram(2, 64), labels=torch.rand(2))
    with pytest.raises(ValueError, match="integer class indices"):
        single(spectrogram(2, 64), labels=torch.rand(2, 3))
    multi = randomized(ASTForAudioClassification(tiny_config(problem_type="multi_label_classification")))
    with pytest.raises(ValueError, match=r"\(batch, num_labels=5\) targets"):
        multi(spectrogram(2, 64), labels=torch.rand(2, 3))


# ---------------------------------------------------------------- saving and loading


def test_save_and_load_round_trip_through_auto_classes(tmp_path):
    model = randomized(ASTForAudioClassification(tiny_config(id2label={i: f"c{i}" for i in range(5)})))
    model.save_pretrained(tmp_path)
    assert (tmp_path / "model.safetensors").is_file()
    assert not list(tmp_path.glob("*.bin"))
    loaded = transformers.AutoModelForAudioClassification.from_pretrained(tmp_path).eval()
    assert type(loaded) is ASTForAudioClassification
    base = transformers.AutoModel.from_pretrained(tmp_path).eval()
    assert type(base) is ASTModel
    inputs = spectrogram(2, 128)
    with torch.no_grad():
        torch.testing.assert_close(loaded(inputs).logits, model(inputs).logits, atol=0, rtol=0)
        torch.testing.assert_close(base(inputs).pooler_output, model.ast(inputs).pooler_output, atol=0, rtol=0)
    assert loaded.config.id2label[3] == "c3"


def test_from_pretrained_takes_a_config_and_a_state_dict_without_a_path():
    source = randomized(ASTForAudioClassification(tiny_config()))
    loaded = ASTForAudioClassification.from_pretrained(None, config=source.config, state_dict=source.state_dict())
    assert type(loaded) is ASTForAudioClassification
    for (name, expected), actual in zip(source.state_dict().items(), loaded.state_dict().values()):
        assert torch.equal(expected, actual), name


def test_loaded_weights_are_not_reinitialised(tmp_path):
    model = randomized(ASTForAudioClassification(tiny_config()))
    model.save_pretrained(tmp_path)
    loaded = ASTForAudioClassification.from_pretrained(tmp_path)
    for (name, expected), actual in zip(model.state_dict().items(), loaded.state_dict().values()):
        assert torch.equal(expected, actual), name


# ---------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    "inputs, mask, message",
    [
        (torch.randn(128, 128), None, r"\(batch, frames, mel_bins\) spectrogram, got shape \(128, 128\)"),
        (torch.randn(1, 128, 64), None, "has 64 mel bins in its last axis; this model expects 128"),
        (torch.randn(1, 10, 128), None, "has 10 frames; AST needs at least patch_size=16"),
        (torch.randn(2, 64, 128), torch.tensor([[1] * 64, [0] * 10 + [1] * 54]), "right padding"),
        (torch.randn(2, 64, 128), torch.tensor([[1] * 64, [0] * 64]), r"clips \[1\] have no real frame"),
        # the mask must have one entry per frame of each clip: no broadcasting over the batch, no other length
        (torch.randn(2, 24, 128), torch.tensor([[1] * 20 + [0] * 4]), r"attention_mask has shape \(1, 24\); it must "
         r"be \(batch, frames\) = \(2, 24\)"),
        (torch.randn(2, 24, 128), torch.tensor([[1] * 90 + [0] * 8] * 2), r"attention_mask has shape \(2, 98\)"),
        (torch.randn(2, 24, 128), torch.tensor([[1] * 20] * 2), r"attention_mask has shape \(2, 20\)"),
        (torch.randn(2, 24, 128), torch.ones(2, 24, 1), r"attention_mask has shape \(2, 24, 1\)"),
    ],
)
def test_bad_input_is_named(inputs, mask, message):
    model = ASTForAudioClassification(tiny_config())
    with pytest.raises(ValueError, match=message):
        model(inputs, attention_mask=mask)


# ---------------------------------------------------------------- embeddings and compilation


def test_embed_returns_clip_and_gridded_patch_embeddings():
    model = randomized(ASTModel(tiny_config(max_length=128)))
    inputs = spectrogram(2, 200)
    mask = torch.ones(2, 200, dtype=torch.long)
    mask[1, 90:] = 0
    with torch.no_grad():
        embedded = model.embed(inputs, attention_mask=mask)
        plain = model(inputs, attention_mask=mask)
    assert embedded.clip_embedding.shape == (2, 32)
    assert embedded.patch_embeddings.shape == (2, 12, 19, 32)  # f = 12, t = (200 - 16) // 10 + 1
    torch.testing.assert_close(embedded.clip_embedding, plain.pooler_output, atol=0, rtol=0)
    # token 2 + fi * t + ti is patch (fi, ti)
    torch.testing.assert_close(embedded.patch_embeddings[:, 3, 7], plain.last_hidden_state[:, 2 + 3 * 19 + 7])
    assert embedded.patch_mask[0].all() and embedded.patch_mask[1].sum() == (90 - 16) // 10 + 1
    assert model.embed(spectrogram(1, 50)).patch_mask is None


@pytest.mark.parametrize("backend", ["aot_eager", "inductor"])
def test_forward_compiles_without_graph_breaks_at_fixed_and_varying_lengths(backend):
    model = randomized(ASTForAudioClassification(tiny_config(max_length=128)))
    compiled = torch.compile(model, fullgraph=True, dynamic=backend == "aot_eager", backend=backend)
    lengths = [128, 64, 300] if backend == "aot_eager" else [128]
    with torch.no_grad():
        for frames in lengths:
            inputs = spectrogram(2, frames, seed=frames)
            torch.testing.assert_close(compiled(inputs).logits, model(inputs).logits, atol=1e-5, rtol=0)


# ---------------------------------------------------------------- patchout


def test_patchout_drops_patches_in_training_only():
    config = tiny_config(max_length=128, patchout_time=5, patchout_frequency=4, patchout_random=0.25)
    model = randomized(ASTModel(config))
    reference = randomized(ASTModel(tiny_config(max_length=128)))
    inputs = spectrogram(2, 128)
    with torch.no_grad():
        torch.testing.assert_close(model(inputs).last_hidden_state, reference(inputs).last_hidden_state)
    model.train()
    torch.manual_seed(0)
    tokens = model(inputs).last_hidden_state
    assert tokens.shape == (2, 2 + round((12 - 4) * (12 - 5) * 0.75), 32)
    torch.manual_seed(0)
    torch.testing.assert_close(model(inputs).last_hidden_state, tokens)  # reproducible under a seed


def test_patchout_keeps_positions_of_the_kept_patches():
    # Frequency patchout only, no dropout: the kept rows must equal those rows of the full forward in block 0's
    # input, i.e. embeddings are selected after positions are added.
    model = randomized(ASTModel(tiny_config(max_length=128, patchout_frequency=11)))
    inputs = spectrogram(1, 128)
    with torch.no_grad():
        full = model(inputs, output_hidden_states=True).hidden_states[0]
        model.train()
        torch.manual_seed(3)
        kept = model(inputs, output_hidden_states=True).hidden_states[0]
    assert kept.shape == (1, 2 + 12, 32)
    rows = full[0, 2:].unflatten(0, (12, 12))
    assert any(torch.equal(kept[0, 2:], rows[row]) for row in range(12))
    torch.testing.assert_close(kept[0, :2], full[0, :2])


def test_patchout_trains_with_padding_masks():
    model = randomized(ASTForAudioClassification(
        tiny_config(max_length=128, patchout_time=3, problem_type="single_label_classification")
    )).train()
    mask = torch.ones(2, 128)
    mask[1, 50:] = 0
    loss = model(spectrogram(2, 128), attention_mask=mask, labels=torch.tensor([1, 2])).loss
    loss.backward()
    assert torch.isfinite(loss) and model.ast.embeddings.pos_embed.grad.abs().sum() > 0


def test_patchout_settings_are_validated():
    with pytest.raises(ValueError, match="patchout_random is a fraction"):
        tiny_config(patchout_random=1.0)
    with pytest.raises(ValueError, match="patchout_time must be a non-negative integer"):
        tiny_config(patchout_time=-1)


# ---------------------------------------------------------------- reduced precision


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_half_precision_inference_follows_float32(dtype):
    # Weights of std 0.5 make the logits (up to ~2.8) depend on the input; clip 1 has another spectral shape and the
    # masked tail of clip 0 is a loud plateau, so ignoring the mask, feeding zeros or pooling only [CLS] each move the
    # logits by far more than the tolerance (checked below, so the comparison can fail).
    model = randomized(ASTForAudioClassification(tiny_config(max_length=128)), std=0.5)
    half = randomized(ASTForAudioClassification(tiny_config(max_length=128)), std=0.5).to(dtype)
    inputs = spectrogram(2, 200)
    inputs[1] = inputs[1] * 0.3 + torch.linspace(-3, 3, 128)
    inputs[0, 120:] = 4.0
    mask = torch.ones(2, 200)
    mask[0, 120:] = 0
    with torch.no_grad():
        expected = model(inputs, attention_mask=mask).logits
        actual = half(inputs.to(dtype), attention_mask=mask).logits
        wrong = {
            "mask ignored": model(inputs).logits,
            "zeros fed": model(torch.zeros_like(inputs), attention_mask=mask).logits,
            "[CLS] only": model.classifier(model.ast(inputs, attention_mask=mask).last_hidden_state[:, 0]),
        }
    assert actual.dtype == dtype
    # 4 unit roundoffs (bf16 2^-8, fp16 2^-11) of the largest logit: 0.044 (bf16) and 0.0056 (fp16); the errors
    # measured are 0.017 and 0.0023
    atol = 4 * torch.finfo(dtype).eps / 2 * expected.abs().max().item()
    torch.testing.assert_close(actual.float(), expected, atol=atol, rtol=0)
    assert (expected[0] - expected[1]).abs().max() > 10 * atol
    for name, logits in wrong.items():
        assert (logits - expected).abs().max() > 3 * atol, name
