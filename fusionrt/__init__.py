"""fusionrt: export, quantize and stream multimodal models in real time."""

from fusionrt.errors import (
    BudgetError,
    BundleError,
    CalibrationError,
    ConfigError,
    DataError,
    EngineError,
    ExportError,
    FusionRTError,
    ModelError,
    SourceError,
)
from fusionrt.frame import Frame, Modality

__version__ = "0.1.0"

__all__ = [
    "BudgetError",
    "BundleError",
    "CalibrationError",
    "ConfigError",
    "DataError",
    "EngineError",
    "ExportError",
    "Frame",
    "FusionRTError",
    "ModelError",
    "Modality",
    "SourceError",
    "__version__",
]
