"""What an export produced and how close it is to PyTorch: frozen records, JSON-ready."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

from fusionrt.bundle import TensorSpec


@dataclass(frozen=True)
class Tolerance:
    """Parity limits against PyTorch; an export outside them raises ExportError. None = not checked."""

    cosine: float = 0.9999
    max_abs: float | None = 1e-3
    fp16_cosine: float = 0.999
    fp16_max_abs: float | None = None

    def for_precision(self, precision: str) -> tuple[float, float | None]:
        """(minimum cosine, maximum abs error) for a variant's precision."""
        if precision == "fp16":
            return self.fp16_cosine, self.fp16_max_abs
        return self.cosine, self.max_abs


@dataclass(frozen=True)
class OutputParity:
    """One output compared over every parity input: worst cases (max errors, min cosine)."""

    name: str
    max_abs: float
    max_rel: float
    cosine: float
    argmax_agreement: float | None  # share of rows whose argmax matches; 2-D outputs only


@dataclass(frozen=True)
class Parity:
    inputs: int  # how many input sets were compared (the example and the generated ones)
    outputs: tuple[OutputParity, ...]
    min_cosine: float  # the tolerance it was checked against
    max_abs_limit: float | None

    @property
    def worst_cosine(self) -> float:
        return min(o.cosine for o in self.outputs)

    @property
    def worst_max_abs(self) -> float:
        return max(o.max_abs for o in self.outputs)


@dataclass(frozen=True)
class VariantReport:
    precision: str
    path: Path
    optimization: str  # ONNX Runtime offline graph optimization level the file was saved at
    parity: Parity
    seconds: dict[str, float]
    fp32_ops: tuple[str, ...] = ()  # fp16: op types of this graph the converter's block list keeps in fp32


@dataclass(frozen=True)
class ComponentReport:
    name: str
    exporter: str  # "dynamo" or "torchscript"
    fallback_reason: str | None  # why the dynamo exporter was not used
    opset: int
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    export_parity: Parity  # the exporter's graph, before offline optimization
    variants: dict[str, VariantReport]
    warnings: tuple[str, ...] = ()  # e.g. TorchScript tracer warnings

    def to_json(self) -> dict:
        return {
            "exporter": self.exporter,
            "fallback_reason": self.fallback_reason,
            "opset": self.opset,
            "warnings": list(self.warnings),
            "inputs": [_spec_json(s) for s in self.inputs],
            "outputs": [_spec_json(s) for s in self.outputs],
            "export_parity": _parity_json(self.export_parity),
            "variants": {name: _variant_json(v) for name, v in self.variants.items()},
        }


def _spec_json(spec: TensorSpec) -> dict:
    return {"name": spec.name, "dtype": spec.dtype, "shape": list(spec.shape)}


def _parity_json(parity: Parity) -> dict:
    return {
        "inputs": parity.inputs,
        "tolerance": {"cosine": parity.min_cosine, "max_abs": parity.max_abs_limit},
        "outputs": {o.name: {k: v for k, v in asdict(o).items() if k != "name"} for o in parity.outputs},
    }


def _variant_json(variant: VariantReport) -> dict:
    record = {
        "file": variant.path.name,
        "precision": variant.precision,
        "optimization": variant.optimization,
        "parity": _parity_json(variant.parity),
        "seconds": {k: round(v, 3) for k, v in variant.seconds.items()},
    }
    if variant.precision == "fp16":
        record["fp32_ops"] = list(variant.fp32_ops)
    return record
