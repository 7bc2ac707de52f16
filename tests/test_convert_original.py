"""Converting the AST authors' released .pth checkpoints: parity with their own model code (stored fixture), shape and
stride inference for every released layout, labels, dataset presets, pipeline scores, the CLI, and bad input."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import transformers
from safetensors.torch import load_file

import modeling_ast  # noqa: F401  (registers model_type "ast")
from modeling_ast import ASTFeatureExtractor, ASTForAudioClassification
from modeling_ast.conversion import common
from entry_points import entry_point_command
from modeling_ast.conversion.cli import convert_original_main
from modeling_ast.conversion.original import convert_original_checkpoint, inspect_original_checkpoint, original_to_ours
from modeling_ast.conversion.original_report import parse_reported_metric
from original_layout import analytic_state_dict, checksum, original_shapes, random_state_dict

REPO_ROOT = Path(__file__).resolve().parents[1]
FIXTURE = Path(__file__).parent / "fixtures" / "original_ast_reference.npz"
EXPECTED_FILES = {"config.json", "model.safetensors", "preprocessor_config.json", "README.md"}
TINY_HIDDEN = 64  # smallest DeiT-like width whose head count (64 per head) is still inferred
PARITY_TOLERANCE = 5e-6  # float32 noise against the authors' model is 1.2e-6 (1.7e-6 against float64)


@pytest.fixture(autouse=True, scope="module")
def single_thread():
    """The models here are tiny: one thread is as fast, and far faster when other jobs share the two cores."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def write_checkpoint(
    directory: Path,
    name: str,
    positions: int,
    num_labels: int,
    hidden_size: int = TINY_HIDDEN,
    num_layers: int = 1,
    edit=None,
) -> Path:
    """Save a random original-format state dict (with `module.`) of `positions` positional rows as directory/name."""
    state_dict = random_state_dict(original_shapes(hidden_size, num_layers, num_labels, positions - 2))
    if edit is not None:
        edit(state_dict)
    path = directory / name
    torch.save(state_dict, path)
    return path


def assert_nothing_written(output_dir: Path) -> None:
    assert not output_dir.exists()
    leftovers = [path.name for path in output_dir.parent.iterdir() if path.name.startswith(f".{output_dir.name}.")]
    assert leftovers == []


# ------------------------------------------------------------------------------------- parity with the original


@pytest.fixture(scope="module")
def reference() -> dict:
    with np.load(FIXTURE) as data:
        return {key: data[key] for key in data.files}


@pytest.fixture(scope="module")
def converted_reference(reference, tmp_path_factory) -> dict[str, Path]:
    """The fixture's analytic weights, saved as original .pth files and converted with our converter."""
    directory = tmp_path_factory.mktemp("original_reference")
    outputs = {}
    for name in ("s10_t128", "s12_t256"):
        spec = json.loads(str(reference[f"{name}_config"]))
        frequency = (128 - 16) // spec["fstride"] + 1
        time = (spec["input_tdim"] - 16) // spec["tstride"] + 1
        shapes = original_shapes(spec["hidden_size"], spec["num_layers"], spec["label_dim"], frequency * time)
        state_dict = analytic_state_dict(shapes)  # "module." keys, as the authors' DataParallel saved them
        assert checksum(state_dict) == pytest.approx(float(reference[f"{name}_checksum"]), rel=1e-12)
        path = directory / f"{name}.pth"
        torch.save(state_dict, path)
        if name == "s10_t128":  # 144 patches: the Speech Commands layout, inferred from the shapes
            kwargs = {"dataset": "speechcommands"}
        else:  # 210 patches is no released layout: geometry given explicitly
            kwargs = {"dataset": "audioset", "frequency_stride": 12, "time_stride": 12, "max_length": 256}
        outputs[name] = convert_original_checkpoint(path, directory / name, **kwargs).output_dir
    return outputs


@pytest.mark.parametrize("name", ["s10_t128", "s12_t256"])
def test_converted_model_matches_the_authors_code(reference, converted_reference, name):
    """Max |logit difference| to the authors' ASTModel on the same fbank, measured 1.2e-6 against its float32 run and
    1.7e-6 against its float64 run (logits of about 1.5): allowed 5e-6, so that the head's LayerNorm eps (1e-5 in the
    original) matters — 1e-6 there moves the logits by 8e-6."""
    spec = json.loads(str(reference[f"{name}_config"]))
    model = ASTForAudioClassification.from_pretrained(converted_reference[name]).eval()
    config = model.config
    assert (config.frequency_stride, config.time_stride, config.max_length) == (
        spec["fstride"], spec["tstride"], spec["input_tdim"]
    )
    assert (config.layer_norm_eps, config.head_layer_norm_eps) == (1e-6, 1e-5)
    fbank = torch.from_numpy(reference[f"{name}_fbank"])
    with torch.no_grad():
        logits = model(fbank).logits
    expected = torch.from_numpy(reference[f"{name}_logits"])
    assert logits.shape == expected.shape
    torch.testing.assert_close(logits, expected, atol=PARITY_TOLERANCE, rtol=0)
    exact = torch.from_numpy(reference[f"{name}_logits_float64"])
    torch.testing.assert_close(logits.double(), exact, atol=PARITY_TOLERANCE, rtol=0)
    # The inputs matter: the clips get different logits, so a constant output would not pass.
    assert (expected[0] - expected[1]).abs().max() > 0.05


def test_fixture_records_how_it_was_made(reference):
    versions = json.loads(str(reference["versions"]))
    assert versions["timm"] == "0.4.5"
    assert {"torch", "torchaudio", "numpy", "ast_revision", "ast_models_sha256"} <= set(versions)
    assert FIXTURE.stat().st_size < 1_000_000


# ------------------------------------------------------------------------------------- released layouts

# file name, positional rows (2 + patches), labels, (frequency_stride, time_stride, max_length), grid, dataset, metric
RELEASED = [
    ("audioset_10_10_0.4593.pth", 1214, 527, (10, 10, 1024), (12, 101), "audioset", "mAP 0.4593"),
    ("audioset_10_10_0.4495.pth", 1214, 527, (10, 10, 1024), (12, 101), "audioset", "mAP 0.4495"),
    ("audioset_10_10_0.4483.pth", 1214, 527, (10, 10, 1024), (12, 101), "audioset", "mAP 0.4483"),
    ("audioset_10_10_0.4475.pth", 1214, 527, (10, 10, 1024), (12, 101), "audioset", "mAP 0.4475"),
    ("audioset_12_12_0.4467.pth", 852, 527, (12, 12, 1024), (10, 85), "audioset", "mAP 0.4467"),
    ("audioset_14_14_0.4431.pth", 659, 527, (14, 14, 1024), (9, 73), "audioset", "mAP 0.4431"),
    ("audioset_16_16_0.4422.pth", 514, 527, (16, 16, 1024), (8, 64), "audioset", "mAP 0.4422"),
    ("audioset_bal_10_10_0.3499.pth", 1214, 527, (10, 10, 1024), (12, 101), "audioset", "mAP 0.3499"),
    ("speechcommands_10_10_0.9812.pth", 146, 35, (10, 10, 128), (12, 12), "speechcommands", "accuracy 0.9812"),
]


@pytest.mark.parametrize("file_name, positions, num_labels, geometry, grid, dataset, metric", RELEASED)
def test_released_layouts_are_inferred_from_shapes(
    tmp_path, caplog, file_name, positions, num_labels, geometry, grid, dataset, metric
):
    path = write_checkpoint(tmp_path, file_name, positions, num_labels)
    output_dir = convert_original_checkpoint(path, tmp_path / "out").output_dir

    assert {path.name for path in output_dir.iterdir()} == EXPECTED_FILES
    config = json.loads((output_dir / "config.json").read_text())
    assert config["model_type"] == "ast"
    assert (config["frequency_stride"], config["time_stride"], config["max_length"]) == geometry
    assert (config["hidden_size"], config["num_hidden_layers"], config["num_attention_heads"]) == (64, 1, 1)
    assert config["intermediate_size"] == 256
    assert (config["layer_norm_eps"], config["head_layer_norm_eps"]) == (1e-6, 1e-5)
    assert len(config["id2label"]) == num_labels and config["id2label"]["0"] == "LABEL_0"
    expected_problem = "multi_label_classification" if dataset == "audioset" else "single_label_classification"
    assert config["problem_type"] == expected_problem

    preset = common.DATASET_PRESETS[dataset]
    extractor = json.loads((output_dir / "preprocessor_config.json").read_text())
    assert (extractor["mean"], extractor["std"], extractor["max_length"]) == (preset.mean, preset.std, geometry[2])
    assert (extractor["sampling_rate"], extractor["num_mel_bins"]) == (16000, 128)

    card = (output_dir / "README.md").read_text()
    assert file_name in card and metric in card and f"{grid[0]} x {grid[1]}" in card
    assert "generic LABEL_i names" in card

    model = ASTForAudioClassification.from_pretrained(output_dir).eval()
    assert model.config.patch_grid == grid
    assert model.ast.embeddings.pos_embed.shape == (1, positions, 64)
    stored = load_file(output_dir / "model.safetensors")
    original_weights = torch.load(path, weights_only=True)
    assert torch.equal(stored["ast.embeddings.pos_embed"], original_weights["module.v.pos_embed"])
    assert torch.equal(stored["classifier.fc.weight"], original_weights["module.mlp_head.1.weight"])
    assert torch.equal(stored["ast.blocks.0.attn.qkv.weight"], original_weights["module.v.blocks.0.attn.qkv.weight"])
    assert not any(key.startswith(("v.head", "ast.head")) or "head_dist" in key for key in stored)
    with torch.no_grad():
        logits = model(torch.zeros(1, geometry[2], 128)).logits
    assert logits.shape == (1, num_labels)


@pytest.mark.parametrize(
    "hidden_size, heads, intermediate", [(768, 12, 3072), (384, 6, 1536), (192, 3, 768)]
)
def test_deit_sizes_get_their_head_counts(hidden_size, heads, intermediate):
    shapes = original_shapes(hidden_size, 12, 527, 1212)
    state_dict = {f"module.{key}": torch.empty(shape, device="meta") for key, shape in shapes.items()}
    layout = inspect_original_checkpoint(state_dict)
    assert (layout.hidden_size, layout.num_hidden_layers, layout.num_attention_heads) == (hidden_size, 12, heads)
    assert layout.intermediate_size == intermediate
    assert layout.grid == (12, 101)
    assert inspect_original_checkpoint(state_dict, num_attention_heads=4).num_attention_heads == 4


def test_base_model_keeps_every_parameter_but_the_imagenet_heads():
    """The authors' 527-label base model has 88,132,063 parameters, 769,000 in each unused ImageNet head."""
    shapes = original_shapes(768, 12, 527, 1212)
    assert sum(torch.Size(shape).numel() for shape in shapes.values()) == 88_132_063
    state_dict = {f"module.{key}": torch.empty(shape, device="meta") for key, shape in shapes.items()}
    config = inspect_original_checkpoint(state_dict).to_config(num_labels=527)
    ours = original_to_ours(state_dict, config)
    assert sum(tensor.numel() for tensor in ours.values()) == 88_132_063 - 2 * 769_000


def test_explicit_geometry_for_other_layouts(tmp_path):
    path = write_checkpoint(tmp_path, "esc_custom.pth", 2 + 10 * 21, 50)
    output_dir = convert_original_checkpoint(
        path, tmp_path / "out", frequency_stride=12, time_stride=12, max_length=256, dataset="esc50"
    ).output_dir
    config = json.loads((output_dir / "config.json").read_text())
    assert (config["frequency_stride"], config["time_stride"], config["max_length"]) == (12, 12, 256)
    assert config["problem_type"] == "single_label_classification"
    assert json.loads((output_dir / "preprocessor_config.json").read_text())["mean"] == -6.6268077


def test_reported_metric_from_name_or_argument(tmp_path):
    assert parse_reported_metric("audioset_10_10_0.4593.pth") == 0.4593
    assert parse_reported_metric("speechcommands_10_10_0.9812") == 0.9812
    assert parse_reported_metric("my_model.pth") is None
    path = write_checkpoint(tmp_path, "audioset_10_10_0.4593.pth", 1214, 527)
    output_dir = convert_original_checkpoint(path, tmp_path / "out", reported_metric=0.5).output_dir
    assert "mAP 0.5 |" in (output_dir / "README.md").read_text()
    path = write_checkpoint(tmp_path, "model.pth", 146, 35)
    output_dir = convert_original_checkpoint(path, tmp_path / "out2", dataset="speechcommands").output_dir
    assert "| reported metric | not reported |" in (output_dir / "README.md").read_text()


# ------------------------------------------------------------------------------------- labels


def write_audioset_csv(path: Path, names: list[str], shuffle: bool = True) -> Path:
    """A label file in AudioSet's class_labels_indices.csv format (index,mid,display_name), rows out of order."""
    rows = [(index, f"/m/{index:05d}", name) for index, name in enumerate(names)]
    if shuffle:
        rows = rows[::-1]
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["index", "mid", "display_name"])
        writer.writerows(rows)
    return path


SPEECH_WORDS = [f"word {i}, spoken" for i in range(35)]  # commas force CSV quoting


@pytest.fixture
def speech_checkpoint(tmp_path) -> Path:
    return write_checkpoint(tmp_path, "speechcommands_10_10_0.9812.pth", 146, 35)


@pytest.mark.parametrize("kind", ["csv", "json_list", "json_id2label", "json_config", "txt", "python_list"])
def test_label_sources(tmp_path, speech_checkpoint, kind):
    names = [name.replace(",", "") for name in SPEECH_WORDS] if kind == "txt" else SPEECH_WORDS
    if kind == "csv":
        labels = write_audioset_csv(tmp_path / "labels.csv", names)
    elif kind == "json_list":
        labels = tmp_path / "labels.json"
        labels.write_text(json.dumps(names))
    elif kind == "json_id2label":
        labels = tmp_path / "labels.json"
        labels.write_text(json.dumps({str(i): name for i, name in reversed(list(enumerate(names)))}))
    elif kind == "json_config":
        labels = tmp_path / "config.json"
        labels.write_text(json.dumps({"id2label": {str(i): name for i, name in enumerate(names)}}))
    elif kind == "txt":
        labels = tmp_path / "labels.txt"
        labels.write_text("\n".join(names) + "\n")
    else:
        labels = names
    output_dir = convert_original_checkpoint(speech_checkpoint, tmp_path / "out", labels=labels).output_dir
    config = transformers.AutoConfig.from_pretrained(output_dir)
    assert [config.id2label[i] for i in range(35)] == names
    assert config.label2id[names[7]] == 7
    if isinstance(labels, Path):
        assert f"`{labels.name}`" in (output_dir / "README.md").read_text()


def test_missing_labels_warn(tmp_path, speech_checkpoint, caplog):
    with caplog.at_level("WARNING"):
        convert_original_checkpoint(speech_checkpoint, tmp_path / "out")
    assert "LABEL_0..LABEL_34" in caplog.text


@pytest.mark.parametrize(
    "content, match",
    [
        ("index,mid,display_name\n0,/m/a,one\n1,/m/b,two\n", "gives 2 labels, but the checkpoint's head"),
        ("index,mid,name\n0,/m/a,one\n", "display_name column"),
        ("index,mid,display_name\n" + "".join(f"{i},/m/{i},same\n" for i in range(35)), "unique"),
        ("index,mid,display_name\n" + "".join(f"{i + 1},/m/{i},w{i}\n" for i in range(35)), "0..34"),
    ],
)
def test_bad_label_files(tmp_path, speech_checkpoint, content, match):
    labels = tmp_path / "labels.csv"
    labels.write_text(content)
    with pytest.raises(ValueError, match=match):
        convert_original_checkpoint(speech_checkpoint, tmp_path / "out", labels=labels)
    assert_nothing_written(tmp_path / "out")


def test_a_byte_order_mark_does_not_hide_the_index_column(tmp_path, speech_checkpoint):
    """Spreadsheet programs save CSV with a UTF-8 BOM; the rows are out of order, so only `index` orders them."""
    labels = write_audioset_csv(tmp_path / "labels.csv", SPEECH_WORDS)
    labels.write_bytes(b"\xef\xbb\xbf" + labels.read_bytes())
    output_dir = convert_original_checkpoint(speech_checkpoint, tmp_path / "out", labels=labels).output_dir
    config = transformers.AutoConfig.from_pretrained(output_dir)
    assert [config.id2label[i] for i in range(35)] == SPEECH_WORDS


@pytest.mark.parametrize(
    "bad_row, fields", [("7,/m/7,word 7,extra", "4 fields"), ("7,/m/7", "2 fields")], ids=["extra", "missing"]
)
def test_a_row_with_the_wrong_number_of_fields_is_named(tmp_path, speech_checkpoint, bad_row, fields):
    rows = [f"{i},/m/{i},word {i}" for i in range(35)]
    rows[7] = bad_row
    labels = tmp_path / "labels.csv"
    labels.write_text("index,mid,display_name\n" + "\n".join(rows) + "\n")
    with pytest.raises(ValueError, match=rf"labels\.csv, line 9: {fields} where the header names 3"):
        convert_original_checkpoint(speech_checkpoint, tmp_path / "out", labels=labels)
    assert_nothing_written(tmp_path / "out")


@pytest.mark.parametrize("suffix", [".csv", ".json", ".txt"])
def test_a_label_file_that_is_not_utf8_is_named(tmp_path, speech_checkpoint, suffix):
    labels = tmp_path / f"latin1{suffix}"
    labels.write_bytes("index,mid,display_name\n0,/m/0,café\n".encode("latin-1"))
    with pytest.raises(ValueError, match=rf"label file .*latin1\{suffix} is not UTF-8 text"):
        convert_original_checkpoint(speech_checkpoint, tmp_path / "out", labels=labels)
    assert_nothing_written(tmp_path / "out")


# ------------------------------------------------------------------------------------- pipeline


def pipeline_scores(output_dir: Path, wav: Path) -> tuple[dict[str, float], torch.Tensor]:
    classifier = transformers.pipeline("audio-classification", model=str(output_dir))
    num_labels = classifier.model.config.num_labels
    result = classifier(str(wav), top_k=num_labels)
    features = classifier.feature_extractor(
        modeling_ast.audio_io.load_audio(wav, sampling_rate=16000), sampling_rate=16000, return_tensors="pt"
    )
    with torch.no_grad():
        logits = classifier.model(**features).logits[0]
    return {item["label"]: item["score"] for item in result}, logits


def test_audioset_conversion_gives_sigmoid_scores_in_the_pipeline(tmp_path, fsdd_dir):
    path = write_checkpoint(tmp_path, "audioset_16_16_0.4422.pth", 514, 527)
    output_dir = convert_original_checkpoint(path, tmp_path / "out").output_dir
    scores, logits = pipeline_scores(output_dir, fsdd_dir / "3_jackson_0.wav")
    expected = torch.sigmoid(logits)
    assert len(scores) == 527
    for index in range(527):
        assert scores[f"LABEL_{index}"] == pytest.approx(expected[index].item(), abs=1e-5)
    assert sum(scores.values()) > 10  # independent per-class probabilities, not a distribution


def test_speech_commands_conversion_gives_softmax_scores_in_the_pipeline(tmp_path, fsdd_dir, speech_checkpoint):
    output_dir = convert_original_checkpoint(speech_checkpoint, tmp_path / "out", labels=SPEECH_WORDS).output_dir
    scores, logits = pipeline_scores(output_dir, fsdd_dir / "7_nicolas_12.wav")
    expected = torch.softmax(logits, dim=-1)
    for index, word in enumerate(SPEECH_WORDS):
        assert scores[word] == pytest.approx(expected[index].item(), abs=1e-6)
    assert sum(scores.values()) == pytest.approx(1.0, abs=1e-5)
    extractor = transformers.AutoFeatureExtractor.from_pretrained(output_dir)
    assert type(extractor) is ASTFeatureExtractor and extractor.max_length == 128


# ------------------------------------------------------------------------------------- bad input


def drop(key):
    return lambda state_dict: state_dict.pop(key)


def reshape(key, shape):
    return lambda state_dict: state_dict.__setitem__(key, torch.zeros(shape))


def add(key):
    return lambda state_dict: state_dict.__setitem__(key, torch.zeros(3))


@pytest.mark.parametrize(
    "edit, match",
    [
        (add("module.v.blocks.0.attn.extra"), r"unexpected keys \[v\.blocks\.0\.attn\.extra\]; missing keys \[\]"),
        (drop("module.v.blocks.0.norm2.bias"), r"unexpected keys \[\]; missing keys \[v\.blocks\.0\.norm2\.bias\]"),
        (drop("module.v.dist_token"), r"missing keys \[v\.dist_token\]"),
        (reshape("module.mlp_head.0.weight", (63,)), r"mlp_head\.0\.weight: expected \(64,\), got \(63,\)"),
        (
            reshape("module.v.blocks.0.attn.qkv.weight", (64, 64)),
            r"v\.blocks\.0\.attn\.qkv\.weight: expected \(192, 64\), got \(64, 64\)",
        ),
        (reshape("module.v.pos_embed", (1212, 64)), r"v\.pos_embed: expected a 3-D tensor"),
        (drop("module.v.pos_embed"), r"missing keys \[v\.pos_embed\]"),
        (lambda sd: sd.update({"module.v.cls_token": torch.zeros(1, 1, 48)}), "num_attention_heads"),
        (lambda sd: sd.update({"module.v.norm.weight": torch.zeros(64, dtype=torch.int64)}), "floating-point"),
    ],
)
def test_layout_errors_name_the_keys(tmp_path, edit, match):
    path = write_checkpoint(tmp_path, "speechcommands_10_10_0.9812.pth", 146, 35, edit=edit)
    with pytest.raises(ValueError, match=match):
        convert_original_checkpoint(path, tmp_path / "out")
    assert_nothing_written(tmp_path / "out")


def test_missing_block_is_reported(tmp_path):
    def drop_block_1(state_dict):
        for key in [key for key in state_dict if key.startswith("module.v.blocks.1.")]:
            del state_dict[key]

    path = write_checkpoint(tmp_path, "speechcommands_10_10_0.9812.pth", 146, 35, num_layers=3, edit=drop_block_1)
    with pytest.raises(ValueError, match=r"missing keys \[v\.blocks\.1\.attn\.proj\.bias, .*v\.blocks\.1\.norm2"):
        convert_original_checkpoint(path, tmp_path / "out")
    assert_nothing_written(tmp_path / "out")


def test_unknown_layouts_are_refused(tmp_path):
    path = tmp_path / "other.pth"
    torch.save({"encoder.weight": torch.zeros(2, 2)}, path)
    with pytest.raises(ValueError, match=r"unexpected keys \[encoder\.weight\]; missing keys \[.*v\.cls_token"):
        convert_original_checkpoint(path, tmp_path / "out")
    torch.save({"audio_spectrogram_transformer.embeddings.cls_token": torch.zeros(1, 1, 8)}, path)
    with pytest.raises(ValueError, match="transformers' built-in AST layout"):
        convert_original_checkpoint(path, tmp_path / "out")
    assert_nothing_written(tmp_path / "out")


class NotATensor:
    pass


def test_non_tensor_pickles_are_refused(tmp_path):
    path = tmp_path / "pickled.pth"
    torch.save({"module.v.cls_token": NotATensor()}, path)
    with pytest.raises(ValueError, match="refusing to unpickle"):
        convert_original_checkpoint(path, tmp_path / "out")
    torch.save({"module.v.cls_token": torch.zeros(1, 1, 64), "epoch": 3}, path)
    with pytest.raises(ValueError, match="non-tensor entries"):
        convert_original_checkpoint(path, tmp_path / "out")
    with pytest.raises(FileNotFoundError):
        convert_original_checkpoint(tmp_path / "absent.pth", tmp_path / "out")
    assert_nothing_written(tmp_path / "out")


@pytest.mark.parametrize(
    "positions, kwargs, match",
    [
        (2 + 210, {}, "pass frequency_stride, time_stride and max_length"),
        (2 + 210, {"frequency_stride": 12, "time_stride": 12}, "pass frequency_stride, time_stride and max_length"),
        (1214, {"time_stride": 12}, "give a 12 x 85 grid"),
        (1214, {"max_length": 512}, "give a 12 x 50 grid"),
        (146, {"dataset": "librispeech"}, "unknown dataset"),
    ],
)
def test_geometry_and_dataset_errors(tmp_path, positions, kwargs, match):
    path = write_checkpoint(tmp_path, "checkpoint.pth", positions, 10)
    kwargs = {"dataset": "speechcommands", **kwargs}
    with pytest.raises(ValueError, match=match):
        convert_original_checkpoint(path, tmp_path / "out", **kwargs)
    assert_nothing_written(tmp_path / "out")


def test_an_unknown_dataset_needs_to_be_named(tmp_path):
    path = write_checkpoint(tmp_path, "my_model.pth", 146, 10)
    with pytest.raises(ValueError, match="pass dataset="):
        convert_original_checkpoint(path, tmp_path / "out")
    output_dir = convert_original_checkpoint(
        path, tmp_path / "out", mean=-5.0, std=4.0, problem_type="single_label_classification"
    ).output_dir
    assert json.loads((output_dir / "preprocessor_config.json").read_text())["std"] == 4.0


def test_failure_while_writing_leaves_nothing(tmp_path, speech_checkpoint, monkeypatch):
    def broken_save(self, directory, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(ASTFeatureExtractor, "save_pretrained", broken_save)
    with pytest.raises(OSError, match="disk full"):
        convert_original_checkpoint(speech_checkpoint, tmp_path / "out")
    assert_nothing_written(tmp_path / "out")


def test_existing_output_needs_overwrite(tmp_path, speech_checkpoint):
    """A folder with a user's file is never replaced, not even with overwrite; a previous output is, with it."""
    output_dir = tmp_path / "out"
    output_dir.mkdir()
    (output_dir / "keep.txt").write_text("mine")
    with pytest.raises(ValueError, match="overwrite"):
        convert_original_checkpoint(speech_checkpoint, output_dir)
    with pytest.raises(ValueError, match=r"refusing to replace .*out: it holds keep\.txt, which no model directory"):
        convert_original_checkpoint(speech_checkpoint, output_dir, overwrite=True)
    assert [path.name for path in output_dir.iterdir()] == ["keep.txt"]
    (output_dir / "keep.txt").unlink()
    convert_original_checkpoint(speech_checkpoint, output_dir)
    with pytest.raises(ValueError, match="overwrite"):
        convert_original_checkpoint(speech_checkpoint, output_dir)
    convert_original_checkpoint(speech_checkpoint, output_dir, overwrite=True)
    assert {path.name for path in output_dir.iterdir()} == EXPECTED_FILES


def test_nan_weights_are_named_in_a_warning(tmp_path, caplog):
    def poison(state_dict):
        state_dict["module.v.blocks.0.attn.qkv.weight"][3, 5] = float("nan")
        state_dict["module.mlp_head.1.bias"][0] = float("inf")

    path = write_checkpoint(tmp_path, "speechcommands_10_10_0.9812.pth", 146, 35, edit=poison)
    with caplog.at_level("WARNING"):
        convert_original_checkpoint(path, tmp_path / "out")
    warning = next(record.getMessage() for record in caplog.records if "NaN or infinite" in record.getMessage())
    assert str(path) in warning
    assert "module.v.blocks.0.attn.qkv.weight" in warning and "module.mlp_head.1.bias" in warning
    assert "module.v.blocks.0.attn.proj.weight" not in warning


def test_an_output_below_a_file_is_refused(tmp_path, speech_checkpoint):
    (tmp_path / "taken").write_text("a file")
    with pytest.raises(ValueError, match=r"cannot write .*taken/out: .*taken is a file, not a directory"):
        convert_original_checkpoint(speech_checkpoint, tmp_path / "taken" / "out")
    assert (tmp_path / "taken").read_text() == "a file"


def dead_pid() -> int:
    """The id of a process that has exited (ids are reused only after the kernel wraps around)."""
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def test_staging_left_by_a_killed_run_is_removed(tmp_path, speech_checkpoint):
    """`kill -9` during a conversion leaves its hidden staging directory; the next run for the target removes it,
    but not the staging directory of a run that is still going (here: this process)."""
    abandoned = tmp_path / f".out.partial-{dead_pid()}-k1ll3d"
    abandoned.mkdir()
    (abandoned / "model.safetensors").write_bytes(b"\0" * 1000)
    running = tmp_path / f".out.partial-{os.getpid()}-busy"
    running.mkdir()
    convert_original_checkpoint(speech_checkpoint, tmp_path / "out")
    assert {path.name for path in (tmp_path / "out").iterdir()} == EXPECTED_FILES
    assert not abandoned.exists() and running.is_dir()


def test_a_kill_between_the_renames_of_a_replacement_is_recovered(tmp_path, speech_checkpoint, monkeypatch):
    """With overwrite, the old output is renamed away before the new one is renamed in; a kill in between leaves
    nothing at the path. The next run that writes there puts the old output back first, so it is back even when
    that run fails too."""
    pid = dead_pid()
    backup = tmp_path / f".out.old-{pid}"
    backup.mkdir()
    (backup / "config.json").write_text(json.dumps({"model_type": "ast"}))  # an output of ours, so replaceable
    (backup / "README.md").write_text("previous output")
    (tmp_path / f".out.partial-{pid}-n3w").mkdir()

    def broken_save(self, directory, **kwargs):
        raise OSError("disk full")

    with monkeypatch.context() as patch:
        patch.setattr(ASTFeatureExtractor, "save_pretrained", broken_save)
        with pytest.raises(OSError, match="disk full"):
            convert_original_checkpoint(speech_checkpoint, tmp_path / "out", overwrite=True)
    assert (tmp_path / "out" / "README.md").read_text() == "previous output"
    assert sorted(path.name for path in tmp_path.iterdir()) == ["out", speech_checkpoint.name]
    convert_original_checkpoint(speech_checkpoint, tmp_path / "out", overwrite=True)
    assert {path.name for path in (tmp_path / "out").iterdir()} == EXPECTED_FILES


def test_push_to_hub_uploads_the_written_folder(tmp_path, speech_checkpoint, monkeypatch):
    calls = []

    class FakeApi:
        def __init__(self, token=None):
            calls.append(("init", token))

        def create_repo(self, repo_id, **kwargs):
            calls.append(("create_repo", repo_id, kwargs.get("exist_ok")))

        def upload_folder(self, folder_path, repo_id, **kwargs):
            calls.append(("upload_folder", repo_id, {path.name for path in Path(folder_path).iterdir()}))
            return "https://hub.example/org/name/commit/1"

    import huggingface_hub

    monkeypatch.setattr(huggingface_hub, "HfApi", FakeApi)
    report = convert_original_checkpoint(speech_checkpoint, tmp_path / "out", push_to_hub="org/name", hub_token="t")
    assert calls == [
        ("init", "t"),
        ("create_repo", "org/name", True),
        ("upload_folder", "org/name", EXPECTED_FILES),
    ]
    assert report.hub_url.endswith("/commit/1") and "pushed to" in report.summary()


# ------------------------------------------------------------------------------------- CLI


def run_cli(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    command = entry_point_command("ast-convert-original")
    return subprocess.run([*command, *args], capture_output=True, text=True, timeout=120, env=env)


def test_cli_help():
    result = run_cli("--help")
    assert result.returncode == 0, result.stderr
    for option in ("--labels", "--dataset", "--push_to_hub", "--overwrite", "--frequency_stride"):
        assert option in result.stdout
    for dataset in common.DATASET_PRESETS:
        assert dataset in result.stdout


def test_cli_converts_and_prints_a_summary(tmp_path, speech_checkpoint):
    labels = write_audioset_csv(tmp_path / "speechcommands_class_labels_indices.csv", SPEECH_WORDS)
    result = run_cli(str(speech_checkpoint), str(tmp_path / "out"), "--labels", str(labels))
    assert result.returncode == 0, result.stderr
    summary = result.stdout.strip().splitlines()[-1]
    for part in ("strides 10x10", "grid 12x12 (144 patches)", "128 frames", "35 labels from speechcommands_class",
                 "single_label_classification", "eps 1e-06 (encoder) / 1e-05 (head)"):
        assert part in summary
    model = ASTForAudioClassification.from_pretrained(tmp_path / "out")
    assert model.config.id2label[3] == SPEECH_WORDS[3]


def test_cli_reports_errors_without_a_traceback(tmp_path, speech_checkpoint, capsys):
    labels = tmp_path / "labels.json"
    labels.write_text(json.dumps(["a", "b"]))
    assert convert_original_main([str(speech_checkpoint), str(tmp_path / "out"), "--labels", str(labels)]) == 1
    assert "error: " in capsys.readouterr().err
    assert_nothing_written(tmp_path / "out")
