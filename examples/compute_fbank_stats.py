"""Mean and standard deviation of a dataset's log-mel filter banks, for the AST feature extractor's normalisation.

    python examples/compute_fbank_stats.py --data_dir ESC-50-master/audio --max_length 512
    python examples/compute_fbank_stats.py --train_file train.csv --max_length 1024 --output_json stats.json
    python examples/compute_fbank_stats.py --dataset_name NAME --train_split_name train --max_length 128

Pass the printed values to the training script as `--fbank_mean M --fbank_std S` (the feature extractor then
normalises with `(x - M) / (2 * S)`, as the original code does).

What is measured: the un-normalised Kaldi filter banks the feature extractor computes (128 mel bins, 10 ms frames, at
most --max_length frames per clip, longer clips cut after it), over every time-frequency cell of every clip, exactly
(float64 sums over the whole dataset; population std).

By default only real frames count, with no augmentation: the statistics of the audio itself. The authors' stats tool
(`get_norm_stats.py` of the original code) measured them differently, from its training data loader: clips padded to
the full target length (the zero padding counted), SpecAugment masks and mixup on, and the mean of per-batch means and
stds rather than one global value. `--include_padding --freqm F --timem T --mixup P` reproduces that loader (set F, T,
P to the recipe's values); the per-batch averaging is not reproduced, as it depends on batch composition. The published
ESC-50 (-6.6268077, 5.358466) and Speech Commands (-6.845978, 5.5654526) statistics were measured that way.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from modeling_ast import ASTFeatureExtractor
from modeling_ast.training.augment import AugmentConfig
from modeling_ast.training.collator import AudioCollator
from modeling_ast.fbank import num_samples_for_frames
from modeling_ast.training.datasets import AudioDataset
from modeling_ast.training.labels import LabelSpace
from modeling_ast.training.sampling import DrawKey
from modeling_ast.training.sources import Example, folder_examples, load_hub_examples, manifest_examples


@dataclass(frozen=True)
class FbankStats:
    """Mean and population std over `cells` time-frequency cells of `clips` clips."""

    mean: float
    std: float
    cells: int
    clips: int


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--data_dir", type=Path, help="folder of audio files (searched recursively)")
    source.add_argument("--train_file", type=Path, help="CSV or JSON Lines manifest (as the training script's)")
    source.add_argument("--dataset_name", help="a `datasets` dataset: Hub id, data folder or save_to_disk folder")
    parser.add_argument("--dataset_config_name", default=None, help="configuration of --dataset_name")
    parser.add_argument("--train_split_name", default="train", help="split of --dataset_name (default train)")
    parser.add_argument("--audio_column_name", default="audio", help="audio column of --dataset_name")
    parser.add_argument("--label_column_name", default="label", help="label column of --dataset_name")
    parser.add_argument("--max_length", type=int, default=1024, help="frames per clip, as the model's (default 1024)")
    parser.add_argument(
        "--include_padding", action="store_true",
        help="pad every clip to --max_length frames and count the padding, as the authors' tool did",
    )
    parser.add_argument("--freqm", type=int, default=0, help="SpecAugment frequency mask width (default 0: off)")
    parser.add_argument("--timem", type=int, default=0, help="SpecAugment time mask width (default 0: off)")
    parser.add_argument("--mixup", type=float, default=0.0, help="mixup probability (default 0: off)")
    parser.add_argument("--batch_size", type=int, default=32, help="clips featurised at once (default 32)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the augmentations (default 0)")
    parser.add_argument("--output_json", type=Path, default=None, help="also write the statistics to this file")
    return parser  # fmt: skip


def read_examples(args: argparse.Namespace) -> tuple[Sequence[Example], LabelSpace]:
    """The clips of the source named by `args` and a label space for them. Labels do not change the statistics
    (mixup mixes targets, not features), so the clips of folders and manifests all get one label, "clip"."""
    if args.dataset_name is not None:
        examples = load_hub_examples(
            args.dataset_name, args.dataset_config_name, args.train_split_name,
            audio_column_name=args.audio_column_name, label_column_name=args.label_column_name,
        )  # fmt: skip
        return examples, examples.label_space(multi_label=True)
    if args.data_dir is not None:
        examples = folder_examples(args.data_dir, label_regex=".+")["train"]  # any label: the relative path
    else:
        examples = manifest_examples(args.train_file)
    return [{**example, "labels": ["clip"]} for example in examples], LabelSpace(("clip",), multi_label=True)


def fbank_stats(
    examples: Sequence[Example],
    label_space: LabelSpace,
    max_length: int,
    include_padding: bool = False,
    augment: AugmentConfig | None = None,
    batch_size: int = 32,
    seed: int = 0,
) -> FbankStats:
    """Mean and std of the un-normalised filter banks of `examples` (see the module docstring).

    With `augment` (SpecAugment widths, mixup) the clips go through the training pipeline: random crops to
    `max_length` frames, mixup, SpecAugment; without it each clip's first `max_length` frames are used as they are.
    """
    augment = augment or AugmentConfig()
    train = augment != AugmentConfig()
    extractor = ASTFeatureExtractor(max_length=max_length, do_normalize=False)
    dataset = AudioDataset(
        examples, label_space, train=train, max_samples=num_samples_for_frames(max_length), augment=augment, seed=seed
    )
    collator = AudioCollator(
        extractor, augment, padding="max_length" if include_padding else "longest", return_attention_mask=True
    )
    # Training clips are read as one epoch's draw, in order: clip i is the draw at position i of epoch 0.
    keys = [DrawKey(0, index, index) if train else index for index in range(len(dataset))]
    total, total_squares, cells = 0.0, 0.0, 0
    for start in range(0, len(dataset), batch_size):
        batch = collator([dataset[key] for key in keys[start : start + batch_size]])
        features = batch["input_values"].double()
        if not include_padding:
            features = features[batch["attention_mask"].bool()]
        total += float(features.sum())
        total_squares += float((features * features).sum())
        cells += features.numel()
    mean = total / cells
    std = math.sqrt(max(total_squares / cells - mean * mean, 0.0))
    return FbankStats(mean=mean, std=std, cells=cells, clips=len(dataset))


def main(argv: Sequence[str] | None = None) -> FbankStats:
    args = build_parser().parse_args(argv)
    augment = AugmentConfig(mixup=args.mixup, freqm=args.freqm, timem=args.timem)
    with torch.no_grad():
        examples, label_space = read_examples(args)
        stats = fbank_stats(
            examples, label_space, args.max_length, args.include_padding, augment, args.batch_size, args.seed
        )
    settings = (
        f"padding {'counted' if args.include_padding else 'excluded'}, SpecAugment freqm={args.freqm} "
        f"timem={args.timem}, mixup={args.mixup}"
    )
    print(f"{stats.clips} clips, {stats.cells:,} cells ({settings})")
    print(f"--fbank_mean {stats.mean:.7g} --fbank_std {stats.std:.7g}")
    if args.output_json is not None:
        record = {**dataclasses.asdict(stats), "settings": settings}
        args.output_json.write_text(json.dumps(record, indent=2) + "\n")
    return stats


if __name__ == "__main__":
    main()
