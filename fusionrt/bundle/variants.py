"""Which variant of each component runs, for a request by name: the one rule every consumer uses
(runtime, evaluation, benchmarks, the study)."""

from __future__ import annotations

from typing import Mapping

from fusionrt.bundle.format import GPU_TARGETS, PRECISIONS, Bundle, Component
from fusionrt.errors import BundleError, ConfigError

DEFAULT = "default"  # each component's manifest default_variant (what `fusionrt quantize` chose)
FALLBACK = "fp32"  # what a component lacking a requested variant runs: the exported reference precision


def variant_named(component: Component, request: str) -> str | None:
    """The variant of `component` a name asks for: that variant, or, for a precision name ("int8", "fp16")
    no variant is called, the component's variant of that precision (its default when the default has
    it, else the first listed) — so "int8" finds "int8-minmax" or "int8-dynamic". None: it has none."""
    if request in component.variants:
        return request
    if request not in PRECISIONS:
        return None
    if component.variant().precision == request:
        return component.default_variant
    return next((name for name, v in component.variants.items() if v.precision == request), None)


def default_variant(component: Component, target: str | None = None) -> str:
    """The variant `component` runs by default on `target`: on a CPU (None) its `default_variant`; on
    a GPU target ("cuda", "tensorrt") the variant `fusionrt quantize --target` chose for it, else the
    CPU default unless that is an INT8 variant made for other kernels (CUDA runs no INT8; TensorRT
    only its own symmetric QDQ), which gives way to fp32."""
    if target not in GPU_TARGETS:
        return component.default_variant
    if target in component.defaults_by_target:
        return component.defaults_by_target[target]
    cpu_default = component.variant()
    return FALLBACK if cpu_default.precision == "int8" and cpu_default.target != target else cpu_default.name


def resolve_variants(bundle: Bundle, request: str | Mapping[str, str] | None = None, *,
                     target: str | None = None) -> dict[str, str]:
    """Component name -> the variant it runs on `target` (None: a CPU; "cuda" or "tensorrt": the ONNX
    Runtime provider that runs the sessions, see `default_variant`).

    - None or "default": every component's default variant.
    - a name: that variant where a component has it, else fp32; a precision name ("int8", "fp16") that
      no variant is called picks each component's variant of that precision (`variant_named`), else
      fp32 — so "int8" means INT8 where it exists and the reference precision elsewhere. BundleError
      when no component has it.
    - {component or modality: name}: those components exactly (BundleError when one lacks it), the
      others their default.
    """
    chosen = {name: default_variant(c, target) for name, c in bundle.components.items()}
    if request is None or request == DEFAULT:
        return chosen
    if isinstance(request, str):
        picks = {name: variant_named(c, request) for name, c in bundle.components.items()}
        if not any(picks.values()):
            known = sorted({v for c in bundle.components.values() for v in c.variants} | {DEFAULT})
            raise BundleError(f"no component of bundle {bundle.root} has a variant {request!r}; it has {known}")
        return {name: pick or FALLBACK for name, pick in picks.items()}
    if not isinstance(request, Mapping):
        raise ConfigError(f"variant must be a name or a {{component or modality: name}} mapping, found {request!r:.60}")
    for key, name in request.items():
        if key in bundle.components:
            component = bundle.components[key]
        elif key in bundle.modalities:
            component = bundle.encoder(key)
        else:
            raise ConfigError(f"variant given for {key!r}, which is neither a component "
                              f"{sorted(bundle.components)} nor a modality {list(bundle.modalities)} of the bundle")
        if name == DEFAULT:
            chosen[component.name] = default_variant(component, target)
        else:
            chosen[component.name] = variant_named(component, name) or component.variant(name).name
    return chosen
