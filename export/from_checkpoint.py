"""Export a trained run (config + safetensors checkpoint) as a bundle."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Callable

from fusionrt.bundle import Bundle, Reference
from fusionrt.config import Config, save_config
from fusionrt.data import task_labels
from fusionrt.export.bundle_writer import export_bundle
from fusionrt.models import MultimodalModel, build_tokenizer
from fusionrt.models.train import load_checkpoint


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
    listed in the manifest under "reference") for the runtime's opt-in torch backend; it is written
    inside the export's own staging, so the bundle is hashed once.
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
    labels = task_labels(config.model.task)
    with tempfile.TemporaryDirectory(prefix="fusionrt-reference-") as tmp:
        resolved = Path(tmp) / "config.yaml"
        save_config(config, resolved)
        return export_bundle(
            encoders,
            model.fusion,
            out_dir,
            example_inputs=example_inputs,
            labels=labels,
            tokenizer=tokenizer,
            task=config.model.task.value,
            force=force,
            reference=Reference(config=resolved, weights=checkpoint),
            progress=progress,
        )
