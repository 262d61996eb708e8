"""Host preprocessing, the stages on real ONNX Runtime sessions, bounded inputs and the contracts the
stages rely on: the manifest's, checked by the bundle loader, and the model file's, checked by the stage."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
from runtime_models import (
    IMAGE_SIZE, LABELS, MAX_LENGTH, SAMPLE_RATE, TABLE, WINDOW, audio_embedding, fused_logits, image_embedding,
    image_encoder, write_bundle,
)  # fmt: skip

from fusionrt.bundle import TensorSpec, load, write_manifest
from fusionrt.errors import BundleError, ConfigError, DataError, EngineError
from fusionrt.frame import Frame, Modality
from fusionrt.runtime.engine import OrtEngine
from fusionrt.runtime.inboxes import CLOSED, FifoQueue, LatestSlot
from fusionrt.runtime.preprocess import PcmWindows, TextTokenizer, clean_audio, resize_image
from fusionrt.runtime.results import softmax
from fusionrt.runtime.stages import EncoderStage, FusionStage, check_engine_io, faster_order


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    return load(write_bundle(tmp_path_factory.mktemp("bundle") / "b"))


def stage_of(bundle, modality: str, **kw) -> EncoderStage:
    component = bundle.encoder(modality)
    return EncoderStage(component, [("fp32", OrtEngine(component.variant().path, threads=1))], **kw)


def fusion_of(bundle) -> FusionStage:
    head = bundle.fusion
    return FusionStage(head, [("fp32", OrtEngine(head.variant().path, threads=1))], contract=bundle.fusion_input,
                       labels=bundle.labels, top_k=2)


def rewritten(root, change):
    """The bundle at root with its manifest changed by `change(manifest)` (and rehashed)."""
    manifest = json.loads((root / "manifest.json").read_text())
    change(manifest)
    write_manifest(root, manifest)
    return root


# -- preprocessing -------------------------------------------------------------------------------


def test_resize_matches_opencv_inter_area_and_adds_the_batch_dim():
    frame = np.random.default_rng(0).integers(0, 256, (480, 640, 3), dtype=np.uint8)
    out = resize_image(frame, 64, 48)
    assert out.shape == (1, 64, 48, 3) and out.dtype == np.uint8 and out.flags.c_contiguous
    np.testing.assert_array_equal(out[0], cv2.resize(frame, (48, 64), interpolation=cv2.INTER_AREA))
    np.testing.assert_array_equal(resize_image(frame, 64, 48, "rgb")[0], out[0][:, :, ::-1])
    small = frame[:8, :8]
    np.testing.assert_array_equal(resize_image(small, 8, 8)[0], small)  # already at size: untouched


@pytest.mark.parametrize(
    "frame",
    [np.zeros((8, 8), np.uint8), np.zeros((8, 8, 4), np.uint8), np.zeros((8, 8, 3), np.float32),
     np.zeros((0, 8, 3), np.uint8), "not an image"],
)  # fmt: skip
def test_unusable_frames_raise_data_error(frame):
    with pytest.raises(DataError, match="camera frame"):
        resize_image(frame, 8, 8)


def test_clean_audio_zeroes_nonfinite_samples_and_refuses_non_audio():
    chunk = np.array([0.5, np.nan, -np.inf, 0.25], np.float32)
    cleaned, repaired = clean_audio(chunk)
    assert repaired and cleaned.tolist() == [0.5, 0.0, 0.0, 0.25]
    same, repaired = clean_audio(np.ones((3, 1), np.float64))
    assert not repaired and same.dtype == np.float32 and same.shape == (3,)
    for bad in (np.zeros((4, 2), np.float32), np.zeros(4, np.int16), [0.0]):
        with pytest.raises(DataError, match="audio chunk"):
            clean_audio(bad)


def reference_windows(stream: np.ndarray, window: int, hop: int) -> list[np.ndarray]:
    return [stream[k : k + window] for k in range(0, len(stream) - window + 1, hop)]


def test_pcm_windows_in_order_cut_every_hop_with_the_time_of_the_last_sample():
    stream = np.random.default_rng(0).standard_normal(3_000).astype(np.float32)
    windows = PcmWindows(SAMPLE_RATE, window=200, hop=100, newest_only=False)
    taken, sizes, position = [], [7, 20, 13, 1_500, 20], 0  # one chunk far larger than the ring
    while position < len(stream):
        size = sizes[len(taken) % len(sizes)] if position + 1_500 < len(stream) else len(stream) - position
        chunk = stream[position : position + size]
        position += size
        windows.append(chunk, t_ns=position * 1_000_000, label=position)  # 1 kHz: sample i at i ms
        while windows.ready():
            taken.append(windows.take())
    expected = reference_windows(stream, 200, 100)
    assert len(taken) == len(expected) == 29
    for k, (samples, t_ns, index, label, superseded) in enumerate(taken):
        np.testing.assert_array_equal(samples, expected[k])
        assert index == k and superseded == 0
        assert t_ns == (k * 100 + 200) * 1_000_000  # capture time of sample k*100 + 199, i.e. its end
        assert label >= k * 100 + 200  # label of the chunk holding the window's last sample


def test_pcm_windows_newest_only_jumps_ahead_and_stays_bounded():
    stream = np.random.default_rng(1).standard_normal(20_000).astype(np.float32)
    windows = PcmWindows(SAMPLE_RATE, window=200, hop=100, newest_only=True)
    for i in range(0, 10_000, 20):
        windows.append(stream[i : i + 20], t_ns=(i + 20) * 1_000_000)
    samples, t_ns, index, _, superseded = windows.take()
    assert index == 98 and superseded == 98  # windows 0..97 were never taken
    np.testing.assert_array_equal(samples, stream[9_800:10_000])
    assert t_ns == 10_000 * 1_000_000
    assert not windows.ready()
    for i in range(10_000, 20_000, 20):
        windows.append(stream[i : i + 20], t_ns=(i + 20) * 1_000_000)
    assert len(windows._buffer) == 2 * 200 + 100  # the ring never grew
    samples, _, index, _, superseded = windows.take()
    np.testing.assert_array_equal(samples, stream[19_800:20_000])
    assert superseded == 99


def write_bert_tokenizer(directory):
    """A transformers fast BERT tokenizer configured like fusionrt.models.build_tokenizer, saved."""
    from transformers import BertTokenizerFast

    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "the", "cat", "sat", "on", "mat", "##s", "seven", "."]
    directory.mkdir()
    (directory / "vocab.txt").write_text("\n".join(vocab) + "\n")
    tokenizer = BertTokenizerFast.from_pretrained(str(directory), local_files_only=True, do_lower_case=True)
    tokenizer.backend_tokenizer.enable_truncation(MAX_LENGTH)
    tokenizer.backend_tokenizer.enable_padding(length=MAX_LENGTH, pad_id=tokenizer.pad_token_id, pad_token="[PAD]")
    out = directory / "saved"
    tokenizer.save_pretrained(str(out))
    return tokenizer, out


def test_runtime_tokenizer_matches_transformers_at_export(tmp_path):
    reference, saved = write_bert_tokenizer(tmp_path / "tok")
    tokenizer = TextTokenizer(saved / "tokenizer.json", MAX_LENGTH)
    for text in ("the cat sat", "The CATS sat on the mat .", "seven", "zebra unknown words", "the " * 20):
        expected = reference(text, padding="max_length", truncation=True, max_length=MAX_LENGTH)
        got = tokenizer(text)
        assert got["input_ids"].dtype == np.int64 and got["input_ids"].shape == (1, MAX_LENGTH)
        assert got["input_ids"][0].tolist() == expected["input_ids"], text
        assert got["attention_mask"][0].tolist() == expected["attention_mask"], text


def test_empty_text_is_bad_input(bundle):
    tokenizer = TextTokenizer(bundle.tokenizer_dir / "tokenizer.json", MAX_LENGTH)
    for text in ("", "   \n", None):
        with pytest.raises(DataError, match="non-empty string"):
            tokenizer(text)


# -- stages on real sessions -----------------------------------------------------------------------


def test_encoder_stages_compute_the_reference_embeddings(bundle):
    image = stage_of(bundle, "image")
    frame = np.random.default_rng(2).integers(0, 256, (32, 24, 3), dtype=np.uint8)
    embedding = image.encode(frame, t_ns=123, seq=4, label=1)
    resized = cv2.resize(frame, (IMAGE_SIZE, IMAGE_SIZE), interpolation=cv2.INTER_AREA)
    np.testing.assert_allclose(embedding.vector, image_embedding(resized), rtol=1e-5, atol=1e-6)
    assert (embedding.t_capture_ns, embedding.seq, embedding.label) == (123, 4, 1)
    assert [s.name for s in embedding.spans] == ["image.preprocess", "image.encode"]
    assert embedding.source_frame is frame and embedding.ms >= embedding.engine_ms > 0

    audio = stage_of(bundle, "audio")
    assert (audio.spec.window_samples, audio.hop_samples, audio.spec.sample_rate) == (WINDOW, 100, SAMPLE_RATE)
    window = np.random.default_rng(3).standard_normal(WINDOW).astype(np.float32)
    np.testing.assert_allclose(audio.encode(window, t_ns=0, seq=0, label=None).vector, audio_embedding(window),
                               rtol=1e-5, atol=1e-5)
    assert stage_of(bundle, "audio", hop_s=0.05).hop_samples == 50

    text = stage_of(bundle, "text")
    vector = text.encode("red cat", t_ns=0, seq=0, label=None).vector
    np.testing.assert_allclose(vector, (TABLE[2] + TABLE[5]) / 2, rtol=1e-6)  # WordLevel ids 2 and 5


def test_fusion_stage_feeds_zeros_and_presence_for_missing_modalities(bundle):
    fusion = fusion_of(bundle)
    fusion.warmup()
    image = np.arange(4, dtype=np.float32)
    outputs, span = fusion.run({Modality.IMAGE: image})
    np.testing.assert_allclose(outputs, fused_logits({"image": image}), rtol=1e-5, atol=1e-6)
    assert span.name == "fusion" and span.end_ns >= span.start_ns
    top = fusion.top(outputs)
    probabilities = softmax(outputs)
    assert len(top) == 2 and top[0][0] == LABELS[int(np.argmax(outputs))]
    assert top[0][1] == pytest.approx(probabilities.max()) and top[0][1] >= top[1][1]


def test_faster_variant_order_depends_on_the_device():
    precisions = {"fp32": "fp32", "fp16": "fp16", "int8": "int8"}
    assert faster_order("fp32", precisions, "cpu") == ["int8"]  # fp16 on CPU computes in fp32
    assert faster_order("fp32", precisions, "gpu") == ["fp16", "int8"]
    assert faster_order("int8", precisions, "gpu") == []


# -- bounded inputs ----------------------------------------------------------------------------------


def frame(seq: int) -> Frame:
    return Frame(Modality.IMAGE, seq, seq, np.zeros((1, 1, 3), np.uint8))


def test_latest_slot_keeps_only_the_newest_frame():
    slot = LatestSlot()
    assert [slot.put(frame(i)) for i in range(3)] == [0, 1, 1]
    assert slot.take(0.01).seq == 2
    assert slot.take(0.01) is None
    slot.put(frame(3))
    slot.close()
    assert slot.take(0.01).seq == 3  # what was queued is still delivered
    assert slot.take(0.01) is CLOSED


def test_fifo_queue_is_bounded_and_can_collapse_to_its_newest():
    queue = FifoQueue(size=2)
    assert [queue.put(frame(i)) for i in range(4)] == [0, 0, 1, 1]
    assert queue.take(0.01).seq == 2
    queue.put(frame(4))
    queue.put(frame(5))
    assert queue.keep_newest() == 1
    assert queue.take(0.01).seq == 5
    queue.close()
    assert queue.take(0.01) is CLOSED


# -- contracts -----------------------------------------------------------------------------------------


def spec(name, dtype, *shape):
    return TensorSpec(name, dtype, tuple(shape))


def test_the_stage_preprocesses_with_the_components_typed_input_spec(tmp_path):
    root = rewritten(write_bundle(tmp_path / "rgb", modalities=("image", "audio"), hop_s=0.05),
                     lambda m: m["components"]["image_encoder"]["preprocessing"].update(channel_order="rgb"))
    bundle = load(root)
    image = stage_of(bundle, "image")
    assert image.spec is bundle.encoder("image").input and image.spec.channel_order == "rgb"
    frame = np.random.default_rng(4).integers(0, 256, (16, 16, 3), dtype=np.uint8)
    resized = cv2.resize(frame, (IMAGE_SIZE, IMAGE_SIZE), interpolation=cv2.INTER_AREA)
    np.testing.assert_allclose(image.encode(frame, t_ns=0, seq=0, label=None).vector,
                               image_embedding(resized[:, :, ::-1]), rtol=1e-5, atol=1e-6)  # fmt: skip
    assert stage_of(bundle, "audio").hop_samples == 50  # the bundle's hop_s
    assert stage_of(bundle, "audio", hop_s=0.02).hop_samples == 20  # the override
    with pytest.raises(ConfigError, match="audio hop = -1"):
        stage_of(bundle, "audio", hop_s=-1)
    with pytest.raises(ConfigError, match="not an encoder"):
        EncoderStage(bundle.fusion, [("fp32", OrtEngine(bundle.fusion.variant().path))])


def test_a_stage_closes_every_engine_it_was_given(bundle, tmp_path):
    component = bundle.encoder("image")
    first, second = (OrtEngine(component.variant().path, threads=1) for _ in range(2))
    stage = EncoderStage(component, [("fp32", first), ("int8", second)])
    assert stage.degrade() == "int8"
    stage.close()
    for engine in (first, second):  # the one DEGRADE left behind too
        with pytest.raises(EngineError, match="closed"):
            engine.run({"image": np.zeros((1, 8, 8, 3), np.uint8)})


@pytest.mark.parametrize(("change", "message"), [
    (lambda m: m["components"]["image_encoder"]["inputs"][0].update(dtype="float32"),
     r"inputs.image is float32 .*; the runtime feeds/reads uint8 with 4 dimensions"),
    (lambda m: m["components"]["image_encoder"]["inputs"][0].update(shape=["batch", 3, 8, 8]),
     r"expected \[batch, H, W, 3\]"),
    (lambda m: m["components"]["image_encoder"]["preprocessing"].update(height=16),
     "preprocessing.height is 16 but the model input takes 8"),
    (lambda m: m["components"]["audio_encoder"]["inputs"][0].update(shape=["batch", 1, 200]),
     "inputs.audio is float32 .* 2 dimensions"),
    (lambda m: m["components"]["text_encoder"]["inputs"][0].update(shape=["batch", 8]),
     "disagree on the sequence length"),
    (lambda m: m["components"]["image_encoder"]["outputs"][0].update(name="features"),
     r"outputs are \['features'\]"),
    (lambda m: m["components"]["fusion"]["inputs"].reverse(),
     r"expected \['text', 'image', 'audio', 'presence'\]"),
    (lambda m: m["components"]["fusion"]["inputs"][3].update(shape=["batch", 4]),
     "presence has width 4; expected 3"),
    (lambda m: m["task"].update(labels=["a", "b"]),
     "returns 3 logits but task.labels has 2 labels"),
])  # fmt: skip
def test_the_loader_refuses_what_the_stages_cannot_feed(tmp_path, change, message):
    root = write_bundle(tmp_path / "b")
    manifest = json.loads((root / "manifest.json").read_text())
    change(manifest)
    with pytest.raises(BundleError, match=message):
        write_manifest(root, manifest)


def test_a_model_file_that_disagrees_with_its_manifest_is_refused(tmp_path):
    engine = OrtEngine(image_encoder(tmp_path / "image.onnx"), threads=1)
    assert engine.input_specs() == (spec("image", "uint8", "batch", 8, 8, 3),)
    outputs = (spec("embedding", "float32", "batch", 4),)
    check_engine_io("image_encoder", engine, (spec("image", "uint8", "batch", 8, 8, 3),), outputs)
    with pytest.raises(BundleError, match="image is uint8 .* in the model file but uint8 \\['batch', 16, 16, 3\\]"):
        check_engine_io("image_encoder", engine, (spec("image", "uint8", "batch", 16, 16, 3),), outputs)
    with pytest.raises(BundleError, match="has inputs \\['image'\\] but the manifest declares \\['frame'\\]"):
        check_engine_io("image_encoder", engine, (spec("frame", "uint8", "batch", 8, 8, 3),), outputs)
    with pytest.raises(BundleError, match="embedding is float32 \\['batch', 4\\] in the model file but float32 "
                                          "\\['batch', 7\\]"):  # fmt: skip
        check_engine_io("image_encoder", engine, (spec("image", "uint8", "batch", 8, 8, 3),),
                        (spec("embedding", "float32", "batch", 7),))
