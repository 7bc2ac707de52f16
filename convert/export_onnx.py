"""Export an AST classifier saved by this package to ONNX (dynamic batch and time axes).

    python convert/export_onnx.py outputs/demo outputs/demo/model.onnx [--int8]

The graph maps `input_values` (batch, frames, mel bins) from ASTFeatureExtractor to `logits`; frames may be anything
from 16 to the model's max_length. `--int8` also writes `model.int8.onnx` (onnxruntime dynamic int8 quantisation).
Needs `pip install ".[onnx]"` (onnx, onnxscript, onnxruntime).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from modeling_ast import ASTForAudioClassification
from modeling_ast.conversion.onnx import export_onnx


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model_dir", help="directory (or Hub id) of an ASTForAudioClassification checkpoint")
    parser.add_argument("output", type=Path, help="path of the .onnx file to write")
    parser.add_argument("--opset", type=int, default=18)
    parser.add_argument("--int8", action="store_true", help="also write a dynamically int8-quantised model")
    args = parser.parse_args()
    model = ASTForAudioClassification.from_pretrained(args.model_dir)
    path = export_onnx(model, args.output, opset=args.opset, quantize_int8=args.int8)
    print(f"wrote {path}" + (f" and {path.with_suffix('.int8.onnx')}" if args.int8 else ""))


if __name__ == "__main__":
    main()
