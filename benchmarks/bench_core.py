"""Core benchmark: feature extraction and inference against transformers' built-in AST, measured in the same run.

    python benchmarks/bench_core.py [--threads 2] [--output benchmarks/results_core.md]

Prints a table of wall-clock medians and speed ratios (ours / reference: > 1 means we are faster) and writes it as
Markdown. References: transformers' ASTFeatureExtractor (its numpy path when torchaudio is absent), a per-clip
torchaudio.compliance.kaldi.fbank loop (when torchaudio imports), and transformers' ASTForAudioClassification with the
same weights, which always pads to its 1024-frame grid. Targets (issue 2): features >= 15x the built-in and >= 1.5x
the torchaudio loop; base-model inference >= 8x the built-in on 1 s clips and >= 0.95x on 10 s clips.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
import transformers

from modeling_ast import ASTConfig, ASTFeatureExtractor, ASTForAudioClassification
from modeling_ast.checkpoint_layouts import from_transformers_ast


def median_seconds(function: Callable[[], object], repeats: int, warmup: int = 1) -> float:
    for _ in range(warmup):
        function()
    timings = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        timings.append(time.perf_counter() - start)
    return statistics.median(timings)


def clips(count: int, seconds: float, seed: int = 0) -> list[np.ndarray]:
    """Speech-like test signals: noise shaped by a slow envelope plus a few harmonics, in [-1, 1]."""
    rng = np.random.default_rng(seed)
    samples = int(seconds * 16000)
    t = np.arange(samples) / 16000
    result = []
    for _ in range(count):
        pitch = rng.uniform(100, 300)
        voiced = sum(np.sin(2 * np.pi * pitch * k * t) / k for k in range(1, 6))
        envelope = 0.5 + 0.5 * np.sin(2 * np.pi * rng.uniform(1, 4) * t)
        signal = envelope * (0.3 * voiced + 0.1 * rng.standard_normal(samples))
        result.append((0.9 * signal / np.abs(signal).max()).astype(np.float32))
    return result


def feature_rows(repeats: int) -> list[tuple[str, float, float]]:
    waveforms = clips(32, 10.0)
    ours = ASTFeatureExtractor()
    builtin = transformers.ASTFeatureExtractor()
    ours_s = median_seconds(lambda: ours(waveforms, sampling_rate=16000, return_tensors="pt"), repeats)
    rows = [("features 32 x 10 s: built-in ASTFeatureExtractor", median_seconds(
        lambda: builtin(waveforms, sampling_rate=16000, return_tensors="pt"), repeats), ours_s)]
    try:
        import torchaudio.compliance.kaldi as kaldi
    except (ImportError, OSError):
        print("torchaudio not importable: skipping the kaldi.fbank loop reference")
    else:
        tensors = [torch.from_numpy(w)[None] for w in waveforms]

        def torchaudio_loop() -> None:
            for waveform in tensors:
                kaldi.fbank(waveform, htk_compat=True, sample_frequency=16000, use_energy=False,
                            window_type="hanning", num_mel_bins=128, dither=0.0, frame_shift=10)

        rows.append(("features 32 x 10 s: torchaudio kaldi.fbank loop", median_seconds(torchaudio_loop, repeats), ours_s))
    return rows


def twin_models() -> tuple[torch.nn.Module, torch.nn.Module]:
    """The base (ViT-B) built-in AST with random weights, and ours carrying the same weights."""
    torch.manual_seed(0)
    builtin = transformers.ASTForAudioClassification(transformers.ASTConfig(num_labels=527, layer_norm_eps=1e-6))
    ours = ASTForAudioClassification(ASTConfig(num_labels=527, head_layer_norm_eps=1e-6))
    ours.load_state_dict(from_transformers_ast(builtin.state_dict())[0])
    return builtin.eval(), ours.eval()


def inference_rows(seconds: float, batch: int, repeats: int) -> list[tuple[str, float, float]]:
    builtin, ours = twin_models()
    waveforms = clips(batch, seconds, seed=1)
    builtin_inputs = transformers.ASTFeatureExtractor()(waveforms, sampling_rate=16000, return_tensors="pt")
    our_inputs = ASTFeatureExtractor()(waveforms, sampling_rate=16000, padding="longest", return_tensors="pt")
    with torch.inference_mode():
        builtin_s = median_seconds(lambda: builtin(**builtin_inputs), repeats)
        ours_s = median_seconds(lambda: ours(**our_inputs), repeats)
    frames = our_inputs["input_values"].shape[1]
    return [(f"base model, {batch} x {seconds:g} s clips (ours {frames} frames, built-in 1024)", builtin_s, ours_s)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--output", type=Path, default=Path(__file__).with_name("results_core.md"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    rows = feature_rows(args.repeats)
    rows += inference_rows(1.0, batch=8, repeats=args.repeats)
    rows += inference_rows(10.0, batch=4, repeats=args.repeats)

    lines = [
        f"CPU, {args.threads} threads, torch {torch.__version__}, transformers {transformers.__version__}; "
        f"medians of {args.repeats} runs",
        "",
        "| case | reference (s) | ours (s) | speed-up |",
        "|---|---|---|---|",
    ]
    lines += [f"| {name} | {ref:.3f} | {ours:.3f} | {ref / ours:.2f}x |" for name, ref, ours in rows]
    table = "\n".join(lines)
    print(table)
    args.output.write_text(table + "\n")
    print(f"written to {args.output}")


if __name__ == "__main__":
    main()
