"""Where the project keeps what it derives from a user's weights, so that the next run need not derive it again.

The root is ``$RETINAFACE_TRT_CACHE`` or ``~/.cache/retinaface-trt``. Each entry's file name carries a key of
everything it depends on (the weights' sha256, the project and library versions, the settings), so a changed
input gets a new entry and a stale one is never used. Entries are written atomically.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path


def cache_root() -> Path:
    """``$RETINAFACE_TRT_CACHE``, or ``~/.cache/retinaface-trt``."""
    return Path(os.environ.get("RETINAFACE_TRT_CACHE", Path.home() / ".cache" / "retinaface-trt"))


def entry_key(*parts) -> str:
    """16 hex digits identifying an entry by ``parts`` (JSON-serialisable values)."""
    return hashlib.sha256(json.dumps(list(parts), sort_keys=True).encode()).hexdigest()[:16]
