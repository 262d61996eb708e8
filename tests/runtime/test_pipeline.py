"""The pipeline on real bundles, real ONNX Runtime sessions and real threads: alignment, replay,
overrun policies under genuinely slow engines, failing sources, bad inputs and contracts."""

from __future__ import annotations

import json
import subprocess
import sys
import threading

import numpy as np
import pytest
from runtime_models import (
    LABELS, TABLE, WINDOW, ListSource, audio_embedding, audio_items, camera_items, ctrl_c_after, fused_logits,
    image_embedding,
    image_encoder, write_bundle,
)  # fmt: skip

from fusionrt.bundle import Component, FusionInput, ImageInput, TensorSpec, load, write_manifest
from fusionrt.errors import BundleError, ConfigError, EngineError
from fusionrt.frame import Modality
from fusionrt.runtime.budget import Budget, OverrunPolicy, StageBudget
from fusionrt.runtime.engine import OrtEngine
from fusionrt.runtime.pipeline import Pipeline
from fusionrt.runtime.sinks import JsonlSink
from fusionrt.runtime.sources import Replay
from fusionrt.runtime.stages import EncoderStage, FusionStage
from fusionrt.runtime.trigger import Trigger

DET = Replay.DETERMINISTIC
HEAVY = 10  # 10 x (512 x 512) MatMuls: ~25 ms per image on this CPU


@pytest.fixture(scope="module")
def bundle_dir(tmp_path_factory):
    return write_bundle(tmp_path_factory.mktemp("bundle") / "b")


@pytest.fixture(scope="module")
def heavy_bundle_dir(tmp_path_factory):
    return write_bundle(tmp_path_factory.mktemp("heavy") / "b", heavy_image=HEAVY, fast_int8_image=True)


@pytest.fixture
def closed(monkeypatch):
    """The file names of the OrtEngines closed while the test runs, in order."""
    names = []
    close = OrtEngine.close

    def spy(self):
        names.append(self.path.name)
        close(self)

    monkeypatch.setattr(OrtEngine, "close", spy)
    return names


def superseded(summary) -> int:
    return summary.metrics["drops"].get("image", {}).get("superseded", 0)


def run_collect(pipeline: Pipeline, duration_s=None):
    results = []
    summary = pipeline.run(duration_s=duration_s, on_result=results.append)
    return summary, results


# -- alignment and deterministic replay ---------------------------------------------------------------


def test_fusion_takes_the_freshest_embedding_of_each_modality_within_its_staleness(bundle_dir):
    camera = camera_items(10, 0.1)  # t = 0.0, 0.1, ... 0.9 s
    audio = audio_items(0.5)  # 20 ms chunks up to 0.5 s: windows end at 0.2, 0.3, 0.4, 0.5 s
    texts = [(0.25, "red cat", None), (0.65, "blue dog", None)]
    budget = Budget(text_staleness_s=0.3, audio_staleness_s=0.15)
    sources = {"image": ListSource("image", camera, replay=DET), "audio": ListSource("audio", audio, replay=DET),
               "text": ListSource("text", texts, replay=DET)}  # fmt: skip
    summary, results = run_collect(Pipeline.from_bundle(bundle_dir, sources, budget=budget))

    ms = 1_000_000
    expected = [  # (text capture ms, audio window end ms) fused with the camera frame at 100 * i ms
        (None, None), (None, None), (None, 200), (250, 300), (250, 400),
        (250, 500), (None, 500), (650, None), (650, None), (650, None),
    ]  # fmt: skip
    assert len(results) == 10 and summary.stopped_by == "end_of_stream" and summary.deterministic
    stream = np.concatenate([data for _, data, _ in audio])
    for i, (result, (text_ms, audio_ms)) in enumerate(zip(results, expected)):
        assert result.t_capture_ns == i * 100 * ms and result.trigger == "image"
        assert result.input_t_ns == {"text": text_ms and text_ms * ms, "image": i * 100 * ms,
                                     "audio": audio_ms and audio_ms * ms}  # fmt: skip
        assert result.presence == {"text": text_ms is not None, "image": True, "audio": audio_ms is not None}
        assert result.label == camera[i][2]
        embeddings = {"image": image_embedding(camera[i][1])}
        if text_ms is not None:
            words = {250: (2, 5), 650: (4, 6)}[text_ms]  # red cat / blue dog in the WordLevel vocab
            embeddings["text"] = TABLE[list(words)].mean(axis=0)
        if audio_ms is not None:
            embeddings["audio"] = audio_embedding(stream[audio_ms - WINDOW : audio_ms])  # 1 kHz: sample = ms
        np.testing.assert_allclose(result.outputs, fused_logits(embeddings), rtol=1e-4, atol=1e-5)
        assert result.top_label == LABELS[int(np.argmax(fused_logits(embeddings)))]
    absence = summary.metrics["absence"]
    assert absence == {"audio": {"missing": 2, "stale": 3}, "text": {"missing": 3, "stale": 1}}
    assert summary.metrics["drops_by_reason"] == {r: 0 for r in summary.metrics["drops_by_reason"]}
    assert summary.metrics["stages_ms"]["audio.encode"]["count"] == 4  # every window, none skipped


def deterministic_sources(seed: int = 0):
    return {
        "image": ListSource("image", camera_items(40, 1 / 30, seed=seed), replay=DET),
        "audio": ListSource("audio", audio_items(1.4, seed=seed), replay=DET),
        "text": ListSource("text", [(0.1, "green dog", 1), (0.9, "red", 2)], replay=DET),
    }


def test_deterministic_replay_processes_everything_and_is_bit_identical(bundle_dir, tmp_path):
    files = []
    for run in range(2):
        path = tmp_path / f"run{run}.jsonl"
        pipeline = Pipeline.from_bundle(bundle_dir, deterministic_sources(), sinks=[JsonlSink(path)], threads=2)
        summary = pipeline.run()
        files.append(path.read_bytes())
        assert summary.results == 40
        assert summary.metrics["frames"] == {"image": 40, "audio": 70, "text": 2}
        assert summary.metrics["stages_ms"]["audio.encode"]["count"] == 13  # (1.4 - 0.2) / 0.1 + 1 windows
        assert sum(summary.metrics["drops_by_reason"].values()) == 0
        assert summary.metrics["trigger_handovers"] == []  # the camera file ending is no failure: no handover
    assert files[0] == files[1]
    records = [json.loads(line) for line in files[0].decode().splitlines()]
    assert [r["seq"] for r in records] == list(range(40))
    assert "e2e_ms" not in records[0]  # timings vary run to run, so deterministic files leave them out


def test_fixed_rate_trigger_fuses_on_ticks_in_capture_order(bundle_dir):
    sources = {"audio": ListSource("audio", audio_items(1.0), replay=DET),
               "text": ListSource("text", [(0.0, "cat", 0)], replay=DET)}  # fmt: skip
    summary, results = run_collect(Pipeline.from_bundle(bundle_dir, sources, trigger=Trigger.at_rate(4)))
    assert [r.t_capture_ns for r in results] == [250_000_000, 500_000_000, 750_000_000]
    assert all(r.trigger == "rate" for r in results)
    assert [r.input_t_ns["audio"] for r in results] == [200_000_000, 500_000_000, 700_000_000]
    assert [r.presence["image"] for r in results] == [False] * 3
    assert results[0].label == 0  # the freshest labelled input (the text)
    assert any("no image source" in note for note in summary.metrics["notes"])


def test_deterministic_duration_counts_capture_time(bundle_dir):
    sources = {"image": ListSource("image", camera_items(30, 0.1), replay=DET)}
    summary, results = run_collect(Pipeline.from_bundle(bundle_dir, sources), duration_s=1.0)
    assert summary.stopped_by == "duration" and len(results) == 11  # t = 0.0 ... 1.0 s


# -- realtime threads ---------------------------------------------------------------------------------


def test_realtime_run_fuses_every_camera_frame_at_low_overhead(bundle_dir):
    sources = {"image": ListSource("image", camera_items(15, 0.02, start_s=0.05)), "audio": ListSource("audio", audio_items(0.3)),
               "text": ListSource("text", [(0.0, "red cat", None)])}  # fmt: skip
    summary, results = run_collect(Pipeline.from_bundle(bundle_dir, sources))
    assert summary.stopped_by == "end_of_stream" and not summary.deterministic
    assert len(results) + superseded(summary) == 15  # on an idle machine none is superseded
    assert all(r.presence["text"] and r.presence["image"] for r in results)
    assert results[-1].presence["audio"]
    assert np.median([r.e2e_ms for r in results]) < 33
    assert summary.metrics["overhead_ms"]["p50"] < 5


def test_duration_and_stop_end_a_realtime_run(bundle_dir):
    endless = camera_items(10_000, 0.01)
    summary, _ = run_collect(Pipeline.from_bundle(bundle_dir, {"image": ListSource("image", endless)}), duration_s=0.3)
    assert summary.stopped_by == "duration" and 0.25 < summary.elapsed_s < 1.5
    pipeline = Pipeline.from_bundle(bundle_dir, {"image": ListSource("image", endless)})
    threading.Timer(0.2, pipeline.stop).start()
    summary = pipeline.run()
    assert summary.stopped_by == "stop" and summary.results > 0


def test_ctrl_c_stops_cleanly_with_a_summary(bundle_dir, tmp_path):
    path = tmp_path / "out.jsonl"
    pipeline = Pipeline.from_bundle(bundle_dir, {"image": ListSource("image", camera_items(10_000, 0.01))},
                                    sinks=[JsonlSink(path)])
    with ctrl_c_after(0.3):
        summary = pipeline.run()
    assert summary.stopped_by == "interrupt" and summary.results > 0
    lines = path.read_text().splitlines()
    assert len(lines) == summary.results and all(json.loads(line)["e2e_ms"] >= 0 for line in lines)


def test_a_failing_source_degrades_to_presence_zero_and_is_reported(bundle_dir):
    sources = {"image": ListSource("image", camera_items(50, 0.02)),
               "audio": ListSource("audio", audio_items(1.0), fail_at=20, uri="mic://flaky")}  # fmt: skip
    summary, results = run_collect(Pipeline.from_bundle(bundle_dir, sources))
    assert summary.stopped_by == "end_of_stream" and len(results) + superseded(summary) == 50
    assert summary.metrics["source_failures"] == {"audio": "mic://flaky: the device went away at item 20"}
    assert summary.metrics["drops"]["audio"]["source_error"] == 1
    assert results[-1].presence["audio"] is False
    assert summary.metrics["absence"]["audio"]["source_error"] >= 15
    assert "FAILED: mic://flaky" in summary.table


def test_a_failing_source_in_deterministic_replay_keeps_the_rest_going(bundle_dir):
    sources = {"image": ListSource("image", camera_items(20, 0.05), replay=DET),
               "audio": ListSource("audio", audio_items(1.0), replay=DET, fail_at=25)}  # fmt: skip
    summary, results = run_collect(Pipeline.from_bundle(bundle_dir, sources))
    assert len(results) == 20
    # the chunk after t = 0.5 s fails: frames up to 0.45 s have audio, from 0.5 s on they do not
    assert [r.presence["audio"] for r in results[4:]] == [True] * 6 + [False] * 10
    assert "audio" in summary.metrics["source_failures"]


def test_a_source_whose_capture_time_goes_backwards_is_a_failed_source(bundle_dir):
    frames = camera_items(4, 0.1)
    frames[2] = (0.05, frames[2][1], frames[2][2])
    audio = ListSource("audio", audio_items(0.6), replay=DET)
    sources = {"image": ListSource("image", frames, replay=DET, uri="cam://jumpy"), "audio": audio}
    summary, results = run_collect(Pipeline.from_bundle(bundle_dir, sources, trigger=Trigger.on("audio")))
    assert "cam://jumpy: capture time went backwards at seq 2" in summary.metrics["source_failures"]["image"]
    # the bad frame (t = 0.05 s) comes before the first audio window (0.2 s): from then on no image
    assert [r.presence["image"] for r in results] == [False] * 5


def test_stop_from_on_result_ends_a_deterministic_run(bundle_dir):
    pipeline = Pipeline.from_bundle(bundle_dir, {"image": ListSource("image", camera_items(50, 0.1), replay=DET)})

    def stop_at_ten(result):
        if result.seq == 9:
            pipeline.stop()

    summary = pipeline.run(on_result=stop_at_ten)
    assert summary.stopped_by == "stop" and summary.results == 10


@pytest.mark.parametrize("replay", [Replay.REALTIME, DET])
def test_bad_inputs_are_counted_and_never_crash(bundle_dir, replay):
    good = camera_items(6, 0.02)
    frames = [good[0], (0.02, np.zeros((8, 8), np.uint8), None), (0.04, np.zeros((8, 8, 3), np.float32), None),
              (0.06, np.zeros((8, 8, 4), np.uint8), None), (0.08, np.zeros((32, 40, 3), np.uint8), None),
              *[(t + 0.3, d, lab) for t, d, lab in good[1:]]]  # fmt: skip
    chunks = audio_items(0.4)
    chunks[3] = (chunks[3][0], np.full(20, np.nan, np.float32), None)
    chunks[5] = (chunks[5][0], np.array([np.inf] * 20, np.float32), None)
    sources = {"image": ListSource("image", frames, replay=replay), "audio": ListSource("audio", chunks, replay=replay),
               "text": ListSource("text", [(0.0, "   ", None), (0.01, "dog", None)], replay=replay)}  # fmt: skip
    summary, results = run_collect(Pipeline.from_bundle(bundle_dir, sources))
    assert summary.metrics["drops"]["image"]["bad_input"] == 3
    assert "audio" not in summary.metrics["drops"]  # NaN/Inf chunks are repaired (zeros) and used, not dropped
    assert summary.metrics["repairs"]["audio"] == {"nonfinite": 2}
    assert summary.metrics["drops"]["text"] == {"bad_input": 1}
    # six good frames and the larger one, resized; the audio ends with the camera (at 0.4 s), so in
    # realtime its last window may come after the trigger handed over to audio
    on_camera = [r for r in results if r.trigger == "image"]
    assert len(on_camera) + superseded(summary) == 7 and len(results) - len(on_camera) <= 1
    assert on_camera[-1].presence == {"text": True, "image": True, "audio": True}
    assert sum("bad image input" in n for n in summary.metrics["notes"]) == 1  # said once, counted each time


def broken_image_encoder(path):
    """Declares the image contract but cannot reshape 192 values into [-1, 5] when run."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    graph = helper.make_graph(
        [helper.make_node("Cast", ["image"], ["x"], to=TensorProto.FLOAT),
         helper.make_node("Reshape", ["x", "shape"], ["y"]),
         helper.make_node("ReduceMean", ["y"], ["m"], axes=[0], keepdims=1),
         helper.make_node("Slice", ["m", "zero", "four", "one"], ["embedding"])],
        "broken", [helper.make_tensor_value_info("image", TensorProto.UINT8, ["batch", 8, 8, 3])],
        [helper.make_tensor_value_info("embedding", TensorProto.FLOAT, ["batch", 4])],
        [numpy_helper.from_array(np.array([-1, 5], np.int64), "shape"),
         *(numpy_helper.from_array(np.array([v], np.int64), n) for n, v in (("zero", 0), ("four", 4), ("one", 1)))],
    )  # fmt: skip
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    return OrtEngine(path, threads=1)


def stages_with(bundle_dir, image_engines):
    bundle = load(bundle_dir)
    head = bundle.fusion
    image = EncoderStage(bundle.encoder("image"), image_engines)
    fusion = FusionStage(head, [("fp32", OrtEngine(head.variant().path, threads=1))], contract=bundle.fusion_input,
                         labels=bundle.labels)
    return {"image": image}, fusion


def test_an_error_inside_a_stage_comes_out_of_run_with_its_type(tmp_path, bundle_dir):
    broken = broken_image_encoder(tmp_path / "broken.onnx")
    for replay in (Replay.REALTIME, DET):
        encoders, fusion = stages_with(bundle_dir, [("fp32", broken)])
        out = tmp_path / f"{replay.value}.jsonl"
        source = ListSource("image", camera_items(5, 0.01), replay=replay)
        pipeline = Pipeline(encoders, fusion, {"image": source}, sinks=[JsonlSink(out)])
        with pytest.raises(EngineError, match="broken.onnx: onnxruntime failed to run"):
            pipeline.run()
        assert out.exists() and out.read_text() == ""  # opened, then closed on the error path


def test_under_degrade_an_engine_error_switches_to_the_next_variant(tmp_path, bundle_dir):
    good = OrtEngine(image_encoder(tmp_path / "good.onnx"), threads=1)
    encoders, fusion = stages_with(bundle_dir, [("fp32", broken_image_encoder(tmp_path / "broken.onnx")), ("int8", good)])
    budget = Budget(image=StageBudget(policy=OverrunPolicy.DEGRADE))
    source = ListSource("image", camera_items(5, 0.01), replay=DET)
    summary, results = run_collect(Pipeline(encoders, fusion, {"image": source}, budget=budget))
    assert len(results) == 5  # the failed frame was retried on int8
    assert summary.metrics["actions"]["image"] == {"degrade": 1}
    assert summary.metrics["variants"]["image"] == "int8"
    assert any("variant fp32 failed" in n and "switched to int8" in n for n in summary.metrics["notes"])


def test_an_error_in_on_result_stops_the_run_and_is_raised(bundle_dir):
    class Boom(RuntimeError):
        pass

    def explode(result):
        if result.seq == 3:
            raise Boom("user callback failed")

    pipeline = Pipeline.from_bundle(bundle_dir, {"image": ListSource("image", camera_items(100, 0.01))})
    with pytest.raises(Boom, match="user callback failed"):
        pipeline.run(on_result=explode)
    with pytest.raises(ConfigError, match="runs once"):
        pipeline.run()


# -- overrun policies on a genuinely slow engine ----------------------------------------------------------


def heavy_pipeline(heavy_bundle_dir, policy, frames, period_s, *, ms=3.0, degrade_after=3, variant=None):
    budget = Budget(deadline_ms=33, image=StageBudget(ms=ms, policy=policy, degrade_after=degrade_after),
                    image_staleness_s=0.5)  # fmt: skip
    sources = {"image": ListSource("image", camera_items(frames, period_s))}
    return Pipeline.from_bundle(heavy_bundle_dir, sources, budget=budget, variant=variant)


def test_drop_oldest_keeps_latency_bounded_under_overload(heavy_bundle_dir):
    pipeline = heavy_pipeline(heavy_bundle_dir, OverrunPolicy.DROP_OLDEST, frames=150, period_s=0.004)
    summary, results = run_collect(pipeline)
    m = summary.metrics
    superseded = m["drops"]["image"]["superseded"]
    assert m["overruns"]["image"] == len(results) == m["actions"]["image"]["drop_oldest"]
    assert len(results) + superseded == 150  # every frame either fused or counted as superseded
    assert superseded > 75
    slowest_run = m["stages_ms"]["image"]["max"]
    assert max(r.e2e_ms for r in results) <= 2 * slowest_run + 25  # waits for at most one run in flight
    early, late = np.median([r.e2e_ms for r in results[:5]]), np.median([r.e2e_ms for r in results[-5:]])
    assert late < early + slowest_run  # no queue builds up


def test_skip_reuse_reuses_the_last_embedding_and_results_keep_flowing(heavy_bundle_dir):
    pipeline = heavy_pipeline(heavy_bundle_dir, OverrunPolicy.SKIP_REUSE, frames=60, period_s=0.01, ms=5.0)
    summary, results = run_collect(pipeline)
    m = summary.metrics
    runs = m["stages_ms"]["image.encode"]["count"]
    reused = m["actions"]["image"]["reuse"]
    assert reused == m["drops"]["image"]["budget"] == sum(1 for r in results if r.reused == ("image",))
    assert len(results) == runs + reused and reused >= runs  # each ~25 ms run pays for the next ~4 frames
    assert len(results) + m["drops"]["image"].get("superseded", 0) == 60
    for r in results:
        if r.reused:
            assert r.input_t_ns["image"] < r.t_capture_ns and r.presence["image"]
            np.testing.assert_array_equal(r.outputs, results[r.seq - 1].outputs)  # same embedding, same answer


def test_degrade_switches_to_the_faster_variant(heavy_bundle_dir):
    pipeline = heavy_pipeline(heavy_bundle_dir, OverrunPolicy.DEGRADE, frames=40, period_s=0.01, ms=5.0,
                              degrade_after=2)
    assert pipeline.encoders[Modality.IMAGE].variant == "fp32"
    summary, results = run_collect(pipeline)
    m = summary.metrics
    assert m["actions"]["image"]["degrade"] == 1  # once; a loaded machine may add no_faster_variant after it
    assert m["variants"]["image"] == "int8"
    assert any("switched fp32 -> int8" in note for note in m["notes"])
    assert m["stages_ms"]["image.encode"]["count"] == len(results)  # degrade never skips inputs
    assert m["stages_ms"]["image.encode"]["max"] > 10
    assert m["stages_ms"]["image.encode"]["p50"] < m["stages_ms"]["image.encode"]["max"] / 2
    assert len(results) >= 15  # of 40 frames; the heavy runs before the switch supersede some


def test_degrade_without_a_faster_variant_says_so_once_and_skips(heavy_bundle_dir):
    # int8 is the fastest variant: nothing is left to switch to, and a 1 µs budget makes every run overrun
    pipeline = heavy_pipeline(heavy_bundle_dir, OverrunPolicy.DEGRADE, frames=40, period_s=0.01, ms=1e-3,
                              degrade_after=2, variant={"image": "int8"})
    assert pipeline.encoders[Modality.IMAGE].faster_variants == 0
    summary, results = run_collect(pipeline)
    m = summary.metrics
    assert m["actions"]["image"]["no_faster_variant"] == 1
    assert sum("no faster variant than int8" in n for n in m["notes"]) == 1
    assert m["actions"]["image"]["reuse"] > 0 and len(results) > 20


# -- contracts and wiring, checked at build time ---------------------------------------------------------


def test_wiring_mistakes_are_refused_before_the_first_frame(bundle_dir, tmp_path):
    image = ListSource("image", camera_items(2, 0.1))
    with pytest.raises(ConfigError, match="has modality 'image'"):
        Pipeline.from_bundle(bundle_dir, {"audio": image})
    with pytest.raises(ConfigError, match="trigger on text needs a text source"):
        Pipeline.from_bundle(bundle_dir, {"image": image}, trigger=Trigger.on("text"))
    with pytest.raises(ConfigError, match="mix replay modes"):
        Pipeline.from_bundle(bundle_dir, {"image": image, "text": ListSource("text", [(0, "cat", None)], replay=DET)})
    with pytest.raises(ConfigError, match="delivers 16000 Hz but the audio encoder takes 1000 Hz"):
        Pipeline.from_bundle(bundle_dir, {"audio": ListSource("audio", audio_items(0.1), sample_rate=16000)})
    two = write_bundle(tmp_path / "two", modalities=("image", "audio"))
    with pytest.raises(ConfigError, match="sources given for \\['text'\\]"):
        Pipeline.from_bundle(two, {"text": ListSource("text", [(0, "cat", None)])})
    with pytest.raises(BundleError, match="no component .* has a variant 'int4'"):
        Pipeline.from_bundle(bundle_dir, {"image": image}, variant="int4")


def test_a_bundle_whose_fusion_does_not_fit_its_encoders_is_refused_at_load(tmp_path):
    root = write_bundle(tmp_path / "b", modalities=("image", "audio"))
    manifest = json.loads((root / "manifest.json").read_text())
    manifest["components"]["fusion"]["inputs"][0]["shape"] = ["batch", 7]
    with pytest.raises(BundleError, match="fusion.inputs.image takes \\[batch, 7\\] but components.image_encoder "
                                          "gives \\[batch, 4\\]"):  # fmt: skip
        write_manifest(root, manifest)


def wider_in_the_manifest(root):
    """The image embedding declared 7 wide in the manifest, on both sides, while the model files give 4."""
    manifest = json.loads((root / "manifest.json").read_text())
    manifest["components"]["image_encoder"]["outputs"][0]["shape"] = ["batch", 7]
    manifest["components"]["fusion"]["inputs"][0]["shape"] = ["batch", 7]
    write_manifest(root, manifest)
    return root


def test_model_files_that_disagree_with_the_manifest_are_refused_and_what_was_opened_is_closed(tmp_path, closed):
    root = wider_in_the_manifest(write_bundle(tmp_path / "b", modalities=("image", "audio")))
    with pytest.raises(BundleError, match="image_encoder \\(fp32\\): embedding is float32 \\['batch', 4\\] in the "
                                          "model file but float32 \\['batch', 7\\] in the manifest"):  # fmt: skip
        Pipeline.from_bundle(root, {"image": ListSource("image", camera_items(2, 0.1))})
    assert closed == ["image_encoder.fp32.onnx"]
    closed.clear()
    # no image source: the audio stage is built, then the fusion head's file fails its check
    with pytest.raises(BundleError, match="fusion \\(fp32\\): image is float32 \\['batch', 4\\] in the model file"):
        Pipeline.from_bundle(root, {"audio": ListSource("audio", audio_items(0.3))})
    assert closed == ["audio_encoder.fp32.onnx", "fusion.fp32.onnx"]


@pytest.mark.parametrize("replay", [Replay.REALTIME, DET])
def test_the_pipeline_closes_the_engines_it_opened_when_run_ends(bundle_dir, closed, replay):
    pipeline = Pipeline.from_bundle(bundle_dir, {"image": ListSource("image", camera_items(3, 0.01), replay=replay),
                                                 "text": ListSource("text", [(0.0, "cat", None)], replay=replay)})
    assert closed == []
    summary = pipeline.run()
    assert summary.results == 3 - superseded(summary)
    assert sorted(closed) == ["fusion.fp32.onnx", "image_encoder.fp32.onnx", "text_encoder.fp32.onnx"]
    with pytest.raises(EngineError, match="closed"):
        pipeline.fusion.engine.run({})


def test_engines_are_closed_when_run_raises_and_stages_given_by_the_caller_stay_open(tmp_path, bundle_dir, closed):
    pipeline = Pipeline.from_bundle(bundle_dir, {"image": ListSource("image", camera_items(20, 0.01))})

    def explode(result):
        raise RuntimeError("user callback failed")

    with pytest.raises(RuntimeError, match="user callback failed"):
        pipeline.run(on_result=explode)
    assert sorted(closed) == ["fusion.fp32.onnx", "image_encoder.fp32.onnx"]
    closed.clear()
    encoders, fusion = stages_with(bundle_dir, [("fp32", OrtEngine(image_encoder(tmp_path / "image.onnx"), threads=1))])
    Pipeline(encoders, fusion, {"image": ListSource("image", camera_items(2, 0.1), replay=DET)}).run()
    assert closed == []  # the caller opened them, the caller closes them


def test_degrade_stages_close_every_variant_they_opened(heavy_bundle_dir, closed):
    budget = Budget(image=StageBudget(policy=OverrunPolicy.DEGRADE))
    pipeline = Pipeline.from_bundle(heavy_bundle_dir, {"image": ListSource("image", camera_items(2, 0.1), replay=DET)},
                                    budget=budget)  # fmt: skip
    assert pipeline.encoders[Modality.IMAGE].faster_variants == 1
    pipeline.run()
    assert sorted(closed) == ["fusion.fp32.onnx", "image_encoder.fp32.onnx", "image_encoder.int8.onnx"]


def test_a_variant_name_runs_where_a_component_has_it_and_fp32_elsewhere(tmp_path):
    root = write_bundle(tmp_path / "b", modalities=("image", "audio"), fast_int8_image=True)
    (root / "audio_encoder.fp16.onnx").write_bytes((root / "audio_encoder.fp32.onnx").read_bytes())
    manifest = json.loads((root / "manifest.json").read_text())
    manifest["components"]["image_encoder"]["default_variant"] = "int8"
    manifest["components"]["audio_encoder"]["variants"]["fp16"] = {"file": "audio_encoder.fp16.onnx",
                                                                   "precision": "fp16"}
    write_manifest(root, manifest)
    sources = {"image": ListSource("image", camera_items(2, 0.1)), "audio": ListSource("audio", audio_items(0.3))}
    pipeline = Pipeline.from_bundle(root, sources, variant="fp16")
    # the image encoder has no fp16: it runs fp32 (the rule of resolve_variants), not its default int8
    assert pipeline.encoders[Modality.IMAGE].variant == "fp32"
    assert pipeline.encoders[Modality.AUDIO].variant == "fp16"
    pipeline.close()
    pipeline = Pipeline.from_bundle(root, {"image": ListSource("image", camera_items(2, 0.1))})
    assert pipeline.encoders[Modality.IMAGE].variant == "int8"  # no request: each component's default
    pipeline.close()


def test_missing_modalities_are_reported_at_start(bundle_dir):
    pipeline = Pipeline.from_bundle(bundle_dir, {"image": ListSource("image", camera_items(2, 0.1))})
    notes = pipeline.metrics.to_dict()["notes"]
    assert any("no text source" in n for n in notes) and any("no audio source" in n for n in notes)
    assert set(pipeline.encoders) == {Modality.IMAGE}  # encoders without a source are not loaded


def test_explicit_stages_build_a_pipeline_without_a_bundle(tmp_path):
    engine = OrtEngine(image_encoder(tmp_path / "image.onnx"), threads=1)
    from runtime_models import fusion_head

    def component(name, role, modality, inputs, outputs, **typed):
        return Component(name, role, modality, None, inputs, outputs, {}, {}, "mine", **typed)

    encoder = component("image_encoder", "encoder", "image", (TensorSpec("image", "uint8", ("batch", 8, 8, 3)),),
                        (TensorSpec("embedding", "float32", ("batch", 4)),), input=ImageInput("image", 8, 8, "bgr"),
                        embedding_dim=4)  # fmt: skip
    head = component("fusion", "fusion", None,
                     (TensorSpec("image", "float32", ("batch", 4)), TensorSpec("presence", "float32", ("batch", 1))),
                     (TensorSpec("logits", "float32", ("batch", 3)),))  # fmt: skip
    image = EncoderStage(encoder, [("mine", engine)])
    fusion = FusionStage(
        head, [("mine", OrtEngine(fusion_head(tmp_path / "fusion.onnx", ("image",)), threads=1))],
        contract=FusionInput((Modality.IMAGE,), {Modality.IMAGE: 4}), labels=LABELS,
    )  # fmt: skip
    summary, results = run_collect(Pipeline({"image": image}, fusion, {"image": ListSource("image", camera_items(4, 0.1), replay=DET)}))
    assert len(results) == 4 and results[0].presence == {"image": True}


def test_runtime_modules_import_neither_torch_nor_transformers():
    code = (
        "import sys, fusionrt.runtime.pipeline, fusionrt.runtime.sinks, fusionrt.runtime.stages, "
        "fusionrt.runtime.metrics, fusionrt.runtime.budget, fusionrt.runtime.preprocess, fusionrt.runtime.flow, "
        "fusionrt.runtime.schedulers, fusionrt.runtime.assembly, fusionrt.runtime.realtime;"
        "bad = [m for m in ('torch', 'transformers') if m in sys.modules]; assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
