"""Calibration and evaluation feed each component exactly what the runtime feeds it for the same
input: the runtime's host preprocessors (image resize + channel order, audio windows, tokenization)
and its fusion-feed builder, per modality, on real ONNX bundles."""

from __future__ import annotations

from types import SimpleNamespace

import cv2
import numpy as np
import pytest
import soundfile
from calibration_models import EMBED, IMAGE, SAMPLE_RATE, WINDOW, Items, write_bundle

from fusionrt.bundle import load
from fusionrt.calibration import BundleRunner, CalibrationSet, evaluate, quantize_bundle
from fusionrt.runtime.engine import OrtEngine
from fusionrt.runtime.fusion_feeds import fusion_feeds
from fusionrt.runtime.preprocess import PcmWindows, fit_window, host_preprocessor


@pytest.fixture(scope="module")
def bundles(tmp_path_factory):
    """A BGR image bundle and an RGB one whose text encoder also takes token_type_ids."""
    root = tmp_path_factory.mktemp("feeds")
    return {
        "bgr": load(write_bundle(root / "bgr")),
        "rgb": load(write_bundle(root / "rgb", channel_order="rgb", token_type_ids=True)),
    }


def _frames() -> list[np.ndarray]:
    """BGR frames of other sizes than the model's (shrunk, enlarged, non-square), channels unlike each other."""
    rng = np.random.default_rng(4)
    frames = []
    for height, width in ((37, 53), (9, 12), (120, 90)):
        frame = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
        frame[..., 0] //= 4  # blue dim, red bright: a swapped channel order shows
        frames.append(frame)
    return frames


@pytest.mark.parametrize("order", ["bgr", "rgb"])
def test_image_feeds_are_the_runtime_preprocessors(bundles, order, tmp_path):
    bundle = bundles[order]
    encoder = bundle.encoder("image")
    pre = host_preprocessor(encoder.input)
    frames = _frames()
    feeds = CalibrationSet.from_data(bundle, SimpleNamespace(images=frames)).feeds(encoder.name, batch_size=8)
    assert len(feeds) == 1 and list(feeds[0]) == ["image"]
    for i, frame in enumerate(frames):
        np.testing.assert_array_equal(feeds[0]["image"][i : i + 1], pre(frame)["image"])
    # the model's channel order, checked without the preprocessor
    resized = cv2.resize(frames[0], (IMAGE, IMAGE), interpolation=cv2.INTER_AREA)
    np.testing.assert_array_equal(feeds[0]["image"][0], resized[..., ::-1] if order == "rgb" else resized)
    # a file read from a calibration directory is fed the same
    (tmp_path / "images").mkdir()
    cv2.imwrite(str(tmp_path / "images" / "frame.png"), frames[0])
    from_file = CalibrationSet.from_directory(tmp_path, bundle, n=1, min_items=1).feeds(encoder.name)
    np.testing.assert_array_equal(from_file[0]["image"], pre(frames[0])["image"])


def test_audio_feeds_are_the_window_the_runtime_cuts(bundles, tmp_path):
    bundle = bundles["bgr"]
    encoder = bundle.encoder("audio")
    pre = host_preprocessor(encoder.input)
    rng = np.random.default_rng(5)
    long = rng.uniform(-0.5, 0.5, WINDOW * 3 // 2).astype(np.float32)
    short = rng.uniform(-0.5, 0.5, WINDOW * 2 // 5).astype(np.float32)
    short[7] = np.nan  # the runtime replaces non-finite samples with 0
    clips = [long, short, long[:WINDOW]]
    feeds = CalibrationSet.from_data(bundle, SimpleNamespace(audio=clips)).feeds(encoder.name, batch_size=8)[0]
    assert list(feeds) == ["audio"] and feeds["audio"].dtype == np.float32
    for i, clip in enumerate(clips):
        np.testing.assert_array_equal(feeds["audio"][i : i + 1], pre(fit_window(clip, WINDOW))["audio"])
    assert feeds["audio"][1, 7] == 0 and np.all(feeds["audio"][1, len(short):] == 0)
    # the streaming runtime's first window of the long clip holds the same samples
    windows = PcmWindows(SAMPLE_RATE, WINDOW, encoder.input.hop_samples, newest_only=False)
    windows.append(long, t_ns=1_000_000_000)
    first = windows.take()[0]
    np.testing.assert_array_equal(feeds["audio"][0:1], pre(first)["audio"])
    # a WAV file at the bundle's rate gives the same window
    (tmp_path / "audio").mkdir()
    soundfile.write(tmp_path / "audio" / "clip.wav", long, SAMPLE_RATE, subtype="FLOAT")
    from_file = CalibrationSet.from_directory(tmp_path, bundle, n=1, min_items=1).feeds(encoder.name)
    np.testing.assert_array_equal(from_file[0]["audio"], feeds["audio"][0:1])


@pytest.mark.parametrize("order", ["bgr", "rgb"])
def test_text_feeds_are_the_runtime_tokenizer(bundles, order):
    bundle = bundles[order]
    encoder = bundle.encoder("text")
    pre = host_preprocessor(encoder.input)
    texts = ("the red cat", "big dog runs and the small cat sits on the blue dog", "zebra sits")
    feeds = CalibrationSet.from_data(bundle, SimpleNamespace(texts=texts)).feeds(encoder.name, batch_size=8)[0]
    assert list(feeds) == [spec.name for spec in encoder.inputs]
    assert ("token_type_ids" in feeds) == (order == "rgb")
    for i, text in enumerate(texts):
        one = pre(text)
        assert list(one) == list(feeds)
        for name in feeds:
            np.testing.assert_array_equal(feeds[name][i : i + 1], one[name])
    if "token_type_ids" in feeds:
        assert feeds["token_type_ids"].shape == feeds["input_ids"].shape and not feeds["token_type_ids"].any()
    assert OrtEngine(encoder.variant("fp32").path).run(feeds)["embedding"].shape == (len(texts), EMBED)


def _runtime_embeddings(bundle, items) -> dict[str, np.ndarray]:
    """What the runtime's encoder stages hand the fusion stage: one item at a time, preprocessed and encoded."""
    raw = {"image": items.images, "audio": [fit_window(a, WINDOW) for a in items.audio], "text": items.texts}
    embeddings = {}
    for encoder in bundle.encoders:
        pre, engine = host_preprocessor(encoder.input), OrtEngine(encoder.variant("fp32").path)
        embeddings[encoder.modality] = np.stack([engine.run(pre(x))["embedding"][0] for x in raw[encoder.modality]])
    return embeddings


def _assert_rows_are_runtime_feeds(bundle, feeds, embeddings) -> None:
    """Each row equals what the runtime's fusion stage builds from the embeddings present in that row."""
    widths = {m: bundle.embedding_dim(m) for m in bundle.modalities}
    for i in range(len(feeds["presence"])):
        present = [m for k, m in enumerate(bundle.modalities) if feeds["presence"][i, k]]
        expected = fusion_feeds(bundle.modalities, widths, {m: embeddings[m][i] for m in present}, count=1)
        assert list(feeds) == list(expected)
        for name in expected:
            np.testing.assert_allclose(feeds[name][i : i + 1], expected[name], rtol=1e-5, atol=1e-6)


def test_fusion_feeds_are_what_the_runtime_builds_from_the_same_embeddings(bundles):
    bundle = bundles["bgr"]
    items = Items(8, seed=5)
    embeddings = _runtime_embeddings(bundle, items)
    calib = CalibrationSet.from_data(bundle, items)
    feeds = calib.feeds(bundle.fusion.name, batch_size=8)[0]
    # calibration rotates which modality is missing: text, image, audio, none, text...
    assert feeds["presence"][:4].tolist() == [[0, 1, 1], [1, 0, 1], [1, 1, 0], [1, 1, 1]]
    _assert_rows_are_runtime_feeds(bundle, feeds, embeddings)
    # evaluation: every row complete, or a modality the data lacks fed as missing
    no_audio = CalibrationSet(bundle, images=calib.images, texts=calib.texts, labels=np.zeros(8, np.int64))
    evaluation = BundleRunner(bundle, no_audio).fusion_feeds()
    assert evaluation["presence"].tolist() == [[1, 1, 0]] * 8
    _assert_rows_are_runtime_feeds(bundle, evaluation, embeddings)


def test_components_are_found_by_role_not_by_name(tmp_path):
    names = {"text_encoder": "words", "image_encoder": "vision", "audio_encoder": "ears", "fusion": "head"}
    root = write_bundle(tmp_path / "renamed", names=names)
    bundle = load(root)
    calib = CalibrationSet.from_data(bundle, Items(12, seed=1))
    assert calib.has("vision") and calib.feeds("head")[0]["presence"].shape == (8, 3)
    calib.labels = BundleRunner(bundle, calib).logits().argmax(axis=1)
    report = evaluate(bundle, calib, ["fp32"], write=False)
    assert report["variants"]["fp32"]["accuracy"] == 1.0
    assert report["variants"]["fp32"]["components"] == {"words": "fp32", "vision": "fp32", "ears": "fp32", "head": "fp32"}
    quantized = quantize_bundle(root, calib, "int8-dynamic", heldout=calib, components=("head",), latency_runs=2,
                                min_speedup=0.0, repair_nodes=False, progress=lambda line: None)
    assert quantized["components"]["head"]["candidates"][0]["accuracy"] is not None
    assert "int8-dynamic" in load(root).components["head"].variants
