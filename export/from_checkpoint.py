"""Export a trained run (config + safetensors checkpoint) as a bundle."""

from __future__ import annotations

import copy
import shutil
from pathlib import Path
from typing import Callable

from fusionrt.bundle import Bundle, load, write_manifest
from fusionrt.config import Config, Task, save_config
from fusionrt.data import LABELS
from fusionrt.export.bundle_writer import export_bundle
from fusionrt.models import MultimodalModel, build_tokenizer
from fusionrt.models.train import load_checkpoint

REFERENCE_DIR = "reference"


def export_checkpoint(
    config: Config,
    checkpoint: str | Path,
    out_dir: str | Path,
    *,
    force: bool = False,
    progress: Callable[[str], None] = print,
) -> Bundle:
    """Rebuild the model the config describes, load its weights, and export every component.

    The bundle also carries the reference model (reference/config.yaml + reference/model.safetensors,
    listed in the manifest under "reference") for the runtime's opt-in torch backend.
    """
    checkpoint = Path(checkpoint)
    tokenizer = None
    if "text" in config.model.modalities:
        tokenizer = build_tokenizer(config.model.text)
    model = MultimodalModel(config.model, vocab_size=len(tokenizer) if tokenizer is not None else 0)
    load_checkpoint(model, checkpoint)
    model.eval()
    encoders = dict(model.encoders.items())
    example_inputs = {f"{name}_encoder": encoder.example_inputs() for name, encoder in encoders.items()}
    example_inputs["fusion"] = model.fusion.example_inputs()
    labels = LABELS if config.model.task is Task.CLASSIFICATION else ()
    export_bundle(
        encoders,
        model.fusion,
        out_dir,
        example_inputs=example_inputs,
        labels=labels,
        tokenizer=tokenizer,
        task=config.model.task.value,
        force=force,
        progress=progress,
    )
    return add_reference(out_dir, config, checkpoint)


def add_reference(bundle_dir: str | Path, config: Config, checkpoint: Path) -> Bundle:
    """Copy the resolved config and the safetensors weights into bundle_dir/reference/ and re-hash."""
    root = Path(bundle_dir)
    manifest = copy.deepcopy(load(root).manifest)
    (root / REFERENCE_DIR).mkdir(exist_ok=True)
    save_config(config, root / REFERENCE_DIR / "config.yaml")
    shutil.copyfile(checkpoint, root / REFERENCE_DIR / "model.safetensors")
    manifest["reference"] = {"config": f"{REFERENCE_DIR}/config.yaml", "weights": f"{REFERENCE_DIR}/model.safetensors"}
    write_manifest(root, manifest)
    return load(root)
