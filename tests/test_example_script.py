"""examples/run_audio_classification.py and examples/synthetic_sounds.py: short real training runs (synthetic data and
FSDD files), the saved model reloaded in the pipeline, and the input validation of the script."""

from __future__ import annotations

import csv
import shutil
from pathlib import Path

import numpy as np
import pytest
from conftest import import_example
import soundfile
import torch
import transformers

from modeling_ast import ASTForAudioClassification
from modeling_ast.training.collator import AudioCollator
from modeling_ast.fbank import num_samples_for_frames
from modeling_ast.training.decoding import decode_example
from modeling_ast.training.sources import folder_examples, manifest_examples
from modeling_ast.training.starting_points import feature_extractor_for
from tiny_models import tiny_model


# A tiny model and a handful of steps: these runs check the plumbing, not the learning.
TINY_RUN = [
    "--hidden_size", "32",
    "--num_hidden_layers", "1",
    "--num_attention_heads", "2",
    "--intermediate_size", "64",
    "--max_length", "128",
    "--max_steps", "4",
    "--per_device_train_batch_size", "8",
    "--disable_tqdm", "true",
    "--report_to", "none",
]  # fmt: skip

FSDD_DIGITS = ("0", "1", "2", "3")
FSDD_SPEAKER = "jackson"


@pytest.fixture(scope="module")
def examples():
    """The two example modules, imported from examples/ (the script imports its sibling by plain name)."""
    return import_example("run_audio_classification"), import_example("synthetic_sounds")


@pytest.fixture(scope="module")
def script(examples):
    return examples[0]


@pytest.fixture(scope="module")
def synthetic(examples):
    return examples[1]


def write_wav(path: Path, seconds: float = 0.5, sampling_rate: int = 16000) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    samples = np.random.default_rng(0).normal(0, 0.1, int(seconds * sampling_rate)).astype(np.float32)
    soundfile.write(path, samples, sampling_rate)
    return path


def write_manifest(path: Path, rows: list[tuple[str, str]]) -> Path:
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["path", "label"])
        writer.writerows(rows)
    return path


def accuracy_by_hand(model_dir: Path, examples: list) -> float:
    """Accuracy of the saved model on `examples`, one clip at a time through the saved feature extractor (clips
    shorter than one patch padded with silence to one patch, as training does)."""
    model = transformers.AutoModelForAudioClassification.from_pretrained(model_dir).eval()
    feature_extractor = transformers.AutoFeatureExtractor.from_pretrained(model_dir)
    one_patch = num_samples_for_frames(model.config.patch_size)
    correct = 0
    for example in examples:
        waveform = decode_example(example).numpy()
        waveform = np.pad(waveform, (0, max(0, one_patch - waveform.shape[0])))
        features = feature_extractor(waveform, sampling_rate=16000, return_tensors="pt")
        with torch.no_grad():
            predicted = model(**features).logits.argmax(-1).item()
        correct += [model.config.id2label[predicted]] == example["labels"]
    return correct / len(examples)


# --- synthetic dataset -------------------------------------------------------------------------------------------


def test_synthetic_dataset_is_deterministic(synthetic, tmp_path):
    first = synthetic.generate_dataset(tmp_path / "a", train_per_class=2, eval_per_class=1, seed=3)
    second = synthetic.generate_dataset(tmp_path / "b", train_per_class=2, eval_per_class=1, seed=3)
    synthetic.generate_dataset(tmp_path / "c", train_per_class=2, eval_per_class=1, seed=4)
    rows = list(csv.DictReader(first[0].open()))
    assert len(rows) == 2 * len(synthetic.CLASSES)
    assert {row["label"] for row in rows} == set(synthetic.CLASSES)
    for row in rows:
        audio = (tmp_path / "a" / row["path"]).read_bytes()
        assert audio == (tmp_path / "b" / row["path"]).read_bytes()
        assert audio != (tmp_path / "c" / row["path"]).read_bytes()
    assert first[1].read_text() == second[1].read_text()
    assert len(first[1].read_text().splitlines()) == 1 + len(synthetic.CLASSES)


def test_synthetic_clips_have_the_promised_format(synthetic, tmp_path):
    train, _ = synthetic.generate_dataset(tmp_path, train_per_class=3, eval_per_class=1)
    for row in csv.DictReader(train.open()):
        samples, rate = soundfile.read(tmp_path / row["path"])
        assert rate == 16000 and samples.ndim == 1
        assert 0.5 <= len(samples) / rate <= 2.0
        peak = np.abs(samples).max()
        if row["label"] == "background":
            assert peak < 0.05, row["path"]
        else:
            assert 0.08 < peak <= 0.6, row["path"]  # -20 to -6 dBFS event over quiet noise


def test_synthetic_rejects_bad_counts(synthetic, tmp_path):
    with pytest.raises(ValueError, match="train_per_class must be a positive integer"):
        synthetic.generate_dataset(tmp_path, train_per_class=0)


# --- training runs -----------------------------------------------------------------------------------------------


def test_demo_trains_saves_and_reloads_in_the_pipeline(script, synthetic, tmp_path, capsys):
    output_dir = tmp_path / "demo"
    result = script.main(
        ["--output_dir", str(output_dir), "--synthetic_train_per_class", "2", "--synthetic_eval_per_class", "2"]
        + TINY_RUN
    )
    saved = {path.name for path in output_dir.iterdir()}
    assert {"config.json", "model.safetensors", "preprocessor_config.json", "data"} <= saved
    # The pipeline must get the frame mask the model trained with, or it reads the padding as audio.
    assert transformers.AutoFeatureExtractor.from_pretrained(output_dir).return_attention_mask
    assert result["num_eval_clips"] == 2 * len(synthetic.CLASSES)
    eval_clips = manifest_examples(output_dir / "data" / "eval.csv")
    assert result["eval_accuracy"] == pytest.approx(accuracy_by_hand(output_dir, eval_clips))
    assert f"eval accuracy: {result['eval_accuracy']:.3f} (16 clips)" in capsys.readouterr().out
    assert transformers.AutoConfig.from_pretrained(output_dir).problem_type == "single_label_classification"

    classifier = transformers.pipeline("audio-classification", model=str(output_dir))
    assert sorted(classifier.model.config.id2label.values()) == sorted(synthetic.CLASSES)
    top3 = classifier(eval_clips[0]["audio"], top_k=3)
    assert [guess["label"] for guess in top3] == [guess["label"] for guess in result["top3"]]
    assert [guess["score"] for guess in top3] == pytest.approx([guess["score"] for guess in result["top3"]])
    assert len(top3) == 3 and {guess["label"] for guess in top3} <= set(synthetic.CLASSES)
    assert top3[0]["score"] >= top3[1]["score"] >= top3[2]["score"]


def test_demo_learns(script, tmp_path):
    """A small model on a smaller synthetic set, a few epochs: far above the 1/8 of guessing."""
    result = script.main(
        ["--output_dir", str(tmp_path), "--synthetic_train_per_class", "60", "--num_train_epochs", "6"]
        + ["--hidden_size", "64", "--intermediate_size", "128", "--num_hidden_layers", "1", "--max_length", "128"]
        + ["--eval_strategy", "no", "--disable_tqdm", "true"]
    )
    assert result["eval_accuracy"] > 0.3


def test_evaluation_batches_give_each_clip_its_inference_logits(script):
    """The script's evaluation batches (its default padding "longest" with the frame mask, so a batch may be shorter
    than max_length; the feature extractor and collator built as the script builds them) give every clip
    the logits the feature extractor's own output gives it, i.e. what `pipeline` computes: also a clip shorter than
    one patch, and a batch holding only such clips (padded to one patch, 16 frames, with padding_value)."""
    model = tiny_model(num_hidden_layers=1, num_attention_heads=2, num_labels=2)
    config = model.config
    model_args = script.parse_args(["--max_length", "128"])[0]
    feature_extractor = feature_extractor_for(config, return_attention_mask=model_args.attention_mask)
    collator = AudioCollator(
        feature_extractor, None, model_args.padding, model_args.attention_mask, min_frames=config.patch_size
    )
    generator = torch.Generator().manual_seed(0)
    # 8, 13, 48 and 186 frames (the last truncated to 128)
    clips = [0.1 * torch.randn(samples, generator=generator) for samples in (1600, 2400, 8000, 30000)]
    for group, frames, real in [(clips, 128, [8, 13, 48, 128]), (clips[:2], 16, [8, 13])]:
        batch = collator([{"audio": clip, "labels": torch.tensor(1)} for clip in group])
        assert batch["input_values"].shape == (len(group), frames, 128)
        assert batch["attention_mask"].sum(dim=1).tolist() == real
        assert batch.pop("labels").tolist() == [1] * len(group)
        with torch.no_grad():
            logits = model(**batch).logits
            for clip, row in zip(group, logits):
                alone = model(**feature_extractor([clip.numpy()], sampling_rate=16000, return_tensors="pt")).logits[0]
                torch.testing.assert_close(row, alone, atol=1e-5, rtol=0)


def test_fsdd_folder_with_label_and_test_regex(script, fsdd_dir, tmp_path):
    data_dir = tmp_path / "recordings"
    data_dir.mkdir()
    for digit in FSDD_DIGITS:
        for take in range(10):
            name = f"{digit}_{FSDD_SPEAKER}_{take}.wav"
            shutil.copy(fsdd_dir / name, data_dir / name)
    splits = folder_examples(data_dir, r"^(\d+)_", r"_[0-4]\.wav$", ".wav")
    assert len(splits["train"]) == len(splits["eval"]) == 20
    assert sorted({example["labels"][0] for example in splits["train"]}) == list(FSDD_DIGITS)
    assert all(int(Path(example["audio"]).stem.rsplit("_", 1)[1]) < 5 for example in splits["eval"])

    output_dir = tmp_path / "fsdd"
    result = script.main(
        ["--data_dir", str(data_dir), "--label_regex", r"^(\d+)_", "--eval_regex", r"_[0-4]\.wav$"]
        + ["--output_dir", str(output_dir)]
        + TINY_RUN
    )
    assert result["num_eval_clips"] == 20
    assert result["eval_accuracy"] == pytest.approx(accuracy_by_hand(output_dir, splits["eval"]))
    classifier = transformers.pipeline("audio-classification", model=str(output_dir))
    assert classifier.model.config.id2label == dict(enumerate(FSDD_DIGITS))
    assert {guess["label"] for guess in classifier(splits["eval"][0]["audio"], top_k=3)} <= set(FSDD_DIGITS)


def test_manifests_and_fine_tuning_a_saved_model_with_new_labels(script, synthetic, tmp_path):
    first = tmp_path / "first"
    script.main(
        ["--output_dir", str(first), "--synthetic_train_per_class", "1", "--synthetic_eval_per_class", "1"] + TINY_RUN
    )
    for label in "xyz":
        for index in range(2):
            write_wav(tmp_path / "audio" / f"{label}{index}.wav")
    rows = [(f"audio/{label}{index}.wav", label) for label in "xyz" for index in range(2)]
    train = write_manifest(tmp_path / "train.csv", rows)
    evaluation = write_manifest(tmp_path / "eval.csv", [("audio/x0.wav", "x"), ("audio/y0.wav", "y")])
    second = tmp_path / "second"
    result = script.main(
        ["--train_file", str(train), "--eval_file", str(evaluation), "--model_name_or_path", str(first)]
        + ["--output_dir", str(second), "--max_steps", "1", "--disable_tqdm", "true"]
    )
    assert result["num_eval_clips"] == 2
    model = transformers.AutoModelForAudioClassification.from_pretrained(second)
    assert isinstance(model, ASTForAudioClassification)
    assert model.config.id2label == {0: "x", 1: "y", 2: "z"}
    assert model.config.hidden_size == 32  # the checkpoint's size, not the defaults of the size arguments
    assert model.classifier.fc.out_features == 3


# --- validation --------------------------------------------------------------------------------------------------


def run_folder(script, data_dir: Path, label_regex: str = r"^([a-z]+)_", eval_regex: str = r"_test\.wav$"):
    return script.main(
        ["--data_dir", str(data_dir), "--label_regex", label_regex, "--eval_regex", eval_regex]
        + ["--output_dir", str(data_dir.parent / "out")]
        + TINY_RUN
    )


def test_folder_without_audio_files(script, tmp_path):
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "notes.txt").write_text("not audio")
    with pytest.raises(ValueError, match=r"no audio files .* found under"):
        run_folder(script, tmp_path / "data")


def test_missing_data_dir(script, tmp_path):
    with pytest.raises(FileNotFoundError, match="audio folder .* does not exist"):
        run_folder(script, tmp_path / "nowhere")


def test_file_matching_no_label(script, tmp_path):
    for name in ("cat_1.wav", "dog_test.wav", "cat_test.wav", "7_odd.wav"):
        write_wav(tmp_path / "data" / name)
    with pytest.raises(ValueError, match=r"finds no label in 1 file\(s\) .*7_odd\.wav"):
        run_folder(script, tmp_path / "data")


def test_label_only_in_eval(script, tmp_path):
    for name in ("cat_1.wav", "dog_1.wav", "cat_test.wav", "bird_test.wav"):
        write_wav(tmp_path / "data" / name)
    with pytest.raises(ValueError, match=r"labels bird of the evaluation split are not in the label space"):
        run_folder(script, tmp_path / "data")


def test_empty_eval_split(script, tmp_path):
    for name in ("cat_1.wav", "dog_1.wav"):
        write_wav(tmp_path / "data" / name)
    with pytest.raises(ValueError, match="the evaluation split is empty"):
        run_folder(script, tmp_path / "data")


def test_invalid_regex(script, tmp_path):
    write_wav(tmp_path / "data" / "cat_1.wav")
    with pytest.raises(ValueError, match=r"label_regex '\(' is not a valid regular expression"):
        run_folder(script, tmp_path / "data", label_regex="(")


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--data_dir", "x"], "--data_dir needs --eval_regex"),
        (["--data_dir", "x", "--label_regex", "a"], "--data_dir needs --eval_regex"),
        (["--label_regex", "a"], "give --data_dir too"),
        (["--train_file", "a.csv"], "--eval_file is missing"),
        (["--eval_file", "b.csv"], "--train_file is missing"),
        (["--data_dir", "x", "--train_file", "a.csv"], "give one data source, not --data_dir and --train_file"),
        (["--dataset_name", "x", "--data_dir", "y", "--eval_regex", "z"], "give one data source"),
        (["--streaming", "true"], "--streaming applies to --dataset_name"),
        (["--model_name_or_path", "a", "--imagenet_checkpoint", "b"], "not both"),
        (["--fbank_mean", "-4"], "--fbank_mean and --fbank_std together"),
        (["--weight_averaging_start_epoch", "2"], "together"),
    ],
)
def test_inconsistent_arguments(script, argv, message):
    with pytest.raises(ValueError, match=message):
        script.parse_args(argv)


def test_manifest_problems(script, tmp_path):
    write_wav(tmp_path / "a.wav")
    good = write_manifest(tmp_path / "good.csv", [("a.wav", "cat"), ("a.wav", "dog")])
    cases = {
        "missing.csv": (FileNotFoundError, "does not exist"),
        "nolabel.csv": (ValueError, r"nolabel.csv, line 2: no `label` \(or `labels`\) column"),
        "empty.csv": (ValueError, "lists no files"),
        "gone.csv": (FileNotFoundError, r"1 listed audio file\(s\) do not exist: .*gone\.wav"),
        "blank.csv": (ValueError, r"1 evaluation clip\(s\) .* have no label or several"),
    }
    (tmp_path / "nolabel.csv").write_text("path,class\na.wav,cat\n")
    write_manifest(tmp_path / "empty.csv", [])
    write_manifest(tmp_path / "gone.csv", [("gone.wav", "cat")])
    write_manifest(tmp_path / "blank.csv", [("a.wav", "")])
    for name, (error, message) in cases.items():
        with pytest.raises(error, match=message):
            script.main(
                ["--train_file", str(good), "--eval_file", str(tmp_path / name)]
                + ["--output_dir", str(tmp_path / "out")]
            )
