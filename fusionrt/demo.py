"""`fusionrt demo`: the whole chain on the built-in data, reusing what is already built."""

from __future__ import annotations

from pathlib import Path

from fusionrt.bundle import Bundle, describe
from fusionrt.config import Config, config_to_dict, load_config


def run_demo(work: Path, *, config_path: str | None = None, retrain: bool = False) -> Bundle:
    from fusionrt.export.from_checkpoint import export_checkpoint
    from fusionrt.train import CHECKPOINT, train

    config = load_config(config_path) if config_path else Config()
    run_dir, bundle_dir = work / "runs" / "demo", work / "bundles" / "demo"
    checkpoint = run_dir / CHECKPOINT
    if retrain or not _same_run(run_dir, config):
        print(f"== train -> {run_dir}")
        train(config, run_dir)
    else:
        print(f"== train: reusing {checkpoint} (same config; --retrain to train again)")
    print(f"== export -> {bundle_dir}")
    bundle = export_checkpoint(config, checkpoint, bundle_dir, force=True)
    print("== inspect")
    print(describe(bundle))
    return bundle


def _same_run(run_dir: Path, config: Config) -> bool:
    saved = run_dir / "config.yaml"
    if not (run_dir / "model.safetensors").is_file() or not saved.is_file():
        return False
    return config_to_dict(load_config(saved)) == config_to_dict(config)
