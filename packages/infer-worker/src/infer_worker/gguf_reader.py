"""A small, fast GGUF parser: metadata as Python values, tensors as memory-mapped bytes.

gguf.GGUFReader builds a numpy view per array element (seconds for a 49k-token
vocabulary); this reads the same format in one pass with struct. Layout
(GGUF v2/v3, little-endian): magic, version, tensor count, kv count, the
key/value pairs, the tensor infos, then tensor data aligned to
general.alignment (default 32).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from gguf import GGML_QUANT_SIZES, GGMLQuantizationType

_SCALARS = {
    0: "<B",
    1: "<b",
    2: "<H",
    3: "<h",
    4: "<I",
    5: "<i",
    6: "<f",
    7: "<?",
    10: "<Q",
    11: "<q",
    12: "<d",
}
_NUMPY = {
    0: "<u1",
    1: "<i1",
    2: "<u2",
    3: "<i2",
    4: "<u4",
    5: "<i4",
    6: "<f4",
    7: "?",
    10: "<u8",
    11: "<i8",
    12: "<f8",
}
STRING, ARRAY = 8, 9


class GGUFFormatError(ValueError):
    """The bytes are not a GGUF file this parser understands."""


@dataclass
class TensorInfo:
    name: str
    shape: tuple[int, ...]  # numpy order (outermost first), i.e. ggml dims reversed
    qtype: GGMLQuantizationType
    data: np.ndarray  # uint8 [*shape[:-1], row_bytes], memory-mapped


class _Cursor:
    def __init__(self, buf: memoryview) -> None:
        self.buf = buf
        self.pos = 0

    def unpack(self, fmt: str) -> Any:
        value = struct.unpack_from(fmt, self.buf, self.pos)[0]
        self.pos += struct.calcsize(fmt)
        return value

    def string(self) -> str:
        size = self.unpack("<Q")
        if self.pos + size > len(self.buf):
            raise GGUFFormatError("string runs past the end of the file")
        text = bytes(self.buf[self.pos : self.pos + size]).decode("utf-8", errors="replace")
        self.pos += size
        return text

    def value(self, kind: int) -> Any:
        if kind in _SCALARS:
            return self.unpack(_SCALARS[kind])
        if kind == STRING:
            return self.string()
        if kind == ARRAY:
            item, count = self.unpack("<I"), self.unpack("<Q")
            if item in _NUMPY:
                dtype = np.dtype(_NUMPY[item])
                end = self.pos + count * dtype.itemsize
                if end > len(self.buf):
                    raise GGUFFormatError("array runs past the end of the file")
                arr = np.frombuffer(self.buf[self.pos : end], dtype=dtype)
                self.pos = end
                return arr.tolist()
            return [self.value(item) for _ in range(count)]
        raise GGUFFormatError(f"unknown metadata value type {kind}")


def read_gguf(path: Path) -> tuple[dict[str, Any], list[TensorInfo]]:
    """(metadata, tensors) of a GGUF file; GGUFFormatError if malformed."""
    try:
        mapped = np.memmap(path, dtype=np.uint8, mode="r")
    except ValueError as exc:  # e.g. an empty file
        raise GGUFFormatError(str(exc)) from None
    cur = _Cursor(memoryview(mapped))
    try:
        if bytes(cur.buf[:4]) != b"GGUF":
            raise GGUFFormatError("bad magic (not a GGUF file)")
        cur.pos = 4
        version = cur.unpack("<I")
        if version not in (2, 3):
            raise GGUFFormatError(f"unsupported GGUF version {version}")
        n_tensors, n_kv = cur.unpack("<Q"), cur.unpack("<Q")
        meta: dict[str, Any] = {}
        for _ in range(n_kv):
            key = cur.string()
            meta[key] = cur.value(cur.unpack("<I"))
        infos = []
        for _ in range(n_tensors):
            name = cur.string()
            dims = [cur.unpack("<Q") for _ in range(cur.unpack("<I"))]
            infos.append((name, dims, cur.unpack("<I"), cur.unpack("<Q")))
    except struct.error as exc:
        raise GGUFFormatError(f"truncated file ({exc})") from None
    align = int(meta.get("general.alignment", 32))
    start = -(-cur.pos // align) * align
    tensors = []
    for name, dims, kind, offset in infos:
        try:
            qtype = GGMLQuantizationType(kind)
        except ValueError:
            raise GGUFFormatError(f"tensor {name!r} has unknown type id {kind}") from None
        block, type_size = GGML_QUANT_SIZES[qtype]
        shape = tuple(int(d) for d in reversed(dims))
        row_bytes = dims[0] // block * type_size
        rows = int(np.prod(shape[:-1], dtype=np.int64)) if len(shape) > 1 else 1
        begin = start + offset
        end = begin + rows * row_bytes
        if end > mapped.size:
            raise GGUFFormatError(f"tensor {name!r} runs past the end of the file")
        data = mapped[begin:end].reshape(*shape[:-1], row_bytes)
        tensors.append(TensorInfo(name, shape, qtype, data))
    return meta, tensors
