"""Optional dependencies: imported where they are used; a missing one is one line naming the extra to install.

The extras are declared once, in ``setup.cfg`` (``[options.extras_require]``): ``onnx`` (onnx, onnxruntime,
onnxslim), ``eval`` (scipy, matplotlib), ``tensorrt``. The packages of an extra are read back from the
installed project's metadata, so the message cannot drift from ``setup.cfg``.
"""

from __future__ import annotations

import importlib
import re
from types import ModuleType

from retinaface_trt.errors import RetinaFaceError

DISTRIBUTION = "retinaface-trt"


def require(module: str, extra: str, needed_for: str) -> ModuleType:
    """Import and return ``module`` (e.g. ``"scipy.io"``); if it is not installed, raise RetinaFaceError
    saying that ``needed_for`` (e.g. ``"evaluate"``) needs the extra ``extra`` and how to install it."""
    try:
        return importlib.import_module(module)
    except ImportError as error:
        missing = getattr(error, "name", None) or module
        packages = extra_packages(extra)
        listed = f" ({', '.join(packages)})" if packages else ""
        alternative = f", or pip install {' '.join(packages)}" if packages else ""
        raise RetinaFaceError(f"{needed_for} needs the '{extra}' extra{listed}, but {missing} is not installed: "
                              f"{install_hint(extra)}{alternative}") from None


def install_hint(extra: str) -> str:
    """How to install the extra ``extra``: the project installs from its clone (it is on no package index)."""
    return f"pip install '.[{extra}]' in the retinaface-trt checkout"


def extra_packages(extra: str) -> list[str]:
    """The requirement names of ``extra`` in the installed project's metadata ([] if it is not installed)."""
    from importlib import metadata

    try:
        requirements = metadata.requires(DISTRIBUTION) or []
    except metadata.PackageNotFoundError:
        return []
    marker = re.compile(rf"""extra\s*==\s*["']{re.escape(extra)}["']""")
    return [re.split(r"[\s<>=!~;\[]", r, maxsplit=1)[0] for r in requirements if marker.search(r)]
