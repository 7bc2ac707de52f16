"""Convert one of the AST authors' released .pth checkpoints into this package's format.

The same as the installed command `ast-convert-original` (`--help` lists the inputs and options):

    python convert/convert_original_ast.py audioset_10_10_0.4593.pth ast-audioset --labels class_labels_indices.csv
"""

import _clone  # noqa: F401  (makes this clone's modeling_ast importable, installed or not)
from modeling_ast.conversion.cli import convert_original_main

if __name__ == "__main__":
    raise SystemExit(convert_original_main())
