"""Safe loading of a RetinaFace PyTorch checkpoint into a plain ``{name: tensor}`` dict.

Only ``torch.load(..., weights_only=True)`` is used: a checkpoint is data, and unpickling arbitrary objects
would run code from the file. Accepted layouts:

* a state_dict (``{name: Tensor}``, e.g. the published ``mobilenet0.25_Final.pth``);
* a dict wrapping one under ``"state_dict"`` or ``"model"`` (what training scripts often save);
* either of these with a ``module.`` prefix on the names (saved from ``nn.DataParallel``), which is removed.

Tensors are mapped to the CPU (the published files hold CUDA tensors). Anything else raises RetinaFaceError.

A checkpoint in ``torch.save``'s zip format has a CRC-32 per record, checked before loading (PyTorch itself
does not check it, so a file with flipped bytes would load with wrong values). Before anything is inflated, the
sizes its records declare must sum to at most :data:`MAX_CHECKPOINT_BYTES` (a few kilobytes of deflated zeros can
declare gigabytes); a record that inflates beyond what it declares fails its CRC check, read in bounded pieces. The legacy format (the
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
# The most bytes the records of a zip checkpoint may hold once inflated: RetinaFace's largest checkpoint
# (ResNet-50) is 105 MB, training checkpoints with optimizer state about three times that.
MAX_CHECKPOINT_BYTES = 512 << 20


def _torch_load(path: Path):
    import torch

    if not path.is_file():
        raise RetinaFaceError(f"checkpoint {path} does not exist or is not a file; "
                              "expected a .pth file such as weights/mobilenet0.25_Final.pth")
    _check_archive(path)
    try:
        loaded = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        found = re.search(r"Unsupported global: GLOBAL (\S+)", str(error))
        if found is None:   # not a pickle at all ("Unsupported operand"), or a damaged one
            raise RetinaFaceError(f"{path} is not a PyTorch checkpoint ({_first_line(error)}); expected a .pth "
                                  f"state_dict written by torch.save{_wts_hint(path)}") from None
        raise RetinaFaceError(
            f"{path} holds pickled Python objects, not only tensors (it contains {found.group(1)}); it cannot be "
            "loaded safely. Save the weights with torch.save(model.state_dict(), path) and pass that file") from None
    except Exception as error:   # torch.load raises many types (EOFError, KeyError, RuntimeError, OSError…)
        raise RetinaFaceError(
            f"{path} is not a readable PyTorch checkpoint ({_describe(error)}); "
            f"expected a .pth file written by torch.save{_wts_hint(path)}") from None
    if path.suffix.lower() == ".wts":
        raise RetinaFaceError(f"{path} is a PyTorch checkpoint, not a .wts text file; rename it to "
                              f"{path.with_suffix('.pth').name}")
    return loaded


def _check_archive(path: Path) -> None:
    """Verify the CRC-32 of every record of a zip-format checkpoint (nothing to verify in the legacy format)."""
    try:
        if not zipfile.is_zipfile(path):
            return
        with zipfile.ZipFile(path) as archive:
            declared = sum(info.file_size for info in archive.infolist())
            if declared > MAX_CHECKPOINT_BYTES:
                raise RetinaFaceError(f"{path}: its records declare {declared} bytes once inflated, more than a "
                                      f"RetinaFace checkpoint holds ({MAX_CHECKPOINT_BYTES} at most); refused before "
                                      "inflating them: the file is damaged or not a checkpoint")
            damaged = archive.testzip()
    except (zipfile.BadZipFile, zlib.error, EOFError, OSError, ValueError, NotImplementedError) as error:
        raise RetinaFaceError(f"{path} is a damaged PyTorch checkpoint ({_describe(error)}); "
                              "download or copy it again") from None
    if damaged is not None:
        raise RetinaFaceError(f"{path} is damaged: its record {damaged!r} fails the CRC-32 check (bytes changed "
                              "after it was written); download or copy it again")


def _describe(error: Exception) -> str:
    return f"{type(error).__name__}: {_first_line(error)}" if str(error) else type(error).__name__


def _first_line(error: Exception) -> str:
    """The message of ``error`` without PyTorch's paragraphs of advice (the last informative line)."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    informative = [line for line in lines if not line.startswith(("Check the documentation", "Please file"))]
    return (informative or lines or [type(error).__name__])[-1][:200]


def _wts_hint(path: Path) -> str:
    return " (a .wts file is already converted: pass it where weights are read)" if path.suffix == ".wts" else ""


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


def strip_prefix(tensors: dict, path: Path) -> dict:
    """``tensors`` without the ``module.`` prefix of nn.DataParallel (RetinaFaceError if names then collide)."""
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
    return strip_prefix(dict(_unwrap(_torch_load(path), path)), path)
