import re
import subprocess
import sys
import textwrap

import cv2
import numpy as np
import pytest
from sklearn.datasets import load_digits
from sklearn.linear_model import RidgeClassifier

from fusionrt.config import Config, DataConfig, NoiseConfig
from fusionrt.data import (
    DTMF_HZ,
    LABELS,
    SPLITS,
    DigitsData,
    digit_text,
    digits_from_config,
    glyphs,
    dtmf_tone,
    make_digits,
    render_digit_frame,
    render_glyph,
    split_indices,
    text_vocabulary,
)
from fusionrt.errors import DataError

CLEAN = NoiseConfig(image=0.0, audio=0.0, text=0.0)
NUMERALS = {str(k): k for k in range(10)}
DIGIT_WORDS = {word: k for k, word in enumerate(LABELS)} | NUMERALS


# ------------------------------------------------------------------ cheap single-modality classifiers
def image_features(images: np.ndarray, side: int = 8) -> np.ndarray:
    """Ink map (distance from the border colour), cropped to its bounding box, resized to side x side."""
    out = np.empty((len(images), side * side), np.float32)
    for i, img in enumerate(images.astype(np.float32)):
        border = np.concatenate([img[0], img[-1], img[:, 0], img[:, -1]])
        ink = np.abs(img - np.median(border, axis=0)).max(axis=-1)
        ys, xs = np.nonzero(ink > 0.5 * ink.max())
        crop = ink[ys.min() : ys.max() + 1, xs.min() : xs.max() + 1]
        out[i] = cv2.resize(crop, (side, side), interpolation=cv2.INTER_AREA).ravel() / (crop.max() + 1e-6)
    return out


def audio_decode(audio: np.ndarray, sample_rate: int = 16000) -> np.ndarray:
    """Classic DTMF decoding: the strongest row band and the strongest column band of the spectrum."""
    power = np.abs(np.fft.rfft(audio, axis=1)) ** 2
    hz = np.fft.rfftfreq(audio.shape[1], 1 / sample_rate)
    rows, cols = sorted({r for r, _ in DTMF_HZ}), sorted({c for _, c in DTMF_HZ})

    def strongest(freqs):
        return np.argmax(np.stack([power[:, np.abs(hz - f) <= 4].sum(axis=1) for f in freqs], axis=1), axis=1)

    key = {(rows.index(r), cols.index(c)): label for label, (r, c) in enumerate(DTMF_HZ)}
    return np.array([key.get(rc, -1) for rc in zip(strongest(rows), strongest(cols))])


def text_decode(texts) -> np.ndarray:
    """The first digit word or numeral in the message; -1 when there is none."""
    found = []
    for text in texts:
        hits = [DIGIT_WORDS[w] for w in re.findall(r"[a-z0-9]+", text.lower()) if w in DIGIT_WORDS]
        found.append(hits[0] if hits else -1)
    return np.array(found)


@pytest.fixture(scope="module")
def accuracies():
    """Single-modality test accuracy per noise level (train 500 / test 300 samples), and of "any is right"."""
    result = {}
    for noise in (0.0, 1.0):
        level = NoiseConfig(image=noise, audio=noise, text=noise)
        train = make_digits("train", 500, noise=level, seed=1)
        test = make_digits("test", 300, noise=level, seed=1)
        classifier = RidgeClassifier().fit(image_features(train.images), train.labels)
        correct = {
            "image": classifier.predict(image_features(test.images)) == test.labels,
            "audio": audio_decode(test.audio) == test.labels,
            "text": text_decode(test.texts) == test.labels,
        }
        result[noise] = {name: float(ok.mean()) for name, ok in correct.items()}
        result[noise]["any"] = float((correct["image"] | correct["audio"] | correct["text"]).mean())
    print("single-modality accuracy:", result)
    return result


# ------------------------------------------------------------------------------------------ tests
def test_shapes_and_dtypes():
    data = make_digits("val", 23, image_size=32, sample_rate=8000, audio_samples=4000)
    assert isinstance(data, DigitsData) and len(data) == 23
    assert data.images.shape == (23, 32, 32, 3) and data.images.dtype == np.uint8
    assert data.audio.shape == (23, 4000) and data.audio.dtype == np.float32
    assert np.abs(data.audio).max() <= 1.0
    assert isinstance(data.texts, tuple) and len(data.texts) == 23 and all(isinstance(t, str) for t in data.texts)
    assert data.labels.dtype == np.int64 and set(data.labels.tolist()) == set(range(10))  # balanced
    assert np.bincount(data.labels).max() - np.bincount(data.labels).min() <= 1
    assert render_digit_frame(3, np.random.default_rng(0), size=48).shape == (48, 48, 3)
    assert dtmf_tone(3, np.random.default_rng(0), n_samples=1234).shape == (1234,)
    assert len(make_digits("test", 0)) == 0


def test_same_arguments_give_identical_data_and_seeds_or_splits_differ():
    a, b = make_digits("train", 40, seed=7), make_digits("train", 40, seed=7)
    assert np.array_equal(a.images, b.images) and np.array_equal(a.audio, b.audio)
    assert a.texts == b.texts and np.array_equal(a.labels, b.labels)
    for other in (make_digits("train", 40, seed=8), make_digits("val", 40, seed=7)):
        assert not np.array_equal(a.images, other.images)
        assert not np.array_equal(a.audio, other.audio)
    frame = render_digit_frame(5, np.random.default_rng(3))
    assert np.array_equal(frame, render_digit_frame(5, np.random.default_rng(3)))


def test_one_modalitys_noise_leaves_the_others_untouched():
    base = make_digits("train", 30, seed=2)
    louder = make_digits("train", 30, seed=2, noise=NoiseConfig(image=2.0, audio=1.0, text=0.0))
    assert np.array_equal(base.labels, louder.labels) and np.array_equal(base.audio, louder.audio)
    assert not np.array_equal(base.images, louder.images) and base.texts != louder.texts


def test_splits_partition_the_sklearn_images_disjointly():
    parts = {split: split_indices(split) for split in SPLITS}
    assert sum(len(p) for p in parts.values()) == 1797
    assert len(np.unique(np.concatenate(list(parts.values())))) == 1797
    targets = load_digits().target
    for split, index in parts.items():
        assert set(targets[index].tolist()) == set(range(10)), split
    assert np.array_equal(parts["test"], split_indices("test"))


def test_frames_come_only_from_their_splits_images():
    glyphs = load_digits().images / 16.0
    rng = np.random.default_rng(0)
    canonical = {render_glyph(g, rng, size=24, noise=0.0).tobytes(): i for i, g in enumerate(glyphs)}
    assert len(canonical) == len(glyphs)  # a clean frame identifies its sklearn image
    for split in SPLITS:
        allowed = set(split_indices(split).tolist())
        data = make_digits(split, 60, image_size=24, noise=CLEAN, seed=4)
        frames = [*data.images, *(render_digit_frame(k % 10, rng, size=24, noise=0.0, split=split) for k in range(30))]
        used = {canonical[f.tobytes()] for f in frames}
        assert used <= allowed, split


@pytest.mark.parametrize("sample_rate", [16000, 8000])
def test_clean_dtmf_peaks_at_the_keypad_row_and_column(sample_rate):
    for label, (row_hz, col_hz) in enumerate(DTMF_HZ):
        tone = dtmf_tone(label, np.random.default_rng(label), sample_rate=sample_rate, n_samples=sample_rate, noise=0.0)
        spectrum = np.abs(np.fft.rfft(tone))
        hz = np.fft.rfftfreq(len(tone), 1 / sample_rate)
        low, high = hz < 1100, hz >= 1100
        assert hz[low][np.argmax(spectrum[low])] == pytest.approx(row_hz, abs=1.0), label
        assert hz[high][np.argmax(spectrum[high])] == pytest.approx(col_hz, abs=1.0), label
        assert np.sort(spectrum)[-3] < 0.05 * spectrum.max()  # nothing else of note
    assert DTMF_HZ[0] == (941.0, 1336.0) and DTMF_HZ[9] == (852.0, 1477.0)


def test_noisy_tone_may_be_silent_at_the_window_edges():
    tones = make_digits("test", 200, seed=5).audio
    edge = int(0.1 * tones.shape[1])
    quiet_start = np.abs(tones[:, :edge]).max(axis=1) < 0.25
    assert 0 < quiet_start.mean() < 1  # some tones start inside the window


def test_clean_text_names_the_digit_with_known_words():
    vocabulary = set(text_vocabulary())
    assert set(LABELS) <= vocabulary and set(NUMERALS) <= vocabulary
    assert all(w == w.lower() and re.fullmatch(r"[a-z0-9]+", w) for w in vocabulary)
    rng = np.random.default_rng(0)
    for k in range(300):
        text = digit_text(k % 10, rng, noise=0.0)
        words = re.findall(r"[a-z0-9]+", text.lower())
        assert LABELS[k % 10] in words or str(k % 10) in words, text
        assert set(words) <= vocabulary, text


def test_noisy_text_has_typos_and_digitless_messages():
    vocabulary = set(text_vocabulary())
    texts = make_digits("train", 400, seed=6).texts
    words = [w for t in texts for w in re.findall(r"[a-z0-9]+", t.lower())]
    unknown = sum(w not in vocabulary for w in words) / len(words)
    assert 0.01 < unknown < 0.15  # typos
    assert 0.05 < np.mean(text_decode(texts) == -1) < 0.3  # no digit at all


def test_default_noise_makes_every_modality_imperfect(accuracies):
    for name in ("image", "audio", "text"):
        clean, noisy = accuracies[0.0][name], accuracies[1.0][name]
        assert clean >= 0.9, (name, clean)
        assert 0.3 < noisy < 0.9, (name, noisy)
        assert noisy < clean - 0.1, (name, clean, noisy)
    assert accuracies[0.0]["audio"] == 1.0 and accuracies[0.0]["text"] == 1.0


def test_corruptions_are_independent_so_fusion_can_recover(accuracies):
    assert accuracies[1.0]["any"] > 0.93  # some modality is right for almost every sample


def test_digits_from_config_uses_config_sizes():
    config = Config(data=DataConfig(seed=3, train_size=5, val_size=7, test_size=9, noise=CLEAN))
    data = digits_from_config(config, "val")
    assert len(data) == 7 and data.images.shape[1:] == (64, 64, 3) and data.audio.shape[1] == 16000
    assert np.array_equal(data.audio, make_digits("val", 7, noise=CLEAN, seed=3).audio)


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda: make_digits("holdout", 3), "split = 'holdout'"),
        (lambda: make_digits("train", -1), "n = -1"),
        (lambda: render_digit_frame(10, np.random.default_rng(0)), "label = 10"),
        (lambda: render_digit_frame(1, np.random.default_rng(0), size=8), "image size = 8"),
        (lambda: dtmf_tone(1, np.random.default_rng(0), noise=-1.0), "audio noise = -1.0"),
        (lambda: dtmf_tone(1, np.random.default_rng(0), sample_rate=2000), "sample_rate = 2000"),
        (lambda: digit_text(1, np.random.default_rng(0), noise=float("nan")), "text noise = nan"),
    ],
)
def test_bad_arguments_raise_data_error(call, match):
    with pytest.raises(DataError, match=match):
        call()


def test_shipped_glyphs_are_sklearns_digits():
    ink, labels = glyphs()
    digits = load_digits()
    assert ink.dtype == np.float32 and not ink.flags.writeable and labels.dtype == np.int64
    assert np.array_equal(ink, (digits.images / 16.0).astype(np.float32))
    assert np.array_equal(labels, digits.target)


def test_test_sources_run_without_scikit_learn():
    """The runtime-only install has no scikit-learn (nor torch): test://digits and test://dtmf still run."""
    child = textwrap.dedent("""
        import sys
        sys.modules["sklearn"] = None  # any `import sklearn...` now raises ImportError
        sys.modules["torch"] = None
        from itertools import islice
        from fusionrt.runtime.sources.uri import open_source
        for uri, modality in (("test://digits", "image"), ("test://digits", "text"), ("test://dtmf", "audio")):
            source = open_source(uri, modality)
            frames = list(islice(source.frames(), 3))
            source.close()
            assert len(frames) == 3, (uri, modality)
        print("ok", frames[0].modality)
    """)
    done = subprocess.run([sys.executable, "-c", child], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("ok")
