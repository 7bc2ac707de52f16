"""GPU benchmark: half-precision throughput of modeling_ast against transformers' built-in AST with the same weights.

    python benchmarks/gpu.py                       # CUDA device 0, base model; writes benchmarks/gpu_results.md

Every figure is a ratio measured in the same run on the same device:
  inference  clips/s at batch 64 for 1 s and 10 s clips, bfloat16 and float16 [built-in AST, same weights and dtype,
             which pads every clip to 1024 frames]; ours runs at the clips' real length (padding="longest")
  features   clips/s of 64 x 10 s fbank features computed on the device [transformers' extractor, CPU numpy]
  compile    torch.compile'd forward at 10 s, bfloat16 [the same model eager; and the built-in AST compiled]
CUDA times are taken between synchronisations. `--device cpu --tiny` runs every code path on a small model on the
CPU (that is what the tests do); such figures say nothing about GPUs.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
import transformers

from run import Row, median_seconds, speech_like, twin_models, write_table

from modeling_ast import ASTFeatureExtractor

TINY = {"hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4, "intermediate_size": 128}


def synchronized(function: Callable[[], object], device: torch.device) -> Callable[[], object]:
    """`function` followed by a device synchronisation, so that wall time covers the queued GPU work."""

    def run() -> object:
        result = function()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        return result

    return run


def clips_per_second(function: Callable[[], object], clips: int, device: torch.device, repeats: int) -> float:
    return clips / median_seconds(synchronized(function, device), repeats)


def throughput_row(case: str, reference: str, reference_rate: float, ours: str, our_rate: float) -> Row:
    return case, reference, reference_rate, ours, our_rate, f"{our_rate / reference_rate:.2f}x the clips/s"


def inference_inputs(seconds: float, batch: int, device: torch.device, dtype: torch.dtype) -> tuple[dict, dict]:
    """Built-in inputs (padded to 1024 frames) and ours (the clips' own length), on `device` in `dtype`."""
    clips = speech_like(batch, seconds)
    builtin = transformers.ASTFeatureExtractor()(clips, sampling_rate=16000, return_tensors="pt")
    ours = ASTFeatureExtractor()(clips, sampling_rate=16000, padding="longest", return_tensors="pt")
    return ({"input_values": builtin["input_values"].to(device, dtype)},
            {"input_values": ours["input_values"].to(device, dtype)})


def bench_inference(args: argparse.Namespace, device: torch.device) -> list[Row]:
    rows = []
    for dtype in args.dtypes:
        builtin, ours = (model.to(device, getattr(torch, dtype)) for model in twin_models(**args.config))
        for seconds in (1.0, 10.0):
            builtin_inputs, our_inputs = inference_inputs(seconds, args.batch, device, getattr(torch, dtype))
            with torch.inference_mode():
                builtin_rate = clips_per_second(lambda: builtin(**builtin_inputs), args.batch, device, args.repeats)
                our_rate = clips_per_second(lambda: ours(**our_inputs), args.batch, device, args.repeats)
            rows.append(throughput_row(f"inference, {args.batch} x {seconds:g} s, {dtype}",
                                       "transformers AST (pads to 1024 frames)", builtin_rate, "modeling_ast", our_rate))
    return rows


def bench_features(args: argparse.Namespace, device: torch.device) -> list[Row]:
    clips = speech_like(args.batch, 10.0)
    on_device = torch.from_numpy(np.stack(clips)).to(device)
    ours, builtin = ASTFeatureExtractor(), transformers.ASTFeatureExtractor()
    our_rate = clips_per_second(lambda: ours(on_device, sampling_rate=16000, return_tensors="pt"), args.batch, device,
                                args.repeats)
    builtin_rate = clips_per_second(lambda: builtin(clips, sampling_rate=16000, return_tensors="pt"), args.batch,
                                    torch.device("cpu"), args.repeats)
    return [throughput_row(f"features, {args.batch} x 10 s", "transformers ASTFeatureExtractor (CPU)", builtin_rate,
                           f"modeling_ast on {device.type}", our_rate)]


def bench_compile(args: argparse.Namespace, device: torch.device) -> list[Row]:
    dtype = getattr(torch, args.dtypes[0])
    builtin, ours = (model.to(device, dtype) for model in twin_models(**args.config))
    builtin_inputs, our_inputs = inference_inputs(10.0, args.batch, device, dtype)
    rates = {}
    with torch.inference_mode():
        rates["eager"] = clips_per_second(lambda: ours(**our_inputs), args.batch, device, args.repeats)
        for name, model, inputs in (("ours", ours, our_inputs), ("builtin", builtin, builtin_inputs)):
            compiled = torch.compile(model, backend=args.compile_backend)
            compiled(**inputs)  # compile outside the timing
            rates[name] = clips_per_second(lambda: compiled(**inputs), args.batch, device, args.repeats)
    case = f"inference, {args.batch} x 10 s, {args.dtypes[0]}, torch.compile ({args.compile_backend})"
    return [throughput_row(case, "modeling_ast eager", rates["eager"], "modeling_ast compiled", rates["ours"]),
            throughput_row(case, "transformers AST compiled", rates["builtin"], "modeling_ast compiled", rates["ours"])]


SECTIONS = {"inference": bench_inference, "features": bench_features, "compile": bench_compile}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--only", nargs="+", choices=sorted(SECTIONS), default=list(SECTIONS))
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--dtypes", nargs="+", choices=["bfloat16", "float16"], default=["bfloat16", "float16"])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--compile_backend", default="inductor")
    parser.add_argument("--tiny", action="store_true", help="a 2-layer, 64-wide model: checks the code paths only")
    parser.add_argument("--output", type=Path, default=Path(__file__).with_name("gpu_results.md"))
    args = parser.parse_args(argv)
    args.config = TINY if args.tiny else {}
    return args


def main(argv: list[str] | None = None) -> list[Row]:
    args = parse_args(argv)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("no CUDA device: run on a GPU machine, or pass --device cpu --tiny to check the code paths")
    rows: list[Row] = []
    for name in args.only:
        print(f"running {name} ...", flush=True)
        rows += SECTIONS[name](args, device)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU ({torch.get_num_threads()} threads)"
    header = (f"{name}, torch {torch.__version__}, transformers {transformers.__version__}"
              f"{', tiny model' if args.tiny else ', base model'}; clips/s, medians of {args.repeats} runs")
    write_table(header, rows, args.output, unit="clips/s", digits=1)
    return rows


if __name__ == "__main__":
    main()
