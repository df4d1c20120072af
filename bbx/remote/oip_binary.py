"""Tensors as raw bytes, for the protocol's gRPC form and for Triton's binary tensor data extension
of the REST form (an HTTP body that is a JSON header followed by the tensors' bytes).

Raw bytes are row-major and little endian; a BYTES tensor is each element's 4-byte little-endian
length before its bytes (the protocol's definition, the same for gRPC and HTTP).

The extension: the server lists ``binary_tensor_data`` among the ``extensions`` of its metadata
(``GET /v2``); a request then carries ``Inference-Header-Content-Length`` (the JSON header's length),
and each input's ``parameters.binary_data_size`` says how many bytes after the header are its
values. bbx asks for the outputs as JSON (``binary_data: false``): a classifier's answer is a few
kilobytes per image, its input 600 KB.
"""

from __future__ import annotations

import json
from typing import Any, Sequence

import numpy as np

from .oip import DATATYPES, read_json

EXTENSION = "binary_tensor_data"
HEADER_LENGTH = "Inference-Header-Content-Length"


def speaks_binary(body: bytes, where: str) -> bool:
    """Whether the server's metadata (``GET /v2``) lists the binary tensor data extension."""
    extensions = read_json(body, where).get("extensions")
    return isinstance(extensions, list) and EXTENSION in extensions


def encode_request(name: str, datatype: str, x: np.ndarray, outputs: Sequence[str]) -> tuple[bytes, dict[str, str]]:
    """One inference request with ``x`` in binary after the JSON header, and the headers it needs."""
    raw = to_raw(x, datatype)
    header: dict[str, Any] = {
        "inputs": [{"name": name, "shape": list(x.shape), "datatype": datatype,
                    "parameters": {"binary_data_size": len(raw)}}],
        "outputs": [{"name": o, "parameters": {"binary_data": False}} for o in outputs],
    }
    text = json.dumps(header, separators=(",", ":")).encode()
    return text + raw, {"Content-Type": "application/octet-stream", HEADER_LENGTH: str(len(text))}


def to_raw(x: np.ndarray, datatype: str) -> bytes:
    """Row-major little-endian values; BYTES as 4-byte little-endian lengths, each before its bytes."""
    if datatype == "BYTES":
        items = [v if isinstance(v, bytes) else str(v).encode() for v in np.asarray(x, dtype=object).reshape(-1)]
        return b"".join(len(v).to_bytes(4, "little") + v for v in items)
    dtype = np.dtype(DATATYPES[datatype]).newbyteorder("<")
    return np.ascontiguousarray(x, dtype=dtype).tobytes()


def from_raw(data: bytes, datatype: str) -> np.ndarray:
    """The flat values of ``data``; ValueError when the bytes are not whole values."""
    if datatype == "BYTES":
        items, at = [], 0
        while at < len(data):
            if at + 4 > len(data):
                raise ValueError("a BYTES length runs past the end")
            n = int.from_bytes(data[at:at + 4], "little")
            if at + 4 + n > len(data):
                raise ValueError("a BYTES element runs past the end")
            items.append(data[at + 4:at + 4 + n])
            at += 4 + n
        return np.array(items, dtype=object)
    dtype = np.dtype(DATATYPES[datatype]).newbyteorder("<")
    if len(data) % dtype.itemsize:
        raise ValueError(f"{len(data)} bytes is not a whole number of {datatype} values")
    return np.frombuffer(data, dtype=dtype).astype(dtype.newbyteorder("="))
