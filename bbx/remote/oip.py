"""The Open Inference Protocol (the "v2" REST protocol of KServe, NVIDIA Triton and Seldon MLServer):
model URLs, model metadata, inference requests and answers as JSON.

Tensors travel as flat JSON lists in row-major order. A float32 value is written as the shortest
decimal that reads back as the same float32 (``orjson`` when installed, else Python's ``repr`` of
the float64 it widens to): the server sees the very tensor the local model would.
"""

from __future__ import annotations

import json
import urllib.parse
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import numpy as np

from .._io import load_json
from ..errors import EndpointError, OptionError

try:  # 20x faster than the standard library at writing large float lists (same values: module docstring)
    import orjson
except ImportError:  # pragma: no cover - the `remote` extra installs it
    orjson = None

DATATYPES: dict[str, Any] = {
    "BOOL": np.bool_, "UINT8": np.uint8, "UINT16": np.uint16, "UINT32": np.uint32, "UINT64": np.uint64,
    "INT8": np.int8, "INT16": np.int16, "INT32": np.int32, "INT64": np.int64,
    "FP16": np.float16, "FP32": np.float32, "FP64": np.float64, "BYTES": object,
}
IMAGE_DATATYPES = {"FP32": "float32", "FP16": "float16", "UINT8": "uint8"}


@dataclass(frozen=True)
class ModelUrl:
    """``scheme://host:port[/prefix]/v2/models/NAME[/versions/VERSION]``, split."""

    scheme: str
    host: str
    port: int
    prefix: str  # a path before /v2 (a gateway's route), "" for none
    model: str
    version: str | None

    @property
    def path(self) -> str:
        """The model's metadata path; ``/infer`` and ``/ready`` hang below it."""
        version = f"/versions/{urllib.parse.quote(self.version, safe='')}" if self.version else ""
        return f"{self.prefix}/v2/models/{urllib.parse.quote(self.model, safe='')}{version}"

    @property
    def shown(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.scheme}://{host}:{self.port}{self.path}"


def is_url(text: object) -> bool:
    return isinstance(text, str) and text.lower().startswith(("http://", "https://", "grpc://", "grpcs://"))


def parse_url(url: str) -> ModelUrl:
    """A model URL, or one line that says what is wrong with it (never echoing a password)."""
    try:
        parts = urllib.parse.urlsplit(url.strip())
        port = parts.port
    except ValueError:
        raise OptionError("not a valid endpoint URL: use http(s)://HOST:PORT/v2/models/NAME") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise OptionError("not a valid endpoint URL: use http(s)://HOST:PORT/v2/models/NAME")
    if parts.username or parts.password:
        raise OptionError("the endpoint URL holds credentials: give them with --auth-env or --auth-file instead")
    if parts.query or parts.fragment:
        raise OptionError("the endpoint URL has a query or fragment, which bbx would not send: remove it")
    segments = [urllib.parse.unquote(s) for s in parts.path.split("/") if s]
    if segments and segments[-1] in ("infer", "ready"):
        segments = segments[:-1]
    try:
        at = max(i for i, s in enumerate(segments[:-1]) if s == "v2" and segments[i + 1] == "models")
    except ValueError:
        raise OptionError(f"the endpoint URL's path {parts.path or '/'} has no /v2/models/NAME "
                          "(Open Inference Protocol)") from None
    rest = segments[at + 2:]
    if len(rest) == 1:
        model, version = rest[0], None
    elif len(rest) == 3 and rest[1] == "versions":
        model, version = rest[0], rest[2]
    else:
        raise OptionError("the endpoint URL must end in /v2/models/NAME or /v2/models/NAME/versions/VERSION")
    prefix = "".join("/" + urllib.parse.quote(s) for s in segments[:at])
    return ModelUrl(parts.scheme, parts.hostname, port or (443 if parts.scheme == "https" else 80), prefix,
                    model, version)


@dataclass(frozen=True)
class TensorMeta:
    name: str
    datatype: str
    shape: tuple[int, ...]  # -1 where the size varies


@dataclass(frozen=True)
class ModelMeta:
    name: str
    platform: str
    inputs: tuple[TensorMeta, ...]
    outputs: tuple[TensorMeta, ...]
    parameters: dict[str, Any] = field(default_factory=dict)
    raw: dict[str, Any] = field(default_factory=dict)  # as the endpoint sent it, for `bbx inspect`


def parse_metadata(body: bytes, where: str, scrub: Callable[[str], str] = str) -> ModelMeta:
    data = read_json(body, where, scrub)
    try:
        inputs = tuple(_tensor(t) for t in data["inputs"])
        outputs = tuple(_tensor(t) for t in data["outputs"])
        params = data.get("parameters") or {}
        if not isinstance(params, dict):
            params = {}
        return ModelMeta(str(data.get("name", "")), str(data.get("platform", "")), inputs, outputs, params, data)
    except (KeyError, TypeError, ValueError, OverflowError) as exc:
        raise EndpointError(f"{where} sent model metadata without the protocol's inputs and outputs "
                            f"({type(exc).__name__}: {scrub(str(exc))[:120]})") from None


def _tensor(t: dict[str, Any]) -> TensorMeta:
    return TensorMeta(str(t["name"]), str(t["datatype"]).upper(), tuple(int(d) for d in t["shape"]))


def read_json(body: bytes, where: str, scrub: Callable[[str], str] = str) -> dict[str, Any]:
    """An answer's JSON object through bbx's bounded reader (:func:`bbx._io.load_json`). ``scrub``
    takes the credential out of any of the body's text an error shows, before it is cut short."""
    try:
        data = load_json(body)
    except ValueError as exc:
        preview = scrub(body[:4096].decode("utf-8", errors="replace"))[:60].replace("\n", " ")
        raise EndpointError(f"{where} answered with a malformed body ({scrub(str(exc))[:120]}: {preview!r})") from None
    if not isinstance(data, dict):
        raise EndpointError(f"{where} answered with a malformed body (JSON {type(data).__name__}, not an object)")
    return data


def encode_request(name: str, datatype: str, x: np.ndarray, outputs: Sequence[str]) -> bytes:
    """One inference request: the batch ``x`` as input ``name``, asking for ``outputs``."""
    flat = np.ascontiguousarray(x).reshape(-1)
    if flat.dtype == np.float16:  # JSON numbers: the float32 holding the same value
        flat = flat.astype(np.float32)
    tensor: dict[str, Any] = {"name": name, "shape": list(x.shape), "datatype": datatype}
    request = {"inputs": [tensor], "outputs": [{"name": o} for o in outputs]}
    if orjson is not None:
        tensor["data"] = flat
        return orjson.dumps(request, option=orjson.OPT_SERIALIZE_NUMPY)
    tensor["data"] = flat.tolist()
    return json.dumps(request, separators=(",", ":")).encode()


def decode_response(body: bytes, where: str, scrub: Callable[[str], str] = str) -> dict[str, np.ndarray]:
    """The answer's outputs by name, each as an array of its declared shape."""
    data = read_json(body, where, scrub)
    if "error" in data and "outputs" not in data:
        raise EndpointError(f"{where} answered with an error: {scrub(str(data['error']))[:200]}")
    try:
        out = {}
        for t in data["outputs"]:
            shape = tuple(int(d) for d in t["shape"])
            datatype = str(t["datatype"]).upper()
            values = t["data"]
            if datatype == "BYTES":
                arr = np.array(values, dtype=object)
            else:  # a value beyond float32 becomes inf, which the caller's check of every answer refuses
                with np.errstate(over="ignore", invalid="ignore"):
                    arr = np.asarray(values, dtype=DATATYPES[datatype])
            out[str(t["name"])] = arr.reshape(shape)
        return out
    except (KeyError, TypeError, ValueError, OverflowError) as exc:
        raise EndpointError(f"{where} answered with a malformed body "
                            f"({type(exc).__name__}: {scrub(str(exc))[:120]})") from None
