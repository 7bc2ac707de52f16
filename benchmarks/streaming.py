"""Live audio: latency and real-time factor of `StreamingTagger` on this CPU.

    python benchmarks/streaming.py                                 # every model, 10 s / 1 s and 2 s / 0.5 s
    python benchmarks/streaming.py --models recipe --windows 2:0.5

Models (random weights: speed does not depend on them), each with a feature extractor that returns attention masks
(this package's recipes), so windows run at their own length:
  recipe      the FSDD recipe's architecture (`examples/recipes/fsdd.json`: width 128, 2 blocks, 128 frames, strides
              16 x 5), 10 labels
  base        ViT-B (768 wide, 12 blocks), 527 labels, fp32 PyTorch
  base-int8   the same exported with `ast-export-onnx --quantize_int8`, run by onnxruntime (`onnx_inference`)

A stream of speech-like audio at 16 kHz is pushed in 20 ms chunks, as a microphone or `ffmpeg ... -f s16le`
delivers it, as fast as the tagger takes them. Latency: from the arrival of a window's last sample to its result,
i.e. the duration of the `push` call whose chunk completes a full window (that chunk's resampling and features, the
window's frames, the model); on a live stream this is what a result waits, provided the tagger keeps up.
Real-time factor: processing seconds per second of audio from the first full window on (the early, shorter
windows of the stream's first `window_s` seconds are left out); above 1 the tagger falls behind a live source.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from run import machine_description, speech_like, write_rows

from modeling_ast import ASTConfig, ASTFeatureExtractor, ASTForAudioClassification
from modeling_ast.streaming import StreamingTagger

RATE = 16000
CHUNK = RATE // 50  # 20 ms
RECIPE = Path(__file__).resolve().parents[1] / "examples" / "recipes" / "fsdd.json"
ARCHITECTURE_FIELDS = ("hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size", "max_length",
                       "frequency_stride", "time_stride")  # fmt: skip
COLUMNS = ("model", "window / hop (s)", "windows timed", "p50 latency (ms)", "p95 latency (ms)", "real-time factor")


def recipe_config() -> ASTConfig:
    recipe = json.loads(RECIPE.read_text())
    return ASTConfig(num_labels=10, **{field: recipe[field] for field in ARCHITECTURE_FIELDS})


def build_model(name: str, work: Path, threads: int, tiny: bool) -> tuple[torch.nn.Module, ASTFeatureExtractor]:
    """(model, extractor) for `name`; `tiny` swaps in a one-block, 32-wide model (checks the code, measures
    nothing)."""
    torch.manual_seed(0)
    if tiny:
        config = ASTConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64,
                           max_length=1024, num_labels=10)  # fmt: skip
    else:
        config = recipe_config() if name == "recipe" else ASTConfig(num_labels=527)
    model = ASTForAudioClassification(config).eval()
    extractor = ASTFeatureExtractor(max_length=config.max_length, return_attention_mask=True)
    if name != "base-int8":
        return model, extractor
    from modeling_ast.conversion.onnx import export_onnx
    from modeling_ast.onnx_inference import ASTOnnxForAudioClassification

    path = export_onnx(model, work / f"{name}.onnx", quantize_int8=True)
    return ASTOnnxForAudioClassification(config, path.with_suffix(".int8.onnx"), threads), extractor


def measure(model: torch.nn.Module, extractor: ASTFeatureExtractor, window_s: float, hop_s: float,
            windows: int) -> tuple[list[float], float]:  # fmt: skip
    """(latencies of `windows` full windows in seconds, real-time factor) over a stream of `window_s` plus
    `windows - 1` hops, pushed in 20 ms chunks."""
    tagger = StreamingTagger(model, window_s, hop_s, feature_extractor=extractor)
    audio = speech_like(1, window_s + (windows - 1) * hop_s + 0.01)[0]
    latencies, busy, first_full = [], 0.0, round(window_s * RATE)
    for start in range(0, len(audio) - CHUNK + 1, CHUNK):
        began = time.perf_counter()
        results = tagger.push(audio[start : start + CHUNK])
        spent = time.perf_counter() - began
        if start + CHUNK >= first_full:
            busy += spent
            if any(result["end"] - result["start"] >= window_s - 1e-9 for result in results):
                latencies.append(spent)
    audio_s = (len(audio) // CHUNK * CHUNK - first_full + CHUNK) / RATE
    return latencies, busy / audio_s


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(values, q))


def main(argv: list[str] | None = None) -> list[tuple]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", choices=("recipe", "base", "base-int8"),
                        default=["recipe", "base", "base-int8"])  # fmt: skip
    parser.add_argument("--windows", nargs="+", default=["10:1", "2:0.5"], help="window_s:hop_s pairs")
    parser.add_argument("--timed", type=int, default=10, help="full windows timed per row (default 10)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--tiny", action="store_true", help="a one-block model: checks the code, measures nothing")
    parser.add_argument("--output", type=Path, default=None, help="also write the table (and .json) here")
    parser.add_argument("--note", default="", help="added to the table's header (e.g. how busy the machine was)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    pairs = [tuple(float(value) for value in pair.split(":")) for pair in args.windows]
    rows = []
    with tempfile.TemporaryDirectory() as work:
        for name in args.models:
            model, extractor = build_model(name, Path(work), args.threads, args.tiny)
            for window_s, hop_s in pairs:
                print(f"{name}, window {window_s:g} s / hop {hop_s:g} s ...", flush=True)
                latencies, factor = measure(model, extractor, window_s, hop_s, args.timed)
                rows.append((name, f"{window_s:g} / {hop_s:g}", len(latencies), 1000 * statistics.median(latencies),
                             1000 * percentile(latencies, 95), factor))  # fmt: skip
    header = (f"{machine_description(args.threads)}; 16 kHz in 20 ms chunks{'; tiny model' if args.tiny else ''}"
              f"{'; ' + args.note if args.note else ''}")  # fmt: skip
    write_rows(header, COLUMNS, rows, args.output, digits=2)
    return rows


if __name__ == "__main__":
    main()
