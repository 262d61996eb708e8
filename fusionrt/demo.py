"""`fusionrt demo`: the whole chain on the built-in data, reusing what is already built.

train (or reuse runs/demo) -> export -> quantize (auto, within 0.5 accuracy points) -> inspect ->
stream test://digits camera + test://dtmf microphone + test://digits text (`run_realtime`, as
`realtime-infer` does).
"""

from __future__ import annotations

from pathlib import Path

from fusionrt.bundle import Bundle, describe, load
from fusionrt.config import Config, config_to_dict, load_config


def run_demo(work: Path, *, config_path: str | None = None, retrain: bool = False, stream_s: float = 20.0) -> Bundle:
    from fusionrt.calibration import CalibrationSet, quantize_bundle
    from fusionrt.export.from_checkpoint import export_checkpoint
    from fusionrt.runtime import run_realtime
    from fusionrt.models.train import CHECKPOINT, train

    config = load_config(config_path) if config_path else Config()
    run_dir, bundle_dir = work / "runs" / "demo", work / "bundles" / "demo"
    checkpoint = run_dir / CHECKPOINT
    if retrain or not _same_run(run_dir, config):
        print(f"== train -> {run_dir}", flush=True)
        train(config, run_dir)
    else:
        print(f"== train: reusing {checkpoint} (same config; --retrain to train again)", flush=True)
    print(f"== export -> {bundle_dir}", flush=True)
    export_checkpoint(config, checkpoint, bundle_dir, force=True)
    print("== quantize (auto, accuracy budget 0.5 points)", flush=True)
    quantize_bundle(bundle_dir, CalibrationSet.from_digits(bundle_dir, "val", 128), "auto", accuracy_budget=0.5)
    bundle = load(bundle_dir)
    print("== inspect", flush=True)
    print(describe(bundle))
    if stream_s > 0:
        print(f"== realtime-infer: test://digits camera + test://dtmf microphone + test://digits text, {stream_s:g} s",
              flush=True)
        run_realtime(bundle, camera="test://digits", mic="test://dtmf", text="test://digits", duration_s=stream_s)
    return bundle


def _same_run(run_dir: Path, config: Config) -> bool:
    saved = run_dir / "config.yaml"
    if not (run_dir / "model.safetensors").is_file() or not saved.is_file():
        return False
    return config_to_dict(load_config(saved)) == config_to_dict(config)
