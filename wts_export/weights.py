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


def check_weights_file(path: str | os.PathLike) -> None:
    """RetinaFaceError unless ``path`` is an existing regular file: one line saying what it is instead (missing,
    a folder, a FIFO or device, which reading would block on or never finish)."""
    import stat

    try:
        mode = os.stat(path).st_mode
    except (FileNotFoundError, NotADirectoryError):
        raise RetinaFaceError(f"weights file {path} not found; expected a .pth or .wts file") from None
    except OSError as error:
        raise RetinaFaceError(f"cannot read weights file {path}: {error.strerror or error}") from None
    if not stat.S_ISREG(mode):
        kind = ("a folder" if stat.S_ISDIR(mode) else "a FIFO" if stat.S_ISFIFO(mode) else
                "a device" if stat.S_ISCHR(mode) or stat.S_ISBLK(mode) else "a socket")
        raise RetinaFaceError(f"weights file {path} is {kind}, not a regular file; expected a .pth or .wts file")


def load_weights(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Load ``path`` (``.pth``/``.pt`` checkpoint or ``.wts``) as ``{name: float32 array}``; see the module doc.

    Raises RetinaFaceError for an unknown suffix, an unreadable or damaged file, or weights that fail a check.
    A ``.wts`` whose names carry the ``module.`` prefix (exported from an ``nn.DataParallel`` model) loads like
    the checkpoint it came from; a checkpoint named ``.wts`` is refused with the rename that fixes it.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in CHECKPOINT_SUFFIXES + (WTS_SUFFIX,):
        raise RetinaFaceError(f"cannot tell the format of {path} from its suffix {suffix or '(none)'!r}; "
                              f"expected one of {', '.join(CHECKPOINT_SUFFIXES + (WTS_SUFFIX,))}")
    check_weights_file(path)
    if suffix == WTS_SUFFIX:
        from wts_export.checkpoint import load_state_dict, strip_prefix

        if _looks_like_checkpoint(path):
            load_state_dict(path)          # raises: named .wts (or not a readable checkpoint at all)
        tensors = strip_prefix(read_wts(path), path)
    else:
        tensors = checked_state_dict(path)
    return {name: array.astype(np.float32, copy=False) for name, array in check_weights(tensors, str(path)).items()}


def _looks_like_checkpoint(path: Path) -> bool:
    """Whether ``path`` starts like ``torch.save``'s output (a zip archive, or a pickle of protocol 2 or later)."""
    with open(path, "rb") as handle:
        head = handle.read(4)
    return head.startswith(b"PK\x03\x04") or head[:1] == b"\x80"


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
