"""One error tree: every message says what was expected, what was found, and the likely fix."""


class FusionRTError(Exception):
    """Root of every error fusionrt raises on purpose."""


class ConfigError(FusionRTError):
    """A configuration file or value is invalid."""


class DataError(FusionRTError):
    """Input data (files, arrays, text) is missing or malformed."""


class ModelError(FusionRTError):
    """A model cannot be built or a checkpoint does not fit it."""


class ExportError(FusionRTError):
    """A component could not be exported, or its export does not match PyTorch."""


class BundleError(FusionRTError):
    """A bundle directory is missing, malformed, tampered with or of an unsupported version."""


class CalibrationError(FusionRTError):
    """Calibration data or quantization failed."""


class EngineError(FusionRTError):
    """A backend could not load or run a component."""


class SourceError(FusionRTError):
    """An input source could not be opened or failed while streaming."""


class BudgetError(FusionRTError):
    """A latency budget is invalid or was violated under a fatal policy."""
