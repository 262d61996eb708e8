"""Which variant of each component runs, for a request by name: the one rule every consumer uses
(runtime, evaluation, benchmarks, the study)."""

from __future__ import annotations

from typing import Mapping

from fusionrt.bundle.format import Bundle
from fusionrt.errors import BundleError, ConfigError

DEFAULT = "default"  # each component's manifest default_variant (what `fusionrt quantize` chose)
FALLBACK = "fp32"  # what a component lacking a requested variant runs: the exported reference precision


def resolve_variants(bundle: Bundle, request: str | Mapping[str, str] | None = None) -> dict[str, str]:
    """Component name -> the variant it runs.

    - None or "default": every component's default variant.
    - a name ("int8"): that variant where a component has it, else fp32 (so "int8" means INT8 where it
      exists and the reference precision elsewhere); BundleError when no component has it.
    - {component or modality: name}: those components exactly (BundleError when one lacks it), the
      others their default.
    """
    chosen = {name: c.default_variant for name, c in bundle.components.items()}
    if request is None or request == DEFAULT:
        return chosen
    if isinstance(request, str):
        if not any(request in c.variants for c in bundle.components.values()):
            known = sorted({v for c in bundle.components.values() for v in c.variants} | {DEFAULT})
            raise BundleError(f"no component of bundle {bundle.root} has a variant {request!r}; it has {known}")
        return {name: request if request in c.variants else FALLBACK for name, c in bundle.components.items()}
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
        chosen[component.name] = component.default_variant if name == DEFAULT else component.variant(name).name
    return chosen
