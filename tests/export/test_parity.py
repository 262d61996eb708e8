import numpy as np
import pytest

from fusionrt.export.parity import compare, parity_inputs


def example():
    rng = np.random.default_rng(0)
    mask = np.ones((2, 6), dtype=np.int64)
    mask[1, 4:] = 0
    return {
        "image": rng.integers(0, 256, (2, 4, 4, 3), dtype=np.uint8),
        "input_ids": rng.integers(5, 30, (2, 6)).astype(np.int64),
        "attention_mask": mask,
        "audio": rng.normal(0.5, 2.0, (2, 4000)).astype(np.float32),
        "presence": np.ones((2, 3), dtype=np.float32),
    }


AXES = {
    "image": {0: "batch"},
    "input_ids": {0: "batch", 1: "sequence"},
    "attention_mask": {0: "batch", 1: "sequence"},
    "audio": {0: "batch"},
    "presence": {0: "batch"},
}


def test_generated_sets_vary_shared_dims_consistently():
    cases = parity_inputs(example(), AXES)
    assert len(cases) == 9 and cases[0]["image"].shape == (2, 4, 4, 3)
    batches = [c["image"].shape[0] for c in cases[1:]]
    assert batches == [1, 2, 3, 1, 2, 3, 1, 2]
    lengths = set()
    for case in cases[1:]:
        assert {v.shape[0] for v in case.values()} == {case["image"].shape[0]}
        assert case["input_ids"].shape == case["attention_mask"].shape
        assert case["image"].shape[1:] == (4, 4, 3) and case["presence"].shape[1] == 3
        assert 1 <= case["input_ids"].shape[1] <= 8
        lengths.add(case["input_ids"].shape[1])
    assert len(lengths) > 2


def test_generated_values_look_like_the_example():
    cases = parity_inputs(example(), AXES)[1:]
    images = np.concatenate([c["image"].ravel() for c in cases])
    assert images.dtype == np.uint8 and images.min() < 20 and images.max() > 235
    ids = np.concatenate([c["input_ids"].ravel() for c in cases])
    assert ids.dtype == np.int64 and ids.min() >= 5 and ids.max() <= 29
    for case in cases:
        mask = case["attention_mask"]
        assert mask[:, 0].all()  # every row keeps at least one token
        assert (np.diff(mask, axis=1) <= 0).all()  # prefix masks: ones then zeros
        assert set(np.unique(case["presence"])) <= {0.0, 1.0} and case["presence"].max(1).min() == 1.0
    audio = np.concatenate([c["audio"].ravel() for c in cases])
    assert audio.mean() == pytest.approx(0.5, abs=0.1) and audio.std() == pytest.approx(2.0, rel=0.05)
    presence = np.concatenate([c["presence"].ravel() for c in cases])
    assert 0 < presence.mean() < 1  # missing modalities get exercised too


def test_generation_is_deterministic():
    first, second = parity_inputs(example(), AXES), parity_inputs(example(), AXES)
    for a, b in zip(first, second):
        for name in a:
            np.testing.assert_array_equal(a[name], b[name])


def test_metrics():
    ref = np.array([[1.0, 2.0], [3.0, 4.0]], dtype=np.float32)
    max_abs, max_rel, cosine = compare(ref, ref + np.array([[0.0, 0.1], [0.0, 0.0]], dtype=np.float32))
    assert max_abs == pytest.approx(0.1, rel=1e-5) and max_rel == pytest.approx(0.05, rel=1e-5)
    assert 0.999 < cosine < 1.0
    assert compare(np.zeros(3), np.zeros(3)) == (0.0, 0.0, 1.0)
    assert compare(np.zeros(3), np.ones(3))[2] == 0.0
    assert compare(np.array([1.0, 0.0]), np.array([-1.0, 0.0]))[2] == pytest.approx(-1.0)
