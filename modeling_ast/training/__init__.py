"""Building blocks of the paper's training recipes, usable with `transformers.Trainer` or a loop of your own.

Data, in the order a clip meets them:
- `sources`: labelled clips from folders, CSV/JSONL manifests or `datasets` datasets (also streamed);
- `labels`: the label space (classes, single- or multi-label, targets);
- `task`: a task's training and evaluation clips read from one source and checked, and its datasets;
- `decoding`: audio decoded to mono 16 kHz without torchcodec, and the unreadable files;
- `sampling`: the draws of an epoch keyed by (seed, epoch, position), balanced sampling weights, the seed function;
- `datasets`: map-style and streamed datasets that crop and mix training clips per draw;
- `augment`: random crop, waveform mixup, SpecAugment (before normalisation), noise + time roll;
- `collator`: filter banks through the feature extractor, spectrogram augmentations, normalisation.

Training and its outputs:
- `recipes`: the recipe arguments and recipe files (`examples/recipes/*.json`);
- `starting_points`: a pretrained AST fitted to a task, the feature extractor for a model;
- `schedules`: warm-up and the paper's step-decay learning-rate schedules, Adam as in the recipes;
- `trainer`: `ASTTrainer`, the `Trainer` that applies a recipe;
- `metrics`: accuracy, top-5, per-class AP and ROC-AUC, mAP, mAUC, d';
- `sed_metrics`: sound event detection's PSDS1/PSDS2 and event/segment F1 (sed_scores_eval, sed_eval), DCASE TSVs;
- `averaging`: weight averaging of epoch checkpoints and ensemble prediction;
- `report`: headline metrics, the evaluation plot, the model card.
"""

__all__: list[str] = []  # each building block is imported from its module
