"""`ast-tag MODEL INPUTS OUTPUT`: the command line of `tag_collection` (installed by setup.cfg)."""

from __future__ import annotations

import argparse
import sys

from ..conversion.common import run_cli
from .records import OUTPUT_FORMATS
from .run import TagOptions, tag_collection

__all__ = ["build_parser", "main"]

DESCRIPTION = """\
Tag every recording of a collection with an audio-classification checkpoint; one record per recording.

    ast-tag outputs/fsdd recordings/ tags.jsonl
    ast-tag MIT/ast-finetuned-audioset-10-10-0.4593 "field/**/*.flac" tags.parquet --chunk_length_s 10 --plot
    ast-tag outputs/fsdd recordings/ tags.jsonl --onnx        # int8 on CPU: outputs/fsdd/model.int8.onnx
    accelerate launch --num_processes 4 -m modeling_ast.tagging.cli outputs/fsdd recordings/ tags.csv

INPUTS: a folder (its audio files, recursively), a .csv / .jsonl manifest with a path column, a quoted glob pattern,
or a folder written by datasets' save_to_disk (one split) with an audio column. OUTPUT: .jsonl, .csv or .parquet;
each record has "input", "labels" ([{label, score}] of the clip, top_k) and "error" (why a recording could not be
read, else empty), and with --chunk_length_s "windows" ([{start, end, labels}], seconds).

Stop it at any moment (even kill -9) and run the same command again: it goes on where it stopped, and every recording
ends up in OUTPUT exactly once. Progress is journaled in OUTPUT.journal/ and OUTPUT is written, atomically, at the end.
Under accelerate launch / torchrun each process tags its share and the first one merges them in input order.

Each record stores what made it: "tagged_with" (the model, the sha256 of its files, the options that change records)
and "source" (its file's size and modification time, or the saved dataset's fingerprint). A run whose model, options
or inputs differ from the records already in OUTPUT stops and says what differs; with --overwrite it tags those
inputs again. While a run writes OUTPUT it holds OUTPUT.lock: a second run on the same OUTPUT stops, naming the
first, or with --wait_for_lock waits for it. An existing OUTPUT that is not an ast-tag file is never written over.
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ast-tag", description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("model", help="checkpoint directory or Hub id of an audio-classification model")
    parser.add_argument("inputs", help="folder, .csv/.jsonl manifest, glob pattern or saved dataset")
    parser.add_argument("output", help=f"file to write: {', '.join(OUTPUT_FORMATS)}")
    parser.add_argument("--top_k", type=int, default=5, help="labels per recording and per window (default 5)")
    parser.add_argument("--batch_size", type=int, default=8, help="recordings per forward pass (default 8)")
    parser.add_argument("--num_workers", type=int, default=0, help="processes decoding audio (default 0: inline)")
    parser.add_argument("--device", default=None, help="e.g. cpu, cuda:0 (default: this process's GPU, else cpu)")
    parser.add_argument("--onnx", nargs="?", const="", default=None, metavar="FILE",
                        help="run an exported ONNX file on CPU (onnxruntime) instead of PyTorch; without FILE, "
                             "MODEL/model.int8.onnx (written by ast-export-onnx --quantize_int8)")
    parser.add_argument("--overwrite", action="store_true",
                        help="tag again the recordings whose records in OUTPUT were made with another model or "
                             "options, or before the recording changed (without it, such a run stops)")
    parser.add_argument("--wait_for_lock", action="store_true",
                        help="when another run is writing OUTPUT, wait for it to finish instead of stopping")
    long_audio = parser.add_argument_group("long audio (windows)")
    long_audio.add_argument("--chunk_length_s", type=float, default=None, help="window length in seconds")
    long_audio.add_argument("--stride_length_s", type=float, default=None, help="overlap of windows in seconds")
    long_audio.add_argument("--aggregation", choices=("max", "mean"), default=None, help="clip score from windows")
    long_audio.add_argument("--threshold", type=float, default=None, help="window labels: those scoring above this")
    long_audio.add_argument("--window_batch_size", type=int, default=None, help="windows per forward pass")
    long_audio.add_argument("--plot", action="store_true", help="timeline PNG per long recording, OUTPUT.timelines/")
    columns = parser.add_argument_group("manifest and dataset columns")
    columns.add_argument("--path_column", default="path", help="manifest column with the file paths (default path)")
    columns.add_argument("--audio_column", default="audio", help="dataset column with the audio (default audio)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = vars(build_parser().parse_args(argv))
    option_names = TagOptions.__dataclass_fields__
    options = TagOptions(**{name: args.pop(name) for name in list(args) if name in option_names})
    model, inputs, output = args.pop("model"), args.pop("inputs"), args.pop("output")
    return run_cli(lambda: f"wrote {tag_collection(model, inputs, output, options, **args)}")


if __name__ == "__main__":
    sys.exit(main())
