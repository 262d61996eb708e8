"""The bundle: its format (load, never executing code), its typed contract (per-modality input specs,
variants, TensorRT engines), the one variant-resolution rule, and the edit transaction."""

from fusionrt.bundle.describe import describe
from fusionrt.bundle.edit import BundleEdit, edit, swap_in
from fusionrt.bundle.format import (
    FORMAT,
    FORMAT_VERSION,
    GPU_TARGETS,
    MANIFEST,
    PRECISIONS,
    READABLE_VERSIONS,
    TASKS,
    Bundle,
    Component,
    EnginePlan,
    Reference,
    Variant,
    hash_tree,
    load,
    parse,
    sha256_of,
    write_manifest,
)
from fusionrt.bundle.specs import (
    EMBEDDING,
    LOGITS,
    MAX_RATE_HZ,
    PRESENCE,
    PREPROCESSING_KEYS,
    AudioInput,
    FusionInput,
    ImageInput,
    InputSpec,
    TensorSpec,
    TextInput,
)
from fusionrt.bundle.variants import DEFAULT, FALLBACK, default_variant, resolve_variants, variant_named

__all__ = [
    "DEFAULT", "EMBEDDING", "FALLBACK", "FORMAT", "FORMAT_VERSION", "GPU_TARGETS", "LOGITS", "MANIFEST", "MAX_RATE_HZ",
    "PRECISIONS", "PREPROCESSING_KEYS", "PRESENCE", "READABLE_VERSIONS", "TASKS", "AudioInput", "Bundle", "BundleEdit",
    "Component", "EnginePlan", "FusionInput", "ImageInput", "InputSpec", "Reference", "TensorSpec", "TextInput",
    "Variant", "default_variant", "describe", "edit", "hash_tree", "load", "parse", "resolve_variants", "sha256_of",
    "swap_in", "variant_named", "write_manifest",
]
