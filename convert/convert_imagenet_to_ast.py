"""Initialise an AST from an ImageNet ViT / DeiT checkpoint (timm file, transformers / timm directory or Hub id).

The same as the installed command `ast-imagenet-to-ast` (`--help` lists the inputs and options):

    python convert/convert_imagenet_to_ast.py deit_base_distilled_patch16_384.pth ast-init --num_labels 527
"""

import _clone  # noqa: F401  (makes this clone's modeling_ast importable, installed or not)
from modeling_ast.conversion.cli import imagenet_to_ast_main

if __name__ == "__main__":
    raise SystemExit(imagenet_to_ast_main())
