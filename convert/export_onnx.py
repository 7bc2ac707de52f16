"""Export an AST classifier saved by this package to ONNX, optionally with an int8-quantised copy.

The same as the installed command `ast-export-onnx` (`--help` lists the inputs and options):

    python convert/export_onnx.py outputs/demo model.onnx --quantize_int8
"""

import _clone  # noqa: F401  (makes this clone's modeling_ast importable, installed or not)
from modeling_ast.conversion.cli import export_onnx_main

if __name__ == "__main__":
    raise SystemExit(export_onnx_main())
