"""Reading a GGUF file's header: magic, version, tensor count and the scalar metadata.

Enough to tell a model file from anything else before llama.cpp loads it:
`read_header` reads the fixed header and every metadata key/value (arrays,
such as the tokenizer's vocabulary, are skipped, not kept), then the tensor
infos, and checks that the file is long enough to hold the tensor data they
describe. A file that is not GGUF, is cut short, or has a header that does
not add up raises `ModelFileError` naming the file and what is wrong.
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

from events.errors import OtlakeError

MAGIC = b"GGUF"
# value types of GGUF metadata: id -> struct format (None: string, array handled apart)
_SCALARS = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?", 10: "<Q", 11: "<q", 12: "<d"}
_STRING, _ARRAY = 8, 9
_MAX_STRING = 1 << 26  # a metadata string longer than 64 MiB is a corrupt length, not a string
_MAX_COUNT = 1 << 32
# ggml tensor types: id -> (block size in elements, bytes per block)
_GGML = {0: (1, 4), 1: (1, 2), 2: (32, 18), 3: (32, 20), 6: (32, 22), 7: (32, 24), 8: (32, 34), 9: (32, 36),
         10: (256, 84), 11: (256, 110), 12: (256, 144), 13: (256, 176), 14: (256, 210), 15: (256, 292),
         16: (256, 66), 17: (256, 74), 18: (256, 98), 19: (256, 50), 20: (32, 18), 21: (256, 110),
         22: (256, 82), 23: (256, 136), 24: (1, 1), 25: (1, 2), 26: (1, 4), 27: (1, 8), 28: (1, 8),
         29: (256, 56), 30: (1, 2), 34: (256, 54), 35: (256, 66), 39: (32, 17)}


class ModelFileError(OtlakeError):
    """A model file that is missing, not GGUF, truncated or otherwise unusable."""


@dataclass(frozen=True)
class GgufHeader:
    version: int
    tensor_count: int
    metadata: dict[str, Any] = field(default_factory=dict)  # scalar values only
    data_end: int | None = None  # bytes the tensor data needs (None: a tensor type this reader does not know)
    size: int = 0

    @property
    def architecture(self) -> str | None:
        value = self.metadata.get("general.architecture")
        return value if isinstance(value, str) else None

    @property
    def name(self) -> str | None:
        value = self.metadata.get("general.name")
        return value if isinstance(value, str) else None

    @property
    def context_length(self) -> int | None:
        value = self.metadata.get(f"{self.architecture}.context_length")
        return value if isinstance(value, int) else None


def read_header(path: str | os.PathLike) -> GgufHeader:
    """The header of the GGUF file at `path`; `ModelFileError` if it is not a whole GGUF file."""
    path = Path(path)
    try:
        size = path.stat().st_size
        with path.open("rb") as f:
            return _read(f, size, path)
    except FileNotFoundError:
        raise ModelFileError(f"model file {path}: not found") from None
    except IsADirectoryError:
        raise ModelFileError(f"model file {path}: is a folder, not a GGUF file") from None
    except (struct.error, EOFError, UnicodeDecodeError, OverflowError, MemoryError) as e:
        raise ModelFileError(f"model file {path}: corrupt or truncated GGUF header ({type(e).__name__})") from None
    except OSError as e:
        raise ModelFileError(f"model file {path}: {e.strerror or e}") from None


def _read(f: BinaryIO, size: int, path: Path) -> GgufHeader:
    magic = f.read(4)
    if magic != MAGIC:
        raise ModelFileError(f"model file {path}: not a GGUF file (starts with {magic!r}, not {MAGIC!r})")
    version, tensors, kvs = struct.unpack("<IQQ", _exact(f, 20))
    if version not in (2, 3):
        raise ModelFileError(f"model file {path}: GGUF version {version} (this reader knows 2 and 3)")
    if tensors > _MAX_COUNT or kvs > _MAX_COUNT:
        raise ModelFileError(f"model file {path}: corrupt GGUF header ({tensors} tensors, {kvs} keys)")
    metadata: dict[str, Any] = {}
    for _ in range(kvs):
        key = _string(f)
        (kind,) = struct.unpack("<I", _exact(f, 4))
        value = _value(f, kind, path)
        if value is not _SKIPPED:
            metadata[key] = value
    data_bytes: int | None = 0
    offsets = []
    for _ in range(tensors):
        _string(f)
        (dims,) = struct.unpack("<I", _exact(f, 4))
        if dims > 8:
            raise ModelFileError(f"model file {path}: corrupt tensor info ({dims} dimensions)")
        shape = struct.unpack(f"<{dims}Q", _exact(f, 8 * dims))
        kind, offset = struct.unpack("<IQ", _exact(f, 12))
        elements = 1
        for n in shape:
            elements *= n
        block = _GGML.get(kind)
        if block is None or data_bytes is None:
            data_bytes = None
        else:
            offsets.append(offset + -(-elements // block[0]) * block[1])
    alignment = metadata.get("general.alignment", 32)
    alignment = alignment if isinstance(alignment, int) and alignment > 0 else 32
    start = -(-f.tell() // alignment) * alignment
    data_end = start + max(offsets, default=0) if data_bytes is not None else None
    if data_end is not None and data_end > size:
        raise ModelFileError(f"model file {path}: truncated ({size:,} bytes; its tensors need {data_end:,})")
    return GgufHeader(version=version, tensor_count=tensors, metadata=metadata, data_end=data_end, size=size)


_SKIPPED = object()


def _value(f: BinaryIO, kind: int, path: Path, depth: int = 0) -> Any:
    if kind in _SCALARS:
        fmt = _SCALARS[kind]
        (value,) = struct.unpack(fmt, _exact(f, struct.calcsize(fmt)))
        return value
    if kind == _STRING:
        return _string(f)
    if kind == _ARRAY and depth < 2:
        inner, count = struct.unpack("<IQ", _exact(f, 12))
        if count > _MAX_COUNT:
            raise ModelFileError(f"model file {path}: corrupt metadata array ({count} items)")
        if inner in _SCALARS:
            f.seek(count * struct.calcsize(_SCALARS[inner]), os.SEEK_CUR)
        else:
            for _ in range(count):
                _value(f, inner, path, depth + 1)
        return _SKIPPED
    raise ModelFileError(f"model file {path}: corrupt metadata (value type {kind})")


def _string(f: BinaryIO) -> str:
    (n,) = struct.unpack("<Q", _exact(f, 8))
    if n > _MAX_STRING:
        raise EOFError("string length past any real header")
    return _exact(f, n).decode("utf-8")


def _exact(f: BinaryIO, n: int) -> bytes:
    data = f.read(n)
    if len(data) != n:
        raise EOFError("end of file inside the header")
    return data
