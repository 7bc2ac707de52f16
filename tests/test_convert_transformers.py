"""transformers' built-in AST checkpoints load directly into our classes, and ours export to stock transformers,
with identical logits. The reference is always the live built-in model."""

import json

import pytest
import torch
import transformers
from safetensors.torch import save_file

from modeling_ast import ASTFeatureExtractor, ASTForAudioClassification, ASTModel
from modeling_ast.conversion.cli import convert_transformers_main
from modeling_ast.conversion.transformers_ast import convert_transformers_checkpoint, export_to_transformers
from tiny_models import randomized, tiny_builtin_config, tiny_config, tiny_model


def random_builtin(num_labels: int = 4) -> transformers.ASTForAudioClassification:
    return randomized(transformers.ASTForAudioClassification(tiny_builtin_config(num_labels=num_labels)))


def spectrogram(frames: int = 128) -> torch.Tensor:
    return torch.randn(2, frames, 128, generator=torch.Generator().manual_seed(1))


def assert_same_logits(ours: torch.nn.Module, theirs: torch.nn.Module, frames: int = 128, atol: float = 1e-6):
    inputs = spectrogram(frames)
    with torch.no_grad():
        torch.testing.assert_close(ours(inputs).logits, theirs(inputs).logits, atol=atol, rtol=0)


def test_legacy_on_disk_checkpoint_loads_directly(tmp_path):
    builtin = random_builtin()
    builtin.save_pretrained(tmp_path)  # transformers writes the legacy MIT key names on save
    stored = transformers.utils.cached_file(str(tmp_path), "model.safetensors")
    from safetensors import safe_open

    with safe_open(stored, "pt") as handle:
        assert any(".encoder.layer.0.attention.attention.query." in key for key in handle.keys())
    ours = ASTForAudioClassification.from_pretrained(tmp_path).eval()
    assert type(ours) is ASTForAudioClassification
    assert ours.config.layer_norm_eps == ours.config.head_layer_norm_eps == 1e-12
    assert_same_logits(ours, builtin)
    base = ASTModel.from_pretrained(tmp_path).eval()
    with torch.no_grad():
        torch.testing.assert_close(
            base(spectrogram()).pooler_output,
            builtin.audio_spectrogram_transformer(spectrogram()).pooler_output,
            atol=1e-6,
            rtol=0,
        )


def test_a_loaded_builtin_checkpoint_saves_in_our_layout(tmp_path):
    # The conversion happens on reading only: saving writes our keys and config, which load back without it.
    builtin = random_builtin()
    builtin.save_pretrained(tmp_path / "builtin")
    ours = ASTForAudioClassification.from_pretrained(tmp_path / "builtin").eval()
    ours.save_pretrained(tmp_path / "ours")
    from safetensors import safe_open

    with safe_open(str(tmp_path / "ours" / "model.safetensors"), "pt") as handle:
        assert set(handle.keys()) == set(ours.state_dict())
    assert json.loads((tmp_path / "ours" / "config.json").read_text())["model_type"] == "ast"
    assert_same_logits(ASTForAudioClassification.from_pretrained(tmp_path / "ours").eval(), builtin)


def test_config_arguments_apply_to_a_builtin_checkpoint(tmp_path):
    # A new head for fine-tuning: the config arguments reach the translated config, the encoder weights still load.
    builtin = random_builtin()
    builtin.save_pretrained(tmp_path)
    ours = ASTForAudioClassification.from_pretrained(tmp_path, num_labels=7, ignore_mismatched_sizes=True).eval()
    assert ours.config.num_labels == 7 and ours.classifier.fc.weight.shape == (7, 32)
    assert ours.config._name_or_path == str(tmp_path)
    with torch.no_grad():
        torch.testing.assert_close(
            ours.ast(spectrogram()).pooler_output,
            builtin.audio_spectrogram_transformer(spectrogram()).pooler_output,
            atol=1e-6,
            rtol=0,
        )


def test_in_memory_5x_names_and_pickled_weights_load(tmp_path):
    builtin = random_builtin()
    builtin.config.save_pretrained(tmp_path)
    names = list(builtin.state_dict())
    if not any(".layers.0.attention.q_proj." in name for name in names):  # the 5.2x in-memory spelling
        pytest.skip(f"transformers {transformers.__version__} keeps the legacy names in memory")
    torch.save(builtin.state_dict(), tmp_path / "pytorch_model.bin")
    ours = ASTForAudioClassification.from_pretrained(tmp_path).eval()
    assert_same_logits(ours, builtin)


def test_sharded_checkpoint_loads(tmp_path):
    builtin = random_builtin()
    builtin.save_pretrained(tmp_path, max_shard_size="20KB")
    assert (tmp_path / "model.safetensors.index.json").is_file()
    assert_same_logits(ASTForAudioClassification.from_pretrained(tmp_path).eval(), builtin)


def test_audioset_checkpoints_become_multi_label_and_keep_extractor_settings(tmp_path):
    builtin = random_builtin(num_labels=527)
    builtin.save_pretrained(tmp_path)
    transformers.ASTFeatureExtractor(max_length=128, mean=-6.845978, std=5.5654526).save_pretrained(tmp_path)
    ours = ASTForAudioClassification.from_pretrained(tmp_path)
    assert ours.config.problem_type == "multi_label_classification"
    extractor = ASTFeatureExtractor.from_pretrained(tmp_path)
    assert (extractor.max_length, extractor.mean, extractor.std) == (128, -6.845978, 5.5654526)


def test_unknown_keys_are_listed(tmp_path):
    builtin = random_builtin()
    builtin.config.save_pretrained(tmp_path)
    weights = dict(builtin.state_dict())
    weights["audio_spectrogram_transformer.encoder.layer.0.extra.weight"] = torch.zeros(3)
    save_file({key: value.contiguous() for key, value in weights.items()}, tmp_path / "model.safetensors")
    with pytest.raises(ValueError, match=r"not part of transformers' AST layout: \['audio_spectrogram_transformer"):
        ASTForAudioClassification.from_pretrained(tmp_path)
    output = tmp_path / "converted"
    with pytest.raises(ValueError):
        convert_transformers_checkpoint(tmp_path, output)
    assert not output.exists()  # nothing half-written
    assert not [path for path in tmp_path.iterdir() if path.name.startswith(".converted")]


def test_export_loads_in_stock_transformers_with_identical_logits(tmp_path):
    config = tiny_config(id2label={0: "a", 1: "b", 2: "c"}, problem_type="multi_label_classification",
                         layer_norm_eps=1e-6, head_layer_norm_eps=1e-6)
    ours = randomized(ASTForAudioClassification(config), seed=3)
    export_to_transformers(ours, tmp_path / "export", feature_extractor=ASTFeatureExtractor(max_length=128))
    stock = transformers.AutoModelForAudioClassification.from_pretrained(tmp_path / "export").eval()
    assert type(stock) is transformers.ASTForAudioClassification
    assert stock.config.problem_type == "multi_label_classification"
    assert stock.config.id2label == {0: "a", 1: "b", 2: "c"}
    assert_same_logits(stock, ours, atol=1e-6)
    stock_extractor = transformers.AutoFeatureExtractor.from_pretrained(tmp_path / "export")
    assert type(stock_extractor) is transformers.ASTFeatureExtractor
    assert stock_extractor.max_length == 128


def test_export_of_original_eps_model_changes_logits_only_slightly(tmp_path):
    # The original model's head LayerNorm uses 1e-5, the built-in one eps for all: measured, not assumed.
    ours = tiny_model(num_labels=3)
    export_to_transformers(ours, tmp_path / "export")
    stock = transformers.AutoModelForAudioClassification.from_pretrained(tmp_path / "export").eval()
    assert stock.config.layer_norm_eps == 1e-6
    assert_same_logits(stock, ours, atol=1e-4)


def run_cli(*argv: str) -> None:
    """Run ast-convert-transformers in this process (a subprocess would re-import torch); raise on failure."""
    assert convert_transformers_main(list(argv)) == 0


def test_cli_round_trip(tmp_path, capsys):
    builtin = random_builtin()
    builtin.save_pretrained(tmp_path / "builtin")
    transformers.ASTFeatureExtractor(max_length=128).save_pretrained(tmp_path / "builtin")
    for direction, source, target in [("import", "builtin", "ours"), ("export", "ours", "back")]:
        run_cli(direction, str(tmp_path / source), str(tmp_path / target))
    assert json.loads((tmp_path / "ours" / "config.json").read_text())["model_type"] == "ast"
    assert "feature_extractor_type" not in json.loads((tmp_path / "ours" / "preprocessor_config.json").read_text())
    back = transformers.AutoModelForAudioClassification.from_pretrained(tmp_path / "back").eval()
    assert_same_logits(back, builtin)
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_info:
        run_cli("--help")
    assert exit_info.value.code == 0
    help_text = capsys.readouterr().out
    assert "import: built-in -> ours" in help_text and "export" in help_text
