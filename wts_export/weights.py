"""One entry point for weights from either source: a PyTorch checkpoint or a ``.wts`` file.

Both give ``{name: float32 numpy array}`` in file order without ``num_batches_tracked``. Arrays from a
checkpoint keep their shapes (e.g. ``[64, 3, 3, 3]``); arrays from a ``.wts`` file are flat (the format
stores no shapes), so consumers must reshape by what they build.

Every value is checked first (:func:`network.weights.check_weights`: floating point, finite, plausible for a
trained network); a checkpoint's names and shapes are also checked against the PyTorch model of its backbone.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np

from network.weights import check_weights
from retinaface_trt.errors import RetinaFaceError
from wts_export.wts import read_wts

CHECKPOINT_SUFFIXES = (".pth", ".pt")
WTS_SUFFIX = ".wts"


def load_weights(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Load ``path`` (``.pth``/``.pt`` checkpoint or ``.wts``) as ``{name: float32 array}``; see the module doc.

    Raises RetinaFaceError for an unknown suffix, an unreadable or damaged file, or weights that fail a check.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix == WTS_SUFFIX:
        tensors = read_wts(path)
    elif suffix in CHECKPOINT_SUFFIXES:
        tensors = checked_state_dict(path)
    else:
        raise RetinaFaceError(f"cannot tell the format of {path} from its suffix {suffix or '(none)'!r}; "
                              f"expected one of {', '.join(CHECKPOINT_SUFFIXES + (WTS_SUFFIX,))}")
    return {name: array.astype(np.float32, copy=False) for name, array in check_weights(tensors, str(path)).items()}


def checked_state_dict(path: str | os.PathLike) -> dict:
    """The checkpoint at ``path`` as ``{name: torch.Tensor}`` once its names and shapes fit RetinaFace."""
    from network.config import config_for_weights
    from wts_export.checkpoint import load_state_dict
    from wts_export.model import check_state_dict

    state_dict = load_state_dict(path)
    check_state_dict(state_dict, config_for_weights(state_dict))
    return state_dict


def sha256_file(path: str | os.PathLike, chunk_bytes: int = 1 << 20) -> str:
    """Return the lowercase hex SHA-256 of the file at ``path``, read in ``chunk_bytes`` pieces."""
    digest = hashlib.sha256()
    try:
        with open(path, "rb") as handle:
            for chunk in iter(lambda: handle.read(chunk_bytes), b""):
                digest.update(chunk)
    except OSError as error:
        raise RetinaFaceError(f"cannot read {path} to hash it: {error.strerror or error}") from None
    return digest.hexdigest()
