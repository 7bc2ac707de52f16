"""Average the weights of several checkpoints of one AST model (the AST recipes' checkpoint weight averaging).

    python examples/average_checkpoints.py run/epoch_checkpoints/epoch_{1,2,3,4,5}.safetensors --output_dir ast-wa
    python examples/average_checkpoints.py run-a run-b run-c --output_dir ast-wa --overwrite

Each INPUT is a model directory written by `save_pretrained` (config.json + model.safetensors, sharded safetensors or
pytorch_model.bin) or a `.safetensors` state-dict file, such as the `epoch_checkpoints/epoch_{k}.safetensors` that
`modeling_ast.training.averaging.WeightAveragingCallback(save_epoch_checkpoints=True)` writes during training. All
inputs must hold the same tensor names and shapes and, where present, the same config.json (apart from the
transformers version and dtype); the error names the first difference. Floating-point tensors are averaged in
float64 and stored in the last input's dtype; integer buffers come from the last input.

OUTPUT_DIR gets model.safetensors, the config.json and preprocessor_config.json of the last input that has them (for
a .safetensors file: the ones in its folder) and weight_averaging.json listing the inputs. It is written atomically.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("inputs", nargs="+", type=Path, metavar="INPUT", help="model directories or .safetensors files")
    parser.add_argument("--output_dir", type=Path, required=True, help="directory to write the averaged model to")
    parser.add_argument("--overwrite", action="store_true", help="replace a non-empty OUTPUT_DIR")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)

    from modeling_ast.training.averaging import average_checkpoints

    try:
        output = average_checkpoints(args.inputs, args.output_dir, overwrite=args.overwrite)
    except (ValueError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    print(f"wrote the average of {len(args.inputs)} checkpoints to {output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
