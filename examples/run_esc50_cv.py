"""5-fold cross-validation on ESC-50 with `run_audio_classification.py`, reporting mean +- std as the paper does.

    python examples/run_esc50_cv.py --esc50_dir ESC-50-master --output_dir outputs/esc50
    python examples/run_esc50_cv.py --esc50_dir ESC-50-master --output_dir outputs/esc50 --seeds 0,1,2 \
        --num_train_epochs 10 --per_device_train_batch_size 24      # any training-script argument is passed on

ESC50_DIR is the layout of the official release (github.com/karolpiczak/ESC-50): `meta/esc50.csv` with the columns
`filename,fold,target,category,...` and the clips in `audio/`. For every fold k in --folds, the clips of fold k are the
evaluation split and the other folds the training split: the script writes the two manifests to
`OUTPUT_DIR/manifests/fold{k}/` and trains with `run_audio_classification.main` on
`--recipe` (default `examples/recipes/esc50.json`, the authors' ESC-50 recipe) plus the arguments it does not know
itself, into `OUTPUT_DIR/seed{s}/fold{k}`. The accuracy of each fold is that of the final model on that fold (no
model selection). It prints and writes to `OUTPUT_DIR/cv_results.json`:

- per seed: the accuracy of every fold, their mean (the cross-validated accuracy) and their standard deviation;
- over seeds (with several --seeds): the mean and standard deviation of the cross-validated accuracies. The paper's
  "95.6 +- 0.4" is this: three runs of 5-fold cross-validation with different seeds.

Standard deviations are population standard deviations (numpy's default, ddof=0).
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from modeling_ast.file_lists import read_manifest

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the training script is a sibling module

import run_audio_classification  # noqa: E402

DEFAULT_RECIPE = Path(__file__).resolve().parent / "recipes" / "esc50.json"
META_COLUMNS = ("filename", "fold", "category")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--esc50_dir", type=Path, required=True, help="ESC-50 folder with meta/esc50.csv and audio/")
    parser.add_argument("--output_dir", type=Path, required=True, help="where manifests, models and results go")
    parser.add_argument("--folds", default="1,2,3,4,5", help="comma-separated held-out folds (default 1,2,3,4,5)")
    parser.add_argument("--seeds", default="0", help="comma-separated training seeds, one CV run each (default 0)")
    parser.add_argument(
        "--recipe", default=str(DEFAULT_RECIPE), help="recipe JSON of the training script ('none': its defaults)"
    )
    return parser


def _int_list(text: str, option: str) -> list[int]:
    try:
        values = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise ValueError(f"{option} must be comma-separated integers, got {text!r}") from None
    if not values:
        raise ValueError(f"{option} is empty")
    return values


def read_meta(esc50_dir: Path) -> list[dict[str, str]]:
    """The rows of meta/esc50.csv, checked: the needed columns are there and every listed clip exists."""
    meta = esc50_dir / "meta" / "esc50.csv"
    if not meta.is_file():
        raise FileNotFoundError(f"{meta} does not exist; --esc50_dir must be the ESC-50 release folder")
    rows = [row.fields for row in read_manifest(meta, path_column="filename")]  # the package's one file-list reader
    if not rows:
        raise ValueError(f"{meta} lists no clips")
    missing_columns = [column for column in META_COLUMNS if column not in rows[0]]
    if missing_columns:
        raise ValueError(f"{meta} lacks the column(s) {missing_columns}")
    missing = [row["filename"] for row in rows if not (esc50_dir / "audio" / row["filename"]).is_file()]
    if missing:
        raise FileNotFoundError(
            f"{len(missing)} clip(s) of {meta} are not in {esc50_dir / 'audio'}, e.g. {missing[:3]}"
        )
    return rows


def write_fold_manifests(
    rows: Sequence[dict[str, str]], esc50_dir: Path, fold: int, out_dir: Path
) -> tuple[Path, Path]:
    """train.csv (every other fold) and eval.csv (fold `fold`) with `path,label` columns, absolute paths."""
    held_out = [row for row in rows if int(row["fold"]) == fold]
    if not held_out:
        folds = sorted({int(row["fold"]) for row in rows})
        raise ValueError(f"fold {fold} has no clips; the folds of the metadata are {folds}")
    train = [row for row in rows if int(row["fold"]) != fold]
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, split in (("train.csv", train), ("eval.csv", held_out)):
        path = out_dir / name
        with path.open("w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(["path", "label"])
            audio = esc50_dir.resolve() / "audio"
            writer.writerows([(str(audio / row["filename"]), row["category"]) for row in split])
        paths.append(path)
    return paths[0], paths[1]


def summarise(accuracies: dict[int, dict[int, float]]) -> dict[str, Any]:
    """Per-seed fold accuracies, their mean and std, and mean +- std over the seeds' cross-validated accuracies."""
    per_seed = {
        seed: {
            "folds": folds,
            "mean": float(np.mean(list(folds.values()))),
            "std_over_folds": float(np.std(list(folds.values()))),
        }
        for seed, folds in accuracies.items()
    }
    means = [entry["mean"] for entry in per_seed.values()]
    return {"per_seed": per_seed, "mean": float(np.mean(means)), "std_over_seeds": float(np.std(means))}


def run_cv(
    esc50_dir: Path, output_dir: Path, folds: Sequence[int], seeds: Sequence[int], recipe: str | None,
    training_args: Sequence[str],
) -> dict[str, Any]:
    """Train and evaluate every (seed, fold); returns `summarise` of the accuracies (also written as JSON)."""
    rows = read_meta(esc50_dir)
    manifests = {
        fold: write_fold_manifests(rows, esc50_dir, fold, output_dir / "manifests" / f"fold{fold}") for fold in folds
    }
    accuracies: dict[int, dict[int, float]] = {}
    for seed in seeds:
        accuracies[seed] = {}
        for fold in folds:
            train, evaluation = manifests[fold]
            argv = ([recipe] if recipe else []) + [
                "--train_file", str(train), "--eval_file", str(evaluation),
                "--output_dir", str(output_dir / f"seed{seed}" / f"fold{fold}"), "--seed", str(seed),
            ]  # fmt: skip
            result = run_audio_classification.main(argv + list(training_args))
            accuracies[seed][fold] = float(result["eval_accuracy"])
            print(f"seed {seed}, fold {fold}: accuracy {accuracies[seed][fold]:.4f}")
    summary = summarise(accuracies)
    (output_dir / "cv_results.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    args, training_args = build_parser().parse_known_args(argv)
    folds = _int_list(args.folds, "--folds")
    seeds = _int_list(args.seeds, "--seeds")
    recipe = None if args.recipe.lower() == "none" else args.recipe
    summary = run_cv(args.esc50_dir, args.output_dir, folds, seeds, recipe, training_args)
    for seed, entry in summary["per_seed"].items():
        folds_text = ", ".join(f"{accuracy:.4f}" for accuracy in entry["folds"].values())
        print(f"seed {seed}: {entry['mean']:.4f} +- {entry['std_over_folds']:.4f} over folds ({folds_text})")
    if len(seeds) > 1:
        print(f"{len(seeds)} seeds: {summary['mean']:.4f} +- {summary['std_over_seeds']:.4f}")
    print(f"results written to {args.output_dir / 'cv_results.json'}")
    return summary


if __name__ == "__main__":
    main()
