"""The bundle format (version 1): a directory of ONNX variants, a tokenizer, reports and manifest.json.

Loading never executes code: the manifest is JSON, every path must stay inside the bundle, and
every file's sha256 is checked against the manifest. This module imports no torch or onnx.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from fusionrt.errors import BundleError

FORMAT = "fusionrt-bundle"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
ROLES = ("encoder", "fusion")
TASKS = ("classification", "regression")


@dataclass(frozen=True)
class TensorSpec:
    name: str
    dtype: str
    shape: tuple[int | str, ...]  # str = a dynamic dimension's name, e.g. "batch"


@dataclass(frozen=True)
class Variant:
    name: str
    precision: str
    path: Path
    sha256: str
    info: dict  # everything else the manifest records for it (exporter, optimization, opset...)


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

    def variant(self, name: str | None = None) -> Variant:
        chosen = self.default_variant if name is None else name
        if chosen not in self.variants:
            raise BundleError(f"component {self.name} has no variant {chosen!r}; it has {sorted(self.variants)}")
        return self.variants[chosen]


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

    def encoder(self, modality: str) -> Component:
        for component in self.components.values():
            if component.role == "encoder" and component.modality == modality:
                return component
        raise BundleError(f"bundle {self.root} has no encoder for modality {modality!r}; it has {list(self.modalities)}")

    @property
    def fusion(self) -> Component:
        for component in self.components.values():
            if component.role == "fusion":
                return component
        raise BundleError(f"bundle {self.root} has no fusion component")

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
    root = Path(path)
    manifest_path = root / MANIFEST
    if not root.is_dir():
        raise BundleError(f"bundle directory {root} does not exist; expected the output of `fusionrt export`")
    if not manifest_path.is_file():
        raise BundleError(f"{root} has no {MANIFEST}; is it a bundle written by `fusionrt export`?")
    try:
        manifest = json.loads(manifest_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise BundleError(f"{manifest_path} is not valid JSON ({e}); re-export the bundle") from e
    return _parse(root, manifest, verify_hashes=True)


def write_manifest(root: str | Path, manifest: dict) -> None:
    """Write manifest.json with "files" set to the sha256 of every file under root (manifest.json aside)."""
    root = Path(root)
    complete = {**manifest, "files": _hash_tree(root)}
    _parse(root, complete, verify_hashes=False)
    staging = root / f".{MANIFEST}.partial"
    staging.write_text(json.dumps(complete, indent=2) + "\n")
    staging.replace(root / MANIFEST)


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _hash_tree(root: Path) -> dict[str, str]:
    files = {}
    for directory, subdirs, names in os.walk(root):
        subdirs.sort()
        for entry in [*subdirs, *names]:
            if (Path(directory) / entry).is_symlink():
                raise BundleError(f"{Path(directory) / entry} is a symlink; a bundle holds its files itself")
        for name in sorted(names):
            relative = (Path(directory) / name).relative_to(root).as_posix()
            if relative != MANIFEST:
                files[relative] = sha256_of(Path(directory) / name)
    return files


def _parse(root: Path, manifest: object, *, verify_hashes: bool) -> Bundle:
    where = str(root / MANIFEST)
    if not isinstance(manifest, dict):
        raise BundleError(f"{where}: expected a JSON object, found {type(manifest).__name__}")
    if manifest.get("format") != FORMAT:
        raise BundleError(f"{where}: format is {manifest.get('format')!r}, expected {FORMAT!r}; not a fusionrt bundle")
    version = _field(manifest, "version", int, where)
    if version > FORMAT_VERSION:
        raise BundleError(
            f"bundle {root} has format version {version}; this fusionrt reads version {FORMAT_VERSION} — upgrade fusionrt"
        )
    if version < 1:
        raise BundleError(f"{where}: version is {version}; expected {FORMAT_VERSION}")
    files = _field(manifest, "files", dict, where)
    for relative, digest in files.items():
        _check_file(root, relative, digest, verify_hashes)
    task = _field(manifest, "task", dict, where)
    kind = _field(task, "kind", str, where, "task.")
    if kind not in TASKS:
        raise BundleError(f"{where}: task.kind is {kind!r}; expected one of {list(TASKS)}")
    labels = tuple(str(x) for x in _field(task, "labels", list, where, "task."))
    modalities = tuple(_field(manifest, "modalities", list, where))
    components = {
        name: _component(root, name, entry, files, where)
        for name, entry in _field(manifest, "components", dict, where).items()
    }
    for modality in modalities:
        if not any(c.role == "encoder" and c.modality == modality for c in components.values()):
            raise BundleError(f"{where}: modality {modality!r} is listed but no encoder component has it")
    tokenizer = manifest.get("tokenizer")
    tokenizer_dir = None
    if tokenizer is not None:
        tokenizer_dir = _inside(root, tokenizer, "tokenizer")
        if f"{PurePosixPath(tokenizer)}/tokenizer.json" not in files:
            raise BundleError(f"{where}: tokenizer directory {tokenizer!r} has no tokenizer.json listed in files")
    reference = _reference(root, manifest.get("reference"), files, where)
    return Bundle(root, manifest, kind, labels, modalities, components, tokenizer_dir, reference)


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


def _component(root: Path, name: str, entry: object, files: dict, where: str) -> Component:
    prefix = f"components.{name}."
    if not isinstance(entry, dict):
        raise BundleError(f"{where}: components.{name} must be an object")
    role = _field(entry, "role", str, where, prefix)
    if role not in ROLES:
        raise BundleError(f"{where}: {prefix}role is {role!r}; expected one of {list(ROLES)}")
    rate = entry.get("rate_hz")
    variants = {}
    for variant_name, info in _field(entry, "variants", dict, where, prefix).items():
        vprefix = f"{prefix}variants.{variant_name}."
        if not isinstance(info, dict):
            raise BundleError(f"{where}: {vprefix[:-1]} must be an object")
        file = _field(info, "file", str, where, vprefix)
        precision = _field(info, "precision", str, where, vprefix)
        key = PurePosixPath(file).as_posix()
        if key not in files:
            raise BundleError(f"{where}: {vprefix}file {file!r} is not listed in files; re-export the bundle")
        rest = {k: v for k, v in info.items() if k not in ("file", "precision")}
        path = _inside(root, file, f"{vprefix}file")
        variants[variant_name] = Variant(variant_name, precision, path, files[key], rest)
    default = _field(entry, "default_variant", str, where, prefix)
    if default not in variants:
        raise BundleError(f"{where}: {prefix}default_variant {default!r} is not one of the variants {sorted(variants)}")
    return Component(
        name=name,
        role=role,
        modality=entry.get("modality"),
        rate_hz=float(rate) if rate is not None else None,
        inputs=_specs(_field(entry, "inputs", list, where, prefix), where, f"{prefix}inputs"),
        outputs=_specs(_field(entry, "outputs", list, where, prefix), where, f"{prefix}outputs"),
        preprocessing=entry.get("preprocessing") or {},
        variants=variants,
        default_variant=default,
    )


def _specs(items: list, where: str, field: str) -> tuple[TensorSpec, ...]:
    specs = []
    for i, item in enumerate(items):
        if not isinstance(item, dict):
            raise BundleError(f"{where}: {field}[{i}] must be an object with name, dtype and shape")
        prefix = f"{field}[{i}]."
        shape = _field(item, "shape", list, where, prefix)
        name, dtype = _field(item, "name", str, where, prefix), _field(item, "dtype", str, where, prefix)
        specs.append(TensorSpec(name, dtype, tuple(shape)))
    return tuple(specs)


def _field(container: dict, key: str, kind: type, where: str, prefix: str = ""):
    if key not in container:
        raise BundleError(f"{where}: field '{prefix}{key}' is missing; re-export the bundle")
    value = container[key]
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise BundleError(f"{where}: field '{prefix}{key}' must be {kind.__name__}, found {type(value).__name__}")
    return value


def _inside(root: Path, relative: object, field: str) -> Path:
    """root/relative, refusing absolute paths, '..' and symlinks that lead out of the bundle."""
    if not isinstance(relative, str) or not relative:
        raise BundleError(f"{root / MANIFEST}: {field} must be a non-empty relative path, found {relative!r}")
    posix = PurePosixPath(relative)
    if posix.is_absolute() or Path(relative).is_absolute() or "\\" in relative or ".." in posix.parts:
        raise BundleError(
            f"{root / MANIFEST}: path {relative!r} ({field}) leaves the bundle; expected a relative path inside {root}"
        )
    path = root / relative
    if not path.resolve().is_relative_to(root.resolve()):
        raise BundleError(f"{root / MANIFEST}: path {relative!r} ({field}) resolves outside the bundle (symlink?)")
    return path


def _check_file(root: Path, relative: str, digest: object, verify_hash: bool) -> None:
    path = _inside(root, relative, "files")
    if not path.is_file():
        raise BundleError(f"bundle {root}: file {relative!r} listed in the manifest is missing; re-export the bundle")
    if not isinstance(digest, str):
        raise BundleError(f"{root / MANIFEST}: files[{relative!r}] must be a sha256 hex string")
    if verify_hash:
        found = sha256_of(path)
        if found != digest:
            raise BundleError(
                f"bundle {root}: {relative} has sha256 {found[:12]}…, the manifest expects {digest[:12]}…; "
                f"the file was modified after export; re-export"
            )


def describe(bundle: Bundle) -> str:
    """The table `fusionrt inspect` prints: components, variants, IO, preprocessing and parity figures."""
    manifest = bundle.manifest
    report = (bundle.report("export") or {}).get("components", {})
    labels = ", ".join(bundle.labels) if bundle.labels else "-"
    lines = [
        f"bundle {bundle.root}  ({manifest['format']} v{manifest['version']}, created {manifest.get('created', '?')})",
        f"task: {bundle.task}; {len(bundle.labels)} labels: {labels}",
        f"modalities: {', '.join(bundle.modalities)}; tokenizer: {manifest.get('tokenizer') or '-'}",
    ]
    for c in bundle.components.values():
        rate = f"{c.rate_hz:g} Hz" if c.rate_hz is not None else "-"
        lines += ["", f"{c.name}  role={c.role}  modality={c.modality or '-'}  rate={rate}"]
        for label, specs in (("in ", c.inputs), ("out", c.outputs)):
            for s in specs:
                lines.append(f"  {label} {s.name:<16} {s.dtype:<8} [{', '.join(str(d) for d in s.shape)}]")
        if c.preprocessing:
            lines.append("  preprocessing: " + " ".join(f"{k}={v}" for k, v in c.preprocessing.items()))
        lines.append(f"  {'variant':<10} {'precision':<9} {'size':>10}  {'exporter':<11} {'opt':<6} parity vs PyTorch")
        for v in c.variants.values():
            marker = "*" if v.name == c.default_variant else " "
            parity = ((report.get(c.name) or {}).get("variants", {}).get(v.name) or {}).get("parity")
            lines.append(
                f"  {v.name + marker:<10} {v.precision:<9} {_size(v.path):>10}  {v.info.get('exporter', '-'):<11} "
                f"{v.info.get('optimization', '-'):<6} {_parity_text(parity)}"
            )
    return "\n".join(lines)


def _size(path: Path) -> str:
    size = float(path.stat().st_size) if path.is_file() else 0.0
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1024 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return "?"


def _parity_text(parity: dict | None) -> str:
    if not parity:
        return "-"
    parts = [
        f"{name}: cos={o['cosine']:.6f} max_abs={o['max_abs']:.2g}"
        + (f" argmax={o['argmax_agreement']:.0%}" if o.get("argmax_agreement") is not None else "")
        for name, o in parity.get("outputs", {}).items()
    ]
    return "; ".join(parts) + f" ({parity.get('inputs', '?')} input sets)"
