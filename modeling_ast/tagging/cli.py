"""`ast-tag MODEL INPUTS OUTPUT`: the command line of `tag_collection` (installed by setup.cfg)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from ..conversion.common import run_cli
from .records import EVENT_OUTPUT_FORMATS
from .run import TagOptions, tag_collection

__all__ = ["build_parser", "main"]

DESCRIPTION = """\
Tag every recording of a collection with an audio-classification checkpoint; one record per recording.

    ast-tag outputs/fsdd recordings/ tags.jsonl
    ast-tag MIT/ast-finetuned-audioset-10-10-0.4593 "field/**/*.flac" tags.parquet --chunk_length_s 10 --plot
    ast-tag outputs/fsdd recordings/ tags.jsonl --onnx        # int8 on CPU: outputs/fsdd/model.int8.onnx
    ast-tag outputs/sed recordings/ events.tsv --events --threshold 0.5 --low 0.3 --median_window 5
    accelerate launch --num_processes 4 -m modeling_ast.tagging.cli outputs/fsdd recordings/ tags.csv

INPUTS: a folder (its audio files, recursively), a .csv / .jsonl manifest with a path column, a quoted glob pattern,
or a folder written by datasets' save_to_disk (one split) with an audio column. OUTPUT: .jsonl, .csv or .parquet;
each record has "input", "labels" ([{label, score}] of the clip, top_k) and "error" (why a recording could not be
read, else empty), and with --chunk_length_s "windows" ([{start, end, labels}], seconds).

--events: sound event detection with a frame-level checkpoint (ASTForAudioFrameClassification), one row per event:
"input", "onset", "offset" (seconds), "event_label", "score" (its peak frame score) and "error"; a recording without
events keeps one row with only its input (and error). OUTPUT may also be .tsv: DCASE's format (filename, onset,
offset, event_label); its complete rows, scores included, are kept beside it in OUTPUT.rows.jsonl, which a rerun
reads. --plot draws every recording's events.

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
    parser.add_argument("model", help="checkpoint directory or Hub id of an audio-classification model (with "
                                          "--events, of a frame-level sound event detection model)")
    parser.add_argument("inputs", help="folder, .csv/.jsonl manifest, glob pattern or saved dataset")
    parser.add_argument("output", help=f"file to write: {', '.join(EVENT_OUTPUT_FORMATS)} (.tsv with --events)")
    parser.add_argument("--top_k", type=int, default=None, help="labels per recording and per window (default 5; "
                                                                 "not with --events)")
    parser.add_argument("--batch_size", type=int, default=None, help="recordings per forward pass (default 8; not "
                                                                     "with --events)")
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
    long_audio.add_argument("--threshold", type=float, nargs="+", default=None,
                            help="window labels: those scoring above this; with --events where an event starts, one "
                                 "value or one per label in label order (default: the model's config.event_options, "
                                 "else 0.5)")
    long_audio.add_argument("--window_batch_size", type=int, default=None, help="windows per forward pass")
    long_audio.add_argument("--plot", action="store_true",
                            help="timeline PNG per long recording (with --events per recording), OUTPUT.timelines/")
    events = parser.add_argument_group("sound events")
    events.add_argument("--events", action="store_true",
                        help="one row per sound event of a frame-level checkpoint (pipeline sound-event-detection)")
    events.add_argument("--low", type=float, nargs="+", default=None,
                        help="where an event ends (hysteresis), one value or one per label (default: the model's, "
                             "else --threshold)")
    events.add_argument("--median_window", type=int, nargs="+", default=None,
                        help="median filter of each label's scores, odd numbers of columns, one or one per label "
                             "(default: the model's, else 1: none)")
    columns = parser.add_argument_group("manifest and dataset columns")
    columns.add_argument("--path_column", default="path", help="manifest column with the file paths (default path)")
    columns.add_argument("--audio_column", default="audio", help="dataset column with the audio (default audio)")
    return parser


PER_LABEL_OPTIONS = ("threshold", "low", "median_window")


def main(argv: list[str] | None = None) -> int:
    args = vars(build_parser().parse_args(argv))
    for name in PER_LABEL_OPTIONS:
        if args[name] is not None and len(args[name]) == 1:
            args[name] = args[name][0]  # one value for every label, as TagOptions and EventOptions take it
    return run_cli(lambda: f"wrote {_tag(args)}")


def _tag(args: dict[str, Any]) -> Path:
    """tag_collection from the parsed arguments; TagOptions is built inside run_cli, which reports its ValueError
    (an option that does not apply) as it reports any other."""
    option_names = TagOptions.__dataclass_fields__
    options = TagOptions(**{name: args.pop(name) for name in list(args) if name in option_names})
    return tag_collection(args.pop("model"), args.pop("inputs"), args.pop("output"), options, **args)


if __name__ == "__main__":
    sys.exit(main())
