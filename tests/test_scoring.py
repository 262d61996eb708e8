import numpy as np
import pytest
from sklearn.metrics import f1_score, precision_score, recall_score

from fusionrt.scoring import (
    binary_metrics,
    classification_metrics,
    predicted_classes,
    regression_metrics,
    task_metrics,
)


def test_classification_metrics_match_sklearn():
    rng = np.random.default_rng(0)
    y_true = rng.integers(0, 4, 200)
    y_pred = np.where(rng.random(200) < 0.7, y_true, rng.integers(0, 4, 200))
    labels = ("a", "b", "c", "d")
    m = classification_metrics(y_true, y_pred, labels)
    assert m["accuracy"] == pytest.approx(np.mean(y_true == y_pred))
    assert m["macro_f1"] == pytest.approx(f1_score(y_true, y_pred, average="macro"))
    recalls = recall_score(y_true, y_pred, average=None)
    assert [m["per_class_recall"][k] for k in labels] == pytest.approx(list(recalls))


def test_absent_class_has_no_recall():
    m = classification_metrics(np.array([0, 0, 1]), np.array([0, 1, 1]), ("x", "y", "z"))
    assert m["per_class_recall"]["z"] is None
    assert m["count"] == 3


def test_regression_metrics():
    m = regression_metrics(np.array([1.0, 2.0, 3.0]), np.array([1.0, 2.0, 5.0]))
    assert m["mae"] == pytest.approx(2 / 3)
    assert m["rmse"] == pytest.approx(np.sqrt(4 / 3))


def test_binary_metrics_match_sklearn_for_the_positive_class():
    rng = np.random.default_rng(1)
    y_true = rng.integers(0, 2, 300)
    y_pred = np.where(rng.random(300) < 0.8, y_true, 1 - y_true)
    m = binary_metrics(y_true, y_pred, ("no", "yes"))
    assert m["accuracy"] == pytest.approx(np.mean(y_true == y_pred))
    assert m["precision"] == pytest.approx(precision_score(y_true, y_pred))
    assert m["recall"] == pytest.approx(recall_score(y_true, y_pred)) == pytest.approx(m["per_class_recall"]["yes"])
    assert m["f1"] == pytest.approx(f1_score(y_true, y_pred))


def test_a_binary_logit_is_positive_above_zero():
    logits = np.array([[-2.0], [0.5], [0.0], [3.0]])
    assert predicted_classes(logits, "binary").tolist() == [0, 1, 0, 1]
    assert task_metrics(np.array([0, 1, 1, 1]), logits, "binary", ("no", "yes"))["recall"] == pytest.approx(2 / 3)
