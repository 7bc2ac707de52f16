"""Re-target a pretrained AST (e.g. the AudioSet model) to another input length, patch stride and label set.

    python convert/adapt_pretrained.py ast-audioset-10-10 ast-esc50-init --max_length 512 --num_labels 50 \\
        --problem_type single_label_classification --mean -6.6268077 --std 5.358466
    python convert/adapt_pretrained.py ast-audioset-10-10 ast-speechcommands-init --max_length 128 --num_labels 35 \\
        --mean -6.845978 --std 5.5654526
    python convert/adapt_pretrained.py ast-audioset-10-10 ast-esc50-s16 --max_length 512 --num_labels 50 \\
        --frequency_stride 16 --time_stride 16

SOURCE_DIR: a saved model of this package (config.json with model_type "ast" + weights), or one of transformers'
built-in AST (model_type "audio-spectrogram-transformer").

The positional grid is adapted as the AST authors' `audioset_pretrain=True` path does: time middle-cropped when the
new input is shorter (ESC-50: columns 25..74 of 101), bilinearly stretched when longer; frequency middle rows when
there are fewer, interpolated when more. New strides (which the original code cannot run, authors' issue #73) are
supported: with --stride_mapping frames (default) the grid is first resampled at the new patches' bin / frame
positions, with --stride_mapping index the original's grid-index rule is applied as is. The encoder is copied; the
head is new. OUTPUT_DIR gets config.json, model.safetensors and preprocessor_config.json (--max_length frames;
normalisation from --mean/--std, else the source's preprocessor_config.json, else AudioSet's).
Every option is a keyword argument of `modeling_ast.conversion.adapt.save_adapted_ast` (--labels gives id2label).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

PROBLEM_TYPES = ("single_label_classification", "multi_label_classification", "regression")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model_or_dir", metavar="source_dir", type=Path, help="saved pretrained AST directory")
    parser.add_argument("output_dir", type=Path, help="directory to write (must be empty or absent, see --overwrite)")
    parser.add_argument("--max_length", type=int, required=True, help="input frames of the new task (~100 per second)")
    labels = parser.add_mutually_exclusive_group(required=True)
    labels.add_argument("--num_labels", type=int, help="number of classes (names LABEL_i)")
    labels.add_argument(
        "--labels", help="label names: a .csv (display_name column), .json or .txt file, or a comma-separated list"
    )
    parser.add_argument("--problem_type", choices=PROBLEM_TYPES, default=None, help="loss / pipeline output function")
    parser.add_argument(
        "--frequency_stride", type=int, default=None, help="new frequency stride (default: the source's)"
    )
    parser.add_argument("--time_stride", type=int, default=None, help="new time stride (default: the source's)")
    parser.add_argument(
        "--stride_mapping", choices=("frames", "index"), default="frames",
        help="how the grid follows a stride change: resample at the new patch positions (frames, default) or the "
        "original code's grid-index crop/interpolation (index)",
    )
    parser.add_argument("--mean", type=float, default=None, help="feature mean of the new dataset")
    parser.add_argument("--std", type=float, default=None, help="feature std of the new dataset")
    parser.add_argument("--seed", type=int, default=0, help="seed of the new head (default 0)")
    parser.add_argument("--overwrite", action="store_true", help="replace a non-empty OUTPUT_DIR")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = vars(build_parser().parse_args(argv))

    from modeling_ast.conversion.adapt import save_adapted_ast
    from modeling_ast.conversion.common import describe_model_dir, read_label_names, run_cli

    def adapt() -> str:
        labels = args.pop("labels")
        id2label = None if labels is None else read_label_names(labels)
        return describe_model_dir(save_adapted_ast(id2label=id2label, **args))

    return run_cli(adapt)


if __name__ == "__main__":
    sys.exit(main())
