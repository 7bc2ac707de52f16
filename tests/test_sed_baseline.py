"""examples/sed_clip_baseline.py: a clip classifier's windows turned into events and scored like the SED recipe."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile
import torch
from conftest import import_example

from modeling_ast.training.sed_metrics import read_strong_tsv
from tiny_models import save_tiny_checkpoint, tiny_model

baseline = import_example("sed_clip_baseline")


def test_each_grid_cell_holds_the_mean_of_the_windows_covering_it():
    windows = [
        {"start": 0.0, "end": 1.0, "labels": [{"label": "a", "score": 0.2}, {"label": "b", "score": 0.9}]},
        {"start": 0.5, "end": 1.5, "labels": [{"label": "b", "score": 0.1}, {"label": "a", "score": 0.6}]},
    ]
    scores = baseline.grid_scores(windows, ["a", "b"], 1.5)
    assert scores.shape == (150, 2)  # 10 ms cells
    # cells 0-49 only in the first window, 50-99 in both, 100-149 only in the second
    expected = torch.tensor([[0.2, 0.9]] * 50 + [[0.4, 0.5]] * 50 + [[0.6, 0.1]] * 50, dtype=torch.float64)
    torch.testing.assert_close(scores, expected, rtol=0, atol=1e-12)


def test_digit_labels_are_named_as_the_soundscapes_name_them():
    assert [baseline.soundscape_label(label) for label in ("0", "7", "dog", "12")] == ["zero", "seven", "dog", "12"]


def test_the_baseline_scores_soundscapes_with_the_recipe_metrics(fsdd_dir, tmp_path):
    folders = import_example("soundscapes").make_soundscapes(fsdd_dir, tmp_path / "data", num_train=0, num_eval=3)
    model = tiny_model(seed=0, perturb=0.5, num_hidden_layers=1, num_attention_heads=2,
                       id2label={i: str(i) for i in range(10)}, problem_type="single_label_classification")  # fmt: skip
    save_tiny_checkpoint(tmp_path / "clip", model)
    output = tmp_path / "metrics.json"
    metrics = baseline.main([str(tmp_path / "clip"), str(folders["eval"] / "strong.tsv"),
                             str(folders["eval"] / "audio"), "--output", str(output)])  # fmt: skip
    assert set(metrics) >= {"psds1", "psds2", "event_f1", "segment_f1"}
    assert all(0.0 <= value <= 1.0 for value in metrics.values() if not np.isnan(value))
    assert output.exists()
    assert read_strong_tsv(folders["eval"] / "strong.tsv")  # the soundscapes have events to score


@pytest.mark.parametrize("bad", ["-0.5", "1.28"])
def test_a_stride_not_shorter_than_the_window_is_refused(tmp_path, bad):
    save_tiny_checkpoint(tmp_path / "clip", tiny_model(num_labels=2))
    (tmp_path / "strong.tsv").write_text("filename\tonset\toffset\tevent_label\na.wav\t0.1\t0.2\t0\n")
    soundfile.write(tmp_path / "a.wav", np.zeros(16000, dtype=np.float32), 16000)
    with pytest.raises(ValueError, match="stride_length_s"):
        baseline.main([str(tmp_path / "clip"), str(tmp_path / "strong.tsv"), str(tmp_path), "--stride_length_s", bad])
