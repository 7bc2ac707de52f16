"""Evaluate AST models and their ensemble (mean of the members' probabilities) on a test manifest.

    python examples/evaluate_ensemble.py ast-run1 ast-run2 ast-run3 --test_manifest test.csv
    python examples/evaluate_ensemble.py ast-a ast-b --test_manifest eval.csv --output_json ensemble.json

Each MODEL_DIR is a saved `modeling_ast` classifier with its preprocessor_config.json (e.g. the output of
`examples/run_audio_classification.py`); all must have the same labels, problem_type and feature-extractor settings,
since every member reads the same features. The manifest is a CSV file with `path,label` columns (paths relative to
the manifest); for multi-label models `label` lists the clip's labels separated by `;`.

Multi-label models (config problem_type "multi_label_classification") are scored with the sigmoid probabilities:
mAP, mAUC, d_prime and argmax accuracy (correct when the top class is one of the clip's labels); single-label models
with the softmax probabilities: accuracy and top-5 accuracy. The script prints one line per model and one for the
ensemble, and with --output_json writes them as JSON.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

LABEL_SEPARATOR = ";"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model_dirs", nargs="+", type=Path, metavar="MODEL_DIR", help="saved AST classifiers")
    parser.add_argument("--test_manifest", type=Path, required=True, help="CSV with `path,label` columns")
    parser.add_argument("--batch_size", type=int, default=8, help="clips per forward pass (default 8)")
    parser.add_argument("--device", default="cpu", help="torch device to run the models on (default cpu)")
    parser.add_argument("--output_json", type=Path, default=None, help="also write the metrics to this JSON file")
    return parser


def _split_labels(field: str | None) -> list[str]:
    """The non-empty, stripped `;`-separated labels of a manifest cell."""
    return [label.strip() for label in (field or "").split(LABEL_SEPARATOR) if label.strip()]


def read_manifest(manifest: Path) -> list[tuple[Path, list[str]]]:
    """(audio path, labels) per row of a `path,label` CSV; paths relative to the manifest's folder."""
    if not manifest.is_file():
        raise FileNotFoundError(f"manifest {manifest} does not exist")
    with manifest.open(newline="") as handle:
        reader = csv.DictReader(handle)
        if reader.fieldnames is None or not {"path", "label"} <= set(reader.fieldnames):
            raise ValueError(f"manifest {manifest} needs a `path,label` header, got {reader.fieldnames}")
        rows = [(manifest.parent / row["path"], _split_labels(row["label"])) for row in reader]
    if not rows:
        raise ValueError(f"manifest {manifest} lists no files")
    missing = [str(path) for path, _ in rows if not path.is_file()]
    if missing:
        raise FileNotFoundError(f"manifest {manifest} lists {len(missing)} missing file(s), e.g. {missing[:3]}")
    return rows


def encode_labels(rows: Sequence[tuple[Path, list[str]]], label2id: dict[str, int], multi_label: bool) -> Any:
    """(N, C) float multi-hot targets (multi-label) or (N,) int64 class ids (single-label) for the manifest rows."""
    import torch

    unknown = sorted({label for _, labels in rows for label in labels} - set(label2id))
    if unknown:
        raise ValueError(f"the manifest uses labels the models do not know: {unknown[:10]}")
    if multi_label:
        targets = torch.zeros(len(rows), len(label2id))
        for index, (_, labels) in enumerate(rows):
            targets[index, [label2id[label] for label in labels]] = 1.0
        return targets
    wrong = [str(path) for path, labels in rows if len(labels) != 1]
    if wrong:
        raise ValueError(f"single-label models need exactly one label per clip; see {wrong[:3]}")
    return torch.tensor([label2id[labels[0]] for _, labels in rows])


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


def batches(
    rows: Sequence[tuple[Path, list[str]]], targets: Any, extractor: Any, batch_size: int
) -> Iterator[dict[str, Any]]:
    """Model batches (features, attention mask if the extractor returns one, labels) over the manifest, in order."""
    from modeling_ast.audio_utils import load_audio

    for start in range(0, len(rows), batch_size):
        chunk = rows[start : start + batch_size]
        waveforms = [load_audio(path, sampling_rate=extractor.sampling_rate) for path, _ in chunk]
        batch = dict(extractor(waveforms, sampling_rate=extractor.sampling_rate, return_tensors="pt"))
        batch["labels"] = targets[start : start + batch_size]
        yield batch


def evaluate(model_dirs: Sequence[Path], manifest: Path, batch_size: int, device: str) -> dict[str, Any]:
    """{"members": [{"model": dir, **metrics}, ...], "ensemble": metrics, "num_clips": N}."""
    from transformers import EvalPrediction

    from modeling_ast.training.averaging import ensemble_predict
    from modeling_ast.training.metrics import MULTI_LABEL, compute_metrics_fn

    if batch_size < 1:
        raise ValueError(f"--batch_size must be positive, got {batch_size}")
    rows = read_manifest(manifest)
    models, extractor = load_members(model_dirs, device)
    config = models[0].config
    targets = encode_labels(rows, config.label2id, config.problem_type == MULTI_LABEL)
    prediction = ensemble_predict(models, batches(rows, targets, extractor, batch_size))
    metrics = compute_metrics_fn(config.problem_type, config.id2label)

    def score(probabilities: Any) -> dict[str, float]:
        return metrics(EvalPrediction(predictions=probabilities.numpy(), label_ids=prediction.labels.numpy()))

    members = [
        {"model": str(model_dir), **score(probabilities)}
        for model_dir, probabilities in zip(model_dirs, prediction.member_probabilities)
    ]
    return {"members": members, "ensemble": score(prediction.probabilities), "num_clips": len(rows)}


def _format(metrics: dict[str, Any]) -> str:
    return ", ".join(f"{key} {value:.4f}" for key, value in metrics.items() if key != "model")


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        results = evaluate(args.model_dirs, args.test_manifest, args.batch_size, args.device)
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
