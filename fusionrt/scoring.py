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


def binary_metrics(y_true: np.ndarray, y_pred: np.ndarray, labels: tuple[str, ...]) -> dict:
    """classification_metrics over (negative, positive) plus the positive class's precision, recall and F1."""
    metrics = classification_metrics(y_true, y_pred, labels)
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    tp = int(np.sum((y_pred == 1) & (y_true == 1)))
    positives, predicted = int(np.sum(y_true == 1)), int(np.sum(y_pred == 1))
    precision = tp / predicted if predicted else 0.0
    recall = tp / positives if positives else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {**metrics, "precision": precision, "recall": recall, "f1": f1}


def predicted_classes(outputs: np.ndarray, task: str) -> np.ndarray:
    """Class indices from model outputs [N, K]: argmax, or logit > 0 (sigmoid > 0.5) for a binary task."""
    outputs = np.asarray(outputs)
    if task == "binary":
        return (outputs[:, 0] > 0).astype(np.int64)
    return outputs.argmax(axis=1)


def task_metrics(y_true: np.ndarray, outputs: np.ndarray, task: str, labels: tuple[str, ...]) -> dict:
    """The metrics of a task ("classification", "binary", "regression") from model outputs [N, K]."""
    if task == "regression":
        return regression_metrics(y_true, np.asarray(outputs)[:, 0])
    if task == "binary":
        return binary_metrics(y_true, predicted_classes(outputs, task), labels)
    return classification_metrics(y_true, predicted_classes(outputs, task), labels)


def regression_metrics(y_true: np.ndarray, y_pred: np.ndarray) -> dict:
    err = np.asarray(y_pred, dtype=np.float64) - np.asarray(y_true, dtype=np.float64)
    return {"mae": float(np.mean(np.abs(err))), "rmse": float(np.sqrt(np.mean(err**2))), "count": int(err.size)}
