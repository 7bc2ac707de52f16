"""Initialise an AST from an ImageNet ViT / DeiT checkpoint, as the AST authors' `imagenet_pretrain=True` path does.

    python convert/imagenet_to_ast.py deit_base_distilled_patch16_384-d0272ac0.pth ast-imagenet-esc50 \\
        --max_length 512 --num_labels 50 --problem_type single_label_classification
    python convert/imagenet_to_ast.py path/to/hf-deit-checkpoint ast-imagenet --frequency_stride 16 \\
        --time_stride 16 --labels a,b,c
    python convert/imagenet_to_ast.py facebook/deit-base-distilled-patch16-384 ast-imagenet --num_labels 527

SOURCE: a timm ViT/DeiT state dict (.pth / .bin / .safetensors; timm 0.4.5 `vit_deit_*` and timm 1.x `deit_*` /
`vit_*` names, `module.` / `model.` prefixes and the DeiT release's {"model": ...} wrapper accepted), or a
transformers or timm ViT / DeiT checkpoint directory or Hub repository id (config.json + weights, e.g.
`facebook/deit-base-distilled-patch16-384` or `timm/deit_base_distilled_patch16_384.fb_in1k`).

The RGB patch kernels are summed into one channel, the ImageNet positional grid is middle-cropped or bilinearly
interpolated to the AST patch grid of --max_length frames at the given strides, tokens and blocks are copied, and a new
audio head is initialised. A ViT without distillation token gets a copy of its [CLS] token (and positional row) as
[DIST]. LayerNorm eps is the source's (timm 1e-6; transformers: its config, 1e-12 by default).

OUTPUT_DIR receives config.json, model.safetensors and preprocessor_config.json (the AST feature extractor for
--max_length frames, normalised with --mean / --std, AudioSet's by default); nothing is left there if the conversion
fails. The options are the `ASTConfig` fields and the keyword arguments of
`modeling_ast.conversion.imagenet.save_ast_from_imagenet`.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

PROBLEM_TYPES = ("single_label_classification", "multi_label_classification", "regression")
# Options that are `ASTConfig` fields of the audio side (the encoder's come from the checkpoint).
CONFIG_FIELDS = ("max_length", "frequency_stride", "time_stride", "num_mel_bins", "problem_type")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "state_dict_or_path", metavar="source",
        help="timm checkpoint file, or a transformers / timm ViT/DeiT checkpoint directory or Hub repository id",
    )
    parser.add_argument("output_dir", type=Path, help="directory to write (must be empty or absent, see --overwrite)")
    audio = parser.add_argument_group("audio input")
    audio.add_argument("--max_length", type=int, default=1024, help="input frames, ~100 per second (default 1024)")
    audio.add_argument("--frequency_stride", type=int, default=10, help="patch stride along frequency (default 10)")
    audio.add_argument("--time_stride", type=int, default=10, help="patch stride along time (default 10)")
    audio.add_argument("--num_mel_bins", type=int, default=128)
    audio.add_argument("--mean", type=float, default=None, help="feature mean (default: AudioSet's)")
    audio.add_argument("--std", type=float, default=None, help="feature std (default: AudioSet's)")
    head = parser.add_argument_group("classification head (one of)")
    labels = head.add_mutually_exclusive_group(required=True)
    labels.add_argument("--num_labels", type=int, help="number of classes (names LABEL_i)")
    labels.add_argument(
        "--labels", help="label names: a .csv (display_name column), .json or .txt file, or a comma-separated list"
    )
    labels.add_argument("--no_classifier", action="store_true", help="save the bare encoder (ASTModel)")
    head.add_argument("--problem_type", choices=PROBLEM_TYPES, default=None, help="loss / pipeline output function")
    source = parser.add_argument_group("source overrides")
    source.add_argument(
        "--num_attention_heads", type=int, default=None, help="attention heads (default: inferred from the width)"
    )
    source.add_argument("--layer_norm_eps", type=float, default=None, help="default: the source's")
    source.add_argument(
        "--imagenet_grid", type=int, nargs=2, metavar=("ROWS", "COLS"), default=None,
        help="source patch grid, when not square and not given by a transformers config",
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the new head (default 0)")
    parser.add_argument("--overwrite", action="store_true", help="replace a non-empty OUTPUT_DIR")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = vars(build_parser().parse_args(argv))

    from modeling_ast import ASTConfig
    from modeling_ast.conversion.common import describe_model_dir, read_label_names, run_cli
    from modeling_ast.conversion.imagenet import save_ast_from_imagenet

    config_fields = {name: args.pop(name) for name in CONFIG_FIELDS}
    labels, num_labels = args.pop("labels"), args.pop("num_labels")
    for name in ("mean", "std"):  # absent: save_ast_from_imagenet's default, AudioSet's statistics
        if args[name] is None:
            del args[name]

    def convert() -> str:
        if labels is not None:
            config_fields["id2label"] = dict(enumerate(read_label_names(labels)))
        elif num_labels is not None:
            config_fields["num_labels"] = num_labels
        add_classifier = not args.pop("no_classifier")
        output = save_ast_from_imagenet(config=ASTConfig(**config_fields), add_classifier=add_classifier, **args)
        return describe_model_dir(output)

    return run_cli(convert)


if __name__ == "__main__":
    sys.exit(main())
