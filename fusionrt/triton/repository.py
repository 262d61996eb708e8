"""`write_repository`: a bundle as a standard Triton model repository.

```
REPO/<component>/config.pbtxt        backend onnxruntime (tensorrt for a TensorRT plan), IO from the manifest,
REPO/<component>/1/model.onnx        dynamic batching, instance groups; the served variant as a parameter
REPO/fusionrt_ensemble/config.pbtxt  encoders -> fusion head; inputs: every encoder input + the presence mask
REPO/fusionrt_ensemble/1/            (an ensemble's version folder is empty)
```

The repository is written beside `out` and renamed into place, so a failed export leaves nothing.
"""

from __future__ import annotations

import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from fusionrt.bundle import EMBEDDING, LOGITS, PRESENCE, Bundle, Component, load, resolve_variants
from fusionrt.errors import BundleError, ConfigError
from fusionrt.triton.config import COMPONENT_PARAMETER, VARIANT_PARAMETER, Serving, model_config, pbtxt, tensor_entries

ENSEMBLE = "fusionrt_ensemble"
AUTO = "auto"  # every component's default variant (the manifest's choice)
PLAN_PREFIX = "tensorrt-"  # --variant tensorrt-fp16: the bundle's TensorRT plans, served by the tensorrt backend
VERSION = "1"
MAX_BATCH = 1 << 16
MAX_INSTANCES = 256
MAX_DELAY_US = 10_000_000


@dataclass(frozen=True)
class Repository:
    root: Path
    variants: dict[str, str]  # model name -> the bundle variant it serves
    ensemble: str


def write_repository(bundle: Bundle | str | Path, out: str | Path, *, variant: str = AUTO,
                     serving: Serving = Serving()) -> Repository:
    """Write `bundle` as a Triton model repository at `out` (which must not exist or be empty)."""
    bundle = bundle if isinstance(bundle, Bundle) else load(bundle)
    check_serving(serving)
    out = Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise ConfigError(f"--out {out} exists and is not an empty folder; choose a new path or remove it")
    chosen = served_variants(bundle, variant)
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        for name, component in bundle.components.items():
            write_component(staging, component, chosen[name], serving)
        write_ensemble(staging, bundle, serving)
        if out.exists():
            out.rmdir()
        staging.rename(out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return Repository(out, chosen, ENSEMBLE)


def check_serving(serving: Serving) -> None:
    for field, value, high in (("max_batch", serving.max_batch, MAX_BATCH), ("instances", serving.instances, MAX_INSTANCES),
                               ("threads", serving.threads, MAX_INSTANCES)):  # fmt: skip
        if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= high:
            raise ConfigError(f"Serving.{field} = {value!r}; expected a whole number in [1, {high}]")
    if isinstance(serving.delay_us, bool) or not isinstance(serving.delay_us, int) or not 0 <= serving.delay_us <= MAX_DELAY_US:
        raise ConfigError(f"Serving.delay_us = {serving.delay_us!r}; expected a whole number of µs in [0, {MAX_DELAY_US}]")


def served_variants(bundle: Bundle, variant: str) -> dict[str, str]:
    """Component -> the variant its model serves: `auto` the defaults, `tensorrt-PRECISION` the plans
    (every component must have one), else `resolve_variants`' rule (that variant where it exists, else fp32)."""
    if variant == AUTO:
        return resolve_variants(bundle, None)
    if variant.startswith(PLAN_PREFIX):
        precision = variant[len(PLAN_PREFIX):]
        for component in bundle.components.values():
            component.engine(precision)  # BundleError naming the component and how to build it
        return {name: variant for name in bundle.components}
    return resolve_variants(bundle, variant)


def write_component(root: Path, component: Component, variant: str, serving: Serving) -> None:
    folder = root / component.name / VERSION
    folder.mkdir(parents=True)
    if variant.startswith(PLAN_PREFIX):
        backend, source, file = "tensorrt", component.engine(variant[len(PLAN_PREFIX):]).path, "model.plan"
    else:
        backend, source, file = "onnxruntime", component.variant(variant).path, "model.onnx"
    shutil.copyfile(source, folder / file)
    parameters = {VARIANT_PARAMETER: variant, COMPONENT_PARAMETER: component.name}
    if backend == "onnxruntime":
        parameters["intra_op_thread_count"] = str(serving.threads)
    config = model_config(component.name, backend=backend, inputs=component.inputs, outputs=component.outputs,
                          serving=serving, parameters=parameters)  # fmt: skip
    (root / component.name / "config.pbtxt").write_text(pbtxt(config), encoding="utf-8")


def ensemble_config(bundle: Bundle, serving: Serving) -> dict:
    """Each encoder on its own inputs, then the fusion head on the embeddings and the presence mask."""
    fusion = bundle.fusion
    inputs, steps = [], []
    for encoder in bundle.encoders:
        taken = {e["name"] for e in inputs}
        clash = [s.name for s in encoder.inputs if s.name in taken or s.name == PRESENCE]
        if clash:
            raise BundleError(f"encoders of bundle {bundle.root} share the input names {clash}; the ensemble takes "
                              f"every encoder input by name — rename them at export")
        inputs += tensor_entries(encoder.inputs, f"ensemble input of {encoder.name}")
        steps.append({"model_name": encoder.name, "model_version": -1,
                      "input_map": [{"key": s.name, "value": s.name} for s in encoder.inputs],
                      "output_map": [{"key": EMBEDDING, "value": f"{encoder.modality}_{EMBEDDING}"}]})  # fmt: skip
    presence = [s for s in fusion.inputs if s.name == PRESENCE]
    inputs += tensor_entries(presence, "ensemble input presence")
    fusion_map = [{"key": s.name, "value": s.name if s.name == PRESENCE else f"{s.name}_{EMBEDDING}"}
                  for s in fusion.inputs]  # fmt: skip
    steps.append({"model_name": fusion.name, "model_version": -1, "input_map": fusion_map,
                  "output_map": [{"key": LOGITS, "value": LOGITS}]})  # fmt: skip
    return {
        "name": ENSEMBLE,
        "platform": "ensemble",
        "max_batch_size": serving.max_batch,
        "input": inputs,
        "output": tensor_entries([s for s in fusion.outputs if s.name == LOGITS], "ensemble output"),
        "ensemble_scheduling": {"step": steps},
        "parameters": [{"key": COMPONENT_PARAMETER, "value": {"string_value": ENSEMBLE}}],
    }


def write_ensemble(root: Path, bundle: Bundle, serving: Serving) -> None:
    (root / ENSEMBLE / VERSION).mkdir(parents=True)
    (root / ENSEMBLE / "config.pbtxt").write_text(pbtxt(ensemble_config(bundle, serving)), encoding="utf-8")

