from __future__ import annotations

import cv2
import numpy as np
import pytest
import soundfile
from calibration_models import IMAGE, MAX_LENGTH, SAMPLE_RATE, WINDOW, Items

from fusionrt.calibration import CalibrationSet, CalibrationWarning, FeedsReader, reader_for
from fusionrt.errors import CalibrationError


def _tone(freq: float, rate: int, seconds: float = 0.2, channels: int = 1) -> np.ndarray:
    t = np.arange(int(rate * seconds)) / rate
    wave = (0.5 * np.sin(2 * np.pi * freq * t)).astype(np.float32)
    return np.stack([wave] * channels, axis=1) if channels > 1 else wave


def _calibration_dir(root, good_images: int = 4):
    rng = np.random.default_rng(0)
    (root / "images").mkdir(parents=True)
    for k in range(good_images):
        size = (40 + 10 * k, 30 + 5 * k)
        image = rng.integers(0, 256, (*size, 3), dtype=np.uint8)
        cv2.imwrite(str(root / "images" / f"img{k}.{'png' if k % 2 else 'jpg'}"), image)
    cv2.imwrite(str(root / "images" / "gray.png"), rng.integers(0, 256, (20, 20), dtype=np.uint8))
    (root / "images" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really a png")
    (root / "images" / "notes.txt").write_text("ignored: not an image suffix")
    (root / "audio").mkdir()
    soundfile.write(root / "audio" / "native.wav", _tone(300, SAMPLE_RATE), SAMPLE_RATE)
    soundfile.write(root / "audio" / "usb_mic.wav", _tone(440, 44100, channels=2), 44100)
    soundfile.write(root / "audio" / "speech.flac", _tone(1000, SAMPLE_RATE, seconds=0.05), SAMPLE_RATE)
    (root / "audio" / "broken.wav").write_bytes(b"RIFF\x00\x00\x00\x00WAVEjunk")
    (root / "text.txt").write_text("the red cat\n\nbig dog runs\nthe small blue dog sits\n", encoding="utf-8")
    return root


def test_directory_is_read_resized_resampled_and_corrupt_files_are_skipped(tmp_path, bundle):
    root = _calibration_dir(tmp_path / "calib")
    with pytest.warns(CalibrationWarning) as caught:
        calib = CalibrationSet.from_directory(root, bundle, n=10, min_items=2)
    messages = [str(w.message) for w in caught]
    assert any("images/broken.png" in m for m in messages)
    assert any("audio/broken.wav" in m for m in messages)
    assert any("usb_mic.wav" in m and "44100 Hz" in m and f"{SAMPLE_RATE} Hz" in m for m in messages)
    assert {s.path.rsplit("/", 1)[-1] for s in calib.skipped} == {"broken.png", "broken.wav"}

    assert calib.images.shape == (5, IMAGE, IMAGE, 3) and calib.images.dtype == np.uint8
    assert calib.audio.shape == (3, WINDOW) and calib.audio.dtype == np.float32
    assert sorted(calib.texts) == sorted(["the red cat", "big dog runs", "the small blue dog sits"])
    # the 44.1 kHz stereo tone keeps its pitch after resampling to the bundle's 8 kHz
    with pytest.warns(CalibrationWarning):
        native = CalibrationSet.from_directory(root, bundle, n=10, min_items=2).audio
    spectra = np.abs(np.fft.rfft(native, axis=1))
    peaks = sorted(int(round(np.argmax(s) * SAMPLE_RATE / WINDOW)) for s in spectra)
    assert peaks == [300, 440, 1000]
    # the 50 ms FLAC is zero-padded to the window
    short = next(a for a, p in zip(native, np.argmax(spectra, axis=1)) if round(p * SAMPLE_RATE / WINDOW) == 1000)
    assert np.all(short[400:] == 0) and np.any(short[:400] != 0)


def test_sampling_is_deterministic_and_takes_n_items(tmp_path, bundle):
    root = tmp_path / "calib"
    (root / "images").mkdir(parents=True)
    for k in range(12):
        cv2.imwrite(str(root / "images" / f"{k:02d}.png"), np.full((8, 8, 3), k * 20, np.uint8))
    first = CalibrationSet.from_directory(root, bundle, n=5, min_items=1).images
    again = CalibrationSet.from_directory(root, bundle, n=5, min_items=1).images
    other = CalibrationSet.from_directory(root, bundle, n=5, min_items=1, seed=1).images
    assert first.shape[0] == 5
    assert np.array_equal(first, again)
    assert not np.array_equal(first[:, 0, 0, 0], other[:, 0, 0, 0])


def test_too_few_readable_items_is_an_error_that_counts_them(tmp_path, bundle):
    root = tmp_path / "calib"
    (root / "images").mkdir(parents=True)
    cv2.imwrite(str(root / "images" / "ok.png"), np.zeros((8, 8, 3), np.uint8))
    for name in ("bad1.jpg", "bad2.png"):
        (root / "images" / name).write_bytes(b"garbage")
    with pytest.warns(CalibrationWarning), pytest.raises(CalibrationError) as error:
        CalibrationSet.from_directory(root, bundle, n=8, min_items=3)
    message = str(error.value)
    assert "found 1 readable images" in message and "need at least 3" in message
    assert "bad1.jpg" in message and "bad2.png" in message


@pytest.mark.parametrize("make", ["missing", "empty", "unrelated"])
def test_empty_or_missing_directory_names_it_and_the_layout(tmp_path, bundle, make):
    root = tmp_path / "calib"
    if make != "missing":
        root.mkdir()
    if make == "unrelated":
        (root / "readme.md").write_text("no calibration data here")
    with pytest.raises(CalibrationError, match="images/") as error:
        CalibrationSet.from_directory(root, bundle)
    assert str(root) in str(error.value)


def test_feeds_match_each_components_onnx_inputs(bundle):
    calib = CalibrationSet.from_data(bundle, Items(10, seed=3))
    text = calib.feeds("text_encoder", batch_size=4)
    assert [f["input_ids"].shape for f in text] == [(4, MAX_LENGTH), (4, MAX_LENGTH), (2, MAX_LENGTH)]
    words = len(calib.texts[0].split())
    assert text[0]["attention_mask"][0].sum() == min(words, MAX_LENGTH)
    assert np.all(text[0]["input_ids"][0][text[0]["attention_mask"][0] == 0] == 0)  # [PAD] id
    assert calib.feeds("image_encoder")[0]["image"].dtype == np.uint8
    assert calib.feeds("audio_encoder")[0]["audio"].shape == (8, WINDOW)

    fusion = calib.feeds("fusion", batch_size=10)[0]
    assert list(fusion) == ["text", "image", "audio", "presence"]
    presence = fusion["presence"]
    # rows rotate which modality is missing: text, image, audio, none, text...
    assert presence[:4].tolist() == [[0, 1, 1], [1, 0, 1], [1, 1, 0], [1, 1, 1]]
    assert np.all(fusion["text"][0] == 0) and np.any(fusion["text"][1] != 0)

    reader = reader_for(calib, "image_encoder", batch_size=4)
    assert isinstance(reader, FeedsReader) and len(reader) == 3
    batches = [reader.get_next() for _ in range(4)]
    assert batches[-1] is None and batches[0]["image"].shape[0] == 4
    reader.rewind()
    assert np.array_equal(reader.get_next()["image"], batches[0]["image"])


def test_missing_modality_is_a_clear_error(tmp_path, bundle):
    root = tmp_path / "calib"
    root.mkdir()
    (root / "text.txt").write_text("the cat\nthe dog\n")
    calib = CalibrationSet.from_directory(root, bundle, min_items=2)
    assert calib.counts == {"image": 0, "audio": 0, "text": 2}
    assert not calib.has("image_encoder") and calib.has("text_encoder") and calib.has("fusion")
    with pytest.raises(CalibrationError, match="no image items; add images/"):
        calib.feeds("image_encoder")
    assert calib.feeds("fusion")[0]["presence"][0].tolist() == [1, 0, 0]


def test_a_set_is_built_for_a_bundle_only(bundle):
    with pytest.raises(CalibrationError, match="expected a Bundle or a bundle directory, found dict"):
        CalibrationSet.from_data({"height": 2, "width": 3}, Items(2, seed=0))
    with pytest.raises(CalibrationError, match="unknown component 'image'.*image_encoder"):
        CalibrationSet.from_data(bundle, Items(2, seed=0)).feeds("image")


def test_labelled_directory_aligns_items_and_labels(tmp_path, bundle):
    root = tmp_path / "eval"
    (root / "images").mkdir(parents=True)
    for k in range(3):
        cv2.imwrite(str(root / "images" / f"{k}.png"), np.full((8, 8, 3), 60 * k, np.uint8))
    (root / "labels.txt").write_text("a\nc\n1\n")
    data = CalibrationSet.from_labelled_directory(root, bundle)
    assert data.labels.tolist() == [0, 2, 1]
    assert data.images[:, 0, 0, 0].tolist() == [0, 60, 120]
    (root / "labels.txt").write_text("a\nb\n")
    with pytest.raises(CalibrationError, match="3 images items for 2 labels"):
        CalibrationSet.from_labelled_directory(root, bundle)


def test_builtin_digits(bundle):
    pytest.importorskip("fusionrt.data")
    calib = CalibrationSet.from_digits(bundle, "val", 6)
    assert calib.counts == {"image": 6, "audio": 6, "text": 6}
    assert calib.images.shape == (6, IMAGE, IMAGE, 3) and calib.audio.shape == (6, WINDOW)
    assert calib.labels.shape == (6,)


def test_calibration_imports_no_torch():
    import subprocess
    import sys

    code = (
        "import sys, fusionrt.calibration;"
        "bad = [m for m in ('torch', 'transformers') if m in sys.modules]; assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_a_bundle_directory_is_accepted_as_target(tmp_path, pristine_bundle):
    root = tmp_path / "calib"
    root.mkdir()
    (root / "text.txt").write_text("the cat\nthe dog\nbig dog\n")
    calib = CalibrationSet.from_directory(root, pristine_bundle, min_items=3)
    assert calib.bundle.root == pristine_bundle and calib.feeds("fusion")[0]["text"].shape == (3, 8)
