"""The bundle contract, checked where a bundle is made.

`check_before_export` runs before any ONNX export: from the example inputs, the axes the export
will make dynamic and one PyTorch forward pass per component, it predicts each component's
declared tensors and puts them, with the preprocessing keys, through the same parsers
`fusionrt.bundle` runs when it loads a bundle (`encoder_input`, `fusion_input`). After the exports,
`write_checked_manifest` parses the real manifest in full while writing it. Either way a
`BundleError` becomes an `ExportError` that names the component, the field and the fix.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Mapping, Sequence

import torch

from fusionrt.bundle import Bundle, TensorSpec, write_manifest
from fusionrt.bundle.specs import EMBEDDING, LOGITS, encoder_input, fusion_input
from fusionrt.errors import BundleError, ExportError
from fusionrt.export.parity import torch_outputs
from fusionrt.frame import Modality

WHERE = "export_bundle"
_INPUTS = {
    Modality.IMAGE: "one input 'image', uint8 [batch, H, W, 3] (NHWC, the model's resolution)",
    Modality.AUDIO: "one input 'audio', float32 [batch, samples] (mono PCM)",
    Modality.TEXT: "'input_ids', 'attention_mask' (and optionally 'token_type_ids'), int64 [batch, sequence]",
}
_KEYS = {
    Modality.IMAGE: "height and width (ints; required when those axes are dynamic, else they must match them), "
                    "channel_order ('rgb' or 'bgr', required: the order the model was trained on)",
    Modality.AUDIO: "sample_rate (Hz, required), window_samples (required when the samples axis is dynamic), "
                    "hop_s (seconds between windows, default 0.1)",
    Modality.TEXT: "max_length (required: the sequence axis is dynamic), padding ('max_length', the default, or "
                   "'longest')",
}
EXAMPLE_PREPROCESSING = {
    Modality.IMAGE: {"height": 224, "width": 224, "channel_order": "rgb"},
    Modality.AUDIO: {"sample_rate": 16000, "window_samples": 16000, "hop_s": 0.1},
    Modality.TEXT: {"max_length": 128, "padding": "max_length"},
}
_FUSION = ("the fusion head takes one float32 [batch, E] embedding per modality, named by the modality, in the "
           "encoders' order, then 'presence' float32 [batch, M], and returns 'logits' float32 [batch, outputs]; its "
           "inputs are named by the keys of example_inputs['fusion']")


def resolve_preprocessing(name: str, modality: str | None, module: torch.nn.Module, given: Mapping | None) -> dict:
    """`given[name]` when present, else `module.preprocessing()`, else {}; an encoder must end up with some."""
    if given and name in given:
        steps = dict(given[name])
    elif callable(getattr(module, "preprocessing", None)):
        steps = dict(module.preprocessing())
    else:
        steps = {}
    try:
        json.dumps(steps)
    except (TypeError, ValueError) as e:
        raise ExportError(f"{name}: preprocessing must be JSON-safe (numbers, strings, lists, dicts): {e}") from e
    if modality is not None and not steps:
        m = Modality(modality)
        raise ExportError(
            f"{name}: no preprocessing: preprocessing= has no {name!r} entry and {type(module).__name__} has no "
            f"preprocessing() method, so the runtime would not know how to prepare its input. An {m.value} encoder's "
            f"preprocessing keys: {_KEYS[m]}; pass e.g. preprocessing={{{name!r}: {EXAMPLE_PREPROCESSING[m]}}} "
            f"(see README, 'The bundle contract')"
        )
    return steps


def check_before_export(
    plan: Sequence[tuple[str, str | None, torch.nn.Module]],
    example_inputs: Mapping[str, Mapping[str, torch.Tensor]],
    axes: Mapping[str, Mapping[str, Mapping[int, str]]],
    preprocessing: Mapping[str, dict],
    *,
    task: str,
    labels: Sequence[str],
    has_tokenizer: bool,
) -> None:
    """Refuse, before any export, a component the runtime would refuse (one forward pass each)."""
    tokenizer_file = Path("tokenizer/tokenizer.json") if has_tokenizer else None
    widths: dict[Modality, int | None] = {}
    fusion = None
    for name, modality, module in plan:
        inputs = tensor_specs(example_inputs[name], axes[name])
        outputs = _output_specs(name, modality, module, example_inputs[name], axes[name])
        try:
            if modality is None:
                fusion = fusion_input(WHERE, list(widths), inputs, outputs, task, labels)
            else:
                _, widths[Modality(modality)] = encoder_input(
                    WHERE, name, Modality(modality), inputs, outputs, preprocessing[name], tokenizer_file
                )
        except BundleError as e:
            raise contract_error(name, modality, str(e)) from None
    assert fusion is not None  # the plan ends with the fusion head
    for modality, width in widths.items():
        _check_widths(modality, width, fusion.widths[modality])


def write_checked_manifest(staging: Path, manifest: dict, out_dir: Path, modalities: Mapping[str, str | None]) -> Bundle:
    """`write_manifest` (hashes every file once, parses the manifest in full); its errors as ExportError."""
    try:
        return write_manifest(staging, manifest)
    except BundleError as e:
        text = str(e).replace(str(staging), str(out_dir))
        found = re.search(r"components\.(\w+)", text)
        name = found.group(1) if found else None
        raise contract_error(name, modalities.get(name), f"the bundle would not load: {text}") from None


def contract_error(name: str | None, modality: str | None, message: str) -> ExportError:
    """An ExportError for `message`, with the contract of that component and where export_bundle takes it from."""
    if name is None:
        return ExportError(message)
    if modality is None:
        return ExportError(f"{name}: {message}. The contract: {_FUSION} (see README, 'The bundle contract')")
    m = Modality(modality)
    return ExportError(
        f"{name}: {message}. The contract: a {m.value} encoder takes {_INPUTS[m]}, named by the keys of "
        f"example_inputs[{name!r}], and returns 'embedding' float32 [batch, E]; its preprocessing keys: {_KEYS[m]}, "
        f"from preprocessing={{{name!r}: {{...}}}} or the module's preprocessing() (see README, 'The bundle contract')"
    )


def tensor_specs(tensors: Mapping[str, torch.Tensor], axes: Mapping[str, Mapping[int, str]]) -> tuple[TensorSpec, ...]:
    """The TensorSpecs the export will declare: dynamic axes by name, the rest at the example's size."""
    return tuple(
        _spec(name, str(tensor.dtype).removeprefix("torch."), tuple(tensor.shape), axes.get(name, {}))
        for name, tensor in tensors.items()
    )


def _output_specs(name, modality, module, example, axes) -> tuple[TensorSpec, ...]:
    numpy_example = {n: t.detach().cpu().numpy() for n, t in example.items()}
    outputs = torch_outputs(module, [numpy_example], name)[0]
    output = LOGITS if modality is None else EMBEDDING
    if len(outputs) != 1:
        what = "the fusion head returns one tensor, the logits" if modality is None else \
            "an encoder returns one tensor, the embedding"
        raise contract_error(name, modality, f"forward() returns {len(outputs)} tensors; {what}")
    axis_names = {0: "batch", **axes.get(output, {})}
    return (_spec(output, outputs[0].dtype.name, outputs[0].shape, axis_names),)


def _spec(name: str, dtype: str, shape: Sequence[int], axis_names: Mapping[int, str]) -> TensorSpec:
    dims = tuple(axis_names.get(axis, int(size)) for axis, size in enumerate(shape))
    return TensorSpec(name, dtype, dims)


def _check_widths(modality: Modality, encoder: int | None, fusion: int | None) -> None:
    name = f"{modality.value}_encoder"
    if encoder is not None and fusion is not None and encoder != fusion:
        raise contract_error("fusion", None, f"its input {modality.value!r} is [batch, {fusion}] but {name} returns "
                                             f"[batch, {encoder}]; the components do not fit together")
    if encoder is None and fusion is None:
        raise contract_error(name, modality.value, "the embedding width is dynamic in both the encoder and the fusion "
                                                   "head, so the runtime cannot feed a missing modality; keep axis 1 "
                                                   "of 'embedding' static")
