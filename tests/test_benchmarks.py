"""Benchmark code paths with tiny models: the GPU benchmark's run on the CPU (the figures themselves need a GPU), and
the sound event detection benchmark's on a 3 s recording."""

import json
import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
gpu = pytest.importorskip("gpu")  # benchmarks/gpu.py
sed_benchmark = pytest.importorskip("sed")  # benchmarks/sed.py


def test_gpu_benchmark_runs_every_section_on_the_cpu(tmp_path):
    output = tmp_path / "results.md"
    rows = gpu.main(["--device", "cpu", "--tiny", "--batch", "2", "--repeats", "1", "--dtypes", "bfloat16",
                     "--compile_backend", "eager", "--output", str(output)])
    cases = [row[0] for row in rows]
    compiled = "inference, 2 x 10 s, bfloat16, torch.compile (eager)"
    assert cases == ["inference, 2 x 1 s, bfloat16", "inference, 2 x 10 s, bfloat16", "features, 2 x 10 s",
                     compiled, compiled]
    assert [row[1] for row in rows[3:]] == ["modeling_ast eager", "transformers AST compiled"]
    for _, _, reference_rate, _, our_rate, ratio in rows:
        assert reference_rate > 0 and our_rate > 0
        assert ratio == f"{our_rate / reference_rate:.2f}x the clips/s"
    assert "tiny model" in output.read_text() and len(json.loads(output.with_suffix(".json").read_text())["rows"]) == 5


def test_inputs_are_the_clips_real_length_for_ours_and_1024_frames_for_the_builtin():
    builtin, ours = gpu.inference_inputs(1.0, 2, torch.device("cpu"), torch.bfloat16)
    assert builtin["input_values"].shape == (2, 1024, 128) and ours["input_values"].shape == (2, 98, 128)
    assert ours["input_values"].dtype == torch.bfloat16


def test_without_cuda_the_default_device_is_refused_with_a_hint(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(SystemExit, match="--device cpu --tiny"):
        gpu.main(["--output", "/nonexistent/never-written.md"])


def test_sed_benchmark_times_the_pipeline_on_a_wav_in_a_child_process(tmp_path):
    output = tmp_path / "sed.md"
    [row] = sed_benchmark.main(["--tiny", "--minutes", "0.05", "--output", str(output)])
    recording, wall, speed, rss_before, peak, events = row
    assert recording == "0.05 min, 16 kHz WAV" and speed == pytest.approx(3.0 / wall)  # 3 s of audio
    assert 0 < rss_before <= peak and events >= 0
    table = output.read_text()
    assert "tiny model" in table and "load average" in table
    assert json.loads(output.with_suffix(".json").read_text())["rows"] == [list(row)]
