"""Evaluate AST models and their ensemble (mean of the members' probabilities) on an evaluation manifest.

    python examples/evaluate_ensemble.py ast-run1 ast-run2 ast-run3 --eval_file eval.csv
    python examples/evaluate_ensemble.py ast-a ast-b --eval_file eval.jsonl --output_json ensemble.json

Each MODEL_DIR is a saved `modeling_ast` classifier with its preprocessor_config.json (e.g. the output of
`examples/run_audio_classification.py`); all must have the same labels, problem_type and feature-extractor settings,
since every member reads the same features. The manifest is read as the training script reads its `--eval_file`
(`modeling_ast.training.sources.manifest_examples`): CSV with `path,label` columns (several labels of a clip
separated by `;`) or JSON Lines, paths relative to the manifest.

Multi-label models (config problem_type "multi_label_classification") are scored with the sigmoid probabilities:
mAP, mAUC, d_prime and argmax accuracy (correct when the top class is one of the clip's labels); single-label models
with the softmax probabilities: accuracy and top-5 accuracy. The script prints one line per model and one for the
ensemble, and with --output_json writes them as JSON.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model_dirs", nargs="+", type=Path, metavar="MODEL_DIR", help="saved AST classifiers")
    parser.add_argument("--eval_file", type=Path, required=True, help="CSV (`path,label`) or JSON Lines manifest")
    parser.add_argument("--batch_size", type=int, default=8, help="clips per forward pass (default 8)")
    parser.add_argument("--device", default="cpu", help="torch device to run the models on (default cpu)")
    parser.add_argument("--output_json", type=Path, default=None, help="also write the metrics to this JSON file")
    return parser


def read_clips(manifest: Path, config: Any) -> tuple[list[Any], Any]:
    """The manifest's clips (every file present) and their targets for models of `config`: (N, C) float multi-hot
    (multi-label) or (N,) int64 class ids (single-label, exactly one label per clip)."""
    import torch

    from modeling_ast.training.labels import LabelSpace
    from modeling_ast.training.sources import manifest_examples
    from modeling_ast.training.task import check_eval_labels, check_files_exist

    examples = manifest_examples(manifest)
    check_files_exist(examples)
    label_space = LabelSpace.from_config(config)
    # Known labels, and one per clip for single-label models, checked here so the error names the first odd clip.
    check_eval_labels(label_space, [example["labels"] for example in examples])
    return examples, torch.stack([label_space.target(example["labels"]) for example in examples])


def load_members(model_dirs: Sequence[Path], device: str) -> tuple[list[Any], Any]:
    """The models (on `device`) and the feature extractor they share; ValueError if extractor settings differ."""
    from modeling_ast import ASTFeatureExtractor, ASTForAudioClassification

    for model_dir in model_dirs:
        if not (model_dir / "preprocessor_config.json").is_file():
            raise ValueError(f"{model_dir} has no preprocessor_config.json (feature extractor settings)")
    extractors = [ASTFeatureExtractor.from_pretrained(model_dir) for model_dir in model_dirs]
    for model_dir, extractor in zip(model_dirs[1:], extractors[1:]):
        if extractor.to_dict() != extractors[0].to_dict():
            raise ValueError(f"{model_dir} uses other feature-extractor settings than {model_dirs[0]}")
    models = [ASTForAudioClassification.from_pretrained(model_dir).to(device) for model_dir in model_dirs]
    return models, extractors[0]


def batches(examples: Sequence[Any], targets: Any, extractor: Any, batch_size: int) -> Iterator[dict[str, Any]]:
    """Model batches (features, attention mask if the extractor returns one, labels) over the clips, in order."""
    from modeling_ast.training.decoding import decode_example

    for start in range(0, len(examples), batch_size):
        chunk = examples[start : start + batch_size]
        waveforms = [decode_example(example, extractor.sampling_rate) for example in chunk]
        batch = dict(extractor(waveforms, sampling_rate=extractor.sampling_rate, return_tensors="pt"))
        batch["labels"] = targets[start : start + batch_size]
        yield batch


def evaluate(model_dirs: Sequence[Path], manifest: Path, batch_size: int, device: str) -> dict[str, Any]:
    """{"members": [{"model": dir, **metrics}, ...], "ensemble": metrics, "num_clips": N}."""
    from transformers import EvalPrediction

    from modeling_ast.training.averaging import ensemble_predict
    from modeling_ast.training.metrics import compute_metrics_fn

    if batch_size < 1:
        raise ValueError(f"--batch_size must be positive, got {batch_size}")
    models, extractor = load_members(model_dirs, device)
    config = models[0].config
    examples, targets = read_clips(manifest, config)
    prediction = ensemble_predict(models, batches(examples, targets, extractor, batch_size))
    metrics = compute_metrics_fn(config.problem_type, config.id2label)

    def score(probabilities: Any) -> dict[str, float]:
        return metrics(EvalPrediction(predictions=probabilities.numpy(), label_ids=prediction.labels.numpy()))

    members = [
        {"model": str(model_dir), **score(probabilities)}
        for model_dir, probabilities in zip(model_dirs, prediction.member_probabilities)
    ]
    return {"members": members, "ensemble": score(prediction.probabilities), "num_clips": len(examples)}


def _format(metrics: dict[str, Any]) -> str:
    return ", ".join(f"{key} {value:.4f}" for key, value in metrics.items() if key != "model")


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        results = evaluate(args.model_dirs, args.eval_file, args.batch_size, args.device)
    except (ValueError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    for member in results["members"]:
        print(f"{member['model']}: {_format(member)}")
    count, clips = len(results["members"]), results["num_clips"]
    print(f"ensemble of {count} models on {clips} clips: {_format(results['ensemble'])}")
    if args.output_json is not None:
        args.output_json.write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
