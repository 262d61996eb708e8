import numpy as np
import pytest
from sklearn.metrics import f1_score, recall_score

from fusionrt.scoring import classification_metrics, regression_metrics


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
