"""Task metrics in NumPy, shared by training (PyTorch outputs) and evaluation (exported files)."""

from __future__ import annotations

import numpy as np


def classification_metrics(y_true: np.ndarray, y_pred: np.ndarray, labels: tuple[str, ...]) -> dict:
    """Accuracy, macro-F1 and per-class recall; a class absent from y_true has recall NaN -> None."""
    y_true = np.asarray(y_true)
    y_pred = np.asarray(y_pred)
    recalls, f1s = {}, []
    for k, name in enumerate(labels):
        tp = int(np.sum((y_pred == k) & (y_true == k)))
        support = int(np.sum(y_true == k))
        predicted = int(np.sum(y_pred == k))
        recall = tp / support if support else None
        precision = tp / predicted if predicted else 0.0
        recalls[name] = recall
        if support:
            r = recall or 0.0
            f1s.append(2 * precision * r / (precision + r) if precision + r else 0.0)
    return {
        "accuracy": float(np.mean(y_true == y_pred)) if len(y_true) else 0.0,
        "macro_f1": float(np.mean(f1s)) if f1s else 0.0,
        "per_class_recall": recalls,
        "count": int(len(y_true)),
    }


def regression_metrics(y_true: np.ndarray, y_pred: np.ndarray) -> dict:
    err = np.asarray(y_pred, dtype=np.float64) - np.asarray(y_true, dtype=np.float64)
    return {"mae": float(np.mean(np.abs(err))), "rmse": float(np.sqrt(np.mean(err**2))), "count": int(err.size)}
