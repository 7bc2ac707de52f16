"""The converters' command lines, installed as console scripts (setup.cfg [options.entry_points]).

    ast-convert-original      the AST authors' .pth checkpoints -> this package's format
    ast-convert-transformers  transformers' built-in AST <-> this package's format (import / export)
    ast-imagenet-to-ast       an ImageNet ViT / DeiT -> an AST initialisation
    ast-adapt-pretrained      a pretrained AST -> another input length, patch stride and label set
    ast-export-onnx           a classifier of this package -> ONNX

Every option is spelled as the keyword argument (or `ASTConfig` field) it sets, with underscores. Each `*_main` takes
`argv` (default: the command line) and returns the exit status: 0, or 1 after `error: ...` on stderr for bad input.
Each command holds the lock of its output while it runs (`modeling_ast.locking`): a second command writing the same
output is refused, naming the first, or with --wait_for_lock waits for it.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..locking import output_lock
from .common import AUDIOSET_MEAN, AUDIOSET_STD, DATASET_PRESETS, describe_model_dir, read_label_names, run_cli

__all__ = [
    "adapt_pretrained_main",
    "convert_original_main",
    "convert_transformers_main",
    "export_onnx_main",
    "imagenet_to_ast_main",
]

PROBLEM_TYPES = ("single_label_classification", "multi_label_classification", "regression")
LABELS_HELP = "label names: a .csv (display_name column), .json or .txt file, or a comma-separated list"
OVERWRITE_HELP = (
    "replace a non-empty OUTPUT_DIR written by this package (a model directory); never an input, a folder holding "
    "one, or a folder holding other files"
)

ORIGINAL_DESCRIPTION = """\
Convert one of the AST authors' released .pth checkpoints (github.com/YuanGongND/ast) into this package's format.

    ast-convert-original audioset_10_10_0.4593.pth ast-audioset-10-10 --labels class_labels_indices.csv
    ast-convert-original speechcommands_10_10_0.9812.pth ast-speechcommands \\
        --labels speechcommands_class_labels_indices.csv

Strides, input length, architecture and label count are read from the tensor shapes; the dataset (normalisation
statistics, single- or multi-label) from --dataset, else the file name, else a 527-label head (AudioSet). The output
directory (config.json, model.safetensors, preprocessor_config.json, README.md) loads with from_pretrained and
pipeline("audio-classification") after `import modeling_ast`. Nothing is left in OUTPUT_DIR if the conversion fails.
Every option is a keyword argument of `modeling_ast.conversion.original.convert_original_checkpoint`.
"""

TRANSFORMERS_DESCRIPTION = """\
Convert between transformers' built-in AST checkpoints and this package's format.

    ast-convert-transformers import MIT/ast-finetuned-audioset-10-10-0.4593 converted/
    ast-convert-transformers export my-model/ exported-for-stock-transformers/

`import` is only needed to keep a converted copy: `ASTForAudioClassification.from_pretrained` reads built-in
checkpoints directly. `export` writes a checkpoint that stock transformers loads with AutoModelForAudioClassification.
"""

IMAGENET_DESCRIPTION = """\
Initialise an AST from an ImageNet ViT / DeiT checkpoint, as the AST authors' `imagenet_pretrain=True` path does.

    ast-imagenet-to-ast deit_base_distilled_patch16_384-d0272ac0.pth ast-imagenet-esc50 \\
        --max_length 512 --num_labels 50 --problem_type single_label_classification
    ast-imagenet-to-ast path/to/hf-deit-checkpoint ast-imagenet --frequency_stride 16 --time_stride 16 --labels a,b,c
    ast-imagenet-to-ast facebook/deit-base-distilled-patch16-384 ast-imagenet --num_labels 527

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

ADAPT_DESCRIPTION = """\
Re-target a pretrained AST (e.g. the AudioSet model) to another input length, patch stride and label set.

    ast-adapt-pretrained ast-audioset-10-10 ast-esc50-init --max_length 512 --num_labels 50 \\
        --problem_type single_label_classification --mean -6.6268077 --std 5.358466
    ast-adapt-pretrained ast-audioset-10-10 ast-speechcommands-init --max_length 128 --num_labels 35 \\
        --mean -6.845978 --std 5.5654526
    ast-adapt-pretrained ast-audioset-10-10 ast-esc50-s16 --max_length 512 --num_labels 50 \\
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

ONNX_DESCRIPTION = """\
Export an AST classifier saved by this package to ONNX (dynamic batch and time axes).

    ast-export-onnx outputs/demo outputs/demo/model.onnx [--quantize_int8] [--overwrite]

The graph maps `input_values` (batch, frames, mel bins) from ASTFeatureExtractor to `logits`; frames may be anything
from 16 to the model's max_length. `--quantize_int8` also writes `model.int8.onnx` (onnxruntime dynamic int8
quantisation; run it with `modeling_ast.onnx_inference.ASTOnnxForAudioClassification.from_pretrained(model_dir)`
when it is written as `model_dir/model.onnx`, also through `pipeline`). An existing output file is only replaced with
`--overwrite`, and never when it is a file of MODEL_DIR (its weights or configs). Each file records the weights and
config it was exported from, which `ASTOnnxForAudioClassification` checks on loading. Needs
`pip install "modeling_ast[onnx]"` (onnx, onnxscript, onnxruntime). The options are the keyword arguments of
`modeling_ast.conversion.onnx.export_onnx`.
"""


def _parser(prog: str, description: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=prog, description=description, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--wait_for_lock", action="store_true", help="when another command is writing the same output, wait for it "
        "to finish instead of stopping with an error that names it",
    )
    return parser


def _locked(args: argparse.Namespace | dict[str, Any], work: Callable[[], str]) -> Callable[[], str]:
    """`work`, run holding the lock of the command's output (output_dir or output_path). Takes --wait_for_lock out
    of `args` at once: the others are the conversion's keyword arguments."""
    fields = args if isinstance(args, dict) else vars(args)
    wait, output = fields.pop("wait_for_lock"), fields.get("output_dir") or fields["output_path"]

    def locked() -> str:
        with output_lock(output, wait=wait):
            return work()

    return locked


# ------------------------------------------------------------------------------------------ ast-convert-original


def _original_parser() -> argparse.ArgumentParser:
    parser = _parser("ast-convert-original", ORIGINAL_DESCRIPTION)
    parser.add_argument("checkpoint_path", type=Path, help="the authors' .pth state dict (read without unpickling)")
    parser.add_argument("output_dir", type=Path, help="directory to write (must be empty or absent, see --overwrite)")
    parser.add_argument(
        "--labels", default=None,
        help="label names: CSV with a display_name column (AudioSet's class_labels_indices.csv), JSON list or "
        "id2label, .txt with one name per line, or a comma-separated list; default LABEL_i names",
    )
    parser.add_argument(
        "--dataset", default=None,
        help=f"one of {', '.join(DATASET_PRESETS)}: normalisation and problem type (default: from the file "
        "name or a 527-label head)",
    )
    parser.add_argument("--push_to_hub", metavar="ORG/NAME", default=None, help="upload the result to this Hub repo")
    parser.add_argument("--private", action="store_true", default=None, help="create the Hub repo as private")
    parser.add_argument("--overwrite", action="store_true", help=OVERWRITE_HELP)
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
    geometry.add_argument("--problem_type", choices=PROBLEM_TYPES[:2], default=None)
    return parser


def convert_original_main(argv: list[str] | None = None) -> int:
    args = _original_parser().parse_args(argv)
    from .original import convert_original_checkpoint

    return run_cli(_locked(args, lambda: convert_original_checkpoint(**vars(args)).summary()))


# -------------------------------------------------------------------------------------- ast-convert-transformers


def _transformers_parser() -> argparse.ArgumentParser:
    parser = _parser("ast-convert-transformers", TRANSFORMERS_DESCRIPTION)
    parser.add_argument(
        "direction", choices=("import", "export"), metavar="direction",
        help="import: built-in -> ours; export: ours -> built-in",
    )
    parser.add_argument("source", help="checkpoint directory or Hub id")
    parser.add_argument("output_dir", type=Path, help="directory to write (must be empty or absent, see --overwrite)")
    parser.add_argument("--revision", default=None, help="Hub revision of the source (import)")
    parser.add_argument("--overwrite", action="store_true", help=OVERWRITE_HELP)
    return parser


def convert_transformers_main(argv: list[str] | None = None) -> int:
    args = _transformers_parser().parse_args(argv)
    from transformers import AutoConfig

    from ..feature_extraction_ast import ASTFeatureExtractor
    from ..modeling_ast import ASTForAudioClassification, ASTModel
    from .transformers_ast import convert_transformers_checkpoint, export_to_transformers

    def convert() -> str:
        if args.direction == "import":
            hub_kwargs = {} if args.revision is None else {"revision": args.revision}
            convert_transformers_checkpoint(args.source, args.output_dir, overwrite=args.overwrite, **hub_kwargs)
        else:
            architectures = AutoConfig.from_pretrained(args.source).architectures or []
            model_class = ASTForAudioClassification if "ASTForAudioClassification" in architectures else ASTModel
            model = model_class.from_pretrained(args.source)
            has_extractor = (Path(args.source) / "preprocessor_config.json").is_file()
            extractor = ASTFeatureExtractor.from_pretrained(args.source) if has_extractor else None
            export_to_transformers(model, args.output_dir, feature_extractor=extractor, overwrite=args.overwrite)
        return f"{args.direction}ed {args.source} -> {args.output_dir}"

    return run_cli(_locked(args, convert))


# ------------------------------------------------------------------------------------------- ast-imagenet-to-ast

# Options that are `ASTConfig` fields of the audio side (the encoder's come from the checkpoint).
IMAGENET_CONFIG_FIELDS = ("max_length", "frequency_stride", "time_stride", "num_mel_bins", "problem_type")


def _imagenet_parser() -> argparse.ArgumentParser:
    parser = _parser("ast-imagenet-to-ast", IMAGENET_DESCRIPTION)
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
    audio.add_argument("--mean", type=float, default=AUDIOSET_MEAN, help="feature mean (default: AudioSet's)")
    audio.add_argument("--std", type=float, default=AUDIOSET_STD, help="feature std (default: AudioSet's)")
    head = parser.add_argument_group("classification head (one of)")
    labels = head.add_mutually_exclusive_group(required=True)
    labels.add_argument("--num_labels", type=int, help="number of classes (names LABEL_i)")
    labels.add_argument("--labels", help=LABELS_HELP)
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
    parser.add_argument("--overwrite", action="store_true", help=OVERWRITE_HELP)
    return parser


def imagenet_to_ast_main(argv: list[str] | None = None) -> int:
    args = vars(_imagenet_parser().parse_args(argv))
    from ..configuration_ast import ASTConfig
    from .imagenet import save_ast_from_imagenet

    config_fields = {name: args.pop(name) for name in IMAGENET_CONFIG_FIELDS}
    labels, num_labels = args.pop("labels"), args.pop("num_labels")

    def convert() -> str:
        if labels is not None:
            config_fields["id2label"] = dict(enumerate(read_label_names(labels)))
        elif num_labels is not None:
            config_fields["num_labels"] = num_labels
        add_classifier = not args.pop("no_classifier")
        inputs = () if labels is None else (labels,)  # a labels file is an input too (a name list is skipped)
        output = save_ast_from_imagenet(
            config=ASTConfig(**config_fields), add_classifier=add_classifier, inputs=inputs, **args
        )
        return describe_model_dir(output)

    return run_cli(_locked(args, convert))


# ------------------------------------------------------------------------------------------ ast-adapt-pretrained


def _adapt_parser() -> argparse.ArgumentParser:
    parser = _parser("ast-adapt-pretrained", ADAPT_DESCRIPTION)
    parser.add_argument("model_or_dir", metavar="source_dir", type=Path, help="saved pretrained AST directory")
    parser.add_argument("output_dir", type=Path, help="directory to write (must be empty or absent, see --overwrite)")
    parser.add_argument("--max_length", type=int, required=True, help="input frames of the new task (~100 per second)")
    labels = parser.add_mutually_exclusive_group(required=True)
    labels.add_argument("--num_labels", type=int, help="number of classes (names LABEL_i)")
    labels.add_argument("--labels", help=LABELS_HELP)
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
    parser.add_argument("--overwrite", action="store_true", help=OVERWRITE_HELP)
    return parser


def adapt_pretrained_main(argv: list[str] | None = None) -> int:
    args = vars(_adapt_parser().parse_args(argv))
    from .adapt import save_adapted_ast

    def adapt() -> str:
        labels = args.pop("labels")
        id2label = None if labels is None else read_label_names(labels)
        inputs = () if labels is None else (labels,)  # a labels file is an input too (a name list is skipped)
        return describe_model_dir(save_adapted_ast(id2label=id2label, inputs=inputs, **args))

    return run_cli(_locked(args, adapt))


# ----------------------------------------------------------------------------------------------- ast-export-onnx


def _onnx_parser() -> argparse.ArgumentParser:
    parser = _parser("ast-export-onnx", ONNX_DESCRIPTION)
    parser.add_argument("model_dir", help="directory (or Hub id) of an ASTForAudioClassification checkpoint")
    parser.add_argument("output_path", type=Path, help="path of the .onnx file to write")
    parser.add_argument("--opset", type=int, default=18)
    parser.add_argument("--quantize_int8", action="store_true", help="also write a dynamically int8-quantised model")
    parser.add_argument(
        "--overwrite", action="store_true", help="replace existing output files (never a file of MODEL_DIR)"
    )
    return parser


def export_onnx_main(argv: list[str] | None = None) -> int:
    args = vars(_onnx_parser().parse_args(argv))
    from ..modeling_ast import ASTForAudioClassification
    from .onnx import export_onnx

    def export() -> str:
        path = export_onnx(ASTForAudioClassification.from_pretrained(args.pop("model_dir")), **args)
        return f"wrote {path}" + (f" and {path.with_suffix('.int8.onnx')}" if args["quantize_int8"] else "")

    return run_cli(_locked(args, export))
