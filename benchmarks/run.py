"""Benchmark suite: every figure is a ratio against a reference measured in the same run on the same machine.

    python benchmarks/run.py                    # everything, CPU, 2 threads; writes benchmarks/results.md
    python benchmarks/run.py --only features inference

Sections (references in brackets):
  features   32 clips x 10 s fbank [transformers' ASTFeatureExtractor; torchaudio kaldi.fbank loop when importable]
  inference  base model at 1 s, 5 s, 10 s and a mixed 1-10 s batch [transformers' ASTForAudioClassification, same
             weights, which pads everything to 1024 frames]
  training   base-model training step at 1024 frames with patchout [the same step without patchout]
  memory     peak RSS tagging a 1-hour recording with the pipeline's streamed windows [the same recording loaded and
             featurised whole]
  roofline   achieved GFLOP/s of the 10 s forward [this machine's fp32 matmul GFLOP/s]
  pipeline   `pipeline` on 64 single 1 s clips, masked checkpoint [transformers' pipeline on the built-in AST, same
             weights]
  mixed      masked batch of 8 clips of 1-10 s [the sum of the 8 clips' solo times; the built-in AST]
  files      `pipeline` over 256 files of 0.5-10 s at 8/16/44.1 kHz, wav + flac, batch_size=8, num_workers=2 [the
             built-in pipeline on the same files, same settings]
  int8       10 s forward, base model: onnxruntime int8 / onnxruntime fp32 / torch dynamic int8 [our fp32 forward]
`--tiny` runs the pipeline, mixed and files sections on a one-layer model and a few clips: a check that the code
works, not a measurement.
Targets: features >= 15x the built-in and >= 1.5x torchaudio; 1 s inference >= 8x, 10 s >= 0.95x the built-in;
patchout training step >= 2.5x; roofline fraction >= 0.85.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
import transformers

from modeling_ast import ASTConfig, ASTFeatureExtractor, ASTForAudioClassification
from modeling_ast.conversion.layouts import from_transformers_ast
from modeling_ast.fbank import num_frames

from int8 import bench_int8  # benchmarks/int8.py, beside this script

Row = tuple[str, str, float, str, float, str]  # case, reference, reference value, ours, our value, ratio text


def median_seconds(function: Callable[[], object], repeats: int, warmup: int = 1) -> float:
    for _ in range(warmup):
        function()
    timings = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        timings.append(time.perf_counter() - start)
    return statistics.median(timings)


def speech_like(count: int, seconds: float, seed: int = 0) -> list[np.ndarray]:
    """Harmonic 'voice' plus noise under a slow envelope, peak 0.9: deterministic test signals."""
    rng = np.random.default_rng(seed)
    samples = int(seconds * 16000)
    t = np.arange(samples) / 16000
    clips = []
    for _ in range(count):
        pitch = rng.uniform(100, 300)
        voiced = sum(np.sin(2 * np.pi * pitch * k * t) / k for k in range(1, 6))
        envelope = 0.5 + 0.5 * np.sin(2 * np.pi * rng.uniform(1, 4) * t)
        signal = envelope * (0.3 * voiced + 0.1 * rng.standard_normal(samples))
        clips.append((0.9 * signal / np.abs(signal).max()).astype(np.float32))
    return clips


def speed_row(case: str, reference: str, reference_s: float, ours_s: float) -> Row:
    return case, reference, reference_s, "modeling_ast", ours_s, f"{reference_s / ours_s:.2f}x faster"


# ---------------------------------------------------------------- sections


def bench_features(repeats: int) -> list[Row]:
    waveforms = speech_like(32, 10.0)
    ours = ASTFeatureExtractor()
    builtin = transformers.ASTFeatureExtractor()
    ours_s = median_seconds(lambda: ours(waveforms, sampling_rate=16000, return_tensors="pt"), repeats)
    builtin_s = median_seconds(lambda: builtin(waveforms, sampling_rate=16000, return_tensors="pt"), repeats)
    rows = [speed_row("features, 32 x 10 s", "transformers ASTFeatureExtractor", builtin_s, ours_s)]
    try:
        import torchaudio.compliance.kaldi as kaldi
    except (ImportError, OSError):
        print("torchaudio is not importable: no kaldi.fbank reference in this run")
        return rows
    tensors = [torch.from_numpy(w)[None] for w in waveforms]

    def torchaudio_loop() -> None:
        for waveform in tensors:
            kaldi.fbank(waveform, htk_compat=True, sample_frequency=16000, use_energy=False, window_type="hanning",
                        num_mel_bins=128, dither=0.0, frame_shift=10)

    rows.append(speed_row("features, 32 x 10 s", "torchaudio kaldi.fbank loop", median_seconds(torchaudio_loop, repeats),
                          ours_s))
    return rows


def twin_models(**config: int) -> tuple[torch.nn.Module, torch.nn.Module]:
    """The built-in AST with random weights, and ours carrying the same weights: the base model (ViT-B, 527 labels)
    unless `config` overrides fields both configs share (hidden_size, num_hidden_layers, ...)."""
    torch.manual_seed(0)
    builtin = transformers.ASTForAudioClassification(
        transformers.ASTConfig(num_labels=527, layer_norm_eps=1e-6, **config)
    )
    ours = ASTForAudioClassification(ASTConfig(num_labels=527, head_layer_norm_eps=1e-6, **config))
    ours.load_state_dict(from_transformers_ast(builtin.state_dict())[0])
    return builtin.eval(), ours.eval()


def bench_inference(repeats: int) -> list[Row]:
    builtin, ours = twin_models()
    builtin_extractor, our_extractor = transformers.ASTFeatureExtractor(), ASTFeatureExtractor()
    cases = [("1 s", [1.0] * 8), ("5 s", [5.0] * 4), ("10 s", [10.0] * 2), ("mixed 1-10 s", [1, 2, 3.5, 6, 10])]
    rows = []
    for name, durations in cases:
        clips = [speech_like(1, seconds, seed=i)[0] for i, seconds in enumerate(durations)]
        builtin_inputs = builtin_extractor(clips, sampling_rate=16000, return_tensors="pt")
        our_inputs = our_extractor(clips, sampling_rate=16000, padding="longest", return_attention_mask=True,
                                   return_tensors="pt")
        with torch.inference_mode():
            builtin_s = median_seconds(lambda: builtin(**builtin_inputs), repeats)
            ours_s = median_seconds(lambda: ours(**our_inputs), repeats)
        rows.append(speed_row(f"inference, base model, {len(clips)} x {name} (padding='longest')",
                              "transformers AST (pads to 1024 frames)", builtin_s, ours_s))
    return rows


def bench_training(repeats: int) -> list[Row]:
    inputs = torch.randn(4, 1024, 128)
    labels = torch.randint(0, 2, (4, 527)).float()
    timings = {}
    for name, patchout in [("none", {}), ("patchout", {"patchout_time": 50, "patchout_frequency": 4})]:
        torch.manual_seed(0)
        model = ASTForAudioClassification(ASTConfig(num_labels=527, problem_type="multi_label_classification",
                                                    **patchout)).train()
        optimizer = torch.optim.Adam(model.parameters(), lr=1e-5)

        def step() -> None:
            optimizer.zero_grad()
            model(inputs, labels=labels).loss.backward()
            optimizer.step()

        timings[name] = median_seconds(step, repeats)
    return [("training step, base model, 4 x 1024 frames", "no patchout", timings["none"],
             "patchout 50 time columns + 4 frequency rows", timings["patchout"],
             f"{timings['none'] / timings['patchout']:.2f}x faster")]


_MEMORY_CHILD = r"""
import sys, transformers, modeling_ast
mode, path, model_dir = sys.argv[1:]
clf = transformers.pipeline("audio-classification", model=model_dir)
if mode == "streamed":
    clf(path, chunk_length_s=10.0, window_batch_size=8)
else:
    waveform = modeling_ast.audio_io.load_audio(path)
    windows = [waveform[i:i + 160000] for i in range(0, len(waveform) - 160000 + 1, 160000)]
    features = clf.feature_extractor(windows, sampling_rate=16000, return_tensors="pt")
# VmHWM, not getrusage: ru_maxrss survives exec and would report the parent's peak.
print(next(line.split()[1] for line in open("/proc/self/status") if line.startswith("VmHWM")))
"""


def bench_memory(hours: float = 1.0) -> list[Row]:
    with tempfile.TemporaryDirectory() as work:
        path = Path(work) / "long.wav"
        rng = np.random.default_rng(0)
        with __import__("soundfile").SoundFile(path, "w", samplerate=16000, channels=1, subtype="PCM_16") as handle:
            for _ in range(int(hours * 60)):  # one minute at a time
                handle.write((0.1 * rng.standard_normal(16000 * 60)).astype(np.float32))
        model_dir = Path(work) / "model"
        ASTForAudioClassification(ASTConfig(hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
                                            intermediate_size=128, num_labels=10)).save_pretrained(model_dir)
        ASTFeatureExtractor().save_pretrained(model_dir)
        peaks = {}
        for mode in ("streamed", "whole"):
            result = subprocess.run([sys.executable, "-c", _MEMORY_CHILD, mode, str(path), str(model_dir)],
                                    check=True, capture_output=True, text=True)
            peaks[mode] = int(result.stdout.split()[-1]) / 1024  # VmHWM is in KiB
        size_mb = path.stat().st_size / 2**20
    return [(f"peak RSS (MiB), tagging {hours:g} h ({size_mb:.0f} MiB wav) in 10 s windows",
             "load + featurise whole", peaks["whole"], "pipeline chunk_length_s=10 (streamed)", peaks["streamed"],
             f"{peaks['whole'] / peaks['streamed']:.2f}x less memory")]


def bench_roofline(repeats: int) -> list[Row]:
    size = 2048
    a, b = torch.randn(size, size), torch.randn(size, 3 * size)
    matmul_gflops = 2 * size * size * 3 * size / median_seconds(lambda: a @ b, repeats) / 1e9
    _, model = twin_models()
    inputs = ASTFeatureExtractor()(speech_like(1, 10.0), sampling_rate=16000, padding="longest", return_tensors="pt")
    from torch.utils.flop_counter import FlopCounterMode

    with torch.inference_mode():
        with FlopCounterMode(display=False) as counter:
            model(**inputs)
        seconds = median_seconds(lambda: model(**inputs), repeats)
    achieved = (counter.get_total_flops() + uncounted_attention_flops(counter, model, inputs)) / seconds / 1e9
    rows = [("10 s forward, base model (GFLOP/s)", "fp32 matmul 2048x2048x6144", matmul_gflops, "AST forward",
             achieved, f"{achieved / matmul_gflops:.2f} of the roofline")]
    onednn_gflops = onednn_matmul_gflops(a, b, repeats)
    if onednn_gflops is not None:
        rows.append(("10 s forward, base model (GFLOP/s)", "fp32 matmul 2048x2048x6144, oneDNN", onednn_gflops,
                     "AST forward", achieved, f"{achieved / onednn_gflops:.2f} of oneDNN's matmul"))
    return rows


def onednn_matmul_gflops(a: torch.Tensor, b: torch.Tensor, repeats: int) -> float | None:
    """The same product through oneDNN (torch's MKL-DNN linear): torch's default fp32 matmul goes to MKL's sgemm,
    which on AMD CPUs can run far below the hardware (measured here at about half of oneDNN). None where the
    private op is gone."""
    linear = getattr(torch._C._nn, "mkldnn_linear", None)
    if linear is None or not torch.backends.mkldnn.is_available():
        return None
    dense, weight = a.to_mkldnn(), b.t().contiguous().to_mkldnn()
    with torch.no_grad():
        seconds = median_seconds(lambda: linear(dense, weight, None), repeats)
    return 2 * a.shape[0] * a.shape[1] * b.shape[1] / seconds / 1e9


def uncounted_attention_flops(counter, model: ASTForAudioClassification, inputs) -> int:
    """Attention FLOPs (QK^T and PV: 4 N^2 D per layer) when torch's counter has no formula for the CPU SDPA kernel
    (torch 2.13 counts aten._scaled_dot_product_flash_attention_for_cpu as 0); 0 when it counted them itself."""
    counted = {str(op) for op in counter.get_flop_counts()["Global"]}
    if any("scaled_dot_product" in op for op in counted):
        return 0
    config = model.config
    tokens = token_count(config, inputs["input_values"].shape[1])
    return 4 * tokens**2 * config.hidden_size * config.num_hidden_layers * inputs["input_values"].shape[0]


def token_count(config: ASTConfig, frames: int) -> int:
    """[CLS], [DIST] and the patches of an input of `frames` frames."""
    return 2 + config.patch_grid[0] * config.time_patches(max(frames, config.patch_size))


def encoder_flops(config: ASTConfig, frames: int) -> int:
    """FLOPs of the encoder layers on one clip of `frames` frames: projections and MLP (2 N (4 D^2 + 2 D I)) plus
    attention (4 N^2 D), per layer."""
    tokens, hidden = token_count(config, frames), config.hidden_size
    per_layer = 2 * tokens * (4 * hidden**2 + 2 * hidden * config.intermediate_size) + 4 * tokens**2 * hidden
    return per_layer * config.num_hidden_layers


TINY = {"hidden_size": 64, "num_hidden_layers": 1, "num_attention_heads": 4, "intermediate_size": 128}


def saved_pipelines(work: Path, tiny: bool) -> tuple[transformers.Pipeline, transformers.Pipeline]:
    """Our pipeline on a saved masked checkpoint, and transformers' pipeline on the built-in AST with the same
    weights (passed as objects, so the built-in classes and the parent pipeline's behaviour are used)."""
    builtin, ours = twin_models(**(TINY if tiny else {}))
    ours.save_pretrained(work / "ours")
    ASTFeatureExtractor(return_attention_mask=True).save_pretrained(work / "ours")
    our_pipe = transformers.pipeline("audio-classification", model=str(work / "ours"))
    builtin_pipe = transformers.pipeline("audio-classification", model=builtin,
                                         feature_extractor=transformers.ASTFeatureExtractor())
    return our_pipe, builtin_pipe


def bench_pipeline(repeats: int, tiny: bool) -> list[Row]:
    clips = [speech_like(1, 1.0, seed=i)[0] for i in range(8 if tiny else 64)]
    with tempfile.TemporaryDirectory() as work:
        ours, builtin = saved_pipelines(Path(work), tiny)
        builtin_s = median_seconds(lambda: [builtin(clip) for clip in clips], repeats)
        ours_s = median_seconds(lambda: [ours(clip) for clip in clips], repeats)
    return [speed_row(f"pipeline, {len(clips)} single 1 s clips, masked checkpoint",
                      "transformers pipeline, built-in AST, same weights", builtin_s, ours_s)]


def bench_mixed(repeats: int, tiny: bool) -> list[Row]:
    builtin, ours = twin_models(**(TINY if tiny else {}))
    clips = [speech_like(1, seconds, seed=i)[0] for i, seconds in enumerate([1, 10, 2.5, 7, 1.5, 4, 9, 3])]
    extractor = ASTFeatureExtractor(return_attention_mask=True)
    batch = extractor(clips, sampling_rate=16000, padding="longest", return_tensors="pt")
    solo = [extractor(clip, sampling_rate=16000, padding="longest", return_tensors="pt") for clip in clips]
    builtin_inputs = transformers.ASTFeatureExtractor()(clips, sampling_rate=16000, return_tensors="pt")
    with torch.inference_mode():
        ours_s = median_seconds(lambda: ours(**batch), repeats)
        solo_s = sum(median_seconds(lambda: ours(**inputs), repeats) for inputs in solo)
        builtin_s = median_seconds(lambda: builtin(**builtin_inputs), repeats)
    case = "masked batch, 8 clips of 1-10 s (length groups)"
    return [(case, "sum of the 8 clips' solo times", solo_s, "modeling_ast", ours_s,
             f"{solo_s / ours_s:.2f} of the solo sum's speed"),
            speed_row(case, "transformers AST (pads to 1024 frames)", builtin_s, ours_s)]


def write_files(folder: Path, count: int) -> list[str]:
    """`count` files of 0.5-10 s, rotating through 8, 16 and 44.1 kHz and wav / flac."""
    import soundfile

    from modeling_ast.audio_utils import resample

    rng = np.random.default_rng(0)
    paths = []
    for index in range(count):
        rate, suffix = (8000, 16000, 44100)[index % 3], ("wav", "flac")[index % 2]
        clip = speech_like(1, float(rng.uniform(0.5, 10.0)), seed=index)[0]
        path = folder / f"clip{index:04d}.{suffix}"
        soundfile.write(path, resample(torch.from_numpy(clip), 16000, rate).numpy(), rate)
        paths.append(str(path))
    return paths


def bench_files(repeats: int, tiny: bool) -> list[Row]:
    import soundfile

    with tempfile.TemporaryDirectory() as work:
        ours, builtin = saved_pipelines(Path(work), tiny)
        (Path(work) / "files").mkdir()
        paths = write_files(Path(work) / "files", 16 if tiny else 256)
        settings = {"batch_size": 8, "num_workers": 2}
        builtin_s = median_seconds(lambda: builtin(paths, **settings), repeats, warmup=0)
        ours_s = median_seconds(lambda: ours(paths, **settings), repeats, warmup=0)
        frames = [min(num_frames(round(soundfile.info(path).duration * 16000)), 1024) for path in paths]
    # The most that skipping padding can give: the built-in computes 1024 frames per clip, we compute each clip's own.
    config = ours.model.config
    ceiling = sum(encoder_flops(config, 1024) for _ in frames) / sum(encoder_flops(config, count) for count in frames)
    return [(f"pipeline over {len(paths)} files (0.5-10 s, 8/16/44.1 kHz, wav + flac), batch_size=8, num_workers=2 "
             "(clips/s)", "transformers pipeline, built-in AST, same weights", len(paths) / builtin_s,
             "modeling_ast", len(paths) / ours_s,
             f"{builtin_s / ours_s:.2f}x the clips/s (padding-free FLOP ceiling {ceiling:.2f}x)")]


SECTIONS = {
    "features": lambda args: bench_features(args.repeats),
    "inference": lambda args: bench_inference(args.repeats),
    "training": lambda args: bench_training(args.repeats),
    "memory": lambda args: bench_memory(args.hours),
    "roofline": lambda args: bench_roofline(args.repeats),
    "pipeline": lambda args: bench_pipeline(args.repeats, args.tiny),
    "mixed": lambda args: bench_mixed(args.repeats, args.tiny),
    "files": lambda args: bench_files(args.repeats, args.tiny),
    "int8": lambda args: bench_int8(args.repeats, [args.threads]),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", nargs="+", choices=sorted(SECTIONS), default=list(SECTIONS))
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--hours", type=float, default=1.0, help="length of the recording in the memory section")
    parser.add_argument("--tiny", action="store_true", help="pipeline/mixed/files on a tiny model: checks the code")
    parser.add_argument("--output", type=Path, default=Path(__file__).with_name("results.md"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    os.environ["OMP_NUM_THREADS"] = str(args.threads)  # for the memory section's child processes

    rows: list[Row] = []
    for name in args.only:
        print(f"running {name} ...", flush=True)
        rows += SECTIONS[name](args)
    header = f"{machine_description(torch.get_num_threads())}; times are medians of {args.repeats} runs (s)"
    write_table(header, rows, args.output)
    print(f"written to {args.output}")


def write_table(header: str, rows: list[Row], output: Path | None, unit: str = "value", digits: int = 3) -> None:
    """Print the rows as a markdown table under `header`; with `output`, also write it there and the rows beside it
    as JSON (the suite, `gpu.py` and `int8.py` share this)."""
    write_rows(header, ("case", "reference", unit, "ours", unit, "result"), rows, output, digits)


def write_rows(
    header: str, columns: Sequence[str], rows: Sequence[Sequence[object]], output: Path | None, digits: int = 3
) -> None:
    """`write_table` for any columns: floats printed with `digits` decimals, everything else as it is."""
    lines = [header, "", "| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(f"{value:.{digits}f}" if isinstance(value, float) else str(value) for value in row)
              + " |" for row in rows]  # fmt: skip
    table = "\n".join(lines)
    print(table)
    if output is not None:
        output.write_text(table + "\n")
        output.with_suffix(".json").write_text(json.dumps({"header": header, "rows": rows}, indent=1))


def machine_description(threads: int) -> str:
    """What a benchmark table's header starts with: the CPU (`cpu_description`), the threads and the library
    versions."""
    return f"{cpu_description()}, {threads} threads, torch {torch.__version__}, transformers {transformers.__version__}"


def cpu_description() -> str:
    """The CPU's model name and the vector extensions int8 and fp32 kernels choose between (from lscpu; Linux)."""
    try:
        fields = dict(line.split(":", 1) for line in subprocess.run(
            ["lscpu"], capture_output=True, text=True, check=True).stdout.splitlines() if ":" in line)  # fmt: skip
    except (OSError, subprocess.CalledProcessError):
        return "CPU unknown (no lscpu)"
    flags = set(fields.get("Flags", "").split())
    extensions = {"AVX2": "avx2", "AVX-512": "avx512f", "AVX-512 VNNI": "avx512_vnni", "AVX-VNNI": "avx_vnni"}
    found = ", ".join(f"{name} {'yes' if flag in flags else 'no'}" for name, flag in extensions.items())
    return f"{fields.get('Model name', 'unknown CPU').strip()} ({os.cpu_count()} cores; {found})"


if __name__ == "__main__":
    main()
