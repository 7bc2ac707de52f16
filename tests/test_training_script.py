"""examples/run_audio_classification.py as a recipe runner; examples/run_esc50_cv.py; examples/compute_fbank_stats.py.

Every run is a tiny model on a handful of synthetic clips for a few steps: these tests check the plumbing (data
sources, tasks, augmentation, sampling, schedule, averaging, starting points, recipes, outputs, exact resumption), not
the learning.
"""

from __future__ import annotations

import csv
import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest
from conftest import EXAMPLES_DIR, import_example
import soundfile
import torch
import transformers
from safetensors.torch import load_file

from modeling_ast.training.augment import AugmentConfig
from modeling_ast.training.datasets import AudioDataset
from modeling_ast.training.labels import LabelSpace
from modeling_ast.training.recipes import RecipeArguments, parse_args_with_recipe
from modeling_ast.training.sampling import DrawKey, EpochDrawSampler
from modeling_ast.training.sources import manifest_examples
from modeling_ast.training.trainer import last_complete_checkpoint, resume_target
from tiny_models import save_tiny_checkpoint, tiny_builtin_config, tiny_model

RECIPES = sorted((EXAMPLES_DIR / "recipes").glob("*.json"))

TINY = [
    "--hidden_size", "32",
    "--num_hidden_layers", "1",
    "--num_attention_heads", "2",
    "--intermediate_size", "64",
    "--max_length", "64",
    "--per_device_train_batch_size", "4",
    "--disable_tqdm", "true",
    "--report_to", "none",
    "--logging_steps", "1",
]  # fmt: skip


@pytest.fixture(scope="module")
def modules():
    """The example modules, imported from examples/ (they import their siblings by plain name)."""
    names = ("run_audio_classification", "run_esc50_cv", "compute_fbank_stats", "synthetic_sounds")
    return {name: import_example(name) for name in names}


@pytest.fixture(scope="module")
def script(modules):
    return modules["run_audio_classification"]


@pytest.fixture(scope="module")
def clips(modules, tmp_path_factory) -> Path:
    """Synthetic clips: train.csv (2 per class, 16) and eval.csv (1 per class, 8), 8 classes."""
    root = tmp_path_factory.mktemp("clips")
    modules["synthetic_sounds"].generate_dataset(root, train_per_class=2, eval_per_class=1, seed=5)
    return root


@pytest.fixture
def fast_streams(monkeypatch):
    """`datasets` sleeps 5 s at the end of each pass over a shuffled parquet stream; our streams are tiny."""
    datasets = pytest.importorskip("datasets")
    monkeypatch.setattr(datasets.config, "SLEEP_TIME_ON_THREADS_SHUTDOWN", 0)


def rows(manifest: Path) -> list[dict[str, str]]:
    with manifest.open(newline="") as handle:
        return list(csv.DictReader(handle))


def manifests(clips: Path) -> list[str]:
    return ["--train_file", str(clips / "train.csv"), "--eval_file", str(clips / "eval.csv")]


def write_jsonl(path: Path, records: list[dict]) -> Path:
    path.write_text("".join(json.dumps(record) + "\n" for record in records))
    return path


def multi_label_manifests(clips: Path, tmp_path: Path) -> list[str]:
    """JSON Lines manifests over the synthetic clips with two coarse labels each ("tonal"/"noisy" and a family)."""
    families = {"tone": ["tonal"], "am_tone": ["tonal", "pulsed"], "click_train": ["noisy", "pulsed"]}

    def records(split: str) -> list[dict]:
        return [
            {"path": str(clips / row["path"]), "label": families.get(row["label"], ["noisy"])}
            for row in rows(clips / f"{split}.csv")
        ]

    train = write_jsonl(tmp_path / "train.jsonl", records("train"))
    evaluation = write_jsonl(tmp_path / "eval.jsonl", records("eval"))
    return ["--train_file", str(train), "--eval_file", str(evaluation)]


# --- recipes and arguments ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("recipe", RECIPES, ids=lambda path: path.stem)
def test_recipe_files_load_with_command_line_overrides(script, recipe):
    values = {key: value for key, value in json.loads(recipe.read_text()).items() if not key.startswith("_")}
    data = [] if "data_dir" in values else ["--train_file", "a.csv", "--eval_file", "b.csv"]
    groups = script.parse_args([str(recipe), *data, "--seed", "7"])
    for key, value in values.items():
        owner = next(group for group in groups if hasattr(group, key))
        assert getattr(owner, key) == value, key
    assert groups[-1].seed == 7
    groups = (script.ModelArguments, script.DataArguments, script.SEDArguments, RecipeArguments,
              transformers.TrainingArguments)  # fmt: skip
    parser = transformers.HfArgumentParser(groups)
    _, recipe_file, notes = parse_args_with_recipe(parser, [str(recipe), *data])
    assert recipe_file == recipe and set(notes) == {key for key in json.loads(recipe.read_text()) if key[0] == "_"}


def test_fsdd_recipe_names_its_data_and_the_command_line_wins(script):
    recipe = EXAMPLES_DIR / "recipes" / "fsdd.json"
    argv = [str(recipe), "--num_train_epochs", "2", "--freqm", "0"]
    _, data_args, _, recipe_args, training_args = script.parse_args(argv)
    assert data_args.data_dir.endswith("fsdd/recordings") and data_args.label_regex == r"^(\d+)_"
    assert training_args.num_train_epochs == 2 and recipe_args.freqm == 0
    assert recipe_args.timem == json.loads(recipe.read_text())["timem"] > 0


def test_recipe_errors(script, tmp_path):
    (tmp_path / "typo.json").write_text('{"learning_rat": 1e-4}')
    (tmp_path / "list.json").write_text("[1, 2]")
    (tmp_path / "nodata.json").write_text('{"_data": "your AudioSet manifests", "learning_rate": 1e-4}')
    with pytest.raises(ValueError, match=r"sets unknown arguments \['learning_rat'\]"):
        script.parse_args([str(tmp_path / "typo.json")])
    with pytest.raises(ValueError, match="must hold a JSON object"):
        script.parse_args([str(tmp_path / "list.json")])
    with pytest.raises(ValueError, match="needs data: your AudioSet manifests"):
        script.parse_args([str(tmp_path / "nodata.json")])
    with pytest.raises(FileNotFoundError, match="recipe .*missing.json does not exist"):
        script.parse_args([str(tmp_path / "missing.json")])


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--streaming", "true"], "--streaming needs --max_steps"),
        (["--streaming", "true", "--max_steps", "2", "--balanced_sampling", "true"], "--balanced_sampling counts"),
        (["--streaming", "true", "--max_steps", "2", "--lr_decay_start_epoch", "1"], "--lr_decay_start_epoch counts"),
    ],
)
def test_streaming_rejects_epoch_based_options(script, extra, message):
    with pytest.raises(ValueError, match=message):
        script.main(["--dataset_name", "unused", "--output_dir", "unused"] + extra)


# --- data sources and tasks ---------------------------------------------------------------------------------------


def test_multi_label_manifests_train_with_bce_and_write_the_outputs(script, clips, tmp_path):
    """JSON Lines with several labels per clip -> multi-label (BCE, mAP/mAUC/d'), patchout in the config, TensorBoard
    logs, the per-class AP plot and a model card with the metrics and the command."""
    pytest.importorskip("tensorboard")
    pytest.importorskip("matplotlib")
    output_dir = tmp_path / "multi"
    argv = multi_label_manifests(clips, tmp_path) + TINY + ["--output_dir", str(output_dir), "--max_steps", "3"]
    argv += ["--report_to", "tensorboard", "--patchout_time", "1", "--patchout_random", "0.25"]
    result = script.main(argv)

    assert result["problem_type"] == "multi_label_classification"
    config = transformers.AutoConfig.from_pretrained(output_dir)
    assert config.problem_type == "multi_label_classification"
    assert sorted(config.id2label.values()) == ["noisy", "pulsed", "tonal"]
    assert (config.patchout_time, config.patchout_frequency, config.patchout_random) == (1, 0, 0.25)
    assert {"eval_mAP", "eval_mAUC", "eval_d_prime", "eval_accuracy"} <= set(result["metrics"])
    assert result["plot"] == output_dir / "per_class_ap.png" and result["plot"].stat().st_size > 1000
    assert list((output_dir / "runs").glob("*/events.out.tfevents.*"))
    card = (output_dir / "README.md").read_text()
    assert "pipeline_tag: audio-classification" in card and "multi-label" in card
    assert f"| final | {result['metrics']['eval_mAP']:.4f} |" in card
    assert "--patchout_time 1" in card and "python examples/run_audio_classification.py --train_file" in card

    model = result["model"].eval()  # patchout is training-only: evaluation sees every patch, deterministically
    features = torch.randn(2, 64, 128)
    with torch.no_grad():
        assert torch.equal(model(features).logits, model(features).logits)
    assert model.train().ast.patchout.active


def _hub_dataset(clips: Path):
    from datasets import Audio, ClassLabel, Dataset, DatasetDict, Features, Value

    names = sorted({row["label"] for row in rows(clips / "train.csv")})

    def split(name: str) -> Dataset:
        entries = rows(clips / f"{name}.csv")
        features = Features({"sound": Value("string"), "tag": ClassLabel(names=names)})
        data = {"sound": [str(clips / row["path"]) for row in entries], "tag": [row["label"] for row in entries]}
        return Dataset.from_dict(data, features=features).cast_column("sound", Audio())

    return DatasetDict(train=split("train"), test=split("eval"))  # "test": the script's default --eval_split_name


def test_datasets_dataset_from_disk_and_streamed(script, clips, tmp_path, fast_streams):
    dataset = _hub_dataset(clips)
    dataset.save_to_disk(tmp_path / "saved")
    columns = ["--audio_column_name", "sound", "--label_column_name", "tag"]
    result = script.main(
        ["--dataset_name", str(tmp_path / "saved"), "--output_dir", str(tmp_path / "a"), "--max_steps", "2"]
        + columns + TINY
    )
    assert result["num_eval_clips"] == 8 and result["problem_type"] == "single_label_classification"

    for name, split in dataset.items():  # parquet files with the audio bytes embedded: a streamable data folder
        split.to_parquet(str(tmp_path / "parquet" / f"{name}.parquet"))
    result = script.main(
        ["--dataset_name", str(tmp_path / "parquet"), "--streaming", "true", "--max_steps", "3"]
        + ["--output_dir", str(tmp_path / "b"), "--eval_strategy", "no", "--mixup", "0.5", "--freqm", "8"]
        + columns + TINY
    )
    assert result["num_eval_clips"] == 8
    assert transformers.AutoConfig.from_pretrained(tmp_path / "b").num_labels == 8


def test_unreadable_files_stop_the_run_or_are_skipped_and_counted(script, clips, tmp_path, capsys):
    (tmp_path / "broken.wav").write_bytes(b"not a wav file at all")
    entries = [(str(clips / row["path"]), row["label"]) for row in rows(clips / "train.csv")]
    train = tmp_path / "train.csv"
    with train.open("w", newline="") as handle:
        csv.writer(handle).writerows([("path", "label"), *entries, (str(tmp_path / "broken.wav"), "tone")])
    argv = ["--train_file", str(train), "--eval_file", str(clips / "eval.csv")] + TINY
    with pytest.raises(ValueError, match=r"cannot read audio .*broken\.wav"):
        script.main(argv + ["--output_dir", str(tmp_path / "a"), "--num_train_epochs", "1"])

    with train.open("a", newline="") as handle:
        csv.writer(handle).writerow((str(tmp_path / "gone.wav"), "tone"))
    with pytest.raises(FileNotFoundError, match=r"1 listed audio file\(s\) do not exist: .*gone\.wav"):
        script.main(argv + ["--output_dir", str(tmp_path / "b"), "--num_train_epochs", "1"])
    result = script.main(
        argv + ["--output_dir", str(tmp_path / "c"), "--num_train_epochs", "1", "--on_bad_file", "skip"]
    )
    assert result["skipped_files"] == {"train": 2, "eval": 0}  # broken.wav and gone.wav, as the line printed says
    assert "skipped unreadable audio: 2 training clip(s), 0 eval clip(s)" in capsys.readouterr().out


def test_too_short_clips_are_bad_files_and_loud_ones_train(script, clips, tmp_path):
    """A 10 ms clip has no 25 ms frame: it stops the run naming the file, and `--on_bad_file skip` skips it. A float
    WAV of amplitude 1e20 (its filter banks overflow float32) is no bad file: the feature extractor computes it in
    float64, in training as at inference (one amplitude policy), and the run trains on it with finite losses."""
    soundfile.write(tmp_path / "short.wav", np.full(160, 0.1, dtype=np.float32), 16000)
    loud = np.sin(np.arange(16000, dtype=np.float32) * 0.2) * np.float32(1e20)
    soundfile.write(tmp_path / "loud.wav", loud.astype(np.float32), 16000, subtype="FLOAT")
    entries = [(str(clips / row["path"]), row["label"]) for row in rows(clips / "train.csv")]
    argv = ["--eval_file", str(clips / "eval.csv"), "--num_train_epochs", "1"] + TINY
    train = tmp_path / "train_short.csv"
    with train.open("w", newline="") as handle:
        csv.writer(handle).writerows([("path", "label"), *entries, (str(tmp_path / "short.wav"), "tone")])
    with pytest.raises(ValueError, match="cannot read audio .*short.wav: 160 samples at 16000 Hz, fewer than one 25 ms"):
        script.main(argv + ["--train_file", str(train), "--output_dir", str(tmp_path / "run_short")])
    train = tmp_path / "train.csv"
    with train.open("w", newline="") as handle:
        bad_rows = [(str(tmp_path / "short.wav"), "tone"), (str(tmp_path / "loud.wav"), "tone")]
        csv.writer(handle).writerows([("path", "label"), *entries, *bad_rows])
    result = script.main(argv + ["--train_file", str(train), "--output_dir", str(tmp_path / "skip"), "--on_bad_file",
                                 "skip"])  # fmt: skip
    assert result["skipped_files"] == {"train": 1, "eval": 0}
    losses = [entry["loss"] for entry in result["log_history"] if "loss" in entry]
    assert len(losses) == 5 and all(math.isfinite(loss) for loss in losses)
    assert math.isfinite(result["metrics"]["eval_loss"])


def test_results_files_model_index_card_and_push_to_hub(script, clips, tmp_path, loopback_hub):
    """transformers' example conventions: the results and state files, a model card with `model-index` metadata and
    readable settings, `--push_to_hub` to the (loopback) Hub, and `base_model` when fine-tuning a Hub model."""
    from hub_server import DUMMY_TOKEN
    from huggingface_hub import ModelCard

    repo = "loopback-user/ast-tiny"
    output_dir = tmp_path / "pushed"
    argv = manifests(clips) + TINY + ["--num_train_epochs", "1", "--mixup", "0.5", "--freqm", "8", "--timem", "4"]
    result = script.main(argv + ["--patchout_time", "1", "--output_dir", str(output_dir), "--push_to_hub", "true",
                                 "--hub_model_id", repo, "--hub_token", DUMMY_TOKEN])  # fmt: skip

    evaluation = json.loads((output_dir / "eval_results.json").read_text())
    assert evaluation["eval_accuracy"] == result["metrics"]["eval_accuracy"]
    training = json.loads((output_dir / "train_results.json").read_text())
    assert training["epoch"] == 1.0 and math.isfinite(training["train_loss"]) and "train_runtime" in training
    assert json.loads((output_dir / "all_results.json").read_text()) == {**training, **evaluation}
    state = json.loads((output_dir / "trainer_state.json").read_text())
    assert state["global_step"] == 4 and state["log_history"] == result["log_history"]

    card = ModelCard.load(output_dir / "README.md")
    assert card.data.base_model is None  # trained from scratch
    (scores,) = [r for r in card.data.eval_results if r.metric_type == "accuracy"]
    assert scores.metric_value == pytest.approx(result["metrics"]["eval_accuracy"], abs=1e-6)
    assert scores.task_type == "audio-classification" and scores.dataset_type == "custom"
    assert str(clips / "train.csv") in scores.dataset_name
    assert {r.metric_type for r in card.data.eval_results} == {"accuracy", "top5_accuracy"}
    assert "AugmentConfig(" not in card.text and "{'patchout" not in card.text
    assert "mixup of 50% of the clips (lambda ~ Beta(10, 10)), SpecAugment masks of up to 8 mel bins and 4 frames" \
        in card.text
    assert "patchout: 1 time column(s) dropped per step" in card.text
    assert DUMMY_TOKEN not in card.content and "--hub_token '***'" in card.text  # the card is public

    pushed = loopback_hub.repo_files(repo)
    for name in ("config.json", "model.safetensors", "preprocessor_config.json", "all_results.json"):
        assert pushed[name] == (output_dir / name).read_bytes(), name
    assert pushed["README.md"] == (output_dir / "README.md").read_bytes()  # our card, not Trainer's generic one
    assert not any(name.startswith("checkpoint-") for name in pushed)

    tuned = script.main(argv + ["--model_name_or_path", repo, "--output_dir", str(tmp_path / "tuned")])
    assert ModelCard.load(tmp_path / "tuned" / "README.md").data.base_model == repo
    assert math.isfinite(tuned["metrics"]["eval_loss"])


# --- reproducible augmentation, sampling, schedule, averaging, resumption -----------------------------------------


def test_training_items_depend_only_on_seed_epoch_and_position(clips):
    examples = manifest_examples(clips / "train.csv")
    space = LabelSpace.infer([example["labels"] for example in examples])
    augment = AugmentConfig(mixup=1.0, freqm=8, timem=8, noise=True)

    def dataset(seed: int):
        return AudioDataset(examples, space, train=True, seed=seed, augment=augment, max_samples=4000)

    key = DrawKey(epoch=1, position=3, index=5)
    first, again = dataset(0)[key], dataset(0)[key]
    assert torch.equal(first["audio"], again["audio"]) and torch.equal(first["labels"], again["labels"])
    assert first["seed"] == again["seed"]
    assert first["labels"].shape == (8,) and 0 < first["labels"].max() < 1  # mixed soft target
    for other in (dataset(1)[key], dataset(0)[key._replace(epoch=2)], dataset(0)[key._replace(position=4)]):
        assert other["seed"] != first["seed"]
    with pytest.raises(TypeError, match="EpochDrawSampler keys"):
        dataset(0)[5]
    with pytest.raises(TypeError, match="clip indices"):
        AudioDataset(examples, space)[key]  # evaluation items are read by index

    sampler = EpochDrawSampler(len(examples), seed=3)
    order = [key.index for key in sampler]
    assert sorted(order) == list(range(16)) and order == [key.index for key in sampler]
    sampler.set_epoch(1)
    assert [key.epoch for key in sampler] == [1] * 16 and [key.index for key in sampler] != order
    weighted = EpochDrawSampler(len(examples), seed=3, weights=torch.tensor([1.0] + [0.0] * 15))
    assert [key.index for key in weighted] == [0] * 16


class StopAtStep(transformers.TrainerCallback):
    """Stops training after `step` optimiser steps, as an interruption would (the last checkpoint is older)."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step >= self.step:
            control.should_training_stop = True


class StepCounter(transformers.TrainerCallback):
    """Records the optimiser steps a run takes."""

    def __init__(self) -> None:
        self.steps: list[int] = []

    def on_step_end(self, args, state, control, **kwargs):
        self.steps.append(state.global_step)


def test_resumed_run_ends_exactly_like_the_uninterrupted_one(script, clips, tmp_path):
    """Mixup, SpecAugment, noise, balanced sampling, patchout, dropout, the paper's step schedule and weight
    averaging, interrupted in the middle of epoch 2 and resumed from the checkpoint before: same weights and metrics.

    16 clips, batch 4: 4 optimiser steps per epoch, 12 in all; checkpoints every 3 steps; the interrupted run stops
    after step 7 and resumes from checkpoint-6 (epoch 2, step 2 of 4)."""
    recipe = ["--mixup", "0.5", "--freqm", "8", "--timem", "8", "--noise", "true", "--balanced_sampling", "true"]
    recipe += ["--patchout_random", "0.2", "--lr_decay_start_epoch", "1", "--lr_decay_factor", "0.5"]
    recipe += ["--weight_averaging_start_epoch", "1", "--weight_averaging_end_epoch", "3", "--warmup_steps", "0"]
    recipe += ["--num_train_epochs", "3", "--save_strategy", "steps", "--save_steps", "3", "--learning_rate", "1e-3"]
    common = manifests(clips) + TINY + recipe

    full = script.main(common + ["--output_dir", str(tmp_path / "full")])
    interrupted = tmp_path / "interrupted"
    stopped = script.main(common + ["--output_dir", str(interrupted)], callbacks=[StopAtStep(7)])
    assert sorted(path.name for path in interrupted.glob("checkpoint-*")) == ["checkpoint-3", "checkpoint-6"]
    counter = StepCounter()
    resumed = script.main(
        common + ["--output_dir", str(interrupted), "--resume_from_checkpoint", str(interrupted / "checkpoint-6")],
        callbacks=[counter],
    )
    assert counter.steps == [7, 8, 9, 10, 11, 12]  # it did resume, not start over

    assert set(full["results"]) == {"weight-averaged", "last epoch"}
    for name in full["results"]:
        for metric in ("eval_accuracy", "eval_top5_accuracy", "eval_loss"):
            assert resumed["results"][name][metric] == pytest.approx(full["results"][name][metric], abs=1e-6)
    full_weights, resumed_weights = full["model"].state_dict(), resumed["model"].state_dict()
    for key, value in full_weights.items():
        torch.testing.assert_close(resumed_weights[key], value, rtol=0, atol=1e-6, msg=key)
    stopped_weights = stopped["model"].state_dict()
    assert any(not torch.allclose(stopped_weights[key], value) for key, value in full_weights.items())

    # The saved model is the average of the three epochs; weight_averaged/ holds the same.
    epochs = [load_file(tmp_path / "full" / "epoch_checkpoints" / f"epoch_{k}.safetensors") for k in (1, 2, 3)]
    saved = load_file(tmp_path / "full" / "model.safetensors")
    average = load_file(tmp_path / "full" / "weight_averaged" / "model.safetensors")
    for key in epochs[0]:
        expected = sum(epoch[key].double() for epoch in epochs) / 3
        torch.testing.assert_close(saved[key].double(), expected, rtol=0, atol=1e-6)
        assert torch.equal(average[key], saved[key])
    card = (tmp_path / "full" / "README.md").read_text()
    assert "| weight-averaged |" in card and "| last epoch |" in card

    # The paper's schedule: epoch 1 at the base rate, then x0.5 per epoch (logged before each step's update).
    rates = {entry["step"]: entry["learning_rate"] for entry in full["log_history"] if "learning_rate" in entry}
    for step, rate in rates.items():
        assert rate == pytest.approx(1e-3 * 0.5 ** ((step - 1) // 4)), step


def test_resume_from_an_epoch_end_checkpoint_ends_exactly_like_the_uninterrupted_run(script, clips, tmp_path):
    """checkpoint-4 is saved at the last step of epoch 1, before that epoch's evaluation; the evaluation must not move
    the random states the uninterrupted run goes on with (mixup, SpecAugment, noise and dropout draw from them).

    16 clips, batch 4: 4 steps per epoch, 2 epochs, checkpoints every 4 steps, evaluation every epoch."""
    recipe = ["--mixup", "0.5", "--freqm", "8", "--timem", "8", "--noise", "true", "--warmup_steps", "0"]
    recipe += ["--num_train_epochs", "2", "--save_strategy", "steps", "--save_steps", "4", "--learning_rate", "1e-3"]
    common = manifests(clips) + TINY + recipe
    full = script.main(common + ["--output_dir", str(tmp_path / "full")])
    checkpoint = tmp_path / "full" / "checkpoint-4"
    counter = StepCounter()
    resumed = script.main(
        common + ["--output_dir", str(tmp_path / "resumed"), "--resume_from_checkpoint", str(checkpoint)],
        callbacks=[counter],
    )
    assert counter.steps == [5, 6, 7, 8]  # it did resume, not start over
    for key, value in full["model"].state_dict().items():
        torch.testing.assert_close(resumed["model"].state_dict()[key], value, rtol=0, atol=1e-6, msg=key)
    assert resumed["metrics"]["eval_loss"] == pytest.approx(full["metrics"]["eval_loss"], abs=1e-6)


def test_resume_true_skips_checkpoints_left_incomplete_by_a_kill(script, clips, tmp_path):
    """A kill while a checkpoint is written leaves an empty or config-only checkpoint-N: `--resume_from_checkpoint
    true` takes the newest complete one, naming what it skipped and why."""
    common = manifests(clips) + TINY + ["--num_train_epochs", "2", "--save_strategy", "steps", "--save_steps", "2"]
    output_dir = tmp_path / "run"
    script.main(common + ["--output_dir", str(output_dir)], callbacks=[StopAtStep(5)])
    assert sorted(path.name for path in output_dir.glob("checkpoint-*")) == ["checkpoint-2", "checkpoint-4"]
    (output_dir / "checkpoint-8").mkdir()  # killed right after the folder was made
    shutil.copytree(output_dir / "checkpoint-4", output_dir / "checkpoint-6")
    (output_dir / "checkpoint-6" / "trainer_state.json").unlink()  # killed before the state file was written
    (output_dir / "checkpoint-7").mkdir()
    shutil.copy(output_dir / "checkpoint-4" / "config.json", output_dir / "checkpoint-7")  # config only
    counter = StepCounter()
    with pytest.warns(UserWarning) as caught:
        script.main(common + ["--output_dir", str(output_dir), "--resume_from_checkpoint", "true"], callbacks=[counter])
    assert counter.steps == [5, 6, 7, 8]  # resumed from checkpoint-4
    skipped = [str(warning.message) for warning in caught if "incomplete checkpoint" in str(warning.message)]
    assert len(skipped) == 3
    assert "checkpoint-8: no trainer_state.json" in skipped[0] and "checkpoint-7: no trainer_state.json" in skipped[1]
    assert "checkpoint-6: no trainer_state.json" in skipped[2]


def test_last_complete_checkpoint_checks_the_state_file_and_the_weights(tmp_path):
    def checkpoint(step: int, state: str | None, weights: bool) -> Path:
        path = tmp_path / f"checkpoint-{step}"
        path.mkdir()
        if state is not None:
            (path / "trainer_state.json").write_text(state)
        if weights:
            (path / "model.safetensors").write_bytes(b"x")
        return path

    with pytest.raises(ValueError, match=f"no complete checkpoint-N folder in {tmp_path}$"):
        resume_target("true", tmp_path)
    complete = checkpoint(3, "{}", weights=True)
    checkpoint(10, '{"global_st', weights=True)  # cut short
    checkpoint(20, "{}", weights=False)
    (tmp_path / "checkpoint-30").write_text("not a folder")
    found, skipped = last_complete_checkpoint(tmp_path)
    assert found == complete
    assert [(path.name, reason.split(" (")[0]) for path, reason in skipped] == [
        ("checkpoint-20", "no weights file"),
        ("checkpoint-10", "trainer_state.json is not valid JSON"),
    ]
    with pytest.warns(UserWarning, match="checkpoint-10: trainer_state.json is not valid JSON"):
        assert resume_target("last", tmp_path) == str(complete)
    assert resume_target("some/folder", tmp_path) == "some/folder" and resume_target(None, tmp_path) is None
    (complete / "trainer_state.json").unlink()
    with pytest.raises(ValueError, match="incomplete: checkpoint-20, checkpoint-10, checkpoint-3"):
        with pytest.warns(UserWarning, match="checkpoint-3: no trainer_state.json"):
            resume_target("true", tmp_path)


# --- starting points ----------------------------------------------------------------------------------------------


def test_fine_tuning_keeps_the_head_for_the_same_labels_and_retargets_on_request(script, clips, tmp_path):
    source = tmp_path / "source"
    script.main(manifests(clips) + TINY + ["--output_dir", str(source), "--max_steps", "2"])
    frozen = ["--learning_rate", "0", "--max_steps", "1", "--disable_tqdm", "true", "--report_to", "none"]
    same = script.main(
        manifests(clips) + ["--model_name_or_path", str(source), "--output_dir", str(tmp_path / "same")] + frozen
    )
    before = load_file(source / "model.safetensors")
    for key, value in same["model"].state_dict().items():
        assert torch.equal(value, before[key]), key  # nothing re-initialised, head included

    retargeted = script.main(
        manifests(clips) + ["--model_name_or_path", str(source), "--output_dir", str(tmp_path / "long")]
        + ["--max_length", "96", "--frequency_stride", "12", "--time_stride", "12"] + frozen
    )
    config = retargeted["model"].config
    assert (config.max_length, config.frequency_stride, config.time_stride) == (96, 12, 12)
    assert retargeted["model"].ast.embeddings.pos_embed.shape[1] == 2 + config.patch_grid[0] * config.patch_grid[1]
    assert transformers.AutoFeatureExtractor.from_pretrained(tmp_path / "long").max_length == 96
    assert config.hidden_size == 32


def test_starts_from_transformers_ast_and_from_an_imagenet_deit(script, clips, tmp_path):
    hf_config = tiny_builtin_config(num_hidden_layers=1, num_attention_heads=2, max_length=64, num_labels=3)
    transformers.ASTForAudioClassification(hf_config).save_pretrained(tmp_path / "hf_ast")
    transformers.ASTFeatureExtractor(max_length=64).save_pretrained(tmp_path / "hf_ast")
    run = ["--max_steps", "1", "--disable_tqdm", "true", "--report_to", "none", "--per_device_train_batch_size", "4"]
    result = script.main(
        manifests(clips) + ["--model_name_or_path", str(tmp_path / "hf_ast"), "--output_dir", str(tmp_path / "a")] + run
    )
    model = result["model"]
    assert model.config.model_type == "ast" and model.config.num_labels == 8 and model.config.hidden_size == 32
    assert model.config.problem_type == "single_label_classification"

    deit_config = transformers.DeiTConfig(
        hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64, image_size=128, patch_size=16
    )
    transformers.DeiTForImageClassificationWithTeacher(deit_config).save_pretrained(tmp_path / "deit")
    result = script.main(
        manifests(clips) + ["--imagenet_checkpoint", str(tmp_path / "deit"), "--output_dir", str(tmp_path / "b")]
        + ["--max_length", "64", "--hidden_size", "999", "--learning_rate", "0"] + run
    )
    model = result["model"]
    assert model.config.hidden_size == 32  # the checkpoint's size, not --hidden_size
    assert model.config.max_length == 64 and model.config.num_labels == 8
    deit = load_file(tmp_path / "deit" / "model.safetensors")
    kernel = next(value for key, value in deit.items() if key.endswith("patch_embeddings.projection.weight"))
    torch.testing.assert_close(model.ast.embeddings.patch_embed.proj.weight, kernel.sum(dim=1, keepdim=True))


@pytest.fixture(scope="module")
def tiny_starts(tmp_path_factory) -> dict[str, Path]:
    """Tiny stand-ins for the paper's starting points: an ImageNet DeiT (transformers format, 32-d, 1 block) and an
    AudioSet-style AST (1024 frames, multi-label head) for the ESC-50 recipe's re-targeting."""
    root = tmp_path_factory.mktemp("starts")
    deit_config = transformers.DeiTConfig(
        hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64, image_size=384, patch_size=16
    )
    transformers.DeiTForImageClassificationWithTeacher(deit_config).save_pretrained(root / "deit")
    audioset = tiny_model(num_hidden_layers=1, num_attention_heads=2, max_length=1024, num_labels=5,
                          problem_type="multi_label_classification")
    save_tiny_checkpoint(root / "audioset", audioset)
    return {"imagenet": root / "deit", "audioset": root / "audioset"}


@pytest.mark.parametrize("name", ["audioset_balanced", "audioset_full", "esc50", "speechcommands_v2"])
def test_paper_recipes_run_as_written_on_tiny_data(script, clips, tiny_starts, tmp_path, name):
    """Each paper recipe runs its whole schedule unchanged (epochs, warm-up, step decays, mixup, SpecAugment, noise,
    balanced sampling, weight averaging, frames, strides, normalisation) on 16 synthetic clips; only the data, a tiny
    starting point, the output folder and per-step logging are given. AudioSet gets multi-label manifests, the others
    single-label ones."""
    recipe_file = EXAMPLES_DIR / "recipes" / f"{name}.json"
    recipe = json.loads(recipe_file.read_text())
    data = multi_label_manifests(clips, tmp_path) if name.startswith("audioset") else manifests(clips)
    start = (
        ["--model_name_or_path", str(tiny_starts["audioset"])]
        if "model_name_or_path" in recipe
        else ["--imagenet_checkpoint", str(tiny_starts["imagenet"])]
    )
    output_dir = tmp_path / name
    argv = [str(recipe_file), *data, *start, "--output_dir", str(output_dir), "--disable_tqdm", "true"]
    result = script.main(argv + ["--report_to", "none", "--logging_steps", "1"])

    config = result["model"].config
    assert config.max_length == recipe["max_length"]
    assert config.problem_type == recipe.get("problem_type", "single_label_classification")
    assert config.hidden_size == 32  # the starting point's size
    steps_per_epoch = math.ceil(len(rows(clips / "train.csv")) / recipe["per_device_train_batch_size"])
    train_log = result["log_history"][-1]
    assert train_log["step"] == recipe["num_train_epochs"] * steps_per_epoch
    evaluated = [entry["epoch"] for entry in result["log_history"] if "eval_loss" in entry]
    assert evaluated == [float(epoch) for epoch in range(1, recipe["num_train_epochs"] + 1)]
    lrs = [entry["learning_rate"] for entry in result["log_history"] if "learning_rate" in entry]
    assert max(lrs) <= recipe["learning_rate"] and lrs[-1] < max(lrs)  # warm-up and decays stay below the peak
    averaging = "weight_averaging_start_epoch" in recipe
    assert set(result["results"]) == ({"weight-averaged", "last epoch"} if averaging else {"final"})
    assert (output_dir / "model.safetensors").is_file() and (output_dir / "README.md").is_file()
    metric = "eval_mAP" if config.problem_type == "multi_label_classification" else "eval_accuracy"
    assert all(0 <= metrics[metric] <= 1 for metrics in result["results"].values())


# --- ESC-50 cross-validation and fbank statistics -------------------------------------------------------------------


def fake_esc50(root: Path, categories=("dog", "rain"), per_fold: int = 1) -> Path:
    """An ESC-50-like folder: meta/esc50.csv and 44.1 kHz clips in audio/, `per_fold` clips per category and fold."""
    (root / "meta").mkdir(parents=True)
    (root / "audio").mkdir()
    rng = np.random.default_rng(0)
    entries = []
    for fold in range(1, 6):
        for target, category in enumerate(categories):
            for take in range(per_fold):
                name = f"{fold}-{100 + target}-{'ABC'[take]}-{target}.wav"
                tone = np.sin(2 * np.pi * (300 + 900 * target) * np.arange(22050) / 44100)
                samples = (0.3 * tone + 0.01 * rng.normal(size=22050)).astype(np.float32)
                soundfile.write(root / "audio" / name, samples, 44100)
                entries.append((name, fold, target, category, "False", f"{100 + target}", "ABC"[take]))
    with (root / "meta" / "esc50.csv").open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["filename", "fold", "target", "category", "esc10", "src_file", "take"])
        writer.writerows(entries)
    return root


def test_esc50_cross_validation_on_a_fake_folder(modules, tmp_path, capsys):
    cv = modules["run_esc50_cv"]
    esc50 = fake_esc50(tmp_path / "ESC-50")
    summary = cv.main(
        ["--esc50_dir", str(esc50), "--output_dir", str(tmp_path / "cv"), "--recipe", "none"]
        + TINY + ["--max_steps", "2", "--eval_strategy", "no"]
    )
    folds = summary["per_seed"][0]["folds"]
    assert sorted(folds) == [1, 2, 3, 4, 5] and all(value in (0.0, 0.5, 1.0) for value in folds.values())
    assert summary["mean"] == pytest.approx(np.mean(list(folds.values())))
    assert summary["per_seed"][0]["std_over_folds"] == pytest.approx(np.std(list(folds.values())))
    written = json.loads((tmp_path / "cv" / "cv_results.json").read_text())
    assert written["mean"] == pytest.approx(summary["mean"])
    for fold in range(1, 6):
        train = rows(tmp_path / "cv" / "manifests" / f"fold{fold}" / "train.csv")
        held_out = rows(tmp_path / "cv" / "manifests" / f"fold{fold}" / "eval.csv")
        assert len(train) == 8 and len(held_out) == 2
        assert all(Path(row["path"]).name.startswith(f"{fold}-") for row in held_out)
        assert not any(Path(row["path"]).name.startswith(f"{fold}-") for row in train)
        assert (tmp_path / "cv" / "seed0" / f"fold{fold}" / "model.safetensors").is_file()
    assert "seed 0: " in capsys.readouterr().out

    several = cv.summarise({0: {1: 0.9, 2: 0.8}, 1: {1: 1.0, 2: 0.9}})
    assert several["mean"] == pytest.approx(0.9) and several["std_over_seeds"] == pytest.approx(0.05)
    with pytest.raises(ValueError, match="fold 7 has no clips"):
        cv.main(["--esc50_dir", str(esc50), "--output_dir", str(tmp_path / "x"), "--folds", "7"])
    with pytest.raises(FileNotFoundError, match="meta/esc50.csv does not exist"):
        cv.main(["--esc50_dir", str(tmp_path), "--output_dir", str(tmp_path / "x")])


def test_fbank_stats_are_those_of_the_feature_extractor(modules, clips, tmp_path, capsys):
    from modeling_ast import ASTFeatureExtractor
    from modeling_ast.training.decoding import decode_example

    stats_module = modules["compute_fbank_stats"]
    examples = manifest_examples(clips / "eval.csv")
    extractor = ASTFeatureExtractor(max_length=64, do_normalize=False, return_attention_mask=True)
    real, padded = [], []
    for example in examples:
        features = extractor(decode_example(example).numpy(), sampling_rate=16000, return_tensors="pt")
        padded.append(features["input_values"][0].double())
        real.append(features["input_values"][0][features["attention_mask"][0].bool()].double())
    for include_padding, cells in ((False, torch.cat(real)), (True, torch.cat(padded))):
        space = LabelSpace(("clip",), multi_label=True)
        labelled = [{**example, "labels": ["clip"]} for example in examples]
        stats = stats_module.fbank_stats(labelled, space, 64, include_padding=include_padding, batch_size=3)
        assert stats.clips == 8 and stats.cells == cells.numel()
        assert stats.mean == pytest.approx(cells.mean().item(), abs=1e-4)
        assert stats.std == pytest.approx(cells.std(unbiased=False).item(), abs=1e-4)

    argv = ["--train_file", str(clips / "eval.csv"), "--max_length", "64", "--output_json", str(tmp_path / "s.json")]
    plain = stats_module.main(argv)
    assert plain.mean == pytest.approx(torch.cat(real).mean().item(), abs=1e-4)
    assert f"--fbank_mean {plain.mean:.7g} --fbank_std {plain.std:.7g}" in capsys.readouterr().out
    assert json.loads((tmp_path / "s.json").read_text())["settings"].startswith("padding excluded")
    masked = stats_module.main(argv + ["--freqm", "48", "--timem", "20", "--mixup", "0.5"])
    assert masked == stats_module.main(argv + ["--freqm", "48", "--timem", "20", "--mixup", "0.5"])  # seeded
    assert masked.mean != plain.mean and math.isfinite(masked.std)
