"""Where the model runs: onnxruntime's providers, CUDA and its options, and the sessions bbx opens.

:class:`Runtime` opens the model's own session and, with the same providers and options, the
small graphs that :mod:`bbx.query.masks` runs around it: a composed graph must run the model's nodes as
the model's own session does.
"""

from __future__ import annotations

import contextlib
import os
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

from ..errors import ModelError, OptionError

# onnxruntime's own usage telemetry writes files under ~/.cache and $TMPDIR as soon as it is
# imported (1.2x+): bbx writes nothing outside its output folder, so it is off unless asked for.
os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")


@dataclass
class Runtime:
    """The model's onnxruntime session, the providers and options it was opened with, its device."""

    session: Any
    options: Any  # onnxruntime.SessionOptions
    #: providers and options as the model's session was opened with them: bbx's own sessions
    #: around the model open with the same, so that they run as the model does
    provider_config: list[Any]
    #: where tensors live for IOBinding: "cuda" when the CUDA provider took the model
    device: str

    @property
    def providers(self) -> list[str]:
        return self.session.get_providers()

    def new_session(self, proto: Any, small: bool = False) -> Any:
        """A session of ``proto`` on the model's providers with its options (TF32, cuDNN's search,
        the layout). ``small``: a graph of next to no CPU work gets one thread that does not spin,
        so that it does not take the cores from the model's own pool (spinning pools of chained
        sessions cost a fifth of the loop on a 2-core CPU: docs/gpu.md)."""
        import onnxruntime as ort

        opts = self.options
        if small:
            opts = ort.SessionOptions()
            opts.graph_optimization_level = self.options.graph_optimization_level
            opts.log_severity_level = self.options.log_severity_level
            opts.intra_op_num_threads = 1
            opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
        return ort.InferenceSession(proto.SerializeToString(), sess_options=opts, providers=self.provider_config)


def open_runtime(path: Path, device: str, cuda_options: Mapping[str, Any] | None,
                 threads: int | None = None) -> Runtime:
    """The model's session on ``device`` (``cpu``, ``cuda`` falling back with a warning, ``auto``),
    with ``threads`` intra-op threads (default: onnxruntime's, one per physical core)."""
    import onnxruntime as ort

    if cuda_options and device.lower() == "cpu":
        warnings.warn(f"CUDA options ({_fmt_options(cuda_options)}) do nothing on the CPU: add --device cuda",
                      RuntimeWarning, stacklevel=3)
    providers = provider_list(device, ort.get_available_providers(), cuda_options)
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.log_severity_level = 4
    if threads is not None:
        if threads < 1:
            raise OptionError(f"threads must be at least 1, not {threads}")
        opts.intra_op_num_threads = threads
    # the resolved path: onnxruntime reads external data from the folder bbx.model.files checked
    where = str(path.resolve())
    try:
        try:
            session = ort.InferenceSession(where, sess_options=opts, providers=providers)
        except Exception as exc:
            if not isinstance(providers[0], tuple):
                raise
            if cuda_options:  # the user's own options are not dropped in silence
                raise OptionError(f"onnxruntime's CUDA provider refused the options "
                                  f"{_fmt_options(cuda_options)}: {first_line(exc)}") from None
            # an onnxruntime-gpu that does not know one of bbx's CUDA options: its defaults then
            providers = ["CUDAExecutionProvider", "CPUExecutionProvider"]
            session = ort.InferenceSession(where, sess_options=opts, providers=providers)
    except OptionError:
        raise
    except Exception as exc:
        raise ModelError(f"onnxruntime cannot load {path.name}: {first_line(exc)}") from None
    runs_on = "cuda" if session.get_providers()[0] == "CUDAExecutionProvider" else "cpu"
    if device.lower() == "cuda" and runs_on != "cuda" and "CUDAExecutionProvider" in ort.get_available_providers():
        warnings.warn(f"the CUDA provider could not start ({cuda_failure_reason()}); running on the CPU",
                      RuntimeWarning, stacklevel=3)
    return Runtime(session=session, options=opts, provider_config=providers, device=runs_on)


def provider_list(device: str, available: Sequence[str], cuda_options: Mapping[str, Any] | None = None) -> list[Any]:
    device = device.lower()
    if device not in ("cpu", "cuda", "auto"):
        raise OptionError(f"unknown device {device!r}: use cpu, cuda or auto")
    if device in ("cuda", "auto") and "CUDAExecutionProvider" in available:
        # TF32 nearly doubles fp32 convolutions' throughput (docs/gpu.md). The exhaustive cuDNN
        # search is paid once per batch shape, and an explanation sends
        # the same shape again and again.
        _preload_cuda_libraries()
        cuda = {"cudnn_conv_algo_search": "EXHAUSTIVE", "use_tf32": "1", "do_copy_in_default_stream": "1"}
        cuda.update({str(k): str(v) for k, v in (cuda_options or {}).items()})
        return [("CUDAExecutionProvider", cuda), "CPUExecutionProvider"]
    if device == "cuda":
        warnings.warn(f"CUDA was asked for but {no_cuda_provider()}; running on the CPU", RuntimeWarning, stacklevel=3)
    return ["CPUExecutionProvider"]


def cuda_status() -> str | None:
    """``None`` when onnxruntime's CUDA provider starts here, else why not and the fix, in one line.

    Opens a one-node session on CUDA: the only way to know, since a provider that is listed can
    still fail to load its libraries or find no GPU.
    """
    import onnxruntime as ort
    from onnx import TensorProto, helper

    if "CUDAExecutionProvider" not in ort.get_available_providers():
        return no_cuda_provider()
    _preload_cuda_libraries()
    graph = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "probe",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])])
    probe = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    opts = ort.SessionOptions()
    opts.log_severity_level = 4
    try:
        with warnings.catch_warnings():  # onnxruntime's own warning is replaced by the line below
            warnings.simplefilter("ignore")
            sess = ort.InferenceSession(probe.SerializeToString(), sess_options=opts,
                                        providers=["CUDAExecutionProvider", "CPUExecutionProvider"])
        if sess.get_providers()[0] == "CUDAExecutionProvider":
            return None
    except Exception:
        pass
    return f"the CUDA provider could not start ({cuda_failure_reason()})"


def no_cuda_provider() -> str:
    """Why the CUDA provider is missing and the command that fixes it. ``pip install bbx[gpu]`` puts
    onnxruntime-gpu beside the CPU onnxruntime that bbx depends on; both install the same
    ``onnxruntime`` module, and whichever pip wrote last is the one imported."""
    from importlib import metadata

    try:
        gpu = metadata.version("onnxruntime-gpu")
    except metadata.PackageNotFoundError:
        return "onnxruntime has no CUDAExecutionProvider here (install bbx[gpu])"
    return (f"onnxruntime has no CUDAExecutionProvider here (onnxruntime-gpu {gpu} is installed but the CPU "
            f"package onnxruntime overwrote its files; fix: pip install --force-reinstall --no-deps "
            f"onnxruntime-gpu=={gpu})")


def cuda_failure_reason() -> str:
    """Name what stopped the CUDA provider: onnxruntime only logs it. Loading the provider library
    again tells a missing CUDA/cuDNN library (the usual cause) from a machine without a usable GPU."""
    import ctypes

    import onnxruntime as ort

    name = "onnxruntime_providers_cuda.dll" if sys.platform == "win32" else "libonnxruntime_providers_cuda.so"
    lib = Path(ort.__file__).parent / "capi" / name
    if not lib.is_file():
        return "its library is not in this onnxruntime build"
    try:
        ctypes.CDLL(str(lib))
    except OSError as exc:
        text = first_line(exc)  # "libcublasLt.so.13: cannot open shared object file: ..."
        if "cannot open shared object" not in text:
            return f"its library does not load: {text}"
        return (f"{text.split(':')[0].strip()} not found: install the CUDA and cuDNN versions this "
                "onnxruntime-gpu needs, or NVIDIA's pip packages of them, or import torch first")
    return "no usable NVIDIA GPU or driver"


def _preload_cuda_libraries() -> None:
    """Let onnxruntime-gpu find CUDA and cuDNN from the NVIDIA pip packages (PyTorch's, say) without
    LD_LIBRARY_PATH; harmless where they are already loaded or absent (the CPU fallback then warns)."""
    import onnxruntime as ort

    preload = getattr(ort, "preload_dlls", None)
    if preload is None or "torch" in sys.modules:  # an imported PyTorch has loaded its own already
        return
    try:
        with open(os.devnull, "w") as sink, contextlib.redirect_stdout(sink), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            preload()
    except Exception:
        pass


def _fmt_options(options: Mapping[str, Any]) -> str:
    return ", ".join(f"{k}={v}" for k, v in options.items())


def first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    line = next((ln.strip() for ln in text.splitlines() if ln.strip()), type(exc).__name__)
    return line[:300]
