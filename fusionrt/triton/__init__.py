"""A bundle on NVIDIA Triton Inference Server: the model repository (`write_repository`) and the
`triton://` addresses the runtime's remote engine (fusionrt.runtime.triton_engine) connects to."""

from fusionrt.triton.address import TritonBackend, parse_address
from fusionrt.triton.config import Serving
from fusionrt.triton.repository import AUTO, ENSEMBLE, Repository, write_repository

__all__ = ["AUTO", "ENSEMBLE", "Repository", "Serving", "TritonBackend", "parse_address", "write_repository"]
