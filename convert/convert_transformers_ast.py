"""Convert transformers' built-in AST checkpoints to this package's format (import), or back (export).

The same as the installed command `ast-convert-transformers` (`--help` lists the inputs and options):

    python convert/convert_transformers_ast.py export outputs/demo demo-for-stock-transformers
"""

import _clone  # noqa: F401  (makes this clone's modeling_ast importable, installed or not)
from modeling_ast.conversion.cli import convert_transformers_main

if __name__ == "__main__":
    raise SystemExit(convert_transformers_main())
