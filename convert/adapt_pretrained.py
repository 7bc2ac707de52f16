"""Re-target a pretrained AST (e.g. the AudioSet model) to another input length, patch stride and label set.

The same as the installed command `ast-adapt-pretrained` (`--help` lists the inputs and options):

    python convert/adapt_pretrained.py ast-audioset ast-esc50-init --max_length 512 --num_labels 50
"""

import _clone  # noqa: F401  (makes this clone's modeling_ast importable, installed or not)
from modeling_ast.conversion.cli import adapt_pretrained_main

if __name__ == "__main__":
    raise SystemExit(adapt_pretrained_main())
