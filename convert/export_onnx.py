"""Export an AST classifier saved by this package to ONNX (dynamic batch and time axes).

    python convert/export_onnx.py outputs/demo outputs/demo/model.onnx [--quantize_int8] [--overwrite]

The graph maps `input_values` (batch, frames, mel bins) from ASTFeatureExtractor to `logits`; frames may be anything
from 16 to the model's max_length. `--quantize_int8` also writes `model.int8.onnx` (onnxruntime dynamic int8
quantisation; run it with `modeling_ast.onnx_inference.ASTOnnxForAudioClassification.from_pretrained(model_dir)`
when it is written as `model_dir/model.onnx`, also through `pipeline`). An existing output file is only replaced with
`--overwrite`. Needs `pip install ".[onnx]"` (onnx, onnxscript, onnxruntime). The options are the keyword arguments
of `modeling_ast.conversion.onnx.export_onnx`.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model_dir", help="directory (or Hub id) of an ASTForAudioClassification checkpoint")
    parser.add_argument("output_path", type=Path, help="path of the .onnx file to write")
    parser.add_argument("--opset", type=int, default=18)
    parser.add_argument("--quantize_int8", action="store_true", help="also write a dynamically int8-quantised model")
    parser.add_argument("--overwrite", action="store_true", help="replace existing output files")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = vars(build_parser().parse_args(argv))

    from modeling_ast import ASTForAudioClassification
    from modeling_ast.conversion.common import run_cli
    from modeling_ast.conversion.onnx import export_onnx

    def export() -> str:
        path = export_onnx(ASTForAudioClassification.from_pretrained(args.pop("model_dir")), **args)
        return f"wrote {path}" + (f" and {path.with_suffix('.int8.onnx')}" if args["quantize_int8"] else "")

    return run_cli(export)


if __name__ == "__main__":
    sys.exit(main())
