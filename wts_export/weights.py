"""One entry point for weights from either source: a PyTorch checkpoint or a ``.wts`` file.

Both give ``{name: float32 numpy array}`` in file order without ``num_batches_tracked``. Arrays from a
checkpoint keep their shapes (e.g. ``[64, 3, 3, 3]``); arrays from a ``.wts`` file are flat (the format
stores no shapes), so consumers must reshape by what they build.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np

from retinaface_trt.errors import RetinaFaceError
from wts_export.wts import SKIPPED_SUFFIX, read_wts

CHECKPOINT_SUFFIXES = (".pth", ".pt")
WTS_SUFFIX = ".wts"


def load_weights(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Load ``path`` (``.pth``/``.pt`` checkpoint or ``.wts``) as ``{name: float32 array}``; see the module doc."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix == WTS_SUFFIX:
        return read_wts(path)
    if suffix in CHECKPOINT_SUFFIXES:
        from wts_export.checkpoint import load_state_dict

        return {name: tensor.detach().float().numpy()
                for name, tensor in load_state_dict(path).items() if not name.endswith(SKIPPED_SUFFIX)}
    raise RetinaFaceError(f"cannot tell the format of {path} from its suffix {suffix or '(none)'!r}; "
                          f"expected one of {', '.join(CHECKPOINT_SUFFIXES + (WTS_SUFFIX,))}")


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
