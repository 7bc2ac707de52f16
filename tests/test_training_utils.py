"""modeling_ast.training: metrics, balanced sampling, LR schedules and optimiser, weight averaging, ensembles, and
the examples/average_checkpoints.py and examples/evaluate_ensemble.py command lines.

Metric values are checked against small cases worked out by hand (explained next to each), the independent
reference; AP and AUC come from scikit-learn, and comparing with `sklearn.metrics` class by class on random data with
many ties checks the per-class bookkeeping around it.
"""

from __future__ import annotations

import csv
import json
import math
import runpy
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile
import torch
from safetensors.torch import load_file, save_file
from transformers import EvalPrediction, TrainerCallback, TrainerControl, TrainerState, TrainingArguments

from modeling_ast import ASTFeatureExtractor, ASTForAudioClassification
from modeling_ast.training.averaging import (
    StateDictAverager,
    WeightAveragingCallback,
    average_checkpoints,
    ensemble_predict,
)
from modeling_ast.training.metrics import (
    accuracy,
    compute_metrics_fn,
    d_prime,
    multi_label_metrics,
    per_class_average_precision,
    per_class_roc_auc,
    top_k_accuracy,
)
from modeling_ast.training.recipes import RecipeArguments, read_recipe
from modeling_ast.training.sampling import DrawKey, EpochDrawSampler, balanced_sample_weights, derive_seed
from modeling_ast.training.schedules import build_lr_scheduler, build_optimizer, trainer_steps_per_epoch
from modeling_ast.training.trainer import ASTTrainer
import tiny_models

EXAMPLES_DIR = Path(__file__).resolve().parents[1] / "examples"
FRAMES = 32  # 0.33 s of audio: a 12 x 2 patch grid, enough for the plumbing
TINY = dict(hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32, max_length=FRAMES)


def tiny_model(seed: int, num_labels: int = 3, **overrides) -> ASTForAudioClassification:
    """The factory's model at TINY's sizes, every tensor moved away from its initial value so averages are
    informative."""
    return tiny_models.tiny_model(seed=seed, perturb=0.3, **{**TINY, "num_labels": num_labels, **overrides})


def save_tiny(model: ASTForAudioClassification, directory: Path) -> Path:
    return tiny_models.save_tiny_checkpoint(directory, model, return_attention_mask=True)


def run_cli(script: str, argv: list[str], monkeypatch) -> int:
    """Run examples/<script> in this process as `python <script> argv...` and return its exit code."""
    monkeypatch.setattr(sys, "argv", [script, *argv])
    with pytest.raises(SystemExit) as exit_info:
        runpy.run_path(str(EXAMPLES_DIR / script), run_name="__main__")
    return exit_info.value.code


# ----------------------------------------------------------------------------------------------------------- metrics


def test_average_precision_and_auc_by_hand_with_ties_and_degenerate_classes():
    # Class 0: scores 0.9 (pos), 0.8 (neg), 0.8 (pos), 0.3 (neg). Distinct thresholds, highest first:
    #   >= 0.9: TP 1, FP 0 -> precision 1,   recall 1/2
    #   >= 0.8: TP 2, FP 1 -> precision 2/3, recall 1   (the tied pair enters together)
    #   >= 0.3: TP 2, FP 2 -> precision 1/2, recall 1   (no recall gain)
    #   AP = 1/2 * 1 + 1/2 * 2/3 = 5/6.
    #   AUC = P(pos > neg) + 1/2 P(tie) over the 4 (pos, neg) pairs: 0.9>0.8, 0.9>0.3, 0.8=0.8 (1/2), 0.8>0.3 = 3.5/4.
    # Class 1 has no positive (AP and AUC undefined); class 2 has no negative (AP = 1, AUC undefined).
    scores = np.array([[0.9, 0.1, 0.2], [0.8, 0.4, 0.3], [0.8, 0.2, 0.9], [0.3, 0.7, 0.1]])
    targets = np.array([[1, 0, 1], [0, 0, 1], [1, 0, 1], [0, 0, 1]])
    np.testing.assert_allclose(per_class_average_precision(scores, targets), [5 / 6, np.nan, 1.0])
    np.testing.assert_allclose(per_class_roc_auc(scores, targets), [0.875, np.nan, np.nan])

    result = multi_label_metrics(torch.tensor(scores), torch.tensor(targets))
    assert result.excluded_classes == (1, 2)  # left out of both means
    assert result.mean_average_precision == pytest.approx(5 / 6)
    assert result.mean_roc_auc == pytest.approx(0.875)
    # Phi^-1(0.875) = 1.1503493803760079 (87.5th percentile of the standard normal, from tables).
    assert result.d_prime == pytest.approx(math.sqrt(2) * 1.1503493803760079)


def test_multi_label_accuracy_counts_a_top_class_that_is_any_positive_label():
    scores = np.array([[0.1, 0.9, 0.0], [0.8, 0.1, 0.1], [0.2, 0.3, 0.5], [0.6, 0.3, 0.1]])
    # top classes 1, 0, 2, 0: row 0 is a hit (class 1 is one of its two labels, although argmax of its target is 0),
    # row 1 a miss, row 2 a hit, row 3 (no label at all) a miss -> 2/4.
    targets = np.array([[1, 1, 0], [0, 1, 0], [0, 0, 1], [0, 0, 0]])
    assert multi_label_metrics(scores, targets).accuracy == 0.5


def test_ranking_metrics_match_sklearn_on_tied_random_data():
    sklearn_metrics = pytest.importorskip("sklearn.metrics")
    scipy_stats = pytest.importorskip("scipy.stats")
    rng = np.random.default_rng(0)
    scores = np.round(rng.normal(size=(400, 12)), 1)  # one decimal: many ties in every class
    targets = (rng.random((400, 12)) < np.linspace(0.02, 0.6, 12)).astype(np.float32)
    expected_ap = [sklearn_metrics.average_precision_score(targets[:, k], scores[:, k]) for k in range(12)]
    expected_auc = [sklearn_metrics.roc_auc_score(targets[:, k], scores[:, k]) for k in range(12)]
    np.testing.assert_allclose(per_class_average_precision(scores, targets), expected_ap, rtol=0, atol=1e-12)
    np.testing.assert_allclose(per_class_roc_auc(scores, targets), expected_auc, rtol=0, atol=1e-12)
    result = multi_label_metrics(scores, targets)
    assert result.mean_roc_auc == pytest.approx(np.mean(expected_auc), abs=1e-12)
    assert result.d_prime == pytest.approx(scipy_stats.norm.ppf(np.mean(expected_auc)) * np.sqrt(2), abs=1e-9)


def test_single_label_accuracy_and_top5_by_hand():
    scores = np.array(
        [
            [9, 1, 2, 3, 4, 5, 0],  # label 0: top-1 hit
            [9, 8, 7, 6, 5, 4, 3],  # label 4: 5th highest -> top-5 hit, top-1 miss
            [9, 8, 7, 6, 5, 4, 3],  # label 5: 6th highest -> miss for both
            [0, 0, 0, 0, 0, 0, 1],  # label 6: top-1 hit
        ],
        dtype=float,
    )
    labels = np.array([0, 4, 5, 6])
    assert accuracy(scores, labels) == 0.5
    assert top_k_accuracy(scores, labels, k=5) == 0.75
    one_hot = np.eye(7)[labels]  # (N, C) one-hot targets are read with argmax, as the original code does
    assert accuracy(scores, one_hot) == 0.5
    metrics = compute_metrics_fn("single_label_classification")(EvalPrediction(predictions=(scores,), label_ids=labels))
    assert metrics == {"accuracy": 0.5, "top5_accuracy": 0.75}


def test_compute_metrics_fn_multi_label_keys_and_errors():
    scores = np.array([[2.0, -1.0], [-1.0, 3.0], [0.5, 0.1]])
    targets = np.array([[1.0, 0.0], [0.0, 1.0], [0.0, 1.0]])
    metrics = compute_metrics_fn("multi_label_classification", {0: "a", 1: "b"})(
        EvalPrediction(predictions=scores, label_ids=targets)
    )
    assert set(metrics) == {"mAP", "mAUC", "d_prime", "accuracy", "excluded_classes"}
    assert metrics["mAUC"] == 1.0 and metrics["d_prime"] == math.inf and metrics["excluded_classes"] == 0
    with pytest.raises(ValueError, match="problem_type"):
        compute_metrics_fn("regression")
    with pytest.raises(ValueError, match="0 or 1"):
        multi_label_metrics(scores, targets * 0.5)
    with pytest.raises(ValueError, match="shape"):
        multi_label_metrics(scores, targets[:2])
    with pytest.raises(ValueError, match="class ids"):
        accuracy(scores, np.array([0, 1, 2]))
    assert math.isnan(d_prime(math.nan)) and d_prime(0.5) == 0.0 and d_prime(0.0) == -math.inf


# ---------------------------------------------------------------------------------------------------------- sampling


def test_balanced_weights_follow_the_original_formula():
    labels = np.array([[1, 0, 0], [1, 1, 0], [1, 0, 0], [0, 0, 0]])
    # counts: class 0 -> 3 clips, class 1 -> 1, class 2 -> 0; label weight 1000 / (count + 0.01).
    w0, w1 = 1000 / 3.01, 1000 / 1.01
    expected = [w0, w0 + w1, w0, 0.0]  # a clip weighs the sum over its labels; the unlabelled clip 0
    np.testing.assert_allclose(balanced_sample_weights(labels).numpy(), expected)
    class_ids = torch.tensor([0, 0, 1, 0])  # (N,) ids are one-hot rows: counts 3 and 1
    np.testing.assert_allclose(balanced_sample_weights(class_ids).numpy(), [w0, w0, w1, w0])
    with pytest.raises(ValueError, match="integer class ids"):
        balanced_sample_weights(np.array([0.0, 1.0]))
    with pytest.raises(ValueError, match="non-negative"):
        balanced_sample_weights(-np.ones((2, 2)))


def test_one_draw_per_seed_and_epoch():
    weights = torch.tensor([1.0, 2.0, 0.0, 3.0, 4.0, 5.0, 6.0])
    sampler = EpochDrawSampler(7, seed=7, weights=weights)
    draws = {}
    for epoch in (0, 1):
        sampler.set_epoch(epoch)
        keys = list(sampler)
        assert len(keys) == len(sampler) == 7  # as many draws as clips, with replacement
        assert [key.epoch for key in keys] == [epoch] * 7 and [key.position for key in keys] == list(range(7))
        draw = [key.index for key in keys]
        assert draw == sampler.indices().tolist()
        assert 2 not in draw  # zero weight: never drawn
        draws[epoch] = draw
    assert draws[0] != draws[1]
    again = EpochDrawSampler(7, seed=7, weights=weights)
    again.set_epoch(1)
    assert [key.index for key in again] == draws[1]  # (seed, epoch) determines the draw
    assert EpochDrawSampler(7, seed=8, weights=weights).indices().tolist() != draws[0]

    permutation = EpochDrawSampler(16, seed=3)  # without weights: every clip once per epoch
    order = permutation.indices().tolist()
    assert sorted(order) == list(range(16)) and order == permutation.indices().tolist()
    permutation.set_epoch(1)
    assert sorted(permutation.indices().tolist()) == list(range(16)) and permutation.indices().tolist() != order


def test_sampling_frequencies_are_proportional_to_weights():
    weights = torch.tensor([1.0, 2.0, 3.0, 4.0, 0.0])
    sampler = EpochDrawSampler(200_000, seed=1, weights=weights.repeat(40_000))  # clip i has weight weights[i % 5]
    counts = np.bincount(sampler.indices().numpy() % 5, minlength=5) / 200_000
    np.testing.assert_allclose(counts, (weights / weights.sum()).numpy(), atol=0.005)  # ~5 sigma


def test_sampler_argument_errors():
    with pytest.raises(ValueError, match="sum to zero"):
        EpochDrawSampler(2, seed=0, weights=[0.0, 0.0])
    with pytest.raises(ValueError, match="1 entries but the training dataset has 2 clips"):
        EpochDrawSampler(2, seed=0, weights=[1.0])
    with pytest.raises(ValueError, match="non-negative"):
        EpochDrawSampler(2, seed=0, weights=[1.0, -1.0])
    with pytest.raises(ValueError, match="seed"):
        EpochDrawSampler(2, seed=-1)


def test_derived_seeds_differ_between_tuples():
    seeds = {derive_seed(seed, epoch, position) for seed in (0, 1) for epoch in (0, 1) for position in range(50)}
    assert len(seeds) == 200 and all(0 <= seed < 2**63 for seed in seeds)
    assert derive_seed(3, 1, 4) == derive_seed(3, 1, 4) and derive_seed(3, 1, 4) != derive_seed(3, 4, 1)


class ClipIndexOfKey(torch.utils.data.Dataset):
    """The clip index of each `DrawKey` it is read with."""

    def __init__(self, size: int) -> None:
        self.size = size

    def __len__(self) -> int:
        return self.size

    def __getitem__(self, key: DrawKey) -> int:
        return key.index


def test_accelerate_splits_the_global_sampler_by_batches_across_processes():
    # Trainer hands the sampler to accelerate, which gives process p the batches p, p + 2, ... of one global sampler;
    # EpochDrawSampler therefore yields the same global draw in every process.
    from accelerate.data_loader import prepare_data_loader
    from torch.utils.data import DataLoader

    weights = torch.arange(1.0, 13.0)
    sampler = EpochDrawSampler(12, seed=3, weights=weights)
    per_process = []
    for process in (0, 1):
        loader = prepare_data_loader(
            DataLoader(ClipIndexOfKey(12), batch_size=2, sampler=sampler), num_processes=2,
            process_index=process, put_on_device=False,
        )  # fmt: skip
        loader.set_epoch(5)
        per_process.append([batch.tolist() for batch in loader])
    global_draw = sampler.indices().tolist()
    assert sampler.epoch == 5
    batches = [global_draw[i : i + 2] for i in range(0, 12, 2)]
    assert per_process[0] == batches[0::2] and per_process[1] == batches[1::2]


# --------------------------------------------------------------------------------------------------------- schedules


def recipe_schedule(name: str) -> dict[str, int | float]:
    """The `build_lr_scheduler` arguments of the recipe file examples/recipes/<name>.json, as `ASTTrainer` uses them."""
    values, _ = read_recipe(EXAMPLES_DIR / "recipes" / f"{name}.json")
    return {
        "warmup_steps": values["warmup_steps"],
        "decay_start_epoch": values["lr_decay_start_epoch"],
        "decay_every_epochs": values["lr_decay_every_epochs"],
        "decay_factor": values["lr_decay_factor"],
    }


def lr_trace(num_steps: int, steps_per_epoch: int, **schedule) -> list[float]:
    """LR of optimiser steps 0 .. num_steps - 1 under `build_lr_scheduler` with base LR 1."""
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    scheduler = build_lr_scheduler(optimizer, steps_per_epoch, **schedule)
    trace = []
    for _ in range(num_steps):
        trace.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    return trace


@pytest.mark.parametrize(
    "recipe, steps_per_epoch, expected",
    [
        # step -> LR / base LR. AudioSet full: warm-up over 1000 steps; epochs 1-2 full LR, then x0.5 per epoch.
        ("audioset_full", 3000, {0: 0.0, 250: 0.25, 999: 0.999, 1000: 1.0, 5999: 1.0, 6000: 0.5, 9000: 0.25,
                                 12000: 0.125, 14999: 0.125}),
        # AudioSet balanced: epochs 1-10 full, 11-15 x0.5, 16-20 x0.25, 21-25 x0.125 (the published log's LR column).
        ("audioset_balanced", 1700, {500: 0.5, 16999: 1.0, 17000: 0.5, 25499: 0.5, 25500: 0.25, 34000: 0.125,
                                     42499: 0.125}),
        # ESC-50 / Speech Commands: no warm-up, epochs 1-5 full, epoch n > 5 at 0.85 ** (n - 5).
        ("esc50", 10, {0: 1.0, 49: 1.0, 50: 0.85, 60: 0.85**2, 249: 0.85**20}),
        ("speechcommands_v2", 10, {0: 1.0, 50: 0.85, 299: 0.85**25}),
    ],
)  # fmt: skip
def test_recipe_schedules_at_hand_derived_steps(recipe, steps_per_epoch, expected):
    trace = lr_trace(max(expected) + 1, steps_per_epoch, **recipe_schedule(recipe))
    for step, value in expected.items():
        assert trace[step] == pytest.approx(value, rel=1e-12, abs=1e-15), step


def test_max_decays_reproduces_the_published_speech_commands_log():
    # The published 30-epoch log used milestones range(5, 26): 21 decays, the LR flat from epoch 26 on.
    trace = lr_trace(300, 10, **recipe_schedule("speechcommands_v2"), max_decays=21)
    assert trace[250] == pytest.approx(0.85**21) and trace[299] == pytest.approx(0.85**21)
    assert trace[249] == pytest.approx(0.85**20)


def test_schedule_equals_the_original_training_loop():
    # The original: MultiStepLR(milestones=range(start, 1000, every)) stepped after every epoch, and a warm-up that
    # sets lr = (global_step / 1000) * base at every 50th step up to step 1000 (warmup_update_every=50 here).
    steps_per_epoch, epochs, recipe = 1100, 25, recipe_schedule("audioset_balanced")
    ours = lr_trace(steps_per_epoch * epochs, steps_per_epoch, **recipe, warmup_update_every=50)

    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    milestones = list(range(recipe["decay_start_epoch"], 1000, recipe["decay_every_epochs"]))
    multistep = torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones, gamma=recipe["decay_factor"])
    original, global_step = [], 0
    for _ in range(epochs):
        for _ in range(steps_per_epoch):
            if global_step <= 1000 and global_step % 50 == 0:
                optimizer.param_groups[0]["lr"] = global_step / 1000
            original.append(optimizer.param_groups[0]["lr"])
            optimizer.step()
            global_step += 1
        multistep.step()
    np.testing.assert_allclose(ours, original, rtol=1e-12, atol=0)


def test_scheduler_state_reloads_with_weights_only(tmp_path):
    """A checkpointed schedule reloads with `weights_only=True` into a scheduler built with other settings and goes
    on exactly as saved: the step, the last rate and the schedule itself (warm-up 1000 steps, x0.5 per epoch from
    epoch 2 of 10 steps) come from the file."""
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    scheduler = build_lr_scheduler(optimizer, 10, **recipe_schedule("audioset_full"))
    for _ in range(25):
        optimizer.step()
        scheduler.step()
    torch.save(scheduler.state_dict(), tmp_path / "scheduler.pt")  # what Trainer checkpoints hold
    state = torch.load(tmp_path / "scheduler.pt", weights_only=True)
    fresh_optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    reloaded = build_lr_scheduler(fresh_optimizer, 3, decay_start_epoch=0, decay_factor=0.9)
    reloaded.load_state_dict(state)

    def expected(step: int) -> float:  # the audioset_full schedule at 10 steps per epoch, written out
        return min(1.0, step / 1000) * 0.5 ** max(0, step // 10 - 1)

    assert reloaded.last_epoch == 25 and reloaded.lr_lambdas[0] == scheduler.lr_lambdas[0]
    assert reloaded.get_last_lr() == pytest.approx([expected(25)], rel=1e-12)
    for step in range(26, 46):
        fresh_optimizer.step()
        reloaded.step()
        assert fresh_optimizer.param_groups[0]["lr"] == pytest.approx(expected(step), rel=1e-12), step
    with pytest.raises(ValueError, match="decay_factor"):
        build_lr_scheduler(optimizer, 10, decay_start_epoch=1, decay_factor=1.5)
    with pytest.raises(ValueError, match="steps_per_epoch"):
        build_lr_scheduler(optimizer, 0, decay_start_epoch=1)


def test_trainer_steps_per_epoch_counts_like_accelerate(tmp_path):
    def steps(n, batch, accumulation=1, drop_last=False):
        args = TrainingArguments(
            output_dir=str(tmp_path), per_device_train_batch_size=batch, gradient_accumulation_steps=accumulation,
            dataloader_drop_last=drop_last, use_cpu=True, report_to="none",
        )
        return trainer_steps_per_epoch(n, args)

    assert steps(10, 3) == 4  # batches of 3, 3, 3, 1
    assert steps(10, 3, accumulation=3) == 2  # 4 batches -> updates of 3 and 1 batches
    assert steps(10, 3, drop_last=True) == 3


def test_optimizer_weight_decay_groups():
    model = tiny_model(0)
    default = build_optimizer(model, lr=1e-5)
    assert len(default.param_groups) == 1  # the original decays every trainable parameter
    group = default.param_groups[0]
    assert group["weight_decay"] == 5e-7 and group["betas"] == (0.95, 0.999) and group["lr"] == 1e-5
    assert len(group["params"]) == len(list(model.parameters()))

    split = build_optimizer(model, lr=1e-5, exclude_norms_biases_tokens=True)
    names = {id(p): n for n, p in model.named_parameters()}
    decayed, exempt = ({names[id(p)] for p in g["params"]} for g in split.param_groups)
    assert split.param_groups[1]["weight_decay"] == 0.0
    assert decayed == {n for n in names.values() if n.endswith("weight") and "norm" not in n}
    assert {"ast.embeddings.cls_token", "ast.embeddings.dist_token", "ast.embeddings.pos_embed"} <= exempt
    assert "ast.blocks.0.norm1.weight" in exempt and "classifier.fc.bias" in exempt


# --------------------------------------------------------------------- Trainer: sampler + schedule + averaging at once


class IndexedSpectrograms(torch.utils.data.Dataset):
    """Random spectrograms read by `DrawKey`s, as `ASTTrainer` reads training sets; remembers the clip indices the
    training loop asked for."""

    def __init__(self, size: int) -> None:
        generator = torch.Generator().manual_seed(0)
        self.inputs = torch.randn(size, FRAMES, 128, generator=generator)
        self.labels = torch.randint(0, 3, (size,), generator=generator)
        self.requested: list[int] = []

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, key: DrawKey) -> dict[str, torch.Tensor]:
        self.requested.append(key.index)
        return {"input_values": self.inputs[key.index], "labels": self.labels[key.index]}


class LearningRateRecorder(TrainerCallback):
    def __init__(self) -> None:
        self.rates: list[float] = []

    def on_step_begin(self, args, state, control, optimizer=None, **kwargs):
        self.rates.append(optimizer.param_groups[0]["lr"])


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    """3 epochs of a tiny AST with the weighted sampler, the epoch schedule and averaging of epochs 2-3."""
    output_dir = tmp_path_factory.mktemp("run")
    dataset = IndexedSpectrograms(10)
    weights = balanced_sample_weights(dataset.labels)
    args = TrainingArguments(
        output_dir=str(output_dir), per_device_train_batch_size=3, gradient_accumulation_steps=2, num_train_epochs=3,
        use_cpu=True, report_to="none", save_strategy="no", logging_strategy="no", seed=11, disable_tqdm=True,
    )
    model = tiny_model(1)
    optimizer = build_optimizer(model, lr=1e-3)
    steps_per_epoch = trainer_steps_per_epoch(len(dataset), args)
    scheduler = build_lr_scheduler(optimizer, steps_per_epoch, decay_start_epoch=1, decay_factor=0.5)
    averaging = WeightAveragingCallback(2, 3, save_epoch_checkpoints=True)
    recorder = LearningRateRecorder()
    trainer = ASTTrainer(
        model=model, args=args, train_dataset=dataset, sample_weights=weights, optimizers=(optimizer, scheduler),
        callbacks=[averaging, recorder], processing_class=ASTFeatureExtractor(max_length=FRAMES),
        recipe=RecipeArguments(),  # the optimiser, schedule and averaging are given here
    )
    trainer.train()
    return {
        "dir": output_dir, "model": model, "dataset": dataset, "weights": weights, "averaging": averaging,
        "rates": recorder.rates, "steps_per_epoch": steps_per_epoch, "seed": args.seed,
    }  # fmt: skip


def test_trainer_draws_with_the_weighted_sampler_each_epoch(trained_run):
    sampler = EpochDrawSampler(10, seed=trained_run["seed"], weights=trained_run["weights"])
    expected = []
    for epoch in range(3):
        sampler.set_epoch(epoch)
        expected += sampler.indices().tolist()
    assert trained_run["dataset"].requested == expected


def test_trainer_lr_follows_the_epoch_schedule(trained_run):
    # 10 clips, batches of 3 -> 4 batches, 2 per update -> 2 optimiser steps per epoch; decay after epoch 1.
    assert trained_run["steps_per_epoch"] == 2
    np.testing.assert_allclose(trained_run["rates"], [1e-3, 1e-3, 5e-4, 5e-4, 2.5e-4, 2.5e-4])


def test_callback_average_equals_average_checkpoints_of_the_saved_epochs(trained_run, tmp_path):
    run_dir, model = trained_run["dir"], trained_run["model"]
    assert trained_run["averaging"].averaged_epochs == [2, 3]
    epochs = [WeightAveragingCallback.epoch_checkpoint(run_dir, k) for k in (2, 3)]
    assert not WeightAveragingCallback.epoch_checkpoint(run_dir, 1).exists()  # only the range is stored
    second, third = (load_file(path) for path in epochs)
    assert not torch.equal(second["classifier.fc.weight"], third["classifier.fc.weight"])  # training moved them
    for key, value in model.state_dict().items():  # the model now holds the mean of the two epochs
        torch.testing.assert_close(value, (second[key].double() + third[key].double()).div(2).float())

    output = average_checkpoints(epochs, tmp_path / "wa")
    assert {p.name for p in output.iterdir()} == {
        "model.safetensors", "config.json", "preprocessor_config.json", "weight_averaging.json"
    }  # fmt: skip
    from_files = load_file(output / "model.safetensors")
    written = ASTForAudioClassification.from_pretrained(run_dir / "weight_averaged").state_dict()
    for key, value in model.state_dict().items():
        assert torch.equal(from_files[key], value) and torch.equal(written[key], value)
    record = json.loads((run_dir / "weight_averaged" / "weight_averaging.json").read_text())
    assert record == {"averaged_epochs": [2, 3]}


def test_callback_resumes_from_saved_epochs_and_rejects_bad_setups(tmp_path):
    args = TrainingArguments(output_dir=str(tmp_path), use_cpu=True, report_to="none")
    control = TrainerControl()
    epoch_two, epoch_three = tiny_model(2), tiny_model(3)
    path = WeightAveragingCallback.epoch_checkpoint(tmp_path, 2)
    path.parent.mkdir()
    save_file(epoch_two.state_dict(), str(path))  # saved before the (simulated) resume

    expected = {k: (v + epoch_three.state_dict()[k]) / 2 for k, v in epoch_two.state_dict().items()}
    callback = WeightAveragingCallback(2, 3)
    callback.on_train_begin(args, TrainerState(epoch=2.0), control)
    callback.on_epoch_end(args, TrainerState(epoch=3.0), control, model=epoch_three)
    callback.on_train_end(args, TrainerState(epoch=3.0), control, model=epoch_three)
    assert callback.averaged_epochs == [2, 3]
    for key, value in epoch_three.state_dict().items():
        torch.testing.assert_close(value, expected[key])

    resumed_after_the_range = WeightAveragingCallback(2, 2)
    resumed_after_the_range.on_train_begin(args, TrainerState(epoch=4.0), control)
    resumed_after_the_range.on_train_end(args, TrainerState(epoch=5.0), control, model=epoch_three)
    assert resumed_after_the_range.averaged_epochs == [2]
    for key, value in epoch_three.state_dict().items():
        torch.testing.assert_close(value, epoch_two.state_dict()[key])

    resumed_without_files = WeightAveragingCallback(1, 3)
    with pytest.raises(ValueError, match="epoch 1"):
        resumed_without_files.on_epoch_end(args, TrainerState(epoch=2.0), control, model=epoch_three)
    with pytest.raises(ValueError, match="before reaching epoch 3"):
        WeightAveragingCallback(3, 4).on_train_end(args, TrainerState(epoch=2.0), control, model=epoch_three)
    best_args = TrainingArguments(
        output_dir=str(tmp_path), use_cpu=True, report_to="none", load_best_model_at_end=True,
        eval_strategy="epoch", save_strategy="epoch",
    )  # fmt: skip
    with pytest.raises(ValueError, match="load_best_model_at_end"):
        WeightAveragingCallback(1, 2).on_train_begin(best_args, TrainerState(), control)
    with pytest.raises(ValueError, match="start_epoch"):
        WeightAveragingCallback(3, 2)


class WithBuffers(torch.nn.Module):
    """A parameter, a float buffer (like BatchNorm's running mean) and an integer buffer (like its step counter)."""

    def __init__(self) -> None:
        super().__init__()
        self.weight = torch.nn.Parameter(torch.zeros(2))
        self.register_buffer("running_mean", torch.zeros(2))
        self.register_buffer("steps", torch.tensor(0))


def test_callback_averages_float_buffers_and_takes_integer_buffers_from_the_last_epoch(tmp_path):
    args = TrainingArguments(output_dir=str(tmp_path), use_cpu=True, report_to="none")
    state = TrainerState(is_world_process_zero=False)  # a plain module has no save_pretrained: check the average only
    model, callback, epochs = WithBuffers(), WeightAveragingCallback(1, 3), []
    callback.on_train_begin(args, state, TrainerControl())
    for epoch, value in ((1, 1.0), (2, 2.0), (3, 4.0)):
        with torch.no_grad():
            model.weight.fill_(value), model.running_mean.fill_(10 * value), model.steps.fill_(int(value))
        epochs.append({key: tensor.clone() for key, tensor in model.state_dict().items()})
        state.epoch = float(epoch)
        callback.on_epoch_end(args, state, TrainerControl(), model=model)
    callback.on_train_end(args, state, TrainerControl(), model=model)
    # (1 + 2 + 4) / 3 and (10 + 20 + 40) / 3; the step counter is the last epoch's, not a mean.
    torch.testing.assert_close(model.weight.data, torch.full((2,), 7 / 3))
    torch.testing.assert_close(model.running_mean, torch.full((2,), 70 / 3))
    assert model.steps.item() == 4
    averager = StateDictAverager()
    for index, epoch_state in enumerate(epochs):
        averager.add(epoch_state, f"epoch {index + 1}")
    for key, value in averager.average().items():  # the same numbers as average_checkpoints
        assert torch.equal(model.state_dict()[key], value)


def test_weighted_trainer_rejects_weights_of_another_length(trained_run, tmp_path):
    args = TrainingArguments(output_dir=str(tmp_path), use_cpu=True, report_to="none")
    trainer = ASTTrainer(
        model=tiny_model(0), args=args, train_dataset=IndexedSpectrograms(4), sample_weights=[1.0, 2.0],
        recipe=RecipeArguments(),
    )
    with pytest.raises(ValueError, match="2 entries but the training dataset has 4"):
        trainer.get_train_dataloader()


# --------------------------------------------------------------------------------------------------------- averaging


def test_average_checkpoints_is_the_float64_mean_with_buffers_from_the_last(tmp_path):
    states = [
        {"w": torch.tensor([1.0, 2.0], dtype=torch.float16), "count": torch.tensor([5])},
        {"w": torch.tensor([2.0, 2.0], dtype=torch.float16), "count": torch.tensor([6])},
        {"w": torch.tensor([4.0, 3.0], dtype=torch.float16), "count": torch.tensor([7])},
    ]
    paths = []
    for index, state in enumerate(states):
        paths.append(tmp_path / f"epoch_{index}.safetensors")
        save_file(state, str(paths[-1]))
    output = average_checkpoints(paths, tmp_path / "out")
    averaged = load_file(output / "model.safetensors")
    assert averaged["w"].dtype == torch.float16
    torch.testing.assert_close(averaged["w"], torch.tensor([7 / 3, 7 / 3], dtype=torch.float16))
    assert averaged["count"].tolist() == [7]  # non-float: taken from the last checkpoint
    record = json.loads((output / "weight_averaging.json").read_text())
    assert [Path(p).name for p in record["averaged_checkpoints"]] == [p.name for p in paths]


def test_average_checkpoints_of_model_directories_copies_the_last_configs(tmp_path):
    dirs = [save_tiny(tiny_model(seed), tmp_path / f"m{seed}") for seed in (0, 1)]
    (dirs[1] / "preprocessor_config.json").write_text(
        (dirs[1] / "preprocessor_config.json").read_text().replace('"max_length": 32', '"max_length": 33')
    )  # marks the last input's file
    output = average_checkpoints(dirs, tmp_path / "avg")
    assert '"max_length": 33' in (output / "preprocessor_config.json").read_text()
    averaged = ASTForAudioClassification.from_pretrained(output).state_dict()
    first, second = (ASTForAudioClassification.from_pretrained(d).state_dict() for d in dirs)
    for key in averaged:
        torch.testing.assert_close(averaged[key], (first[key].double() + second[key].double()).div(2).float())


def test_average_checkpoints_never_replaces_one_of_its_inputs(tmp_path):
    """`--overwrite` onto an input would average D1 and D2 into D1, destroying D1 (it once did: D1 looks like our
    output, so the overwrite rule alone allowed it)."""
    dirs = [save_tiny(tiny_model(seed), tmp_path / f"m{seed}") for seed in (0, 1)]
    before = (dirs[0] / "model.safetensors").read_bytes()
    with pytest.raises(ValueError, match="m0"):
        average_checkpoints(dirs, dirs[0], overwrite=True)
    assert (dirs[0] / "model.safetensors").read_bytes() == before


def test_average_checkpoints_names_the_mismatch(tmp_path):
    base = save_tiny(tiny_model(0), tmp_path / "base")
    other_labels = save_tiny(tiny_model(1, num_labels=4), tmp_path / "labels")
    with pytest.raises(ValueError, match=r"config.json of .*labels differs .*id2label"):
        average_checkpoints([base, other_labels], tmp_path / "x")
    state = load_file(base / "model.safetensors")
    missing = dict(state)
    del missing["ast.norm.bias"]
    save_file(missing, str(tmp_path / "missing.safetensors"))
    with pytest.raises(ValueError, match=r"missing \['ast.norm.bias'\]"):
        average_checkpoints([base / "model.safetensors", tmp_path / "missing.safetensors"], tmp_path / "x")
    reshaped = {**state, "classifier.fc.bias": torch.zeros(5)}
    save_file(reshaped, str(tmp_path / "reshaped.safetensors"))
    with pytest.raises(ValueError, match=r"classifier.fc.bias has shape \(5,\)"):
        average_checkpoints([base / "model.safetensors", tmp_path / "reshaped.safetensors"], tmp_path / "x")
    with pytest.raises(ValueError, match="neither a saved model directory nor a .safetensors file"):
        average_checkpoints([tmp_path / "nothing.pt"], tmp_path / "x")
    with pytest.raises(ValueError, match="at least one"):
        average_checkpoints([], tmp_path / "x")
    with pytest.raises(ValueError, match="not empty"):
        average_checkpoints([base], tmp_path / "labels")  # never writes over a non-empty directory unless asked
    assert not (tmp_path / "x").exists()
    with pytest.raises(ValueError, match="no state dict"):
        StateDictAverager().average()


# --------------------------------------------------------------------------------------------------------- ensembles


def test_ensemble_averages_member_probabilities():
    members = [tiny_model(seed, problem_type="multi_label_classification") for seed in (4, 5)]
    members[1].train()
    inputs = torch.randn(6, FRAMES, 128, generator=torch.Generator().manual_seed(2))
    batches = [
        {"input_values": inputs[:4], "labels": torch.zeros(4, 3)},
        {"input_values": inputs[4:], "labels": torch.ones(2, 3)},
    ]
    prediction = ensemble_predict(members, batches)
    assert members[1].training and not members[0].training  # modes restored
    with torch.no_grad():
        expected = [torch.sigmoid(m.eval()(input_values=inputs).logits) for m in members]
    torch.testing.assert_close(prediction.member_probabilities, torch.stack(expected))
    torch.testing.assert_close(prediction.probabilities, (expected[0] + expected[1]) / 2)
    assert prediction.labels.tolist() == [[0.0] * 3] * 4 + [[1.0] * 3] * 2

    single = [tiny_model(seed) for seed in (4, 5)]  # problem_type None: softmax, as the pipeline
    one_batch = ensemble_predict(single, {"input_values": inputs})
    with torch.no_grad():
        softmax = [torch.softmax(m(input_values=inputs).logits, -1) for m in single]
    torch.testing.assert_close(one_batch.probabilities, (softmax[0] + softmax[1]) / 2)
    assert one_batch.labels is None
    with pytest.raises(ValueError, match="num_labels"):
        ensemble_predict([single[0], tiny_model(6, num_labels=4)], {"input_values": inputs})


# --------------------------------------------------------------------------------------------------------------- CLIs


@pytest.mark.parametrize("script", ["average_checkpoints.py", "evaluate_ensemble.py"])
def test_cli_help(script, monkeypatch, capsys):
    assert run_cli(script, ["--help"], monkeypatch) == 0
    assert "usage:" in capsys.readouterr().out


def test_average_checkpoints_cli(tmp_path, monkeypatch, capsys):
    dirs = [str(save_tiny(tiny_model(seed), tmp_path / f"m{seed}")) for seed in (0, 1)]
    assert run_cli("average_checkpoints.py", [*dirs, "--output_dir", str(tmp_path / "avg")], monkeypatch) == 0
    averaged = ASTForAudioClassification.from_pretrained(tmp_path / "avg").state_dict()
    first, second = (ASTForAudioClassification.from_pretrained(d).state_dict() for d in dirs)
    for key, value in averaged.items():
        torch.testing.assert_close(value, (first[key].double() + second[key].double()).div(2).float())
    mismatched = str(save_tiny(tiny_model(2, num_labels=4), tmp_path / "m2"))
    bad_run = [dirs[0], mismatched, "--output_dir", str(tmp_path / "bad")]
    assert run_cli("average_checkpoints.py", bad_run, monkeypatch) == 1
    assert "id2label" in capsys.readouterr().err


def write_manifest(tmp_path: Path, labels: list[str]) -> Path:
    rng = np.random.default_rng(0)
    with (tmp_path / "test.csv").open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["path", "label"])
        for index, label in enumerate(labels):
            soundfile.write(tmp_path / f"clip{index}.wav", rng.normal(0, 0.1, 5600).astype(np.float32), 16000)
            writer.writerow([f"clip{index}.wav", label])
    return tmp_path / "test.csv"


@pytest.mark.parametrize("problem_type", ["single_label_classification", "multi_label_classification"])
def test_evaluate_ensemble_cli(problem_type, tmp_path, monkeypatch):
    id2label = {0: "dog", 1: "cat", 2: "bird"}
    models = [tiny_model(seed, problem_type=problem_type, id2label=id2label) for seed in (7, 8)]
    dirs = [str(save_tiny(model, tmp_path / f"m{i}")) for i, model in enumerate(models)]
    multi = problem_type == "multi_label_classification"
    labels = ["dog;cat", "bird", "cat", "dog;bird", "bird"] if multi else ["dog", "bird", "cat", "dog", "bird"]
    manifest = write_manifest(tmp_path, labels)
    argv = [*dirs, "--eval_file", str(manifest), "--batch_size", "2", "--output_json", str(tmp_path / "r.json")]
    assert run_cli("evaluate_ensemble.py", argv, monkeypatch) == 0
    results = json.loads((tmp_path / "r.json").read_text())

    # Independent recomputation: features of each clip, both models, mean probability.
    extractor = ASTFeatureExtractor.from_pretrained(dirs[0])
    waves = [soundfile.read(tmp_path / f"clip{i}.wav", dtype="float32")[0] for i in range(len(labels))]
    features = extractor(waves, sampling_rate=16000, return_tensors="pt")
    with torch.no_grad():
        logits = [m(**features).logits for m in models]
    probs = [torch.sigmoid(x) if multi else torch.softmax(x, -1) for x in logits]
    label2id = {v: k for k, v in id2label.items()}
    if multi:
        targets = np.zeros((len(labels), 3))
        for row, names in enumerate(labels):
            targets[row, [label2id[n] for n in names.split(";")]] = 1
    else:
        targets = np.array([label2id[n] for n in labels])
    metrics = compute_metrics_fn(problem_type)
    for member, prob in zip(results["members"], probs):
        assert member == pytest.approx({"model": member["model"], **metrics(EvalPrediction(prob.numpy(), targets))})
    ensemble = metrics(EvalPrediction(((probs[0] + probs[1]) / 2).numpy(), targets))
    assert results["ensemble"] == pytest.approx(ensemble) and results["num_clips"] == 5
    multi_keys = {"mAP", "mAUC", "d_prime", "accuracy", "excluded_classes"}
    assert set(ensemble) == (multi_keys if multi else {"accuracy", "top5_accuracy"})


def test_evaluate_ensemble_cli_rejects_unknown_labels(tmp_path, monkeypatch, capsys):
    model_dir = str(save_tiny(tiny_model(0, id2label={0: "a", 1: "b", 2: "c"}), tmp_path / "m"))
    manifest = write_manifest(tmp_path, ["a", "zebra"])
    assert run_cli("evaluate_ensemble.py", [model_dir, "--eval_file", str(manifest)], monkeypatch) == 1
    assert "zebra" in capsys.readouterr().err
