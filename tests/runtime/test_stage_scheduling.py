"""Scheduling under a binding budget: trigger inputs too old to make the deadline are skipped, not run
late; intra-op threads can be given per stage."""

from __future__ import annotations

import pytest
from runtime_models import camera_items, write_bundle
from test_faults import ScriptedEngine, ScriptedSource, image_stages, run_collect

from fusionrt.runtime.budget import Budget
from fusionrt.runtime.pipeline import Pipeline

LATE_MS = 60  # how long before its delivery a late frame was captured


@pytest.fixture(scope="module")
def bundle_dir(tmp_path_factory):
    return write_bundle(tmp_path_factory.mktemp("bundle") / "b")


PERIOD_S = 0.1


def delivered_late_every_third(count: int) -> list:
    """Camera items captured every PERIOD_S; every third one reaches the pipeline LATE_MS after its capture."""
    return [(offset + (LATE_MS / 1000 if seq % 3 == 2 else 0.0), data, label)
            for seq, (offset, data, label) in enumerate(camera_items(count, PERIOD_S))]


def captured_on_schedule(seq: int, start: int) -> int:
    return start + round(seq * PERIOD_S * 1e9)


def test_frames_that_cannot_make_the_deadline_are_skipped_and_counted(bundle_dir):
    encoders, fusion = image_stages(bundle_dir, lambda inner: inner)
    source = ScriptedSource("image", delivered_late_every_third(24), stamp=captured_on_schedule)
    summary, results = run_collect(Pipeline(encoders, fusion, {"image": source}, budget=Budget(deadline_ms=40.0, skip_late=True)))
    m = summary.metrics
    skipped = m["actions"]["image"]["skip_late"]
    assert skipped == 8  # every late frame: the first run, before them, tells what a run costs
    assert m["drops"]["image"]["budget"] == skipped
    assert len(results) == 16
    assert all(r.e2e_ms < LATE_MS for r in results)
    assert m["action_times_s"]["image"]["skip_late"][0] <= m["action_times_s"]["image"]["skip_late"][1]


def test_a_stage_slower_than_the_deadline_still_runs_for_its_overrun_policy(bundle_dir):
    engines = []

    def slow(inner):
        engines.append(ScriptedEngine(inner, slow_calls=range(1000), slow_s=0.05))  # every run 50 ms
        return engines[-1]

    encoders, fusion = image_stages(bundle_dir, slow)
    source = ScriptedSource("image", camera_items(10, 0.06))
    summary, results = run_collect(Pipeline(encoders, fusion, {"image": source}, budget=Budget(deadline_ms=30.0, skip_late=True)))
    assert "skip_late" not in summary.metrics["actions"].get("image", {})
    assert len(results) >= 8 and all(r.deadline_missed for r in results)


def test_threads_can_be_given_per_stage(bundle_dir):
    from runtime_models import ListSource, audio_items

    from fusionrt.frame import Modality

    sources = {"image": ListSource("image", camera_items(3, 0.05)), "audio": ListSource("audio", audio_items(0.3))}
    pipeline = Pipeline.from_bundle(bundle_dir, sources, threads={"image": 2})
    threads = {m: s.engine.session.get_session_options().intra_op_num_threads for m, s in pipeline.encoders.items()}
    assert threads == {Modality.IMAGE: 2, Modality.AUDIO: 1}
    assert pipeline.fusion.engine.session.get_session_options().intra_op_num_threads == 1
    assert pipeline.run().results > 0


def test_late_frames_are_answered_late_unless_the_budget_says_skip(bundle_dir):
    encoders, fusion = image_stages(bundle_dir, lambda inner: inner)
    source = ScriptedSource("image", delivered_late_every_third(12), stamp=captured_on_schedule)
    summary, results = run_collect(Pipeline(encoders, fusion, {"image": source}, budget=Budget(deadline_ms=40.0)))
    assert "skip_late" not in summary.metrics["actions"].get("image", {})
    assert len(results) == 12 and sum(r.deadline_missed for r in results) == 4
