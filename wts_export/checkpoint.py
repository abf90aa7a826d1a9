"""Safe loading of a RetinaFace PyTorch checkpoint into a plain ``{name: tensor}`` dict.

Only ``torch.load(..., weights_only=True)`` is used: a checkpoint is data, and unpickling arbitrary objects
would run code from the file. Accepted layouts:

* a state_dict (``{name: Tensor}``, e.g. the published ``mobilenet0.25_Final.pth``);
* a dict wrapping one under ``"state_dict"`` or ``"model"`` (what training scripts often save);
* either of these with a ``module.`` prefix on the names (saved from ``nn.DataParallel``), which is removed.

Tensors are mapped to the CPU (the published files hold CUDA tensors). Anything else raises RetinaFaceError.

A checkpoint in ``torch.save``'s zip format has a CRC-32 per record, checked before loading (PyTorch itself
does not check it, so a file with flipped bytes would load with wrong values). The legacy format (the
published checkpoints) has no checksum: its values are checked by :func:`network.weights.check_weights`.
"""

from __future__ import annotations

import os
import pickle
import re
import zipfile
import zlib
from pathlib import Path

from retinaface_trt.errors import RetinaFaceError

PREFIX = "module."
WRAPPER_KEYS = ("state_dict", "model")


def _torch_load(path: Path):
    import torch

    if not path.is_file():
        raise RetinaFaceError(f"checkpoint {path} does not exist or is not a file; "
                              "expected a .pth file such as weights/mobilenet0.25_Final.pth")
    _check_archive(path)
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        if "Weights only load failed" not in str(error):
            raise RetinaFaceError(f"{path} is not a PyTorch checkpoint ({error}); expected a .pth state_dict") from None
        found = re.search(r"Unsupported global: GLOBAL (\S+)", str(error))
        what = f" (it contains {found.group(1)})" if found else ""
        raise RetinaFaceError(
            f"{path} holds pickled Python objects, not only tensors{what}; it cannot be loaded safely. "
            "Save the weights with torch.save(model.state_dict(), path) and pass that file") from None
    except Exception as error:   # torch.load raises many types (EOFError, KeyError, RuntimeError, OSError…)
        raise RetinaFaceError(
            f"{path} is not a readable PyTorch checkpoint ({_describe(error)}); "
            "expected a .pth file written by torch.save") from None


def _check_archive(path: Path) -> None:
    """Verify the CRC-32 of every record of a zip-format checkpoint (nothing to verify in the legacy format)."""
    try:
        if not zipfile.is_zipfile(path):
            return
        with zipfile.ZipFile(path) as archive:
            damaged = archive.testzip()
    except (zipfile.BadZipFile, zlib.error, EOFError, OSError, ValueError, NotImplementedError) as error:
        raise RetinaFaceError(f"{path} is a damaged PyTorch checkpoint ({_describe(error)}); "
                              "download or copy it again") from None
    if damaged is not None:
        raise RetinaFaceError(f"{path} is damaged: its record {damaged!r} fails the CRC-32 check (bytes changed "
                              "after it was written); download or copy it again")


def _describe(error: Exception) -> str:
    return f"{type(error).__name__}: {error}" if str(error) else type(error).__name__


def _is_tensor_dict(obj) -> bool:
    import torch

    return (isinstance(obj, dict) and len(obj) > 0
            and all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in obj.items()))


def _unwrap(obj, path: Path) -> dict:
    if _is_tensor_dict(obj):
        return obj
    for key in WRAPPER_KEYS:
        if isinstance(obj, dict) and _is_tensor_dict(obj.get(key)):
            return obj[key]
    found = f"a dict with keys {', '.join(map(str, list(obj)[:5]))}" if isinstance(obj, dict) else type(obj).__name__
    raise RetinaFaceError(
        f"{path} holds {found}; expected a state_dict ({{name: tensor}}), possibly under 'state_dict' or 'model'")


def _strip_prefix(tensors: dict, path: Path) -> dict:
    stripped = {(k[len(PREFIX):] if k.startswith(PREFIX) else k): v for k, v in tensors.items()}
    if len(stripped) != len(tensors):
        raise RetinaFaceError(f"{path}: names collide once the '{PREFIX}' prefix is removed; "
                              "expected either all or none of the names to carry it")
    return stripped


def load_state_dict(path: str | os.PathLike) -> dict:
    """Load ``path`` as ``{name: torch.Tensor}`` on the CPU, in file order, without a ``module.`` prefix.

    Raises RetinaFaceError for a missing or unreadable file, a pickled model object, or a dict without tensors.
    """
    path = Path(path)
    return _strip_prefix(dict(_unwrap(_torch_load(path), path)), path)
