"""int8 on CPU: the base model's 10 s forward (998 frames) in fp32 PyTorch against onnxruntime and PyTorch int8.

    python benchmarks/int8.py --threads 1 2 --repeats 5

Candidates, each against our fp32 PyTorch forward with the same random weights:
  onnxruntime int8   `export_onnx(..., quantize_int8=True)`: dynamic int8 MatMuls, 7-bit per-channel weights
  onnxruntime fp32   the same graph unquantised (how much of the int8 gain is the runtime itself)
  torch int8         `torch.ao.quantization.quantize_dynamic` on every nn.Linear (fbgemm)
The runs are interleaved (one of each per round) so that load from other processes on a shared machine falls on all
of them alike; the ratios are of medians. `benchmarks/run.py --only int8` adds the rows to the suite's table.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import torch

from modeling_ast import ASTConfig, ASTForAudioClassification
from modeling_ast.conversion.onnx import export_onnx
from modeling_ast.fbank import num_frames
from modeling_ast.onnx_inference import ASTOnnxForAudioClassification

Row = tuple[str, str, float, str, float, str]  # as in run.py
FRAMES_10S = num_frames(10 * 16000)  # 998


def interleaved_medians(functions: dict[str, Callable[[], object]], repeats: int) -> dict[str, float]:
    """Median seconds of each function over `repeats` rounds, one call of each per round, after one warm-up round."""
    timings: dict[str, list[float]] = {name: [] for name in functions}
    for round_index in range(repeats + 1):
        for name, function in functions.items():
            start = time.perf_counter()
            function()
            if round_index:
                timings[name].append(time.perf_counter() - start)
    return {name: statistics.median(values) for name, values in timings.items()}


def torch_dynamic_int8(model: torch.nn.Module) -> torch.nn.Module:
    with warnings.catch_warnings():  # torch 2.13 points eager quantisation users to torchao; it still works
        warnings.simplefilter("ignore")
        return torch.ao.quantization.quantize_dynamic(model, {torch.nn.Linear}, dtype=torch.qint8)


def bench_int8(repeats: int, threads: list[int]) -> list[Row]:
    torch.manual_seed(0)
    model = ASTForAudioClassification(ASTConfig(num_labels=527)).eval()
    inputs = torch.randn(1, FRAMES_10S, model.config.num_mel_bins)
    rows = []
    with tempfile.TemporaryDirectory() as work:
        path = export_onnx(model, Path(work) / "model.onnx", quantize_int8=True)
        quantized = torch_dynamic_int8(model)
        for count in threads:
            torch.set_num_threads(count)
            candidates = {
                "onnxruntime int8": ASTOnnxForAudioClassification(model.config, path.with_suffix(".int8.onnx"), count),
                "onnxruntime fp32": ASTOnnxForAudioClassification(model.config, path, count),
                "torch dynamic int8 (nn.Linear)": quantized,
            }
            functions = {"fp32": model, **candidates}
            with torch.inference_mode():
                seconds = interleaved_medians({name: lambda m=m: m(inputs) for name, m in functions.items()}, repeats)
            for name in candidates:
                rows.append((f"10 s forward, base model, {count} thread(s)", "modeling_ast fp32", seconds["fp32"],
                             name, seconds[name], f"{seconds['fp32'] / seconds[name]:.2f}x faster"))
    return rows


def main(argv: list[str] | None = None) -> list[Row]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args(argv)
    from run import cpu_description, write_table  # not at the top: run.py imports this module

    rows = bench_int8(args.repeats, args.threads)
    write_table(f"{cpu_description()}; medians of {args.repeats} interleaved runs (s)", rows, None)
    return rows


if __name__ == "__main__":
    main()
