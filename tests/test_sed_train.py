"""Training sound event detection: frame targets from events, targets that follow every time augmentation, bad label
rows (an error naming the file and line, or skipped and counted), and a whole run of the training script.

Expected targets are computed independently of `modeling_ast.training.sed`: on a 0.5 ms grid, an event is an indicator
array (rolled with `np.roll`), and a column is positive when its 100 ms interval holds a 1.
"""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
from conftest import import_example
import soundfile
import torch
from transformers import pipeline

from modeling_ast import ASTFeatureExtractor, ASTForAudioFrameClassification
from modeling_ast.training.augment import AugmentConfig
from modeling_ast.training.labels import LabelSpace
from modeling_ast.training.sampling import DrawKey
from modeling_ast.training.sed import (
    SEDArguments, SEDCollator, SEDDataset, frame_targets, read_strong_labels, read_weak_labels, sed_examples,
    sed_task,
)  # fmt: skip
from modeling_ast.training.sed_evaluation import eval_windows, sed_metrics_fn
from modeling_ast.modeling_ast_frames import column_grid
from modeling_ast.training.sed_metrics import event_f1, psds, read_strong_tsv, write_events_tsv
from test_sed import loudness_detector
from tiny_models import tiny_config

RATE = 16000
SPACE = LabelSpace(["dog", "siren"], multi_label=True)
CONFIG = tiny_config(num_labels=2)  # 128 frames, time stride 10
# Column j spans Kaldi frames 10 j .. 10 j + 15, centred at 12.5 ms, 10 ms apart: its centre is 87.5 + 100 j ms.


def reference_targets(events, num_columns: int, length_ms: int, shift_ms: int = 0) -> torch.Tensor:
    """Targets on a 0.5 ms grid: each event an indicator over [onset, offset) of a clip of `length_ms`, rolled by
    `shift_ms`; column j covers [37.5 + 100 j, 137.5 + 100 j) ms."""
    targets = torch.zeros(num_columns, 2)
    for onset, offset, label in events:
        indicator = np.zeros(2 * length_ms)
        indicator[round(onset * 2000) : round(offset * 2000)] = 1
        indicator = np.roll(indicator, 2 * shift_ms)
        for column in range(num_columns):
            if indicator[75 + 200 * column : 275 + 200 * column].any():
                targets[column, SPACE.labels.index(label)] = 1
    return targets


def test_a_column_is_positive_when_its_hop_interval_overlaps_the_event():
    centres = 0.125 + 0.1 * torch.arange(8, dtype=torch.float64)
    targets = frame_targets([(0.3, 0.55, "siren")], centres, 0.1, SPACE)
    # [0.075 + 0.1 j, 0.175 + 0.1 j) overlaps [0.3, 0.55) for j = 2 ([0.275, 0.375)) to j = 4 ([0.475, 0.575)).
    assert targets[:, 1].nonzero().flatten().tolist() == [2, 3, 4]
    assert not targets[:, 0].any()


def test_strong_tsv_jsonl_and_weak_labels_mix_in_one_list(tmp_path):
    (tmp_path / "strong.jsonl").write_text(
        json.dumps({"filename": "a.wav", "onset": 0.5, "offset": 1.0, "event_label": "dog"}) + "\n"
    )
    (tmp_path / "weak.tsv").write_text("filename\tevent_labels\na.wav\tdog\nb.wav\tdog,siren\nc.wav\t\n")
    examples = sed_examples(tmp_path, read_strong_labels(tmp_path / "strong.jsonl"), read_weak_labels(tmp_path / "weak.tsv"))
    assert [(e["name"], e["labels"], e["events"]) for e in examples] == [
        ("a.wav", ["dog"], [(0.5, 1.0, "dog")]), ("b.wav", ["dog", "siren"], None), ("c.wav", [], None),
    ]  # fmt: skip
    (tmp_path / "bad.jsonl").write_text(json.dumps({"filename": "a.wav", "onset": 2, "offset": 1, "event_label": "x"}))
    with pytest.raises(ValueError, match="bad.jsonl, line 1"):
        read_strong_labels(tmp_path / "bad.jsonl")


def write_clip(folder, name: str, waveform: np.ndarray) -> dict:
    soundfile.write(folder / name, waveform, RATE, subtype="FLOAT")
    return name


def test_random_crop_moves_the_events_with_the_window(tmp_path):
    ramp = np.arange(3 * RATE, dtype=np.float32) / (3 * RATE)  # the sample value tells where the window starts
    write_clip(tmp_path, "long.wav", ramp)
    examples = sed_examples(tmp_path, {"long.wav": [(1.2, 1.5, "dog"), (2.9, 3.0, "siren")]}, {})
    dataset = SEDDataset(examples, SPACE, train=True, max_samples=RATE, seed=3)
    for position in range(4):
        item = dataset[DrawKey(0, position, 0)]
        start_ms = round(float(item["audio"][0]) * 3 * 1000)
        indicator = {label: np.zeros(3000) for label in SPACE.labels}
        indicator["dog"][1200:1500], indicator["siren"][2900:3000] = 1, 1
        for label in SPACE.labels:
            window = indicator[label][start_ms : start_ms + 1000]
            expected = [(np.argmax(window) / 1000, (len(window) - np.argmax(window[::-1])) / 1000)] if window.any() else []
            got = [(on, off) for on, off, name in item["events"] if name == label]
            assert np.ravel(got).tolist() == pytest.approx(np.ravel(expected).tolist(), abs=1.5e-3)  # 1 ms grid


def collate(tmp_path, events, augment: AugmentConfig, seed: int = 0):
    write_clip(tmp_path, "clip.wav", np.random.default_rng(0).standard_normal(RATE).astype(np.float32) * 0.1)
    dataset = SEDDataset(sed_examples(tmp_path, {"clip.wav": events}, {}), SPACE, train=True, augment=augment, seed=seed)
    extractor = ASTFeatureExtractor(max_length=128)
    collator = SEDCollator(extractor, augment, config=CONFIG, label_space=SPACE, padding="longest", return_attention_mask=True)
    plain = SEDCollator(extractor, config=CONFIG, label_space=SPACE, padding="longest", return_attention_mask=True)
    item = dataset[DrawKey(0, 0, 0)]
    return collator([item]), plain([{key: value for key, value in item.items() if key != "seed"}])


@pytest.mark.parametrize("seed", [0, 1, 2, 5])
def test_time_roll_rolls_the_frame_targets_with_the_features(tmp_path, seed):
    events = [(0.82, 0.98, "dog"), (0.1, 0.3, "siren")]
    rolled, plain = collate(tmp_path, events, AugmentConfig(noise=True), seed)
    length = int(plain["attention_mask"].sum())  # 98 frames of 10 ms
    # The shift, found from the features alone: the roll that matches up to the added noise (< 0.1).
    errors = {shift: float((torch.roll(plain["input_values"][0, :length], shift, 0) - rolled["input_values"][0, :length]).abs().max())
              for shift in range(-10, 10)}  # fmt: skip
    shift = min(errors, key=errors.get)
    assert errors[shift] < 0.1
    expected = reference_targets(events, rolled["labels"].shape[1], length * 10, shift * 10)
    torch.testing.assert_close(rolled["labels"][0], expected)
    assert rolled["strong"].tolist() == [True]


def test_spec_augment_time_masks_leave_the_targets(tmp_path):
    events = [(0.2, 0.6, "dog")]
    masked, plain = collate(tmp_path, events, AugmentConfig(timem=60, freqm=10), seed=1)
    assert not torch.equal(masked["input_values"], plain["input_values"])
    torch.testing.assert_close(masked["labels"][0], reference_targets(events, masked["labels"].shape[1], 1000))
    torch.testing.assert_close(masked["labels"], plain["labels"])


def test_mixup_targets_are_the_union_of_both_clips_events(tmp_path):
    rng = np.random.default_rng(0)
    for name in ("a.wav", "b.wav", "c.wav"):
        write_clip(tmp_path, name, rng.standard_normal(RATE).astype(np.float32) * 0.1)
    strong = {"a.wav": [(0.1, 0.4, "dog")], "b.wav": [(0.5, 0.9, "siren")]}
    examples = sed_examples(tmp_path, strong, {"c.wav": ["siren"]})
    augment = AugmentConfig(mixup=1.0)
    dataset = SEDDataset(examples, SPACE, train=True, augment=augment, seed=0)
    collator = SEDCollator(ASTFeatureExtractor(max_length=128), augment, config=CONFIG, label_space=SPACE)
    partners = set()
    for position in range(12):
        item = dataset[DrawKey(0, position, 0)]  # clip a, mixed with a, b or c
        batch = collator([item])
        if item["events"] is None:  # mixed with weak c: a weak mixture with both clips' labels
            partners.add("c")
            assert batch["strong"].tolist() == [False] and batch["clip_labels"].tolist() == [[1.0, 1.0]]
            continue
        partner = "b" if any(label == "siren" for _, _, label in item["events"]) else "a"
        partners.add(partner)
        events = strong["a.wav"] + (strong["b.wav"] if partner == "b" else [])
        torch.testing.assert_close(batch["labels"][0], reference_targets(events, batch["labels"].shape[1], 1000))
        assert batch["clip_labels"].tolist() == [[1.0, 1.0 if partner == "b" else 0.0]]
    assert partners == {"a", "b", "c"}


def test_batches_train_the_frame_model_and_metrics_score_a_perfect_prediction(tmp_path):
    rng = np.random.default_rng(0)
    strong = {"a.wav": [(0.2, 0.6, "dog")], "b.wav": [(0.3, 0.9, "siren")]}
    for name in strong:
        write_clip(tmp_path, name, rng.standard_normal(RATE).astype(np.float32) * 0.1)
    examples = sed_examples(tmp_path, strong, {})
    batch = SEDCollator(ASTFeatureExtractor(max_length=128), config=CONFIG, label_space=SPACE)([SEDDataset(examples, SPACE)[i] for i in range(2)])
    model = ASTForAudioFrameClassification(tiny_config(num_labels=2))
    output = model(**batch)
    assert output.logits.shape == batch["labels"].shape and output.loss.requires_grad
    extractor = ASTFeatureExtractor(max_length=128)
    compute = sed_metrics_fn(eval_windows(examples, CONFIG, extractor), CONFIG, SPACE, extractor)
    perfect = (batch["labels"] * 20 - 10).numpy()
    metrics = compute(type("Prediction", (), {"predictions": (perfect, None)})())
    assert metrics["event_f1"] == 1.0 and metrics["segment_f1"] == 1.0
    assert metrics["psds1"] > 0.5
    silent = compute(type("Prediction", (), {"predictions": np.full_like(perfect, -10.0)})())
    assert silent["event_f1"] == 0.0 and silent["psds1"] == 0.0


def test_evaluation_scores_whole_clips_through_the_windows_the_pipeline_runs(tmp_path):
    """A 3.3 s clip and a 1 s clip, a model with 1.28 s windows: the evaluation metrics equal those of the pipeline's
    frame scores and events, computed with the metric functions directly (before, evaluation saw the first window
    only and missed the burst at 2.5 s)."""
    loudness_detector(tmp_path / "model")
    space = LabelSpace(["click"], multi_label=True)
    rng = np.random.default_rng(0)
    strong = {"long.wav": [(0.4, 0.7, "click"), (2.5, 2.9, "click")], "short.wav": [(0.3, 0.5, "click")]}
    for name, length in (("long.wav", 3.3), ("short.wav", 1.0)):
        waveform = rng.standard_normal(round(length * RATE)) * 1e-3
        for onset, offset, _ in strong[name]:
            waveform[round(onset * RATE) : round(offset * RATE)] *= 300
        write_clip(tmp_path, name, waveform.astype(np.float32))
    model = ASTForAudioFrameClassification.from_pretrained(tmp_path / "model")
    extractor = ASTFeatureExtractor.from_pretrained(tmp_path / "model")
    # 1.28 s windows 12 columns apart, the last moved back to end with the clip (21 columns from its start)
    windows = eval_windows(sed_examples(tmp_path, strong, {}), model.config, extractor)
    assert [(window["name"], window["start"]) for window in windows] == [
        ("long.wav", 0), ("long.wav", 12 * 1600), ("long.wav", 21 * 1600), ("short.wav", 0)]  # fmt: skip
    collator = SEDCollator(extractor, config=model.config, label_space=space)
    dataset = SEDDataset(windows, space, max_samples=20720)  # 128 frames, as the training script gives it
    with torch.no_grad():
        logits = torch.cat([model(**collator([dataset[index]])).logits for index in range(len(windows))])
    metrics = sed_metrics_fn(windows, model.config, space, extractor)(
        type("Prediction", (), {"predictions": logits.numpy()})()
    )

    detector = pipeline("sound-event-detection", model=str(tmp_path / "model"))
    frame_scores, detected, durations = {}, {}, {}
    for name in strong:
        output = detector(str(tmp_path / name), return_frame_scores=True)
        durations[name] = soundfile.info(tmp_path / name).frames / RATE
        grid = column_grid(model.config, durations[name], RATE)
        count = len(output["frame_scores"])
        bounds = [grid.bounds(index, index + 1)[0] for index in range(count)] + [grid.bounds(count - 1, count)[1]]
        frame_scores[name] = (np.asarray(bounds), output["frame_scores"].double().numpy())
        detected[name] = [(event["start"], event["end"], event["label"]) for event in output["events"]]
    expected = {**psds(frame_scores, strong, durations, ["click"]), **event_f1(detected, strong, ["click"])}
    assert metrics.keys() == expected.keys()
    for key, value in expected.items():
        assert metrics[key] == pytest.approx(value, abs=1e-6), key
    assert expected["event_f1"] > 0.5  # the detector finds the bursts, the one in the third window too


# ---- bad label rows: an error naming the labels file and line, or skipped and counted ----

STRONG_HEADER = "filename\tonset\toffset\tevent_label\n"
# b.wav is 15995 samples, 0.9996875 s: its event written as ending at 1.000 (3 decimals) is 0.3 ms past its end.
GOOD_ROWS = {
    "strong.tsv": STRONG_HEADER + "a.wav\t0.1\t0.4\tdog\n{bad}b.wav\t0.2\t1.000\tsiren\n",
    "weak.tsv": "filename\tevent_labels\nc.wav\tdog\n{bad}",
    "eval.tsv": STRONG_HEADER + "e.wav\t0.1\t0.3\tdog\n{bad}",
}


def label_task(tmp_path, bad_file: str, bad_row: str, on_bad_file: str = "error"):
    """`sed_task` of training clips a, b, c (train/) and evaluation clip e (eval/), with `bad_row` after the first
    good row of `bad_file` (a key of GOOD_ROWS, or strong.jsonl, which then replaces strong.tsv): its line 3 (line 2
    of the JSON Lines file, which has no header)."""
    for folder, names in (("train", {"a.wav": RATE, "b.wav": RATE - 5, "c.wav": RATE}), ("eval", {"e.wav": RATE})):
        (tmp_path / folder).mkdir(exist_ok=True)
        for name, samples in names.items():
            write_clip(tmp_path / folder, name, np.zeros(samples, dtype=np.float32))
    for name, text in GOOD_ROWS.items():
        (tmp_path / name).write_text(text.format(bad=bad_row + "\n" if name == bad_file else ""))
    strong = tmp_path / "strong.tsv"
    if bad_file == "strong.jsonl":
        rows = [{"filename": "a.wav", "onset": 0.1, "offset": 0.4, "event_label": "dog"}, json.loads(bad_row),
                {"filename": "b.wav", "onset": 0.2, "offset": 1.0, "event_label": "siren"}]  # fmt: skip
        strong = tmp_path / "strong.jsonl"
        strong.write_text("".join(json.dumps(row) + "\n" for row in rows))
    args = SEDArguments(str(strong), str(tmp_path / "weak.tsv"), str(tmp_path / "train"), str(tmp_path / "eval.tsv"),
                        str(tmp_path / "eval"))  # fmt: skip
    return sed_task(args, on_bad_file)


BAD_ROWS = [
    ("strong.tsv", "b.wav\t0.2\t1.002\tdog", "the event ends at 1.002 s, after the end of b.wav \\(0.9997 s\\)"),
    ("strong.tsv", "missing.wav\t0.1\t0.2\tdog", "'missing.wav' is not a file in the audio folder .*train"),
    ("strong.tsv", "b.wav\t0.5\t0.5\tdog", "need 0 <= onset < offset, got onset 0.5 and offset 0.5"),
    ("strong.tsv", "b.wav\t-0.1\t0.5\tdog", "need 0 <= onset < offset, got onset -0.1 and offset 0.5"),
    ("strong.jsonl", '{"filename": "gone.wav", "onset": 0.1, "offset": 0.2, "event_label": "dog"}',
     "'gone.wav' is not a file in the audio folder .*train"),
    ("weak.tsv", "missing.wav\tdog,siren", "'missing.wav' is not a file in the audio folder .*train"),
    ("eval.tsv", "e.wav\t0.4\t0.6\tcat",
     "label 'cat' is not a training label \\(dog, siren\\); the model cannot detect a class it never trains on"),
    ("eval.tsv", "e.wav\t0.5\t1.5\tdog", "the event ends at 1.5 s, after the end of e.wav \\(1.0000 s\\)"),
    ("eval.tsv", "other.wav\t\t\t", "'other.wav' is not a file in the audio folder .*eval"),
]  # fmt: skip


@pytest.mark.parametrize(("bad_file", "bad_row", "message"), BAD_ROWS)
def test_a_bad_label_row_is_an_error_naming_the_file_and_line(tmp_path, bad_file, bad_row, message):
    where = f"{bad_file}, line {2 if bad_file == 'strong.jsonl' else 3}"
    with pytest.raises(ValueError, match=f"{where}: {message} \\(on_bad_file 'skip' skips such rows\\)$"):
        label_task(tmp_path, bad_file, bad_row)


@pytest.mark.parametrize(("bad_file", "bad_row", "message"), BAD_ROWS)
def test_on_bad_file_skip_leaves_the_bad_row_out_and_counts_it(tmp_path, bad_file, bad_row, message):
    task = label_task(tmp_path, bad_file, bad_row, "skip")
    split = "eval" if bad_file == "eval.tsv" else "train"
    assert [len(task.skipped_rows[name]) for name in ("train", "eval")] == [split == "train", split == "eval"]
    [skipped] = task.skipped_rows[split]
    assert re.fullmatch(f".*{bad_file}, line {2 if bad_file == 'strong.jsonl' else 3}: {message}.*", skipped)
    # Only the bad row goes: the good rows around it stay, the event ending 0.3 ms past b.wav's end among them.
    assert {example["name"]: example["events"] for example in task.train} == {
        "a.wav": [(0.1, 0.4, "dog")], "b.wav": [(0.2, 1.0, "siren")], "c.wav": None,
    }  # fmt: skip
    assert {example["name"]: example["events"] for example in task.eval} == {"e.wav": [(0.1, 0.3, "dog")]}


def test_validation_labels_are_checked_as_evaluation_labels_are(tmp_path):
    label_task(tmp_path, "none", "")  # the clips and label files; e.wav (eval/) is the validation clip too
    validation = tmp_path / "validation.tsv"

    def task(rows: str, on_bad_file: str = "error"):
        validation.write_text(STRONG_HEADER + rows)
        args = SEDArguments(str(tmp_path / "strong.tsv"), None, str(tmp_path / "train"), str(tmp_path / "eval.tsv"),
                            str(tmp_path / "eval"), str(validation), str(tmp_path / "eval"))  # fmt: skip
        return sed_task(args, on_bad_file)

    rows = "e.wav\t0.1\t0.3\tdog\ne.wav\t0.4\t0.6\tcat\n"
    with pytest.raises(ValueError, match=r"validation.tsv, line 3: label 'cat' is not a training label"):
        task(rows)
    skipped = task(rows, "skip")
    assert [(example["name"], example["events"]) for example in skipped.validation] == [("e.wav", [(0.1, 0.3, "dog")])]
    assert len(skipped.skipped_rows["validation"]) == 1
    with pytest.raises(ValueError, match="validation.tsv lists no validation clip"):
        task("")
    with pytest.raises(ValueError, match="give --validation_strong_labels and --validation_audio_dir together"):
        SEDArguments("s.tsv", None, "a", "e.tsv", "e", validation_strong_labels="v.tsv")
    with pytest.raises(ValueError, match="need --strong_labels or --weak_labels"):
        SEDArguments(validation_strong_labels="v.tsv", validation_audio_dir="v")


# ---- the training script, end to end ----


def test_the_script_trains_a_frame_model_on_soundscapes_and_the_pipeline_loads_it(fsdd_dir, tmp_path, capsys):
    """A tiny run of examples/run_audio_classification.py on 6 + 3 soundscapes of the FSDD recordings the repository
    ships, under --on_bad_file skip: a training row naming a missing file and the evaluation rows whose digit no
    training soundscape holds are left out and counted."""
    folders = import_example("soundscapes").make_soundscapes(fsdd_dir, tmp_path / "data", num_train=6, num_eval=3)
    train_labels = tmp_path / "train.tsv"
    train_labels.write_text((folders["train"] / "strong.tsv").read_text() + "gone.wav\t1.000\t2.000\tone\n")
    known = {label for events in read_strong_tsv(folders["train"] / "strong.tsv").values() for *_, label in events}
    eval_events = read_strong_tsv(folders["eval"] / "strong.tsv")
    unknown = sum(label not in known for events in eval_events.values() for *_, label in events)
    assert 0 < unknown < sum(map(len, eval_events.values()))  # some evaluation events are scored, some skipped
    output_dir = tmp_path / "model"
    result = import_example("run_audio_classification").main([
        "--strong_labels", str(train_labels), "--audio_dir", str(folders["train"] / "audio"),
        "--eval_strong_labels", str(folders["eval"] / "strong.tsv"), "--eval_audio_dir", str(folders["eval"] / "audio"),
        "--on_bad_file", "skip", "--output_dir", str(output_dir), "--num_train_epochs", "1",
        "--hidden_size", "32", "--num_hidden_layers", "1", "--num_attention_heads", "2", "--intermediate_size", "64",
        "--max_length", "300", "--frequency_stride", "16", "--time_stride", "10",  # 3 s: evaluated in windows
        "--per_device_train_batch_size", "6", "--eval_strategy", "no", "--disable_tqdm", "true", "--report_to", "none",
    ])  # fmt: skip
    assert result["skipped_label_rows"] == {"train": 1, "eval": unknown}
    assert f"skipped bad label rows: 1 training row(s), {unknown} eval row(s)" in capsys.readouterr().out
    dropped = sum(not events or all(label not in known for *_, label in events) for events in eval_events.values())
    assert result["num_eval_clips"] == len(eval_events) - dropped  # clips left with no scored event are dropped
    metrics = json.loads((output_dir / "eval_results.json").read_text())
    for name in ("psds1", "psds2", "event_f1", "segment_f1"):
        assert 0.0 <= metrics[f"eval_{name}"] <= 1.0, name

    card = (output_dir / "README.md").read_text()
    assert "type: sound-event-detection" in card and "trained for sound event detection" in card

    detector = pipeline("sound-event-detection", model=str(output_dir))
    events = detector(str(folders["eval"] / "audio" / "eval_00001.wav"), threshold=0.0)
    assert events and {event["label"] for event in events} <= known
    assert all(0.0 <= event["start"] < event["end"] <= 10.0 for event in events)


def test_the_script_chooses_the_event_settings_on_validation_clips_and_every_door_uses_them(fsdd_dir, tmp_path):
    """--validation_strong_labels: after training, the threshold and median window with the best event F1 on the
    validation soundscapes go into config.json; the F1 the script saw for a setting is that of the saved model's
    pipeline events at that setting (metrics computed here with the metric function directly); the final
    evaluation and the pipeline without options cut events with the chosen setting. The model is test_sed's loudness
    detector for the training digits (every digit scored by loudness, so F1 varies with the threshold), fine-tuned
    for one step at a negligible learning rate."""
    folders = import_example("soundscapes").make_soundscapes(fsdd_dir, tmp_path / "data", num_train=6, num_eval=2,
                                                             num_validation=3)  # fmt: skip
    known = sorted({label for events in read_strong_tsv(folders["train"] / "strong.tsv").values()
                    for *_, label in events})  # fmt: skip
    loudness_detector(tmp_path / "start", tuple(known))
    validation = {name: [event for event in events if event[2] in known]
                  for name, events in read_strong_tsv(folders["validation"] / "strong.tsv").items()}  # fmt: skip
    evaluation = {name: [event for event in events if event[2] in known]
                  for name, events in read_strong_tsv(folders["eval"] / "strong.tsv").items()}  # fmt: skip
    for split, events in (("validation", validation), ("eval", evaluation)):  # digits the model knows, only
        write_events_tsv(events, tmp_path / f"{split}.tsv")
    output_dir = tmp_path / "model"
    result = import_example("run_audio_classification").main([
        "--model_name_or_path", str(tmp_path / "start"),
        "--strong_labels", str(folders["train"] / "strong.tsv"), "--audio_dir", str(folders["train"] / "audio"),
        "--eval_strong_labels", str(tmp_path / "eval.tsv"), "--eval_audio_dir", str(folders["eval"] / "audio"),
        "--validation_strong_labels", str(tmp_path / "validation.tsv"),
        "--validation_audio_dir", str(folders["validation"] / "audio"),
        "--output_dir", str(output_dir), "--max_steps", "1", "--learning_rate", "1e-12", "--warmup_steps", "0",
        "--eval_strategy", "no", "--disable_tqdm", "true", "--report_to", "none",
    ])  # fmt: skip
    choice = result["event_options"]
    assert json.loads((output_dir / "config.json").read_text())["event_options"] == choice.settings
    assert choice.event_f1 == max(choice.table.values()) > choice.default_event_f1  # measured 0.4 against 0.0

    detector = pipeline("sound-event-detection", model=str(output_dir))

    def pipeline_f1(truth: dict, audio_dir, **options) -> float:
        detected = {name: [(e["start"], e["end"], e["label"]) for e in detector(str(audio_dir / name), **options)]
                    for name in truth}  # fmt: skip
        return event_f1(detected, truth, known)["event_f1"]

    threshold, median_window = choice.settings["threshold"], choice.settings["median_window"]
    for setting in ((threshold, median_window), (0.5, 1)):
        options = dict(zip(("threshold", "median_window"), setting))
        assert pipeline_f1(validation, folders["validation"] / "audio", **options) == pytest.approx(
            choice.table[setting], abs=1e-12)  # fmt: skip
    metrics = json.loads((output_dir / "eval_results.json").read_text())
    assert metrics["eval_event_f1"] == pytest.approx(pipeline_f1(evaluation, folders["eval"] / "audio"), abs=1e-12)
    card = (output_dir / "README.md").read_text()
    chosen = f"- Events: threshold {threshold:g}, median window {median_window} column(s), chosen for the best event F1"
    assert f"{chosen} on 3 validation clips" in card
