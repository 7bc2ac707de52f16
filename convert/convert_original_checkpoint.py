"""Convert one of the AST authors' released .pth checkpoints (github.com/YuanGongND/ast) into this package's format.

    python convert/convert_original_checkpoint.py audioset_10_10_0.4593.pth ast-audioset-10-10 \\
        --labels class_labels_indices.csv
    python convert/convert_original_checkpoint.py speechcommands_10_10_0.9812.pth ast-speechcommands \\
        --labels speechcommands_class_labels_indices.csv

Strides, input length, architecture and label count are read from the tensor shapes; the dataset (normalisation
statistics, single- or multi-label) from --dataset, else the file name, else a 527-label head (AudioSet). The output
directory (config.json, model.safetensors, preprocessor_config.json, README.md) loads with from_pretrained and
pipeline("audio-classification") after `import modeling_ast`. Nothing is left in OUTPUT_DIR if the conversion fails.
Every option is a keyword argument of `modeling_ast.conversion.original.convert_original_checkpoint`.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

# Kept in step with modeling_ast.conversion.common.DATASET_PRESETS (a test checks); listed here so that --help
# answers without importing torch and transformers.
DATASETS = ("audioset", "esc50", "speechcommands")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("checkpoint_path", type=Path, help="the authors' .pth state dict (read without unpickling)")
    parser.add_argument("output_dir", type=Path, help="directory to write (must be empty or absent, see --overwrite)")
    parser.add_argument(
        "--labels", default=None,
        help="label names: CSV with a display_name column (AudioSet's class_labels_indices.csv), JSON list or "
        "id2label, .txt with one name per line, or a comma-separated list; default LABEL_i names",
    )
    parser.add_argument(
        "--dataset", default=None,
        help=f"one of {', '.join(DATASETS)}: normalisation and problem type (default: from the file "
        "name or a 527-label head)",
    )
    parser.add_argument("--push_to_hub", metavar="ORG/NAME", default=None, help="upload the result to this Hub repo")
    parser.add_argument("--private", action="store_true", default=None, help="create the Hub repo as private")
    parser.add_argument("--overwrite", action="store_true", help="replace a non-empty OUTPUT_DIR")
    parser.add_argument(
        "--reported_metric", default=None,
        help="the authors' score for the model card (default: parsed from the file name, e.g. _0.4593)",
    )
    geometry = parser.add_argument_group("only for checkpoints outside the authors' released layouts")
    geometry.add_argument("--frequency_stride", type=int, default=None)
    geometry.add_argument("--time_stride", type=int, default=None)
    geometry.add_argument("--max_length", type=int, default=None, help="input frames the model was trained on")
    geometry.add_argument("--num_attention_heads", type=int, default=None, help="default: hidden size / 64 (DeiT)")
    geometry.add_argument("--num_mel_bins", type=int, default=128)
    geometry.add_argument("--mean", type=float, default=None, help="dataset mean of the log-mel features")
    geometry.add_argument("--std", type=float, default=None, help="dataset standard deviation of the log-mel features")
    geometry.add_argument(
        "--problem_type", choices=("single_label_classification", "multi_label_classification"), default=None
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)

    from modeling_ast.conversion.common import run_cli
    from modeling_ast.conversion.original import convert_original_checkpoint

    return run_cli(lambda: convert_original_checkpoint(**vars(args)).summary())


if __name__ == "__main__":
    sys.exit(main())
