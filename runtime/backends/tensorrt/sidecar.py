"""The JSON sidecar written next to every serialized engine (``model.engine`` → ``model.engine.json``).

A TensorRT engine runs only with the exact TensorRT version that built it, on the same GPU
architecture. The sidecar records what the engine was built with, so that a mismatch is reported
before the plan is handed to TensorRT (which would fail with an opaque error or crash), and so that a
truncated or corrupt engine file is recognised by its size and sha256.

Keys: ``format`` (1), ``project_version``, ``tensorrt_version``, ``gpu_name``, ``compute_capability``
("8.9"), ``backbone``, ``precision`` ("fp32"/"fp16"), ``input_name``, ``input_shape`` (network input,
-1 = dynamic), ``profile`` ({"min","opt","max"} NCHW shapes), ``outputs`` (name → shape),
``weights_sha256``, ``engine_sha256``, ``engine_bytes``.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

from retinaface_trt.errors import RetinaFaceError
from retinaface_trt.fileio import write_text_atomic

SIDECAR_FORMAT = 1


class EngineMismatchError(RetinaFaceError):
    """The engine was built with another TensorRT version or GPU architecture (it can be rebuilt)."""


@dataclass(frozen=True)
class DeviceInfo:
    """The GPU an engine is built for or run on."""

    name: str                 # e.g. "NVIDIA H100 80GB HBM3"
    compute_capability: str   # "major.minor", e.g. "9.0"


def sidecar_path(engine_path: str | Path) -> Path:
    """``model.engine`` → ``model.engine.json``."""
    engine_path = Path(engine_path)
    return engine_path.with_name(engine_path.name + ".json")


def write_sidecar(engine_path: str | Path, info: dict) -> Path:
    """Write ``info`` (keys above) atomically next to ``engine_path``; return the sidecar's path."""
    path = sidecar_path(engine_path)
    write_text_atomic(path, json.dumps({"format": SIDECAR_FORMAT, **info}, indent=2, sort_keys=True) + "\n")
    return path


def read_sidecar(engine_path: str | Path) -> dict:
    """Read the sidecar of ``engine_path``; RetinaFaceError if it is missing or not valid JSON."""
    path = sidecar_path(engine_path)
    try:
        info = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise RetinaFaceError(f"{path} is missing: every engine needs the JSON sidecar written by "
                              "`retinaface-trt build`; rebuild the engine with it") from None
    except (ValueError, UnicodeDecodeError) as error:
        raise RetinaFaceError(f"{path} is not a valid engine sidecar ({error}); rebuild the engine") from None
    if not isinstance(info, dict) or info.get("format") != SIDECAR_FORMAT:
        raise RetinaFaceError(f"{path} has format {info.get('format') if isinstance(info, dict) else None!r}, "
                              f"expected {SIDECAR_FORMAT}; rebuild the engine with this version")
    return info


def rebuild_hint(info: dict, engine_path: str | Path) -> str:
    """The command that rebuilds ``engine_path`` with the settings recorded in ``info``."""
    return (f"rebuild it on this machine: retinaface-trt build WEIGHTS -o {engine_path} "
            f"--precision {info.get('precision', 'fp32')} (or let `detect --backend tensorrt` rebuild it "
            "automatically by passing the weights instead of an engine)")


def check_compatible(info: dict, engine_path: str | Path, tensorrt_version: str, device: DeviceInfo) -> None:
    """Raise RetinaFaceError if the engine was built with another TensorRT version or GPU architecture."""
    found = []
    if info.get("tensorrt_version") != tensorrt_version:
        found.append(f"TensorRT {info.get('tensorrt_version')} (running {tensorrt_version})")
    if info.get("compute_capability") != device.compute_capability:
        found.append(f"GPU {info.get('gpu_name')} with compute capability {info.get('compute_capability')} "
                     f"(running on {device.name}, {device.compute_capability})")
    if found:
        raise EngineMismatchError(f"engine {engine_path} was built with {' and '.join(found)}; an engine runs only "
                              f"with the TensorRT version and GPU architecture that built it; "
                              f"{rebuild_hint(info, engine_path)}")


def read_engine_bytes(engine_path: str | Path, info: dict) -> bytes:
    """The engine file's bytes, after checking their size and sha256 against the sidecar.

    A truncated or corrupt file raises RetinaFaceError and never reaches TensorRT's deserializer.
    """
    engine_path = Path(engine_path)
    try:
        data = engine_path.read_bytes()
    except FileNotFoundError:
        raise RetinaFaceError(f"engine file {engine_path} does not exist; build it with "
                              "`retinaface-trt build WEIGHTS -o ENGINE`") from None
    if len(data) != info.get("engine_bytes"):
        raise RetinaFaceError(f"engine {engine_path} has {len(data)} bytes but its sidecar records "
                              f"{info.get('engine_bytes')}: the file is truncated or was replaced; "
                              f"{rebuild_hint(info, engine_path)}")
    if hashlib.sha256(data).hexdigest() != info.get("engine_sha256"):
        raise RetinaFaceError(f"engine {engine_path} does not match the sha256 in its sidecar: the file is "
                              f"corrupt or was replaced; {rebuild_hint(info, engine_path)}")
    return data
