"""Convert between transformers' built-in AST checkpoints and this package's format.

    python convert/transformers_ast.py import MIT/ast-finetuned-audioset-10-10-0.4593 converted/
    python convert/transformers_ast.py export my-model/ exported-for-stock-transformers/

`import` is only needed to keep a converted copy: `ASTForAudioClassification.from_pretrained` reads built-in
checkpoints directly. `export` writes a checkpoint that stock transformers loads with AutoModelForAudioClassification.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from transformers import AutoConfig

from modeling_ast import ASTFeatureExtractor, ASTForAudioClassification, ASTModel
from modeling_ast.conversion.transformers_ast import convert_transformers_checkpoint, export_to_transformers


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("direction", choices=("import", "export"), help="import: built-in -> ours; export: ours -> built-in")
    parser.add_argument("source", help="checkpoint directory or Hub id")
    parser.add_argument("output_dir", type=Path)
    parser.add_argument("--revision", default=None, help="Hub revision of the source (import)")
    parser.add_argument("--overwrite", action="store_true", help="replace a non-empty output directory")
    return parser.parse_args()


def main() -> None:
    args = parse_args()
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
    print(f"{args.direction}ed {args.source} -> {args.output_dir}")


if __name__ == "__main__":
    main()
