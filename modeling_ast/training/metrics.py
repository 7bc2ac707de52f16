"""Evaluation metrics of the AST recipes: scikit-learn's ranking metrics plus what it lacks.

Multi-label (AudioSet): per-class average precision (AP) and area under the ROC curve (AUC) from
`sklearn.metrics.average_precision_score` / `roc_auc_score` (ties between scores form one threshold, as there), their
means over the scored classes (mAP, mAUC) and the sensitivity index d' = sqrt(2) * Phi^-1(mAUC). Single-label
(ESC-50, Speech Commands): accuracy and top-5 accuracy. `compute_metrics_fn` wraps either set as a
`transformers.Trainer` `compute_metrics` callable. AP and AUC depend only on the ranking of the scores, so logits and
sigmoid probabilities give the same values (up to ties that float32 sigmoid saturation creates; prefer logits).

Classes with no positive or no negative clip in the evaluation set (where scikit-learn raises, or returns an AP of 0
with a warning): their AUC is NaN, their AP is NaN when they have no positives (and 1, scikit-learn's value, when they
have no negatives), and they are left out of mAP and mAUC and listed in `MultiLabelMetrics.excluded_classes`.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np
import torch
from sklearn.metrics import average_precision_score, roc_auc_score
from transformers import EvalPrediction
from transformers.utils import logging

from .labels import list_names

logger = logging.get_logger(__name__)

__all__ = [
    "MultiLabelMetrics",
    "accuracy",
    "compute_metrics_fn",
    "d_prime",
    "multi_label_metrics",
    "per_class_average_precision",
    "per_class_roc_auc",
    "top_k_accuracy",
]

_SINGLE_LABEL = "single_label_classification"
_MULTI_LABEL = "multi_label_classification"

_ArrayLike = np.ndarray | torch.Tensor


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


def _as_float_array(values: _ArrayLike, name: str) -> np.ndarray:
    """`values` as a float64 NumPy array; torch tensors are detached and moved to the CPU."""
    if isinstance(values, torch.Tensor):
        values = values.detach().cpu().double().numpy()
    array = np.asarray(values, dtype=np.float64)
    if not np.all(np.isfinite(array)):
        raise ValueError(f"{name} contains NaN or infinite values")
    return array


def _check_multi_label(scores: _ArrayLike, targets: _ArrayLike) -> tuple[np.ndarray, np.ndarray]:
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


def _per_class(
    metric: Callable[[np.ndarray, np.ndarray], float], scores: np.ndarray, targets: np.ndarray, defined: np.ndarray
) -> np.ndarray:
    """(C,) float64 `metric(targets[:, k], scores[:, k])` where `defined` (C,) is True, NaN elsewhere."""
    values = np.full(scores.shape[1], math.nan)
    for k in np.flatnonzero(defined):
        values[k] = metric(targets[:, k], scores[:, k])
    return values


def _average_precision(scores: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """(C,) AP of validated (N, C) scores / boolean targets; defined for classes with a positive clip."""
    return _per_class(average_precision_score, scores, targets, targets.any(axis=0))


def _roc_auc(scores: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """(C,) AUC of validated (N, C) scores / boolean targets; defined for classes with positive and negative clips."""
    return _per_class(roc_auc_score, scores, targets, targets.any(axis=0) & ~targets.all(axis=0))


def per_class_average_precision(scores: _ArrayLike, targets: _ArrayLike) -> np.ndarray:
    """Average precision of every class.

    Args:
        scores: (N, C) logits or probabilities (higher = more likely).
        targets: (N, C) multi-hot ground truth (0/1).

    Returns:
        (C,) float64 `sklearn.metrics.average_precision_score(targets[:, k], scores[:, k])`; NaN for classes
        without a positive clip.
    """
    return _average_precision(*_check_multi_label(scores, targets))


def per_class_roc_auc(scores: _ArrayLike, targets: _ArrayLike) -> np.ndarray:
    """ROC-AUC of every class.

    Args:
        scores: (N, C) logits or probabilities.
        targets: (N, C) multi-hot ground truth (0/1).

    Returns:
        (C,) float64 `sklearn.metrics.roc_auc_score(targets[:, k], scores[:, k])`; NaN for classes without a
        positive or without a negative clip.
    """
    return _roc_auc(*_check_multi_label(scores, targets))


def d_prime(auc: float) -> float:
    """Sensitivity index sqrt(2) * Phi^-1(auc) of an AUC (Phi: standard normal CDF); +-inf at 1 and 0, NaN for NaN."""
    if math.isnan(auc):
        return math.nan
    if not 0.0 <= auc <= 1.0:
        raise ValueError(f"an AUC lies in [0, 1], got {auc}")
    if auc in (0.0, 1.0):
        return math.copysign(math.inf, auc - 0.5)
    return math.sqrt(2.0) * statistics.NormalDist().inv_cdf(auc)


def multi_label_metrics(scores: _ArrayLike, targets: _ArrayLike) -> MultiLabelMetrics:
    """All multi-label metrics of the AST recipes.

    Args:
        scores: (N, C) logits or sigmoid probabilities.
        targets: (N, C) multi-hot ground truth (0/1).

    Returns:
        `MultiLabelMetrics`; means are over the classes with at least one positive and one negative clip.
        `accuracy` is the original's Speech Commands accuracy read on multi-hot targets: the argmax class is correct
        if it is any of the clip's positive labels (for one-hot targets, ordinary accuracy; clips without labels
        count as misses).
    """
    score_array, target_array = _check_multi_label(scores, targets)
    average_precision = _average_precision(score_array, target_array)
    roc_auc = _roc_auc(score_array, target_array)
    scored = ~np.isnan(roc_auc)  # AUC is defined exactly when a class has positives and negatives
    mean_auc = float(np.mean(roc_auc[scored])) if scored.any() else math.nan
    top = np.argmax(score_array, axis=1)
    return MultiLabelMetrics(
        average_precision=average_precision,
        roc_auc=roc_auc,
        excluded_classes=tuple(int(k) for k in np.flatnonzero(~scored)),
        mean_average_precision=float(np.mean(average_precision[scored])) if scored.any() else math.nan,
        mean_roc_auc=mean_auc,
        d_prime=d_prime(mean_auc),
        accuracy=float(np.mean(target_array[np.arange(len(top)), top])),
    )


def _class_indices(scores: _ArrayLike, labels: _ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    """Validated (N, C) scores and (N,) class ids from (N,) ids or (N, C) one-hot / soft targets (argmax, as the
    original code)."""
    score_array = _as_float_array(scores, "scores")
    if score_array.ndim != 2 or score_array.shape[0] == 0:
        raise ValueError(f"scores must have shape (num_clips, num_classes) with num_clips > 0, got {score_array.shape}")
    label_array = _as_float_array(labels, "labels")
    if label_array.ndim == 2:
        if label_array.shape != score_array.shape:
            raise ValueError(f"2-D labels must match the scores' shape {score_array.shape}, got {label_array.shape}")
        return score_array, np.argmax(label_array, axis=1)
    if label_array.ndim != 1 or label_array.shape[0] != score_array.shape[0]:
        raise ValueError(
            f"labels must have shape ({score_array.shape[0]},) or {score_array.shape}, got {label_array.shape}"
        )
    num_classes = score_array.shape[1]
    if np.any(label_array != np.round(label_array)) or np.any((label_array < 0) | (label_array >= num_classes)):
        raise ValueError(f"class ids must be integers in [0, {num_classes}), got values outside that range")
    return score_array, label_array.astype(np.int64)


def top_k_accuracy(scores: _ArrayLike, labels: _ArrayLike, k: int = 1) -> float:
    """Fraction of clips whose true class is among the `k` highest scores.

    Args:
        scores: (N, C) logits or probabilities.
        labels: (N,) class ids, or (N, C) one-hot targets.
        k: number of guesses; capped at C.

    Ties at the k-th score are broken by class index (lower first), like a stable sort (scikit-learn's
    `top_k_accuracy_score` breaks them the other way).
    """
    if k < 1:
        raise ValueError(f"k must be at least 1, got {k}")
    score_array, label_ids = _class_indices(scores, labels)
    top = np.argsort(-score_array, axis=1, kind="stable")[:, :k]
    return float(np.mean(np.any(top == label_ids[:, None], axis=1)))


def accuracy(scores: _ArrayLike, labels: _ArrayLike) -> float:
    """Top-1 accuracy: (N, C) scores against (N,) class ids or (N, C) one-hot targets."""
    return top_k_accuracy(scores, labels, k=1)


def _logits(prediction: EvalPrediction) -> np.ndarray:
    """The model's first output (logits) from an `EvalPrediction` whose predictions may be a tuple."""
    predictions = prediction.predictions
    return np.asarray(predictions[0] if isinstance(predictions, (tuple, list)) else predictions)


def _multi_label_dict(prediction: EvalPrediction, id2label: Mapping[int, str] | None) -> dict[str, float]:
    """mAP, mAUC, d_prime, accuracy and the number of excluded classes; excluded classes are logged by name."""
    result = multi_label_metrics(_logits(prediction), prediction.label_ids)
    if result.excluded_classes:
        lookup = {int(key): value for key, value in (id2label or {}).items()}
        names = [lookup.get(k, str(k)) for k in result.excluded_classes]
        shown = list_names(names, 10)
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
    if problem_type == _MULTI_LABEL:
        return lambda prediction: _multi_label_dict(prediction, id2label)
    if problem_type in (_SINGLE_LABEL, None):
        return _single_label_dict
    raise ValueError(f"problem_type must be {_SINGLE_LABEL!r} or {_MULTI_LABEL!r}, got {problem_type!r}")
