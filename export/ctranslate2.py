"""Read the weights of a CTranslate2 model directory (`model.bin`) into NumPy, without CTranslate2.

The file is little-endian: uint32 format version (6 here; 4 and later are read), the spec name
and its uint32 revision (version >= 2), uint32 variable count, then per variable its name, uint8
rank, uint32 dimensions, uint8 data type, uint32 byte count and the bytes; then the aliases
(version >= 3; a name that stands for another variable). Strings are a uint16 byte count
including a trailing NUL, then the bytes.
"""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np

from fusionrt.errors import ExportError

_DTYPES = {0: np.float32, 1: np.int8, 2: np.int16, 3: np.int32, 4: np.float16}
_OLDEST_VERSION = 4


def read_ctranslate2(model_dir: str | Path) -> tuple[str, dict[str, np.ndarray]]:
    """(spec name, {variable name: array}) of `model_dir/model.bin`; aliases point at the same arrays."""
    path = Path(model_dir) / "model.bin"
    if not path.is_file():
        raise ExportError(f"{path} does not exist; expected a CTranslate2 model directory (model.bin, config.json)")
    reader = _Reader(path.read_bytes(), path)
    version = reader.take("<I")
    if version < _OLDEST_VERSION:
        raise ExportError(f"{path} is CTranslate2 format version {version}; versions >= {_OLDEST_VERSION} are read")
    spec = reader.string()
    reader.take("<I")  # spec revision
    variables = {}
    for _ in range(reader.take("<I")):
        name = reader.string()
        shape = struct.unpack_from(f"<{reader.take('<B')}I", reader.data, reader.pos)
        reader.pos += 4 * len(shape)
        type_id, size = reader.take("<B"), reader.take("<I")
        if type_id not in _DTYPES:
            raise ExportError(f"{path}: variable {name!r} has CTranslate2 data type {type_id}; read are {sorted(_DTYPES)}")
        variables[name] = np.frombuffer(reader.bytes(size), dtype=_DTYPES[type_id]).reshape(shape)
    for _ in range(reader.take("<I")):
        alias, target = reader.string(), reader.string()
        variables[alias] = variables[target]
    return spec, variables


class _Reader:
    def __init__(self, data: bytes, path: Path):
        self.data, self.path, self.pos = data, path, 0

    def bytes(self, size: int) -> bytes:
        if self.pos + size > len(self.data):
            raise ExportError(f"{self.path} is truncated at byte {self.pos}; reinstall the model package")
        chunk = self.data[self.pos : self.pos + size]
        self.pos += size
        return chunk

    def take(self, fmt: str) -> int:
        (value,) = struct.unpack(fmt, self.bytes(struct.calcsize(fmt)))
        return value

    def string(self) -> str:
        return self.bytes(self.take("<H"))[:-1].decode()
