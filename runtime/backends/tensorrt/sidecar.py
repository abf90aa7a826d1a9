"""The JSON sidecar written next to every serialized engine (``model.engine`` → ``model.engine.json``), and
the CUDA device an engine is built for or runs on.

An engine runs only with the TensorRT version that built it, on the GPU architecture it was built for,
unless it was built portable (``--version-compatible``: later TensorRT versions of the same major, and
TensorRT 10 engines on 11; ``--hardware-compatibility ampere+``: any Ampere or newer GPU; ``same-cc``:
any GPU of the same compute capability). The sidecar records what the engine was built with, so that a
mismatch is reported before the plan is handed to TensorRT, and its size and sha256, so that a truncated
or replaced file is recognised. All of these checks need neither TensorRT nor a GPU.

Keys (:data:`SCHEMA`; a sidecar with a missing, mistyped or unknown key is refused): ``format`` (1),
``project_version``, ``tensorrt_version``, ``gpu_name``, ``compute_capability`` ("8.9"), ``backbone``,
``precision`` ("fp32"/"fp16"/"int8"), ``input_name``, ``input_shape`` (network input NCHW, -1 = dynamic),
``profile`` ({"min","opt","max"} NCHW shapes), ``outputs`` (name → shape), ``weights_sha256``,
``engine_sha256``, ``engine_bytes``; optional: ``device_index`` (the CUDA device that built it),
``version_compatible`` (bool), ``hardware_compatibility`` ("none"/"ampere+"/"same-cc"), ``postprocess``
(the thresholds of an engine with decoding and NMS inside), ``source`` ("onnx") and ``onnx_sha256``, ``int8``
(the calibration settings of an INT8 engine: images, count, method, keep_precision, resize, input_size, route,
cache, and ``calibration``, the digest of the calibration key).
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from retinaface_trt.errors import RetinaFaceError
from retinaface_trt.fileio import write_text_atomic
from network.config import BACKBONES, PRECISIONS
from runtime.backends.tensorrt.compat import HARDWARE_COMPATIBILITY, version_tuple

SIDECAR_FORMAT = 1


class EngineMismatchError(RetinaFaceError):
    """The engine was built with another TensorRT version or GPU architecture (it can be rebuilt)."""


@dataclass(frozen=True)
class DeviceInfo:
    """The GPU an engine is built for or run on."""

    name: str                 # e.g. "NVIDIA H100 80GB HBM3"
    compute_capability: str   # "major.minor", e.g. "9.0"
    index: int = 0            # CUDA device index in this process


def require_cuda() -> None:
    """RetinaFaceError unless PyTorch sees a CUDA device (TensorRT's memory and streams are PyTorch's)."""
    import torch

    if not torch.cuda.is_available():
        raise RetinaFaceError("TensorRT needs an NVIDIA GPU, but PyTorch sees no CUDA device; install a CUDA "
                              "build of PyTorch and an NVIDIA driver (docs/tensorrt.md, \"On a machine with "
                              "TensorRT\")")


def current_device(index: int = 0) -> DeviceInfo:
    """Name and compute capability of CUDA device ``index``; RetinaFaceError without that device."""
    import torch

    require_cuda()
    if not 0 <= index < torch.cuda.device_count():
        raise RetinaFaceError(f"CUDA device {index} does not exist; this machine has "
                              f"{torch.cuda.device_count()} (use --device 0..{torch.cuda.device_count() - 1})")
    major, minor = torch.cuda.get_device_capability(index)
    return DeviceInfo(name=torch.cuda.get_device_name(index), compute_capability=f"{major}.{minor}", index=index)


def device_scope(index: int):
    """A context manager making CUDA device ``index`` current (TensorRT works on the current device)."""
    import torch

    return torch.cuda.device(index)


# The schema: key → (check, what it must be). --------------------------------------------------------------
def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _text(v) -> bool:
    return isinstance(v, str) and v != ""


def _sha256(v) -> bool:
    return isinstance(v, str) and re.fullmatch(r"[0-9a-f]{64}", v) is not None


def _shape(v) -> bool:
    """A list of dims, each a positive integer or -1 (known at run time)."""
    return isinstance(v, list) and all(_is_int(d) and (d == -1 or d > 0) for d in v)


def _nchw(v) -> bool:
    return _shape(v) and len(v) == 4 and v[1] == 3


def _profile(v) -> bool:
    return isinstance(v, dict) and set(v) == {"min", "opt", "max"} and all(
        _nchw(s) and min(s) > 0 for s in v.values())


def _outputs(v) -> bool:
    return isinstance(v, dict) and len(v) > 0 and all(_text(k) and _shape(s) for k, s in v.items())


def _postprocess(v) -> bool:
    from retinaface_trt.thresholds import Thresholds

    try:
        Thresholds(**v).check_engine()      # what an engine was built with is within its limits
        return True
    except (TypeError, RetinaFaceError):
        return False


def _one_of(names) -> str:
    """'"a", "b" or "c"'."""
    quoted = [f'"{name}"' for name in names]
    return f"{', '.join(quoted[:-1])} or {quoted[-1]}" if len(quoted) > 1 else quoted[0]


def _choice(*values) -> Callable:
    return lambda v: v in values


_INT8_KEYS = {"images": _text, "count": lambda v: _is_int(v) and v > 0, "method": _text, "resize": _text,
              "keep_precision": lambda v: isinstance(v, list) and all(_text(p) for p in v),
              "input_size": lambda v: isinstance(v, list) and len(v) == 2 and all(_is_int(d) and d > 0 for d in v),
              "route": _choice("explicit", "implicit"), "cache": lambda v: v is None or _text(v),
              "calibration": lambda v: isinstance(v, str) and re.fullmatch(r"[0-9a-f]{16}", v) is not None}


def _int8(v) -> bool:
    return isinstance(v, dict) and set(v) == set(_INT8_KEYS) and all(check(v[k]) for k, check in _INT8_KEYS.items())


SCHEMA: dict[str, tuple[Callable, str, bool]] = {     # key: (check, what it must be, required)
    "format": (lambda v: v == SIDECAR_FORMAT, f"{SIDECAR_FORMAT}", True),
    "project_version": (_text, "a version string", True),
    "tensorrt_version": (lambda v: _text(v) and len(version_tuple(v)) >= 2, "a version such as \"10.16.1.11\"", True),
    "gpu_name": (_text, "the GPU's name", True),
    "compute_capability": (lambda v: isinstance(v, str) and re.fullmatch(r"\d+\.\d+", v) is not None,
                           "\"major.minor\" such as \"8.9\"", True),
    "backbone": (_choice(*BACKBONES), _one_of(BACKBONES), True),
    "precision": (_choice(*PRECISIONS), _one_of(PRECISIONS), True),
    "input_name": (_text, "a tensor name", True),
    "input_shape": (_nchw, "a list [N, 3, H, W] of integers (-1 = dynamic)", True),
    "profile": (_profile, "{\"min\", \"opt\", \"max\"} NCHW shapes of positive integers", True),
    "outputs": (_outputs, "an object of output name → shape (list of integers)", True),
    "weights_sha256": (_text, "a sha256 hex digest", True),
    "engine_sha256": (_sha256, "a sha256 hex digest (64 lower-case hex digits)", True),
    "engine_bytes": (lambda v: _is_int(v) and v > 0, "a positive integer", True),
    "device_index": (lambda v: _is_int(v) and v >= 0, "a CUDA device index", False),
    "version_compatible": (lambda v: isinstance(v, bool), "true or false", False),
    "hardware_compatibility": (_choice(*HARDWARE_COMPATIBILITY), " or ".join(HARDWARE_COMPATIBILITY), False),
    "postprocess": (lambda v: isinstance(v, dict) and _postprocess(v),
                    "{confidence_threshold, nms_threshold, top_k, keep_top_k} in their ranges", False),
    "source": (_choice("onnx", "weights"), "\"onnx\" or \"weights\"", False),
    "onnx_sha256": (_sha256, "a sha256 hex digest", False),
    "int8": (_int8, f"{{{', '.join(sorted(_INT8_KEYS))}}} of the calibration", False),
}


def validate_sidecar(info, where) -> dict:
    """Return ``info`` if it fits :data:`SCHEMA`; else RetinaFaceError naming the first bad key."""
    if not isinstance(info, dict):
        raise RetinaFaceError(f"{where} is not a valid engine sidecar (a JSON object is expected, found "
                              f"{type(info).__name__}); rebuild the engine")
    unknown = sorted(set(info) - set(SCHEMA))
    missing = [k for k, (_, _, required) in SCHEMA.items() if required and k not in info]
    if unknown or missing:
        what = f"unknown key(s) {', '.join(unknown)}" if unknown else f"missing key(s) {', '.join(missing)}"
        raise RetinaFaceError(f"{where} is not a valid engine sidecar: {what}; rebuild the engine with "
                              "`retinaface-trt build`")
    for key, value in info.items():
        check, expected, _ = SCHEMA[key]
        if not check(value):
            raise RetinaFaceError(f"{where} is not a valid engine sidecar: {key!r} must be {expected}, found "
                                  f"{json.dumps(value)[:80]}; rebuild the engine with `retinaface-trt build`")
    return info


def sidecar_path(engine_path: str | Path) -> Path:
    """``model.engine`` → ``model.engine.json``."""
    engine_path = Path(engine_path)
    return engine_path.with_name(engine_path.name + ".json")


def write_sidecar(engine_path: str | Path, info: dict) -> Path:
    """Write ``info`` (keys above, checked) atomically next to ``engine_path``; return the sidecar's path."""
    path = sidecar_path(engine_path)
    info = validate_sidecar({"format": SIDECAR_FORMAT, **info}, path)
    write_text_atomic(path, json.dumps(info, indent=2, sort_keys=True) + "\n")
    return path


def read_sidecar(engine_path: str | Path) -> dict:
    """Read and validate the sidecar of ``engine_path``; RetinaFaceError (one line) for any problem."""
    path = sidecar_path(engine_path)
    if path.exists() and not path.is_file() and not path.is_dir():
        raise RetinaFaceError(f"{path} is not a regular file, not the engine's JSON sidecar; rebuild the engine")
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise RetinaFaceError(f"{path} is missing: every engine needs the JSON sidecar written by "
                              "`retinaface-trt build`; rebuild the engine with it") from None
    except IsADirectoryError:
        raise RetinaFaceError(f"{path} is a directory, not the engine's JSON sidecar; move it away and "
                              "rebuild the engine") from None
    except (OSError, UnicodeDecodeError) as error:
        raise RetinaFaceError(f"cannot read the sidecar {path}: {getattr(error, 'strerror', None) or error}") from None
    try:
        info = json.loads(text)
    except ValueError as error:
        raise RetinaFaceError(f"{path} is not a valid engine sidecar ({error}); rebuild the engine") from None
    return validate_sidecar(info, path)


def build_command(info: dict, engine_path: str | Path) -> str:
    """The ``retinaface-trt build`` command that rebuilds ``engine_path`` with the settings in ``info``."""
    lo, opt, hi = (info.get("profile", {}).get(k, [1, 3, 640, 640]) for k in ("min", "opt", "max"))
    words = ["retinaface-trt build", "--onnx MODEL.onnx" if info.get("source") == "onnx" else "WEIGHTS",
             f"-o {engine_path}", f"--precision {info.get('precision', 'fp32')}", f"--input-size {opt[3]}x{opt[2]}"]
    if lo[2:] != hi[2:]:
        words.append(f"--min-size {lo[3]}x{lo[2]} --max-size {hi[3]}x{hi[2]}")
    words.append(f"--max-batch {hi[0]}")
    if info.get("version_compatible"):
        words.append("--version-compatible")
    if info.get("hardware_compatibility", "none") != "none":
        words.append(f"--hardware-compatibility {info['hardware_compatibility']}")
    if info.get("postprocess"):
        words.append("--with-postprocess")
    words += _int8_words(info.get("int8"))
    return " ".join(words)


def _int8_words(int8: dict | None) -> list[str]:
    """The calibration flags that rebuild an INT8 engine the same way."""
    if not int8:
        return []
    words = [f"--calibration-images {int8['images']}", f"--calibration-count {int8['count']}",
             f"--calibration-method {int8['method']}", f"--int8-route {int8['route']}",
             f"--calibration-resize {int8['resize']}"]
    words += [f"--calibration-cache {int8['cache']}"] if int8.get("cache") else []
    return words + [f"--keep-precision '{p}'" for p in int8["keep_precision"]]


def rebuild_hint(info: dict, engine_path: str | Path) -> str:
    """How to get a working engine again, with the recorded settings."""
    return (f"rebuild it on this machine: {build_command(info, engine_path)} (or let `detect --backend "
            "tensorrt` rebuild it automatically by passing the weights instead of an engine)")


def check_compatible(info: dict, engine_path: str | Path, tensorrt_version: str, device: DeviceInfo) -> None:
    """Raise EngineMismatchError if this TensorRT version or GPU cannot run the engine, considering
    what the engine was built portable for (``version_compatible``, ``hardware_compatibility``)."""
    found = []
    if not _version_accepted(info, tensorrt_version):
        found.append(f"TensorRT {info.get('tensorrt_version')} (running {tensorrt_version}); "
                     + _version_rule(info))
    if not _gpu_accepted(info, device):
        found.append(f"GPU {info.get('gpu_name')} with compute capability {info.get('compute_capability')} "
                     f"(running on {device.name}, {device.compute_capability}); " + _gpu_rule(info))
    if found:
        raise EngineMismatchError(f"engine {engine_path} was built with {' and with '.join(found)}; "
                                  f"{rebuild_hint(info, engine_path)}")


# The only (built, running) major versions across which a version-compatible engine runs (NVIDIA's support matrix:
# TensorRT 8 engines on a TensorRT 10 runtime, TensorRT 10 engines on 11; never 8 on 11).
CROSS_MAJOR = {((8,), (10,)), ((10,), (11,))}


def _version_accepted(info: dict, running: str) -> bool:
    built = info.get("tensorrt_version")
    if built == running:
        return True
    if not info.get("version_compatible"):
        return False
    b, r = version_tuple(built), version_tuple(running)
    return (r[:1] == b[:1] and r >= b) or (b[:1], r[:1]) in CROSS_MAJOR


def _version_rule(info: dict) -> str:
    if info.get("version_compatible"):
        return ("a version-compatible engine runs on the TensorRT that built it or a later one of the same "
                "major version (and TensorRT 8.6 engines on 10, TensorRT 10 engines on 11)")
    return ("an engine runs only with the TensorRT version that built it (build with --version-compatible "
            "for later versions)")


def _gpu_accepted(info: dict, device: DeviceInfo) -> bool:
    if info.get("hardware_compatibility", "none") == "ampere+":
        return version_tuple(device.compute_capability) >= (8, 0)
    return info.get("compute_capability") == device.compute_capability


def _gpu_rule(info: dict) -> str:
    if info.get("hardware_compatibility", "none") == "ampere+":
        return "an ampere+ engine runs on GPUs of compute capability 8.0 or newer"
    return ("an engine runs only on GPUs of the compute capability that built it (build with "
            "--hardware-compatibility ampere+ for any Ampere or newer GPU)")


def read_engine_bytes(engine_path: str | Path, info: dict) -> bytes:
    """The engine file's bytes, after checking their size and sha256 against the sidecar.

    A missing, truncated or corrupt file raises RetinaFaceError and never reaches TensorRT's deserializer.
    """
    engine_path = Path(engine_path)
    data = _read_engine(engine_path)
    if len(data) != info.get("engine_bytes"):
        raise RetinaFaceError(f"engine {engine_path} has {len(data)} bytes but its sidecar records "
                              f"{info.get('engine_bytes')}: the file is truncated or was replaced; "
                              f"{rebuild_hint(info, engine_path)}")
    if hashlib.sha256(data).hexdigest() != info.get("engine_sha256"):
        raise RetinaFaceError(f"engine {engine_path} does not match the sha256 in its sidecar: the file is "
                              f"corrupt or was replaced; {rebuild_hint(info, engine_path)}")
    return data


def _read_engine(engine_path: Path) -> bytes:
    """The bytes of a regular file (a FIFO or device is refused, never read); one-line errors."""
    if engine_path.is_dir():
        raise RetinaFaceError(f"{engine_path} is a directory, not an engine file; pass the .engine file "
                              "written by `retinaface-trt build`")
    if not engine_path.exists():
        raise RetinaFaceError(f"engine file {engine_path} does not exist; build it with "
                              "`retinaface-trt build WEIGHTS -o ENGINE`")
    if not engine_path.is_file():
        raise RetinaFaceError(f"{engine_path} is not a regular file; pass the .engine file written by "
                              "`retinaface-trt build`")
    try:
        return engine_path.read_bytes()
    except OSError as error:
        raise RetinaFaceError(f"cannot read engine {engine_path}: {error.strerror or error}") from None


def check_engine_file(engine_path: str | Path) -> tuple[dict, bytes]:
    """Everything that can be checked without TensorRT: the engine file exists, its sidecar fits the
    schema, its size and sha256 match. Returns (sidecar, engine bytes)."""
    engine_path = Path(engine_path)
    if not engine_path.is_file():
        _read_engine(engine_path)            # "does not exist" / "is a directory", before the sidecar's errors
    info = read_sidecar(engine_path)
    return info, read_engine_bytes(engine_path, info)
