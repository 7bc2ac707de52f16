"""Tests of the training data path (`modeling_ast.training` sources, labels, decoding, datasets, augment, collator) on
small generated wavs and FSDD clips."""

from __future__ import annotations

import io
import json
import logging
import math
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from modeling_ast.audio_utils import resample
from modeling_ast.fbank import num_frames
from modeling_ast.feature_extraction_ast import ASTFeatureExtractor
from modeling_ast.training.augment import (
    MAX_ROLL,
    AugmentConfig,
    mix_targets,
    mix_waveforms,
    noise_and_roll,
    random_crop,
    sample_mixup_lambda,
    spec_augment_,
)
from modeling_ast.training.collator import AudioCollator
from modeling_ast.fbank import num_samples_for_frames
from modeling_ast.training.datasets import AudioDataset, StreamingAudioDataset
from modeling_ast.training.decoding import UnreadableAudioError, decode_example
from modeling_ast.training.labels import LabelSpace, task_reason
from modeling_ast.training.recipes import RecipeArguments
from modeling_ast.training.sampling import SPECTROGRAM_STAGE, WAVEFORM_STAGE, DrawKey, seeded_generator
from modeling_ast.training.sources import (
    HubExamples,
    StreamingHubExamples,
    folder_examples,
    load_hub_examples,
    manifest_examples,
)
from modeling_ast.training.task import task_from_examples

MAX_FRAMES = 64
MAX_SAMPLES = num_samples_for_frames(MAX_FRAMES)
# (class, file name, sampling rate, seconds): 8 kHz and 44.1 kHz files exercise the resampler.
CLIPS = [
    ("cat", "a.wav", 8000, 0.3),
    ("cat", "b.wav", 44100, 0.9),
    ("cat", "c.flac", 16000, 0.5),
    ("dog", "d.wav", 16000, 1.0),
    ("dog", "e.wav", 8000, 0.45),
    ("dog", "f.wav", 44100, 0.2),
]
# The Speech Commands recipe's augmentations (mixup, SpecAugment, noise), read from the recipe file the script uses.
SPEECH_COMMANDS = RecipeArguments.from_recipe(
    Path(__file__).resolve().parents[1] / "examples" / "recipes" / "speechcommands_v2.json"
).augment()
FSDD_FILES = ["0_george_0.wav", "0_george_5.wav", "1_jackson_1.wav", "1_jackson_7.wav", "2_theo_3.wav", "2_theo_9.wav"]


def _tone(rate: int, seconds: float, frequency: float, seed: int) -> np.ndarray:
    """A tone plus a little noise and a DC offset, float32."""
    t = np.arange(int(rate * seconds)) / rate
    noise = np.random.default_rng(seed).normal(0.0, 0.01, t.shape)
    return (0.3 * np.sin(2 * np.pi * frequency * t) + noise + 0.05).astype(np.float32)


def _wav_bytes(samples: np.ndarray, rate: int) -> bytes:
    buffer = io.BytesIO()
    sf.write(buffer, samples, rate, format="WAV")
    return buffer.getvalue()


@pytest.fixture(scope="module")
def class_dir(tmp_path_factory) -> Path:
    """`cat/` and `dog/` sub-folders of short clips at 8, 16 and 44.1 kHz, plus a non-audio file."""
    root = tmp_path_factory.mktemp("classes")
    for index, (label, name, rate, seconds) in enumerate(CLIPS):
        (root / label).mkdir(exist_ok=True)
        sf.write(root / label / name, _tone(rate, seconds, 300 + 200 * index, index), rate)
    (root / "cat" / "notes.txt").write_text("not audio")
    return root


@pytest.fixture(scope="module")
def fsdd_subset(fsdd_dir, tmp_path_factory) -> Path:
    """A flat folder holding a few FSDD recordings (8 kHz, `{digit}_{speaker}_{take}.wav`)."""
    root = tmp_path_factory.mktemp("fsdd")
    for name in FSDD_FILES:
        shutil.copy(fsdd_dir / name, root / name)
    return root


@pytest.fixture(scope="module")
def extractor() -> ASTFeatureExtractor:
    return ASTFeatureExtractor(max_length=MAX_FRAMES, return_attention_mask=True)


def _expected_samples(path: Path) -> int:
    info = sf.info(str(path))
    return math.ceil(info.frames * 16000 / info.samplerate)


def _labels(examples) -> list[list[str]]:
    return [example["labels"] for example in examples]


def _draw(dataset: AudioDataset, index: int, epoch: int = 0, position: int | None = None):
    """The training item of clip `index` drawn at `position` (default: `index`) of `epoch`."""
    return dataset[DrawKey(epoch, index if position is None else position, index)]


# ---------------------------------------------------------------------------------------------------------------
# Sources
# ---------------------------------------------------------------------------------------------------------------


def test_folder_with_class_subfolders_decodes_at_16k(class_dir):
    splits = folder_examples(class_dir)
    assert list(splits) == ["train"]
    examples = splits["train"]
    assert [(Path(e["audio"]).parent.name, Path(e["audio"]).name) for e in examples] == [c[:2] for c in CLIPS]
    assert _labels(examples) == [[c[0]] for c in CLIPS]
    for example in examples:
        waveform = decode_example(example)
        assert waveform.dtype == torch.float32 and waveform.dim() == 1
        assert waveform.shape[0] == _expected_samples(Path(example["audio"]))
    # The 8 kHz tone is resampled by audio_utils.resample, not just relabelled.
    original, rate = sf.read(str(class_dir / "cat" / "a.wav"), dtype="float32")
    expected = resample(torch.from_numpy(original), rate, 16000)
    torch.testing.assert_close(decode_example(examples[0]), expected)


def test_folder_with_label_and_eval_regex_on_fsdd(fsdd_subset):
    splits = folder_examples(fsdd_subset, label_regex=r"^(\d+)_", eval_regex=r"_[0-4]\.wav$", extensions="wav")
    names = {split: [Path(e["audio"]).name for e in examples] for split, examples in splits.items()}
    assert names == {
        "train": ["0_george_5.wav", "1_jackson_7.wav", "2_theo_9.wav"],
        "eval": ["0_george_0.wav", "1_jackson_1.wav", "2_theo_3.wav"],
    }
    assert _labels(splits["train"]) == [["0"], ["1"], ["2"]]
    waveform = decode_example(splits["eval"][0])
    assert waveform.shape[0] == 2 * sf.info(str(fsdd_subset / "0_george_0.wav")).frames  # 8 kHz -> 16 kHz
    named = folder_examples(fsdd_subset, label_regex=r"_(?P<label>[a-z]+)_")
    assert sorted({e["labels"][0] for e in named["train"]}) == ["george", "jackson", "theo"]


def test_folder_errors(class_dir, tmp_path):
    with pytest.raises(ValueError, match=r"finds no label in 3 file\(s\).*a\.wav"):
        folder_examples(class_dir, label_regex=r"^dog/")
    sf.write(tmp_path / "loose.wav", np.zeros(800, dtype=np.float32), 16000)
    with pytest.raises(ValueError, match="no class sub-folder holds 1 file.*loose.wav"):
        folder_examples(tmp_path)
    with pytest.raises(ValueError, match="not a valid regular expression"):
        folder_examples(class_dir, label_regex="(")
    with pytest.raises(ValueError, match="no audio files"):
        folder_examples(class_dir, extensions=[".aiff"])
    with pytest.raises(FileNotFoundError):
        folder_examples(tmp_path / "missing")


def test_csv_manifest_multi_label(class_dir, tmp_path, extractor):
    shutil.copytree(class_dir, tmp_path / "audio")
    manifest = tmp_path / "lists" / "train.csv"
    manifest.parent.mkdir()
    rows = [
        f"{class_dir / 'cat' / 'a.wav'},cat",  # absolute path
        "../audio/dog/d.wav,dog; bark",  # relative to the manifest's folder
        f"{class_dir / 'cat' / 'b.wav'},",  # no label: a negative clip
    ]
    manifest.write_text("path,label\n" + "\n".join(rows) + "\n")
    examples = manifest_examples(manifest)
    assert _labels(examples) == [["cat"], ["dog", "bark"], []]
    assert Path(examples[1]["audio"]).resolve() == (tmp_path / "audio" / "dog" / "d.wav").resolve()

    space = LabelSpace.infer(_labels(examples))
    assert space.labels == ("bark", "cat", "dog") and space.multi_label
    assert space.problem_type == "multi_label_classification"
    dataset = AudioDataset(examples, space)
    batch = AudioCollator(extractor)([dataset[i] for i in range(len(dataset))])
    assert batch["labels"].dtype == torch.float32
    assert batch["labels"].tolist() == [[0, 1, 0], [1, 0, 1], [0, 0, 0]]


def test_jsonl_manifest_and_errors(class_dir, tmp_path):
    manifest = tmp_path / "clips.jsonl"
    lines = [
        {"path": str(class_dir / "cat" / "a.wav"), "label": "cat"},
        {"path": str(class_dir / "dog" / "e.wav"), "labels": ["dog"]},
    ]
    manifest.write_text("\n".join(json.dumps(line) for line in lines) + "\n\n")
    examples = manifest_examples(manifest)
    assert _labels(examples) == [["cat"], ["dog"]]
    space = LabelSpace.infer(_labels(examples))
    assert not space.multi_label and space.problem_type == "single_label_classification"

    bad_json = tmp_path / "bad.jsonl"
    bad_json.write_text('{"path": "a.wav", "label": "x"}\n{"path": "b.wav", "label": 3}\n')
    with pytest.raises(ValueError, match="line 2: the label must be a string or a list"):
        manifest_examples(bad_json)
    bad_csv = tmp_path / "bad.csv"
    bad_csv.write_text("file,label\na.wav,x\n")
    with pytest.raises(ValueError, match="bad.csv, line 2: no 'path' column"):
        manifest_examples(bad_csv)
    with pytest.raises(ValueError, match=r"\.csv / \.jsonl"):
        manifest_examples(class_dir / "cat" / "notes.txt")


def test_decode_arrays_bytes_and_audio_dicts():
    tone = _tone(8000, 0.25, 440.0, 0)
    expected = resample(torch.from_numpy(tone), 8000, 16000)
    from_array = decode_example({"audio": tone, "sampling_rate": 8000, "labels": []})
    from_dict = decode_example({"audio": {"array": tone, "sampling_rate": 8000}, "sampling_rate": None, "labels": []})
    stereo = np.stack([tone, np.zeros_like(tone)], axis=1)  # the mean of the channels: half the tone
    from_bytes = decode_example({"audio": {"bytes": _wav_bytes(stereo, 8000), "path": None}, "labels": []})
    torch.testing.assert_close(from_array, expected)
    torch.testing.assert_close(from_dict, expected)
    torch.testing.assert_close(from_bytes, expected / 2, atol=1e-4, rtol=0)  # 16-bit PCM
    with pytest.raises(UnreadableAudioError, match="needs its sampling_rate"):
        decode_example({"audio": tone, "sampling_rate": None, "labels": [], "name": "clip-3"})
    with pytest.raises(UnreadableAudioError, match=r"one mono clip \(a 1-D array\)"):
        decode_example({"audio": stereo, "sampling_rate": 8000, "labels": []})
    with pytest.raises(UnreadableAudioError, match="NaN or infinite"):
        decode_example({"audio": np.array([0.0, np.nan] * 300), "sampling_rate": 16000, "labels": []})


def test_clips_shorter_than_a_frame_are_unreadable_and_loud_ones_featurise(extractor):
    with pytest.raises(UnreadableAudioError, match="clip-1: 399 samples at 16000 Hz, fewer than one 25 ms frame"):
        decode_example({"audio": np.full(399, 0.1), "sampling_rate": 16000, "labels": [], "name": "clip-1"})
    assert decode_example({"audio": np.full(400, 0.1), "sampling_rate": 16000, "labels": []}).shape == (400,)
    # One amplitude policy: a clip whose float32 filter banks overflow is computed in float64 by the extractor, in
    # training as at inference, so log-mel(c x) = log-mel(x) + 2 ln c holds (the training decoder once refused it).
    clip = torch.randn(1600, generator=torch.Generator().manual_seed(0)) * 0.1  # noise: no bin at the energy floor
    loud = decode_example({"audio": (clip * 1e20).numpy(), "sampling_rate": 16000, "labels": [], "name": "clip-2"})
    collate = AudioCollator(ASTFeatureExtractor(do_normalize=False, max_length=MAX_FRAMES), padding="longest")
    (loud_features, mask), (quiet_features, _) = (collate.log_mel([waveform]) for waveform in (loud, clip))
    assert torch.isfinite(loud_features).all()
    # real frames, and mel bins that catch some FFT bin (the lowest of 128 catch none: Kaldi's energy floor in both)
    measured = mask[..., None] & (quiet_features > math.log(torch.finfo(torch.float32).eps) + 1)
    loud_features, quiet_features = loud_features[measured], quiet_features[measured]
    torch.testing.assert_close(loud_features - quiet_features, torch.full_like(quiet_features, 2 * math.log(1e20)),
                               atol=1e-4, rtol=0)  # float32 rounding of the features near 92 (measured 2.3e-5)


def test_inferred_task_is_explained_and_repeated_files_are_warned_about(class_dir, tmp_path, caplog):
    rows = ["cat/a.wav,cat", "dog/d.wav,dog", "cat/b.wav,", "cat/a.wav,cat", "dog/e.wav,dog", "dog/e.wav,cat"]
    train = tmp_path / "train.csv"
    train.write_text("path,label\n" + "\n".join(f"{class_dir}/{row}" for row in rows) + "\n")
    with caplog.at_level(logging.WARNING):
        examples = manifest_examples(train)
    assert len(examples) == 6  # kept as listed
    duplicate, conflict = (record.getMessage() for record in caplog.records)
    assert f"1 file(s) listed more than once with the same labels, so drawn more often: {class_dir}/cat/a.wav " \
        "(lines 2, 5)" in duplicate
    assert "1 file(s) listed under different labels" in conflict
    assert f"{class_dir}/dog/e.wav (lines 6, 7: cat / dog)" in conflict

    task = task_from_examples(examples, examples[:2], "manifests")
    assert task.label_space.multi_label
    assert task.task_reason == f"1 training clip(s) have no label or several: {class_dir}/cat/b.wav (no label)"
    single = task_from_examples(examples[:2], examples[:2], "manifests")
    assert not single.label_space.multi_label
    assert single.task_reason == "every training clip has exactly one label"
    assert task_from_examples(examples, examples[:2], "m", multi_label=False).task_reason == "as asked"
    assert task_reason([["a", "b"], ["a"], [], ["c"], ["d", "e"], []]) == (
        "4 training clip(s) have no label or several: row 0 (2 labels: a;b), row 2 (no label), row 4 (2 labels: d;e) "
        "and 1 more"
    )

    caplog.clear()
    clean = tmp_path / "clean.jsonl"
    clean.write_text("".join(json.dumps({"path": f"{class_dir}/{row}", "label": "x"}) + "\n" for row in rows[:3]))
    with caplog.at_level(logging.WARNING):
        manifest_examples(clean)
    assert not caplog.records


def test_label_space():
    space = LabelSpace.infer([["dog"], ["cat"], ["bird"]])
    assert space.labels == ("bird", "cat", "dog") and not space.multi_label
    assert space.id2label == {0: "bird", 1: "cat", 2: "dog"} and space.label2id["dog"] == 2
    assert space.config_kwargs()["problem_type"] == "single_label_classification"
    target = space.target(["dog"])
    assert target.dtype == torch.int64 and target.shape == () and int(target) == 2
    assert space.multi_hot(["cat", "dog"]).tolist() == [0.0, 1.0, 1.0]
    with pytest.raises(ValueError, match="exactly one label"):
        space.target(["cat", "dog"])
    with pytest.raises(ValueError, match="'cow' is not in the label space"):
        space.target(["cow"])
    with pytest.raises(ValueError, match="cow of the test split"):
        space.check([["cat"], ["cow"]], "test")
    with pytest.raises(ValueError, match="at least 2 labels"):
        LabelSpace.infer([["cat"], ["cat"]])
    assert LabelSpace.infer([["cat"], []]).multi_label  # a clip without a label makes the task multi-label
    assert LabelSpace.infer([["b"]], names=["c", "b", "a"]).labels == ("a", "b", "c")

    from modeling_ast import ASTConfig

    config = ASTConfig(**LabelSpace(("x", "y", "z"), multi_label=True).config_kwargs())
    assert LabelSpace.from_config(config) == LabelSpace(("x", "y", "z"), multi_label=True)


@pytest.fixture()
def fast_streams(monkeypatch):
    """`datasets` sleeps 5 s at the end of each pass over a shuffled parquet stream (to let pyarrow threads stop);
    the tests' streams are tiny, so skip the wait."""
    datasets = pytest.importorskip("datasets")
    monkeypatch.setattr(datasets.config, "SLEEP_TIME_ON_THREADS_SHUTDOWN", 0)


def _hub_features(label_feature):
    from datasets import Features, Value

    return Features({"audio": {"bytes": Value("binary"), "path": Value("string")}, "label": label_feature})


def _make_hub_dataset(class_dir: Path, labels: list, label_feature):
    """A `datasets.Dataset` with an Audio column: clips 0 and 2 as bytes, clip 1 as a path (8 kHz and 44.1 kHz)."""
    from datasets import Audio, Dataset

    files = [class_dir / "cat" / "a.wav", class_dir / "dog" / "f.wav", class_dir / "dog" / "d.wav"]
    audio = [
        {"bytes": files[0].read_bytes(), "path": "a.wav"},
        {"bytes": None, "path": str(files[1])},
        {"bytes": files[2].read_bytes(), "path": None},
    ]
    dataset = Dataset.from_dict({"audio": audio, "label": labels}, features=_hub_features(label_feature))
    return dataset.cast_column("audio", Audio()), files


def test_hub_dataset_saved_to_disk(class_dir, tmp_path):
    pytest.importorskip("datasets")
    from datasets import ClassLabel, DatasetDict

    dataset, files = _make_hub_dataset(class_dir, [1, 0, 0], ClassLabel(names=["dog", "cat", "owl"]))
    DatasetDict(train=dataset, test=dataset.select([0])).save_to_disk(tmp_path / "saved")

    examples = load_hub_examples(tmp_path / "saved", split="train")
    assert isinstance(examples, HubExamples) and len(examples) == 3
    assert _labels(examples) == [["cat"], ["dog"], ["dog"]]
    space = examples.label_space()
    assert space.labels == ("cat", "dog", "owl") and not space.multi_label  # all ClassLabel names, sorted
    for example, path in zip(examples, files):
        assert decode_example(example).shape[0] == _expected_samples(path)
    assert "row 0" in examples[0]["name"] and examples[-1]["labels"] == ["dog"]
    assert len(load_hub_examples(tmp_path / "saved", split="test")) == 1

    dataset_items = AudioDataset(examples, space, train=True, max_samples=MAX_SAMPLES, seed=1)
    assert [int(_draw(dataset_items, i)["labels"]) for i in range(3)] == [0, 1, 1]
    with pytest.raises(ValueError, match="no split 'validation'"):
        load_hub_examples(tmp_path / "saved", split="validation")
    with pytest.raises(ValueError, match=r"no column\(s\) \['sound'\]"):
        load_hub_examples(tmp_path / "saved", audio_column_name="sound")


@pytest.mark.parametrize("kind", ["class_list", "string_list"])
def test_hub_dataset_multi_label_columns(class_dir, tmp_path, kind):
    pytest.importorskip("datasets")
    from datasets import ClassLabel, List, Value

    if kind == "class_list":
        dataset, _ = _make_hub_dataset(class_dir, [[0, 1], [1], []], List(ClassLabel(names=["cat", "dog"])))
    else:
        dataset, _ = _make_hub_dataset(class_dir, [["cat", "dog"], ["dog"], []], List(Value("string")))
    dataset.save_to_disk(tmp_path / "saved")
    examples = load_hub_examples(tmp_path / "saved")
    assert _labels(examples) == [["cat", "dog"], ["dog"], []]
    space = examples.label_space()
    assert space == LabelSpace(("cat", "dog"), multi_label=True)


def test_hub_streaming_from_parquet(class_dir, tmp_path, extractor, fast_streams):
    from datasets import ClassLabel, concatenate_datasets

    dataset, _ = _make_hub_dataset(class_dir, [1, 0, 0], ClassLabel(names=["dog", "cat"]))
    concatenate_datasets([dataset] * 4).to_parquet(str(tmp_path / "data" / "train.parquet"))

    stream = load_hub_examples(tmp_path / "data", split="train", streaming=True)
    assert isinstance(stream, StreamingHubExamples)
    with pytest.raises(TypeError):
        len(stream)
    assert stream.label_space() == LabelSpace(("cat", "dog"), multi_label=False)
    plain = [_identity(example) for example in stream]
    shuffled = stream.shuffle(seed=3, buffer_size=8)
    first = [_identity(example) for example in shuffled]
    assert sorted(first) == sorted(plain) and first != plain
    assert [_identity(example) for example in shuffled] == first  # same epoch, same order
    shuffled.set_epoch(1)
    second = [_identity(example) for example in shuffled]
    assert sorted(second) == sorted(plain) and second != first

    items = StreamingAudioDataset(shuffled, stream.label_space(), train=True, max_samples=MAX_SAMPLES)
    loader = torch.utils.data.DataLoader(items, batch_size=5, collate_fn=AudioCollator(extractor))
    batches = list(loader)
    assert [batch["input_values"].shape[0] for batch in batches] == [5, 5, 2]
    assert all(batch["labels"].dtype == torch.int64 for batch in batches)
    assert batches[0]["input_values"].shape[1:] == (MAX_FRAMES, 128)


def _identity(example) -> tuple[str, int]:
    """A clip's label and the hash of its audio (bytes or path); stream positions change with shuffling."""
    return example["labels"][0], hash(example["audio"] if isinstance(example["audio"], (bytes, str)) else None)


class RecordingCollator(AudioCollator):
    """`AudioCollator` that keeps a copy of every batch it makes."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.batches: list[dict[str, torch.Tensor]] = []

    def __call__(self, items):
        batch = super().__call__(items)
        self.batches.append({key: value.clone() for key, value in batch.items()})
        return batch


def test_streaming_dataset_trains_with_trainer_max_steps(class_dir, tmp_path, extractor, fast_streams):
    pytest.importorskip("accelerate")
    from datasets import ClassLabel, List
    from transformers import Trainer, TrainingArguments

    from modeling_ast import ASTForAudioClassification
    from tiny_models import tiny_config

    dataset, _ = _make_hub_dataset(class_dir, [[0, 1], [1], [0]], List(ClassLabel(names=["cat", "dog"])))
    dataset.to_parquet(str(tmp_path / "data" / "train.parquet"))
    stream = load_hub_examples(tmp_path / "data", split="train", streaming=True).shuffle(seed=0, buffer_size=4)
    space = stream.label_space()
    augment = AugmentConfig(mixup=0.5, freqm=8, timem=8)
    train_set = StreamingAudioDataset(stream, space, train=True, max_samples=MAX_SAMPLES, augment=augment)
    config = tiny_config(num_hidden_layers=1, num_attention_heads=2, max_length=MAX_FRAMES, **space.config_kwargs())
    args = TrainingArguments(
        output_dir=str(tmp_path / "out"), max_steps=3, per_device_train_batch_size=2, report_to="none",
        remove_unused_columns=False, save_strategy="no", use_cpu=True, logging_steps=1,
    )
    model = ASTForAudioClassification(config)
    initial = {key: value.clone() for key, value in model.state_dict().items()}
    collator = RecordingCollator(extractor, augment)
    trainer = Trainer(model=model, args=args, train_dataset=train_set, data_collator=collator)
    result = trainer.train()
    assert result.global_step == 3 and math.isfinite(result.training_loss)
    # Three steps over a stream of three clips in batches of two: 2 + 1 clips, then 2 of the next pass (accelerate
    # fetches one batch ahead); multi-label targets (multi-hot, or mixed by mixup), and the model learnt.
    assert [len(batch["labels"]) for batch in collator.batches[:3]] == [2, 1, 2]
    for batch in collator.batches:
        size = len(batch["labels"])
        assert batch["input_values"].shape == (size, MAX_FRAMES, 128) and batch["labels"].shape == (size, 2)
        assert batch["labels"].dtype == torch.float32 and bool(((batch["labels"] >= 0) & (batch["labels"] <= 1)).all())
        assert bool((batch["labels"].sum(dim=1) > 0).all())  # every clip of this stream has a label
    changed = [key for key, value in model.state_dict().items() if not torch.equal(value, initial[key])]
    assert "classifier.fc.weight" in changed and len(changed) > len(initial) // 2
    losses = [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]
    assert len(losses) == 3 and all(math.isfinite(loss) for loss in losses)
    model.eval()
    batch = collator.batches[0]
    with torch.no_grad():
        output = model(**batch)
    expected = torch.nn.functional.binary_cross_entropy_with_logits(output.logits, batch["labels"])
    torch.testing.assert_close(output.loss, expected)  # the multi-label loss on the soft targets


def test_map_datasets_train_with_soft_targets_and_evaluate_with_class_indices(fsdd_subset, tmp_path, extractor):
    """Single-label with mixup: training batches hold (B, C) soft targets (soft-target cross-entropy in the model),
    evaluation batches (B,) class indices; one collator serves both loops."""
    pytest.importorskip("accelerate")
    from transformers import TrainingArguments

    from modeling_ast import ASTForAudioClassification
    from tiny_models import tiny_config
    from modeling_ast.training.trainer import ASTTrainer

    splits = folder_examples(fsdd_subset, label_regex=r"^(\d+)_", eval_regex=r"_[0-4]\.wav$")
    space = LabelSpace.infer(_labels(splits["train"]))
    space.check(_labels(splits["eval"]), "eval")
    augment = SPEECH_COMMANDS
    train_set = AudioDataset(splits["train"], space, train=True, max_samples=MAX_SAMPLES, augment=augment)
    eval_set = AudioDataset(splits["eval"], space, max_samples=MAX_SAMPLES)
    config = tiny_config(num_hidden_layers=1, num_attention_heads=2, max_length=MAX_FRAMES, **space.config_kwargs())
    args = TrainingArguments(
        output_dir=str(tmp_path / "out"), max_steps=2, per_device_train_batch_size=3, per_device_eval_batch_size=3,
        report_to="none", remove_unused_columns=False, save_strategy="no", use_cpu=True,
    )
    collator = RecordingCollator(extractor, augment)
    trainer = ASTTrainer(  # the Trainer that draws training items by (epoch, position) keys
        model=ASTForAudioClassification(config), args=args, train_dataset=train_set, eval_dataset=eval_set,
        data_collator=collator, recipe=RecipeArguments(paper_optimizer=False),
    )
    assert math.isfinite(trainer.train().training_loss)
    training_batches, collator.batches = collator.batches, []
    assert math.isfinite(trainer.evaluate()["eval_loss"])
    predictions = trainer.predict(eval_set)
    assert predictions.label_ids.tolist() == [0, 1, 2]

    # Training batches: (B, C) float soft targets, each row a distribution, some of them mixed by mixup.
    assert len(training_batches) == 2
    soft = torch.cat([batch["labels"] for batch in training_batches])
    assert soft.shape == (6, space.num_labels) and soft.dtype == torch.float32
    torch.testing.assert_close(soft.sum(dim=1), torch.ones(6))
    assert bool(((soft > 0).sum(dim=1) == 2).any())  # mixed with a clip of another digit
    # Evaluation batches: (B,) int64 class indices.
    assert [batch["labels"].dtype for batch in collator.batches] == [torch.int64] * 2
    assert torch.cat([batch["labels"] for batch in collator.batches]).tolist() == [0, 1, 2] * 2
    # The model's loss on a training batch is the soft-target cross-entropy.
    model = trainer.model.eval()
    batch = training_batches[0]
    with torch.no_grad():
        output = model(**batch)
    expected = -(batch["labels"] * output.logits.log_softmax(dim=-1)).sum(dim=-1).mean()
    torch.testing.assert_close(output.loss, expected)


# ---------------------------------------------------------------------------------------------------------------
# Unreadable files
# ---------------------------------------------------------------------------------------------------------------


@pytest.fixture()
def bad_manifest(class_dir, tmp_path) -> Path:
    (tmp_path / "corrupt.wav").write_bytes(b"RIFF but not really a wav file")
    (tmp_path / "empty.wav").write_bytes(_wav_bytes(np.zeros(0, dtype=np.float32), 16000))
    rows = [
        f"{class_dir / 'cat' / 'a.wav'},cat",
        "missing.wav,dog",
        "corrupt.wav,cat",
        f"{class_dir / 'dog' / 'd.wav'},dog",
        "empty.wav,dog",
    ]
    manifest = tmp_path / "clips.csv"
    manifest.write_text("path,label\n" + "\n".join(rows) + "\n")
    return manifest


def test_bad_files_raise_with_their_name(bad_manifest):
    examples = manifest_examples(bad_manifest)
    dataset = AudioDataset(examples, LabelSpace.infer(_labels(examples)))
    assert dataset[0]["audio"].numel() > 0
    for index, name in [(1, "missing.wav"), (2, "corrupt.wav"), (4, "empty.wav")]:
        with pytest.raises(UnreadableAudioError, match=name) as caught:
            dataset[index]
        assert caught.value.name.endswith(name)
    with pytest.raises(ValueError, match="on_bad_file"):
        AudioDataset(examples, dataset.label_space, on_bad_file="ignore")


def test_bad_files_skipped_counted_and_reported(bad_manifest, extractor, caplog):
    examples = manifest_examples(bad_manifest)
    dataset = AudioDataset(examples, LabelSpace.infer(_labels(examples)), on_bad_file="skip")
    collator = AudioCollator(extractor)
    with caplog.at_level(logging.WARNING):
        items = [dataset[index] for index in range(4)]
        assert dataset.bad_files.count == 2 and dataset.bad_files.names[0].endswith("missing.wav")
        assert not caplog.records  # the pass is not over yet
        items.append(dataset[4])  # fifth read of five: end of the pass
    assert [item is None for item in items] == [False, True, True, False, True]
    assert dataset.bad_files.last_pass_count == 3 and dataset.bad_files.count == 0 and dataset.bad_files.total == 3
    (record,) = caplog.records
    assert "skipped 3 unreadable audio file(s)" in record.getMessage() and "corrupt.wav" in record.getMessage()
    batch = collator(items)
    assert batch["input_values"].shape[0] == 2 and batch["labels"].tolist() == [0, 1]
    for index in range(5):  # a second pass: the same files fail again, `total` counts distinct files
        dataset[index]
    assert dataset.bad_files.last_pass_count == 3 and dataset.bad_files.total == 3
    with pytest.raises(ValueError, match="all 2 clips of this batch were unreadable"):
        collator([None, None])

    stream = StreamingAudioDataset(examples, dataset.label_space, on_bad_file="skip")
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        assert len(list(stream)) == 2
    assert stream.bad_files.last_pass_count == 3 and "skipped 3" in caplog.records[-1].getMessage()


def test_bad_bytes_in_a_hub_dataset_are_named(tmp_path):
    pytest.importorskip("datasets")
    from datasets import Audio, Dataset, Value

    dataset = Dataset.from_dict(
        {"audio": [{"bytes": b"garbage", "path": "clip7.wav"}], "label": ["x"]},
        features=_hub_features(Value("string")),
    ).cast_column("audio", Audio())
    dataset.save_to_disk(tmp_path / "saved")
    examples = load_hub_examples(tmp_path / "saved")
    with pytest.raises(UnreadableAudioError, match=r"row 0 \(clip7.wav\)"):
        decode_example(examples[0])


# ---------------------------------------------------------------------------------------------------------------
# Lengths
# ---------------------------------------------------------------------------------------------------------------


def test_num_samples_for_frames():
    assert num_samples_for_frames(1024) == 1023 * 160 + 400
    assert num_samples_for_frames(128) == 20720
    assert num_frames(num_samples_for_frames(MAX_FRAMES)) == MAX_FRAMES
    with pytest.raises(ValueError):
        num_samples_for_frames(0)


def test_random_crop_lengths_and_offsets():
    waveform = torch.arange(1000, dtype=torch.float32)
    generator = torch.Generator().manual_seed(0)
    starts = set()
    for _ in range(50):
        crop = random_crop(waveform, 300, generator)
        start = int(crop[0])
        assert crop.shape == (300,) and torch.equal(crop, waveform[start : start + 300])
        starts.add(start)
    assert len(starts) > 30 and min(starts) >= 0 and max(starts) <= 700
    assert random_crop(waveform, 2000, generator) is waveform  # short clips are not padded in the waveform


def test_dataset_crop_and_collator_padding(class_dir, extractor):
    examples = folder_examples(class_dir)["train"]
    space = LabelSpace.infer(_labels(examples))
    full = [decode_example(example) for example in examples]
    train = AudioDataset(examples, space, train=True, max_samples=MAX_SAMPLES, seed=0)
    evaluation = AudioDataset(examples, space, max_samples=MAX_SAMPLES, augment=AugmentConfig(mixup=1.0, freqm=9))
    for index, waveform in enumerate(full):
        crop = _draw(train, index)["audio"]
        assert crop.shape[0] == min(waveform.shape[0], MAX_SAMPLES)
        assert torch.equal(evaluation[index]["audio"], waveform[:MAX_SAMPLES])  # left-aligned, deterministic
    long_index = max(range(len(full)), key=lambda i: full[i].shape[0])
    offsets = {_offset(full[long_index], _draw(train, long_index, position=p)["audio"]) for p in range(10)}
    assert len(offsets) > 1

    batch = AudioCollator(extractor)([evaluation[i] for i in range(len(examples))])
    assert batch["input_values"].shape == (len(examples), MAX_FRAMES, 128)
    expected_frames = [min(num_frames(max(w.shape[0], num_samples_for_frames(16))), MAX_FRAMES) for w in full]
    assert batch["attention_mask"].sum(dim=1).tolist() == expected_frames
    longest = AudioCollator(extractor, padding="longest")([evaluation[i] for i in range(len(examples))])
    assert longest["input_values"].shape[1] == max(expected_frames)


def _offset(waveform: torch.Tensor, crop: torch.Tensor) -> int:
    """Where `crop` starts in `waveform` (asserting it is a contiguous piece of it)."""
    windows = waveform.unfold(0, crop.shape[0], 1)
    (matches,) = torch.nonzero((windows == crop).all(dim=1), as_tuple=True)
    assert matches.numel() >= 1
    return int(matches[0])


# ---------------------------------------------------------------------------------------------------------------
# Mixup
# ---------------------------------------------------------------------------------------------------------------


def test_mix_waveforms_recentres_and_aligns_the_partner():
    first = torch.linspace(0.0, 1.0, 100) + 3.0
    longer = torch.linspace(-1.0, 1.0, 150) + 5.0
    shorter = torch.ones(40) * 2.0 + torch.linspace(0, 1, 40)
    lam = 0.3
    mixed = mix_waveforms(first, longer, lam)
    assert mixed.shape == (100,) and abs(float(mixed.mean())) < 1e-6
    centred_first, centred_second = first - first.mean(), (longer - longer.mean())[:100]
    expected = lam * centred_first + (1 - lam) * centred_second
    torch.testing.assert_close(mixed, expected - expected.mean())
    padded = mix_waveforms(first, shorter, lam)
    second = torch.cat([shorter - shorter.mean(), torch.zeros(60)])
    expected = lam * centred_first + (1 - lam) * second
    torch.testing.assert_close(padded, expected - expected.mean())


def test_mix_targets_arithmetic():
    space = LabelSpace(("a", "b", "c"), multi_label=True)
    mixed = mix_targets(space.multi_hot(["a", "b"]), space.multi_hot(["b", "c"]), 0.7)
    torch.testing.assert_close(mixed, torch.tensor([0.7, 1.0, 0.3]))
    soft = mix_targets(space.multi_hot(["a"]), space.multi_hot(["c"]), 0.25)
    torch.testing.assert_close(soft, torch.tensor([0.25, 0.0, 0.75]))
    with pytest.raises(ValueError, match="differ in shape"):
        mix_targets(torch.zeros(3), torch.zeros(4), 0.5)


def test_mixup_lambda_is_beta_10_10():
    generator = torch.Generator().manual_seed(0)
    draws = np.array([sample_mixup_lambda(10.0, generator) for _ in range(4000)])
    assert abs(draws.mean() - 0.5) < 0.01
    assert abs(draws.std() - math.sqrt(100 / (400 * 21))) < 0.01  # Beta(10, 10) standard deviation 0.109
    assert draws.min() > 0.0 and draws.max() < 1.0


def test_dataset_mixup_makes_soft_targets_and_centred_waveforms(fsdd_subset):
    examples = folder_examples(fsdd_subset, label_regex=r"^(\d+)_")["train"]
    space = LabelSpace.infer(_labels(examples))
    dataset = AudioDataset(examples, space, train=True, max_samples=MAX_SAMPLES, augment=AugmentConfig(mixup=1.0))
    mixed = 0
    for epoch in range(3):
        for index in range(len(dataset)):
            item = _draw(dataset, index, epoch)
            target = item["labels"]
            assert target.dtype == torch.float32 and target.shape == (3,)
            assert math.isclose(float(target.sum()), 1.0, rel_tol=1e-6)
            assert float(target[space.label2id[examples[index]["labels"][0]]]) >= 0.2  # lambda > 0.2 here
            assert abs(float(item["audio"].mean())) < 1e-6
            mixed += int((target > 0).sum()) == 2
    assert mixed > 6  # most partners (uniform over 6 clips) carry another digit

    no_mixup = AudioDataset(examples, space, train=True, max_samples=MAX_SAMPLES)
    assert _draw(no_mixup, 0)["labels"].dtype == torch.int64  # class indices without mixup
    evaluation = AudioDataset(examples, space, augment=AugmentConfig(mixup=1.0))
    assert evaluation[0]["labels"].dtype == torch.int64 and "seed" not in evaluation[0]


def test_dataset_mixup_weights_target_and_waveform_with_the_same_lambda(fsdd_subset):
    """Each item's draw replayed from its seed: the mixup decision, the partner and lambda. The item's own label has
    weight lambda (plus 1 - lambda when the partner shares it) and its waveform is lambda * own + (1 - lambda) *
    partner, both centred (clips whole here: no crop draws)."""
    examples = folder_examples(fsdd_subset, label_regex=r"^(\d+)_")["train"]
    space = LabelSpace.infer(_labels(examples))
    dataset = AudioDataset(examples, space, train=True, augment=AugmentConfig(mixup=1.0))
    waveforms = [decode_example(example).double() for example in examples]
    lambdas, mixed_labels = [], 0
    for position in range(2 * len(examples)):
        index = position % len(examples)
        item = _draw(dataset, index, epoch=1, position=position)
        generator = seeded_generator(item["seed"], WAVEFORM_STAGE)
        assert float(torch.rand((), generator=generator)) < 1.0  # mixup probability 1
        partner = int(torch.randint(0, len(examples), (), generator=generator))
        lam = sample_mixup_lambda(10.0, generator)
        lambdas.append(lam)
        own_label, partner_label = examples[index]["labels"][0], examples[partner]["labels"][0]
        target = torch.zeros(space.num_labels)
        target[space.label2id[own_label]] += lam
        target[space.label2id[partner_label]] += 1 - lam
        torch.testing.assert_close(item["labels"], target, rtol=0, atol=1e-6)
        mixed_labels += own_label != partner_label
        own, other = waveforms[index] - waveforms[index].mean(), waveforms[partner] - waveforms[partner].mean()
        other = torch.cat([other, other.new_zeros(max(0, len(own) - len(other)))])[: len(own)]
        expected = lam * own + (1 - lam) * other
        torch.testing.assert_close(item["audio"].double(), expected - expected.mean(), rtol=0, atol=1e-6)
    assert mixed_labels >= 4 and max(abs(lam - 0.5) for lam in lambdas) > 0.1  # lambda and 1 - lambda differ


def test_streaming_mixup_partner_comes_from_recent_clips(class_dir):
    examples = folder_examples(class_dir)["train"]
    space = LabelSpace.infer(_labels(examples))
    stream = StreamingAudioDataset(
        examples, space, train=True, augment=AugmentConfig(mixup=1.0), mixup_buffer_size=2, seed=4
    )
    items = list(stream)
    assert items[0]["labels"].tolist() == [1.0, 0.0]  # first clip: nothing to mix with yet
    assert any(0.0 < float(item["labels"][0]) < 1.0 for item in items[3:])  # dog clips mixed with cat clips


# ---------------------------------------------------------------------------------------------------------------
# SpecAugment, noise and roll
# ---------------------------------------------------------------------------------------------------------------


def test_spec_augment_masks_and_widths():
    generator = torch.Generator().manual_seed(0)
    freq_widths, time_widths = [], []
    for _ in range(300):
        features = torch.rand(100, 128) + 1.0
        spans = spec_augment_(features, freqm=24, timem=30, generator=generator)
        freq_widths.append(spans.freq_width)
        time_widths.append(spans.time_width)
        assert 0 <= spans.freq_start <= 128 - spans.freq_width and 0 <= spans.time_start <= 100 - spans.time_width
        expected = torch.zeros(100, 128, dtype=torch.bool)
        expected[:, spans.freq_start : spans.freq_start + spans.freq_width] = True
        expected[spans.time_start : spans.time_start + spans.time_width] = True
        assert torch.equal(features == 0, expected)
    assert max(freq_widths) == 24 and min(freq_widths) == 0 and max(time_widths) == 30
    assert abs(np.mean(freq_widths) - 12) < 1.5 and abs(np.mean(time_widths) - 15) < 1.5
    small = torch.ones(5, 3)
    spans = spec_augment_(small, freqm=48, timem=192, generator=generator)
    assert spans.freq_width <= 3 and spans.time_width <= 5


def test_collator_applies_spec_augment_before_normalisation(class_dir, extractor):
    examples = folder_examples(class_dir)["train"]
    space = LabelSpace.infer(_labels(examples))
    augment = AugmentConfig(freqm=20, timem=25)
    dataset = AudioDataset(examples, space, train=True, max_samples=MAX_SAMPLES, augment=augment, seed=7)
    items = [_draw(dataset, index) for index in range(len(dataset))]
    collator = AudioCollator(extractor, augment)
    batch = collator(items)

    raw, _ = collator.log_mel([item["audio"] for item in items])
    masked_value = (torch.tensor(0.0) - extractor.mean) / (2 * extractor.std)
    normalised = (raw - extractor.mean) / (2 * extractor.std)
    total_masked = 0
    for index, (row, item) in enumerate(zip(batch["input_values"], items)):
        generator = seeded_generator(item["seed"], SPECTROGRAM_STAGE)
        spans = spec_augment_(raw[index].clone(), augment.freqm, augment.timem, generator)
        assert spans.freq_width <= 20 and spans.time_width <= 25
        mask = torch.zeros_like(row, dtype=torch.bool)
        mask[:, spans.freq_start : spans.freq_start + spans.freq_width] = True
        mask[spans.time_start : spans.time_start + spans.time_width] = True
        assert torch.all(row[mask] == masked_value)  # masked with 0 before normalisation
        torch.testing.assert_close(row[~mask], normalised[index][~mask], rtol=0, atol=1e-6)
        total_masked += int(mask.sum())
    assert total_masked > 0


def test_noise_and_roll_statistics():
    generator = torch.Generator().manual_seed(0)
    ramp = (torch.arange(50, dtype=torch.float32) * 10.0)[:, None].expand(50, 4)
    shifts, levels = [], []
    for _ in range(600):
        out = noise_and_roll(ramp, generator)
        noise = out - torch.roll(ramp, int(_shift(out)), dims=0)
        assert float(noise.min()) >= 0.0 and float(noise.max()) < 0.1
        shifts.append(_shift(out))
        levels.append(float(noise.mean()))
    assert set(shifts) == set(range(-MAX_ROLL, MAX_ROLL))
    counts = np.bincount(np.array(shifts) + MAX_ROLL)
    assert counts.min() > 10  # roughly uniform over 20 shifts (30 expected each)
    # Noise U(0, 1) * r / 10 with r ~ U(0, 1): mean 1/40; the per-clip level is about r/20, spread over [0, 0.05].
    assert abs(np.mean(levels) - 0.025) < 0.002 and max(levels) < 0.06 and min(levels) < 0.005
    assert abs(np.std(levels) - 0.05 / math.sqrt(12)) < 0.002

    padded = ramp.clone()
    padded[40:] = -1.0
    for _ in range(20):
        out = noise_and_roll(padded, generator, num_frames=40)
        assert torch.all(out[40:] < 0.0)  # padding stays at the end
        assert sorted((out[:40, 0] // 10).tolist()) == list(range(40))


def _shift(out: torch.Tensor) -> int:
    """The roll that moved frame 0 of a ramp rising by 10 per frame, as a shift in {-10, ..., 9}."""
    origin = int(out[0, 0] // 10)
    shift = -origin % out.shape[0]
    return shift - out.shape[0] if shift >= MAX_ROLL else shift


def test_collator_noise_only_on_training_items(class_dir, extractor):
    examples = folder_examples(class_dir)["train"]
    space = LabelSpace.infer(_labels(examples))
    augment = AugmentConfig(noise=True)
    train = AudioDataset(examples, space, train=True, max_samples=MAX_SAMPLES, augment=augment, seed=3)
    evaluation = AudioDataset(examples, space, max_samples=MAX_SAMPLES, augment=augment)
    collator = AudioCollator(extractor, augment)
    train_batch = collator([_draw(train, 0), _draw(train, 3)])
    eval_batch = collator([evaluation[0], evaluation[3]])
    plain = extractor([decode_example(examples[i]) for i in (0, 3)], sampling_rate=16000, return_tensors="pt")
    assert torch.equal(eval_batch["input_values"], plain["input_values"])
    assert not torch.equal(train_batch["input_values"], plain["input_values"])
    frames = train_batch["attention_mask"].sum(dim=1)
    padding_value = (torch.tensor(0.0) - extractor.mean) / (2 * extractor.std)
    for row, count in zip(train_batch["input_values"], frames.tolist()):
        tail = row[count:] - padding_value
        if tail.numel():
            assert float(tail.min()) >= 0.0 and float(tail.max()) < 0.1  # padding got noise but stayed in place


# ---------------------------------------------------------------------------------------------------------------
# Reproducibility and evaluation
# ---------------------------------------------------------------------------------------------------------------


def _train_batch(examples, space, extractor, seed: int) -> dict[str, torch.Tensor]:
    augment = SPEECH_COMMANDS
    dataset = AudioDataset(examples, space, train=True, max_samples=MAX_SAMPLES, augment=augment, seed=seed)
    return AudioCollator(extractor, augment)([_draw(dataset, index) for index in range(len(dataset))])


def test_augmentation_is_reproducible_under_a_seed(fsdd_subset, extractor):
    examples = folder_examples(fsdd_subset, label_regex=r"^(\d+)_")["train"]
    space = LabelSpace.infer(_labels(examples))
    first, again = _train_batch(examples, space, extractor, 11), _train_batch(examples, space, extractor, 11)
    other = _train_batch(examples, space, extractor, 12)
    for key in first:
        assert torch.equal(first[key], again[key])
    assert not torch.equal(first["input_values"], other["input_values"])

    augment = AugmentConfig(mixup=0.5, freqm=10, timem=10)
    dataset = AudioDataset(examples, space, train=True, max_samples=MAX_SAMPLES, augment=augment, seed=11)
    epoch_one = [_draw(dataset, index, epoch=1)["seed"] for index in range(len(dataset))]
    epoch_two = [_draw(dataset, index, epoch=2)["seed"] for index in range(len(dataset))]
    assert epoch_one != epoch_two  # every epoch draws afresh
    assert epoch_one == [_draw(dataset, index, epoch=1)["seed"] for index in range(len(dataset))]  # the key decides


def test_evaluation_is_never_augmented(fsdd_subset, extractor):
    examples = folder_examples(fsdd_subset, label_regex=r"^(\d+)_", eval_regex=r"_[0-4]\.wav$")["eval"]
    space = LabelSpace(("0", "1", "2"), multi_label=False)
    augment = SPEECH_COMMANDS
    evaluation = AudioDataset(examples, space, max_samples=MAX_SAMPLES, augment=augment)
    collator = AudioCollator(extractor, augment)
    batches = [collator([evaluation[index] for index in range(len(evaluation))]) for _ in range(2)]
    plain = extractor([decode_example(example) for example in examples], sampling_rate=16000, return_tensors="pt")
    for batch in batches:
        assert torch.equal(batch["input_values"], plain["input_values"])
        assert torch.equal(batch["attention_mask"], plain["attention_mask"])
        assert batch["labels"].tolist() == [0, 1, 2]


def test_streaming_list_is_shared_between_workers(class_dir):
    examples = folder_examples(class_dir)["train"]
    space = LabelSpace.infer(_labels(examples))
    stream = StreamingAudioDataset(examples, space, max_samples=MAX_SAMPLES)
    loader = torch.utils.data.DataLoader(stream, batch_size=None, num_workers=2)
    lengths = sorted(item["audio"].shape[0] for item in loader)
    assert lengths == sorted(min(decode_example(example).shape[0], MAX_SAMPLES) for example in examples)
