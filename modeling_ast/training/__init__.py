"""Building blocks of the paper's training recipes, usable with `transformers.Trainer` or a loop of your own.

- `data`: clips from folders, CSV/JSONL manifests or `datasets` datasets (also streamed), decoded at 16 kHz without
  torchcodec, with a collator that crops, augments and featurises batches.
- `augment`: waveform mixup, SpecAugment (before normalisation) and noise + time roll.
- `metrics`: accuracy, top-5, per-class AP and ROC-AUC, mAP, mAUC, d'.
- `sampling`: balanced sampling weights and a DDP-correct weighted sampler.
- `schedules`: warm-up and the paper's step-decay learning-rate schedules, Adam as in the recipes.
- `averaging`: weight averaging of epoch checkpoints and ensemble prediction.
"""
