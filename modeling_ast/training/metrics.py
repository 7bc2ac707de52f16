"""Evaluation metrics of the AST recipes, in NumPy only (no scikit-learn or SciPy).

Multi-label (AudioSet): per-class average precision (AP) and area under the ROC curve (AUC), their means over the
scored classes (mAP, mAUC) and the sensitivity index d' = sqrt(2) * Phi^-1(mAUC). Single-label (ESC-50, Speech
Commands): accuracy and top-5 accuracy. `compute_metrics_fn` wraps either set as a `transformers.Trainer`
`compute_metrics` callable.

Ties between scores are handled as scikit-learn's `average_precision_score` and `roc_auc_score` do: clips with equal
scores form one threshold, so AP is the step-wise sum over distinct thresholds, sum_k (R_k - R_{k-1}) * P_k, and AUC is
the trapezoidal area under the ROC curve through those thresholds (equal to the Mann-Whitney statistic with ties
counted as one half). Both only depend on the ranking of the scores, so logits and sigmoid probabilities give the same
values (up to ties that float32 sigmoid saturation creates; prefer logits).

A class with no positive or no negative clip in the evaluation set has no meaningful AP/AUC pair: its AUC is NaN, its
AP is NaN when it has no positives (and 1 when it has no negatives), and it is left out of mAP and mAUC and listed in
`MultiLabelMetrics.excluded_classes`. The original code (scikit-learn) raises on such classes instead.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np
import torch
from transformers import EvalPrediction
from transformers.utils import logging

logger = logging.get_logger(__name__)

SINGLE_LABEL = "single_label_classification"
MULTI_LABEL = "multi_label_classification"

ArrayLike = np.ndarray | torch.Tensor


@dataclass(frozen=True)
class MultiLabelMetrics:
    """Multi-label evaluation of C classes.

    Attributes:
        average_precision: (C,) per-class AP; NaN for classes without positives.
        roc_auc: (C,) per-class ROC-AUC; NaN for classes without positives or without negatives.
        excluded_classes: indices of the classes left out of the means (no positives or no negatives).
        mean_average_precision: mAP over the scored classes (NaN if none).
        mean_roc_auc: mAUC over the scored classes (NaN if none).
        d_prime: sqrt(2) * Phi^-1(mAUC).
        accuracy: fraction of clips whose highest-scoring class is one of their positive labels.
    """

    average_precision: np.ndarray
    roc_auc: np.ndarray
    excluded_classes: tuple[int, ...]
    mean_average_precision: float
    mean_roc_auc: float
    d_prime: float
    accuracy: float


def _as_float_array(values: ArrayLike, name: str) -> np.ndarray:
    """`values` as a float64 NumPy array; torch tensors are detached and moved to the CPU."""
    if isinstance(values, torch.Tensor):
        values = values.detach().cpu().double().numpy()
    array = np.asarray(values, dtype=np.float64)
    if not np.all(np.isfinite(array)):
        raise ValueError(f"{name} contains NaN or infinite values")
    return array


def _check_multi_label(scores: ArrayLike, targets: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    """Validated (N, C) float scores and (N, C) boolean targets."""
    score_array = _as_float_array(scores, "scores")
    target_array = _as_float_array(targets, "targets")
    if score_array.ndim != 2 or score_array.shape != target_array.shape:
        raise ValueError(
            f"scores and targets must both have shape (num_clips, num_classes), got {score_array.shape} and "
            f"{target_array.shape}"
        )
    if score_array.shape[0] == 0:
        raise ValueError("cannot evaluate an empty set of clips")
    if not np.all((target_array == 0) | (target_array == 1)):
        odd = np.unique(target_array[(target_array != 0) & (target_array != 1)])[:5]
        raise ValueError(f"multi-label targets must be 0 or 1 (multi-hot), found values such as {odd.tolist()}")
    return score_array, target_array.astype(bool)


def _threshold_counts(scores: np.ndarray, positives: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """True- and false-positive counts when predicting "positive" for every score >= each distinct threshold.

    Args:
        scores: (N,) scores of one class.
        positives: (N,) boolean ground truth.

    Returns:
        (tps, fps), each (K,) for the K distinct scores in decreasing order; tied clips enter together.
    """
    order = np.argsort(-scores, kind="stable")
    sorted_scores = scores[order]
    # The last clip of each run of equal scores closes one threshold.
    run_ends = np.flatnonzero(np.diff(sorted_scores) != 0)
    last_of_threshold = np.append(run_ends, scores.shape[0] - 1)
    tps = np.cumsum(positives[order])[last_of_threshold]
    fps = last_of_threshold + 1 - tps
    return tps.astype(np.float64), fps.astype(np.float64)


def _average_precision(tps: np.ndarray, fps: np.ndarray) -> float:
    """sum_k (R_k - R_{k-1}) * P_k over thresholds (R_0 = 0); NaN without positives."""
    total_positives = tps[-1]
    if total_positives == 0:
        return math.nan
    precision = tps / (tps + fps)
    recall_gain = np.diff(tps, prepend=0.0) / total_positives
    return float(np.sum(recall_gain * precision))


def _roc_auc(tps: np.ndarray, fps: np.ndarray) -> float:
    """Trapezoidal area under the ROC curve from (0, 0) through every threshold; NaN without both classes."""
    total_positives, total_negatives = tps[-1], fps[-1]
    if total_positives == 0 or total_negatives == 0:
        return math.nan
    tpr = np.concatenate(([0.0], tps / total_positives))
    fpr = np.concatenate(([0.0], fps / total_negatives))
    return float(np.sum(np.diff(fpr) * (tpr[1:] + tpr[:-1]) / 2.0))


def _per_class(
    scores: np.ndarray, targets: np.ndarray, metric: Callable[[np.ndarray, np.ndarray], float]
) -> np.ndarray:
    """(C,) values of `metric(tps, fps)` for every column of (N, C) `scores` / `targets`."""
    return np.array(
        [metric(*_threshold_counts(scores[:, k], targets[:, k])) for k in range(scores.shape[1])], dtype=np.float64
    )


def per_class_average_precision(scores: ArrayLike, targets: ArrayLike) -> np.ndarray:
    """Average precision of every class.

    Args:
        scores: (N, C) logits or probabilities (higher = more likely).
        targets: (N, C) multi-hot ground truth (0/1).

    Returns:
        (C,) float64 AP per class, as `sklearn.metrics.average_precision_score(targets[:, k], scores[:, k])`; NaN
        for classes without a positive clip.
    """
    score_array, target_array = _check_multi_label(scores, targets)
    return _per_class(score_array, target_array, _average_precision)


def per_class_roc_auc(scores: ArrayLike, targets: ArrayLike) -> np.ndarray:
    """ROC-AUC of every class.

    Args:
        scores: (N, C) logits or probabilities.
        targets: (N, C) multi-hot ground truth (0/1).

    Returns:
        (C,) float64 AUC per class, as `sklearn.metrics.roc_auc_score(targets[:, k], scores[:, k])`; NaN for classes
        without a positive or without a negative clip.
    """
    score_array, target_array = _check_multi_label(scores, targets)
    return _per_class(score_array, target_array, _roc_auc)


def d_prime(auc: float) -> float:
    """Sensitivity index sqrt(2) * Phi^-1(auc) of an AUC (Phi: standard normal CDF); +-inf at 1 and 0, NaN for NaN."""
    if math.isnan(auc):
        return math.nan
    if not 0.0 <= auc <= 1.0:
        raise ValueError(f"an AUC lies in [0, 1], got {auc}")
    if auc in (0.0, 1.0):
        return math.copysign(math.inf, auc - 0.5)
    return math.sqrt(2.0) * statistics.NormalDist().inv_cdf(auc)


def _argmax_hits_positive(scores: np.ndarray, targets: np.ndarray) -> float:
    """Fraction of clips whose top-scoring class is a positive label (clips without labels count as misses)."""
    top = np.argmax(scores, axis=1)
    return float(np.mean(targets[np.arange(scores.shape[0]), top]))


def multi_label_metrics(scores: ArrayLike, targets: ArrayLike) -> MultiLabelMetrics:
    """All multi-label metrics of the AST recipes.

    Args:
        scores: (N, C) logits or sigmoid probabilities.
        targets: (N, C) multi-hot ground truth (0/1).

    Returns:
        `MultiLabelMetrics`; means are over the classes with at least one positive and one negative clip.
        `accuracy` is the original's Speech Commands accuracy read on multi-hot targets: the argmax class is correct
        if it is any of the clip's positive labels (for one-hot targets, ordinary accuracy).
    """
    score_array, target_array = _check_multi_label(scores, targets)
    counts = [_threshold_counts(score_array[:, k], target_array[:, k]) for k in range(score_array.shape[1])]
    average_precision = np.array([_average_precision(*c) for c in counts], dtype=np.float64)
    roc_auc = np.array([_roc_auc(*c) for c in counts], dtype=np.float64)
    scored = ~np.isnan(roc_auc)  # AUC is defined exactly when a class has positives and negatives
    mean_ap = float(np.mean(average_precision[scored])) if scored.any() else math.nan
    mean_auc = float(np.mean(roc_auc[scored])) if scored.any() else math.nan
    return MultiLabelMetrics(
        average_precision=average_precision,
        roc_auc=roc_auc,
        excluded_classes=tuple(int(k) for k in np.flatnonzero(~scored)),
        mean_average_precision=mean_ap,
        mean_roc_auc=mean_auc,
        d_prime=d_prime(mean_auc),
        accuracy=_argmax_hits_positive(score_array, target_array),
    )


def _class_indices(scores: np.ndarray, labels: ArrayLike) -> np.ndarray:
    """(N,) integer class ids from (N,) ids or (N, C) one-hot / soft targets (argmax, as the original code)."""
    label_array = _as_float_array(labels, "labels")
    if label_array.ndim == 2:
        if label_array.shape != scores.shape:
            raise ValueError(f"2-D labels must match the scores' shape {scores.shape}, got {label_array.shape}")
        return np.argmax(label_array, axis=1)
    if label_array.ndim != 1 or label_array.shape[0] != scores.shape[0]:
        raise ValueError(f"labels must have shape ({scores.shape[0]},) or {scores.shape}, got {label_array.shape}")
    num_classes = scores.shape[1]
    if np.any(label_array != np.round(label_array)) or np.any((label_array < 0) | (label_array >= num_classes)):
        raise ValueError(f"class ids must be integers in [0, {num_classes}), got values outside that range")
    return label_array.astype(np.int64)


def _check_single_label(scores: ArrayLike, labels: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    """Validated (N, C) scores and (N,) class ids."""
    score_array = _as_float_array(scores, "scores")
    if score_array.ndim != 2 or score_array.shape[0] == 0:
        raise ValueError(f"scores must have shape (num_clips, num_classes) with num_clips > 0, got {score_array.shape}")
    return score_array, _class_indices(score_array, labels)


def top_k_accuracy(scores: ArrayLike, labels: ArrayLike, k: int = 1) -> float:
    """Fraction of clips whose true class is among the `k` highest scores.

    Args:
        scores: (N, C) logits or probabilities.
        labels: (N,) class ids, or (N, C) one-hot targets.
        k: number of guesses; capped at C.

    Ties at the k-th score are broken by class index (lower first), like a stable sort.
    """
    if k < 1:
        raise ValueError(f"k must be at least 1, got {k}")
    score_array, label_ids = _check_single_label(scores, labels)
    k = min(k, score_array.shape[1])
    top = np.argsort(-score_array, axis=1, kind="stable")[:, :k]
    return float(np.mean(np.any(top == label_ids[:, None], axis=1)))


def accuracy(scores: ArrayLike, labels: ArrayLike) -> float:
    """Top-1 accuracy: (N, C) scores against (N,) class ids or (N, C) one-hot targets."""
    return top_k_accuracy(scores, labels, k=1)


def _logits(prediction: EvalPrediction) -> np.ndarray:
    """The model's first output (logits) from an `EvalPrediction` whose predictions may be a tuple."""
    predictions = prediction.predictions
    if isinstance(predictions, (tuple, list)):
        predictions = predictions[0]
    return np.asarray(predictions)


def _label_names(classes: tuple[int, ...], id2label: Mapping[int, str] | None) -> list[str]:
    """Display names of `classes` (their ids when `id2label` lacks them)."""
    lookup = {int(key): value for key, value in (id2label or {}).items()}
    return [lookup.get(k, str(k)) for k in classes]


def _multi_label_dict(prediction: EvalPrediction, id2label: Mapping[int, str] | None) -> dict[str, float]:
    """mAP, mAUC, d_prime, accuracy and the number of excluded classes; excluded classes are logged by name."""
    result = multi_label_metrics(_logits(prediction), prediction.label_ids)
    if result.excluded_classes:
        names = _label_names(result.excluded_classes, id2label)
        shown = ", ".join(names[:10]) + (f" and {len(names) - 10} more" if len(names) > 10 else "")
        logger.warning(f"{len(names)} class(es) lacking positive or negative clips are left out of mAP/mAUC: {shown}")
    return {
        "mAP": result.mean_average_precision,
        "mAUC": result.mean_roc_auc,
        "d_prime": result.d_prime,
        "accuracy": result.accuracy,
        "excluded_classes": float(len(result.excluded_classes)),
    }


def _single_label_dict(prediction: EvalPrediction) -> dict[str, float]:
    """accuracy and top5_accuracy."""
    scores = _logits(prediction)
    return {
        "accuracy": top_k_accuracy(scores, prediction.label_ids, k=1),
        "top5_accuracy": top_k_accuracy(scores, prediction.label_ids, k=5),
    }


def compute_metrics_fn(
    problem_type: str | None, id2label: Mapping[int, str] | None = None
) -> Callable[[EvalPrediction], dict[str, float]]:
    """A `compute_metrics` for `transformers.Trainer` matching the model's `config.problem_type`.

    Args:
        problem_type: "multi_label_classification" -> {"mAP", "mAUC", "d_prime", "accuracy", "excluded_classes"}
            from (N, C) logits and (N, C) multi-hot `label_ids`; "single_label_classification" or None (the
            transformers default for integer labels) -> {"accuracy", "top5_accuracy"} from (N, C) logits and (N,)
            class ids. "regression" and other values raise ValueError.
        id2label: class names, used to name the classes left out of mAP/mAUC in the warning.

    Returns:
        A function of an `EvalPrediction` returning a dict of floats (Trainer prefixes the keys with "eval_").
    """
    if problem_type == MULTI_LABEL:
        return lambda prediction: _multi_label_dict(prediction, id2label)
    if problem_type in (SINGLE_LABEL, None):
        return _single_label_dict
    raise ValueError(f"problem_type must be {SINGLE_LABEL!r} or {MULTI_LABEL!r}, got {problem_type!r}")
