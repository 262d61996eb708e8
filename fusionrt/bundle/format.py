"""The bundle format: a directory of ONNX variants, TensorRT plans, a tokenizer, reports and
manifest.json, read into typed, validated objects.

Loading never executes code: the manifest is JSON, every path must stay inside the bundle, and
every file's sha256 is checked against the manifest. This module imports no torch or onnx.

Version 2 (written now) requires the input contract in full (e.g. an image encoder's
channel_order); version 1 bundles still load, with the defaults the v1 runtime applied.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from fusionrt.bundle.fields import field as _field
from fusionrt.bundle.fields import modality_list, optional_text, sha256, task_labels, tensor_specs
from fusionrt.bundle.fields import name as check_name
from fusionrt.bundle.specs import MAX_RATE_HZ, FusionInput, InputSpec, TensorSpec, encoder_input, fusion_input
from fusionrt.errors import BundleError
from fusionrt.frame import MODALITIES, Modality

FORMAT = "fusionrt-bundle"
FORMAT_VERSION = 2
READABLE_VERSIONS = (1, 2)
MANIFEST = "manifest.json"
ROLES = ("encoder", "fusion")
TASKS = ("classification", "binary", "regression")  # binary: one logit, labels (negative, positive)
PRECISIONS = ("fp32", "fp16", "int8")
GPU_TARGETS = ("cuda", "tensorrt")  # targets a component keeps its own default variant for (`defaults_by_target`)
MAX_DEPTH = 32  # a manifest nested deeper than this is refused before it is walked


@dataclass(frozen=True)
class Variant:
    """One ONNX file of a component. For INT8 and FP16, `target` says which CPU kernels judged its accuracy
    (fusionrt.calibration.cpu_target: "x86-avx512-vnni", "x86-avx-vnni", "x86-amx", "x86-avx2", "aarch64"...)
    and `scheme` how it computes ("qdq-static", "dynamic", "fp16")."""

    name: str
    precision: str
    path: Path
    sha256: str
    target: str | None = None
    scheme: str | None = None
    info: dict = field(default_factory=dict)  # the rest of the manifest entry (exporter, opset, recipe...)


@dataclass(frozen=True)
class EnginePlan:
    """A TensorRT plan built by `fusionrt engine` from one variant, keyed by precision."""

    precision: str
    path: Path
    sha256: str
    source_variant: str
    fingerprint: dict  # EngineFingerprint.as_dict(): the GPU, TensorRT version and shapes it was built for


@dataclass(frozen=True)
class Reference:
    """The trained PyTorch model a bundle may carry (`fusionrt export` from a checkpoint): YAML + safetensors."""

    config: Path
    weights: Path


@dataclass(frozen=True)
class Component:
    name: str
    role: str
    modality: str | None
    rate_hz: float | None
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    preprocessing: dict
    variants: dict[str, Variant]
    default_variant: str
    input: InputSpec | None = None  # encoders: the typed host contract
    embedding_dim: int | None = None  # encoders: the output width (None when dynamic)
    engines: dict[str, EnginePlan] = field(default_factory=dict)
    defaults_by_target: dict[str, str] = field(default_factory=dict)  # GPU target -> its default variant

    def variant(self, name: str | None = None) -> Variant:
        chosen = self.default_variant if name is None else name
        if chosen not in self.variants:
            raise BundleError(f"component {self.name} has no variant {chosen!r}; it has {sorted(self.variants)}")
        return self.variants[chosen]

    def engine(self, precision: str) -> EnginePlan:
        if precision not in self.engines:
            raise BundleError(f"component {self.name} has no {precision} TensorRT engine; build it on the device with "
                              f"`fusionrt engine BUNDLE --precision {precision}`")
        return self.engines[precision]


@dataclass(frozen=True)
class Bundle:
    root: Path
    manifest: dict
    task: str
    labels: tuple[str, ...]
    modalities: tuple[str, ...]
    components: dict[str, Component]
    tokenizer_dir: Path | None
    reference: Reference | None = None
    fusion_input: FusionInput | None = None
    version: int = FORMAT_VERSION

    def encoder(self, modality: str) -> Component:
        for component in self.components.values():
            if component.role == "encoder" and component.modality == modality:
                return component
        raise BundleError(f"bundle {self.root} has no encoder for modality {modality!r}; it has {list(self.modalities)}")

    @property
    def encoders(self) -> tuple[Component, ...]:
        """The encoders in the bundle's modality order (the fusion head's input order)."""
        return tuple(self.encoder(m) for m in self.modalities)

    @property
    def fusion(self) -> Component:
        for component in self.components.values():
            if component.role == "fusion":
                return component
        raise BundleError(f"bundle {self.root} has no fusion component")

    def embedding_dim(self, modality: str) -> int:
        """The width of a modality's embedding, from the fusion input or else the encoder output."""
        width = self.fusion_input.widths.get(Modality(modality)) if self.fusion_input else None
        width = width or self.encoder(modality).embedding_dim
        if width is None:
            raise BundleError(f"bundle {self.root}: the {modality} embedding width is dynamic in both the encoder and "
                              "the fusion head, so a missing modality cannot be fed; give the bundle a static width")
        return width

    def report(self, name: str) -> dict | None:
        """reports/<name>.json parsed, or None when the bundle has no such report."""
        path = self.root / "reports" / f"{name}.json"
        if not path.is_file():
            return None
        try:
            return json.loads(path.read_text())
        except json.JSONDecodeError as e:
            raise BundleError(f"{path}: not valid JSON ({e}); re-export the bundle") from e


def load(path: str | Path) -> Bundle:
    """Read and validate a bundle directory; raise BundleError saying what is wrong and how to fix it."""
    if not isinstance(path, (str, os.PathLike)):
        raise BundleError(f"a bundle path must be a str or Path, found {type(path).__name__}")
    root = Path(path)
    manifest_path = root / MANIFEST
    if not root.is_dir():
        raise BundleError(f"bundle directory {root} does not exist; expected the output of `fusionrt export`")
    if not manifest_path.is_file():
        raise BundleError(f"{root} has no {MANIFEST}; is it a bundle written by `fusionrt export`?")
    return parse(root, read_manifest(root), verify_hashes=True)


def read_manifest(root: Path) -> dict:
    manifest_path = root / MANIFEST
    try:
        manifest = json.loads(manifest_path.read_text())
    except (ValueError, UnicodeDecodeError) as e:  # ValueError: JSONDecodeError, or an int of > 4300 digits
        raise BundleError(f"{manifest_path} is not valid JSON ({str(e):.200}); re-export the bundle") from e
    except RecursionError as e:
        raise BundleError(f"{manifest_path} nests too deeply to be a manifest; re-export the bundle") from e
    if _depth(manifest) > MAX_DEPTH:
        raise BundleError(f"{manifest_path} nests deeper than {MAX_DEPTH} levels; not a fusionrt manifest")
    return manifest


def write_manifest(root: str | Path, manifest: dict) -> Bundle:
    """Write a new bundle's manifest.json with "files" set to the sha256 of every file under root
    (manifest.json aside), after checking it parses; return the bundle (hashed once, here).

    For a bundle that already exists use `fusionrt.bundle.edit`, which swaps changes in atomically.
    """
    root = Path(root)
    complete = {**manifest, "files": hash_tree(root)}
    bundle = parse(root, complete, verify_hashes=False)
    staging = root / f".{MANIFEST}.partial"
    staging.write_text(json.dumps(complete, indent=2) + "\n")
    staging.replace(root / MANIFEST)
    return bundle


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def hash_tree(root: Path) -> dict[str, str]:
    files = {}
    for directory, subdirs, names in os.walk(root):
        subdirs.sort()
        for entry in [*subdirs, *names]:
            if (Path(directory) / entry).is_symlink():
                raise BundleError(f"{Path(directory) / entry} is a symlink; a bundle holds its files itself")
        for name in sorted(names):
            relative = (Path(directory) / name).relative_to(root).as_posix()
            if relative != MANIFEST and not name.startswith(f".{MANIFEST}"):
                files[relative] = sha256_of(Path(directory) / name)
    return files


def parse(root: Path, manifest: object, *, verify_hashes: bool) -> Bundle:
    """A `Bundle` from a manifest dict; with `verify_hashes`, every listed file's sha256 is checked."""
    where = str(root / MANIFEST)
    if not isinstance(manifest, dict):
        raise BundleError(f"{where}: expected a JSON object, found {type(manifest).__name__}")
    if manifest.get("format") != FORMAT:
        raise BundleError(f"{where}: format is {manifest.get('format')!r}, expected {FORMAT!r}; not a fusionrt bundle")
    version = _field(manifest, "version", int, where)
    if version > FORMAT_VERSION:
        raise BundleError(
            f"bundle {root} has format version {version}; this fusionrt reads versions {list(READABLE_VERSIONS)} — "
            f"upgrade fusionrt"
        )
    if version not in READABLE_VERSIONS:
        raise BundleError(f"{where}: version is {version}; this fusionrt reads versions {list(READABLE_VERSIONS)} — "
                          f"re-export the bundle with `fusionrt export`")
    files = _field(manifest, "files", dict, where)
    for relative, digest in files.items():
        _check_file(root, relative, digest, verify_hashes)
    task = _field(manifest, "task", dict, where)
    kind = _field(task, "kind", str, where, "task.")
    if kind not in TASKS:
        raise BundleError(f"{where}: task.kind is {kind!r}; expected one of {list(TASKS)}")
    labels = task_labels(task, kind, where)
    modalities = modality_list(manifest, where)
    tokenizer = manifest.get("tokenizer")
    tokenizer_dir = None
    if tokenizer is not None:
        tokenizer_dir = _inside(root, tokenizer, "tokenizer")
        if f"{PurePosixPath(tokenizer)}/tokenizer.json" not in files:
            raise BundleError(f"{where}: tokenizer directory {tokenizer!r} has no tokenizer.json listed in files")
    tokenizer_file = tokenizer_dir / "tokenizer.json" if tokenizer_dir else None
    entries = _field(manifest, "components", dict, where)
    components = {
        name: _component(root, name, entry, files, where, tokenizer_file, legacy=version == 1)
        for name, entry in entries.items()
    }
    _check_encoders(components, modalities, where)
    fusions = [c for c in components.values() if c.role == "fusion"]
    if len(fusions) != 1:
        raise BundleError(f"{where}: a bundle has exactly one component with role 'fusion'; found {len(fusions)}")
    head = fusions[0]
    fusion = fusion_input(where, [Modality(m) for m in modalities], head.inputs, head.outputs, kind, labels)
    for modality in modalities:
        encoder = next(c for c in components.values() if c.role == "encoder" and c.modality == modality)
        width = fusion.widths[Modality(modality)]
        if width is not None and encoder.embedding_dim is not None and width != encoder.embedding_dim:
            raise BundleError(f"{where}: components.fusion.inputs.{modality} takes [batch, {width}] but "
                              f"components.{encoder.name} gives [batch, {encoder.embedding_dim}]; the components do "
                              f"not fit together — re-export")
    reference = _reference(root, manifest.get("reference"), files, where)
    return Bundle(root, manifest, kind, labels, modalities, components, tokenizer_dir, reference, fusion, version)


def _check_encoders(components: dict, modalities: tuple[str, ...], where: str) -> None:
    """Exactly one encoder per listed modality, and none for a modality the bundle does not list."""
    for modality in MODALITIES:
        names = [c.name for c in components.values() if c.role == "encoder" and c.modality == modality]
        if modality in modalities and not names:
            raise BundleError(f"{where}: modality {modality!r} is listed but no encoder component has it")
        if len(names) > 1:
            raise BundleError(f"{where}: components {names} are all {modality} encoders; a bundle has one per modality")
        if names and modality not in modalities:
            raise BundleError(f"{where}: components.{names[0]} encodes {modality!r} but modalities are "
                              f"{list(modalities)}; list it or remove the component")


def _reference(root: Path, entry: object, files: dict, where: str) -> Reference | None:
    if entry is None:
        return None
    if not isinstance(entry, dict):
        raise BundleError(f"{where}: reference must be an object with config and weights paths")
    paths = {}
    for key in ("config", "weights"):
        relative = _field(entry, key, str, where, "reference.")
        if PurePosixPath(relative).as_posix() not in files:
            raise BundleError(f"{where}: reference.{key} {relative!r} is not listed in files; re-export the bundle")
        paths[key] = _inside(root, relative, f"reference.{key}")
    return Reference(**paths)


def _component(root: Path, name: str, entry: object, files: dict, where: str, tokenizer_file, *, legacy: bool):
    prefix = f"components.{name}."
    if not isinstance(entry, dict):
        raise BundleError(f"{where}: components.{name} must be an object")
    role = _field(entry, "role", str, where, prefix)
    if role not in ROLES:
        raise BundleError(f"{where}: {prefix}role is {role!r}; expected one of {list(ROLES)}")
    modality = entry.get("modality")
    if role == "encoder" and modality not in MODALITIES:
        raise BundleError(f"{where}: {prefix}modality is {modality!r}; an encoder has one of {list(MODALITIES)}")
    rate = entry.get("rate_hz")
    if rate is not None and (isinstance(rate, bool) or not isinstance(rate, (int, float)) or not 0 < rate <= MAX_RATE_HZ):
        raise BundleError(f"{where}: {prefix}rate_hz is {rate!r}; expected a number of Hz in (0, {MAX_RATE_HZ}] or null")
    variants = {}
    for variant_name, info in _field(entry, "variants", dict, where, prefix).items():
        vprefix = f"{prefix}variants.{check_name(variant_name, where, f'{prefix}variants key')}."
        if not isinstance(info, dict):
            raise BundleError(f"{where}: {vprefix[:-1]} must be an object")
        file, key, path = _listed_file(root, info, files, where, vprefix)
        precision = _field(info, "precision", str, where, vprefix)
        if precision not in PRECISIONS:
            raise BundleError(f"{where}: {vprefix}precision is {precision!r:.40}; expected one of {list(PRECISIONS)}")
        target, scheme = optional_text(info, "target", where, vprefix), optional_text(info, "scheme", where, vprefix)
        rest = {k: v for k, v in info.items() if k not in ("file", "precision", "target", "scheme")}
        variants[variant_name] = Variant(variant_name, precision, path, files[key], target, scheme, rest)
    if not variants:
        raise BundleError(f"{where}: {prefix}variants is empty; a component needs at least its fp32 file")
    default = _field(entry, "default_variant", str, where, prefix)
    if default not in variants:
        raise BundleError(f"{where}: {prefix}default_variant {default!r} is not one of the variants {sorted(variants)}")
    defaults_by_target = _defaults_by_target(entry, variants, where, prefix)
    engines = {}
    engine_entries = {} if entry.get("engines") is None else entry["engines"]
    if not isinstance(engine_entries, dict):
        raise BundleError(f"{where}: {prefix}engines must be an object keyed by precision, found "
                          f"{type(engine_entries).__name__}")
    for precision, info in engine_entries.items():
        eprefix = f"{prefix}engines.{precision}."
        if precision not in PRECISIONS or not isinstance(info, dict):
            raise BundleError(f"{where}: {eprefix[:-1]} must be an object keyed by one of {list(PRECISIONS)}")
        file, key, path = _listed_file(root, info, files, where, eprefix)
        source = _field(info, "source_variant", str, where, eprefix)
        if source not in variants:
            raise BundleError(f"{where}: {eprefix}source_variant {source!r} is not one of the variants {sorted(variants)}")
        engines[precision] = EnginePlan(precision, path, files[key], source, _field(info, "fingerprint", dict, where,
                                                                                      eprefix))
    inputs = tensor_specs(_field(entry, "inputs", list, where, prefix), where, f"{prefix}inputs")
    outputs = tensor_specs(_field(entry, "outputs", list, where, prefix), where, f"{prefix}outputs")
    preprocessing = entry.get("preprocessing")
    preprocessing = {} if preprocessing is None else preprocessing
    if not isinstance(preprocessing, dict):
        raise BundleError(f"{where}: {prefix}preprocessing must be an object (or null), found "
                          f"{type(preprocessing).__name__}")
    spec, width = None, None
    if role == "encoder":
        spec, width = encoder_input(where, name, Modality(modality), inputs, outputs, preprocessing, tokenizer_file,
                                    legacy=legacy)
    return Component(
        name=name, role=role, modality=modality, rate_hz=float(rate) if rate is not None else None,
        inputs=inputs, outputs=outputs, preprocessing=dict(preprocessing), variants=variants,
        default_variant=default, input=spec, embedding_dim=width, engines=engines,
        defaults_by_target=defaults_by_target,
    )  # fmt: skip


def _defaults_by_target(entry: dict, variants: dict, where: str, prefix: str) -> dict[str, str]:
    found = {} if entry.get("defaults_by_target") is None else entry["defaults_by_target"]
    if not isinstance(found, dict):
        raise BundleError(f"{where}: {prefix}defaults_by_target must be an object {{target: variant}}, found "
                          f"{type(found).__name__}")
    for target, variant in found.items():
        if target not in GPU_TARGETS:
            raise BundleError(f"{where}: {prefix}defaults_by_target has target {target!r:.40}; expected one of "
                              f"{list(GPU_TARGETS)}")
        if variant not in variants:
            raise BundleError(f"{where}: {prefix}defaults_by_target.{target} is {variant!r:.40}, which is not one of "
                              f"the variants {sorted(variants)}")
    return dict(found)


def _listed_file(root: Path, info: dict, files: dict, where: str, prefix: str) -> tuple[str, str, Path]:
    file = _field(info, "file", str, where, prefix)
    key = PurePosixPath(file).as_posix()
    if key not in files:
        raise BundleError(f"{where}: {prefix}file {file!r} is not listed in files; re-export the bundle")
    return file, key, _inside(root, file, f"{prefix}file")


def _inside(root: Path, relative: object, field_name: str) -> Path:
    """root/relative, refusing absolute paths, '..' and symlinks that lead out of the bundle."""
    if not isinstance(relative, str) or not relative or "\x00" in relative:
        raise BundleError(f"{root / MANIFEST}: {field_name} must be a non-empty relative path, found {relative!r}")
    posix = PurePosixPath(relative)
    if posix.is_absolute() or Path(relative).is_absolute() or "\\" in relative or ".." in posix.parts:
        raise BundleError(
            f"{root / MANIFEST}: path {relative!r} ({field_name}) leaves the bundle; expected a relative path inside {root}"
        )
    path = root / relative
    if not path.resolve().is_relative_to(root.resolve()):
        raise BundleError(f"{root / MANIFEST}: path {relative!r} ({field_name}) resolves outside the bundle (symlink?)")
    return path


def _check_file(root: Path, relative: str, digest: object, verify_hash: bool) -> None:
    path = _inside(root, relative, "files")
    if not path.is_file():
        raise BundleError(f"bundle {root}: file {relative!r} listed in the manifest is missing; re-export the bundle")
    sha256(digest, str(root / MANIFEST), relative)
    if verify_hash:
        found = sha256_of(path)
        if found != digest:
            raise BundleError(
                f"bundle {root}: {relative} has sha256 {found[:12]}…, the manifest expects {digest[:12]}…; "
                f"the file was modified after export; re-export"
            )


def _depth(value, limit: int = MAX_DEPTH + 1) -> int:
    """Nesting depth of a JSON value, counted without recursion and only up to `limit`."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, depth = stack.pop()
        deepest = max(deepest, depth)
        if depth >= limit:
            return depth
        children = item.values() if isinstance(item, dict) else item if isinstance(item, list) else ()
        stack.extend((child, depth + 1) for child in children)
    return deepest
