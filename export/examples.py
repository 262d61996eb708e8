"""Example inputs `export_bundle` derives when a component has none in `example_inputs`.

An encoder's example follows its preprocessing: image uint8 [2, height, width, 3], audio float32
[2, window_samples], text two sentences through the bundle's tokenizer (named like forward()'s
parameters among input_ids, attention_mask, token_type_ids). The fusion head's is one float32
[2, E] per modality, E from one forward pass of that encoder, then presence ones [2, M].
"""

from __future__ import annotations

import inspect
from typing import Mapping, Sequence

import torch

from fusionrt.bundle import PRESENCE
from fusionrt.errors import ExportError
from fusionrt.export.parity import eval_mode

BATCH = 2
TEXT_INPUTS = ("input_ids", "attention_mask", "token_type_ids")
SENTENCES = ("a short sentence", "a second, somewhat longer example sentence for the export")


def complete_examples(
    plan: Sequence[tuple[str, str | None, torch.nn.Module]],
    given: Mapping[str, Mapping[str, torch.Tensor]] | None,
    steps: Mapping[str, dict],
    tokenizer,
) -> dict[str, Mapping[str, torch.Tensor]]:
    """`given`, plus a derived example for every component it has no entry for."""
    examples = dict(given or {})
    generator = torch.Generator().manual_seed(0)
    for name, modality, module in plan:
        if name in examples:
            continue
        if modality is None:
            examples[name] = _fusion(plan, examples, generator)
        else:
            examples[name] = _encoder(name, modality, module, steps[name], tokenizer, generator)
    return examples


def _encoder(name: str, modality: str, module, steps: dict, tokenizer, generator) -> dict[str, torch.Tensor]:
    needed = {"image": ("height", "width"), "audio": ("window_samples",), "text": ("max_length",)}[modality]
    missing = [key for key in needed if not isinstance(steps.get(key), int)]
    if missing:
        raise ExportError(f"{name}: example_inputs has no {name!r} entry and its preprocessing has no integer "
                          f"{' / '.join(missing)} to derive one from; pass example_inputs[{name!r}] or add them")
    if modality == "image":
        return {"image": torch.randint(0, 256, (BATCH, steps["height"], steps["width"], 3), dtype=torch.uint8,
                                       generator=generator)}  # fmt: skip
    if modality == "audio":
        return {"audio": 0.1 * torch.randn(BATCH, steps["window_samples"], generator=generator)}
    parameters = list(inspect.signature(module.forward).parameters)
    names = [p for p in parameters[: len(TEXT_INPUTS)] if p in TEXT_INPUTS]
    if names != parameters[: len(names)] or names[:2] != ["input_ids", "attention_mask"]:
        raise ExportError(f"{name}: example_inputs has no {name!r} entry and forward{tuple(parameters)} does not start "
                          f"with (input_ids, attention_mask[, token_type_ids]); pass example_inputs[{name!r}]")
    padding = steps.get("padding", "max_length")
    tokens = tokenizer(list(SENTENCES), padding=padding, truncation=True, max_length=steps["max_length"],
                       return_tensors="pt")  # fmt: skip
    tokens["token_type_ids"] = torch.zeros_like(tokens["input_ids"])
    return {key: tokens[key].long() for key in names}


def _fusion(plan, examples, generator) -> dict[str, torch.Tensor]:
    inputs = {}
    for name, modality, module in plan:
        if modality is None:
            continue
        with eval_mode(module), torch.no_grad():
            embedding = module(*examples[name].values())
        if not isinstance(embedding, torch.Tensor) or embedding.dim() != 2:
            raise ExportError(f"{name}: forward() returns {type(embedding).__name__} "
                              f"{list(getattr(embedding, 'shape', []))}; an encoder returns one float32 [batch, E]")
        inputs[modality] = torch.randn(BATCH, embedding.shape[1], generator=generator)
    inputs[PRESENCE] = torch.ones(BATCH, len(inputs))
    return inputs
