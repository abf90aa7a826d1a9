"""Run the CLI as if some packages were not installed: ``python -m tests.hide_modules onnx,scipy ARGS...``.

Every finder of ``sys.meta_path`` is wrapped so that it finds nothing for the hidden top-level names: ``import
onnx`` then raises ``ModuleNotFoundError: No module named 'onnx'`` and ``importlib.util.find_spec("onnx")``
returns None, exactly as on a machine without the package.
"""

from __future__ import annotations

import sys


class _Without:
    def __init__(self, finder, hidden: frozenset[str]):
        self._finder, self._hidden = finder, hidden

    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in self._hidden:
            return None
        find = getattr(self._finder, "find_spec", None)
        return find(name, path, target) if find else None

    def __getattr__(self, attribute):   # invalidate_caches and the rest of the finder protocol
        return getattr(self._finder, attribute)


def hide(*names: str) -> None:
    """Make ``names`` (top-level packages) impossible to import in this process from now on."""
    hidden = frozenset(names)
    loaded = sorted(n for n in sys.modules if n.partition(".")[0] in hidden)
    if loaded:
        raise RuntimeError(f"already imported, cannot be hidden: {', '.join(loaded)}")
    sys.meta_path[:] = [_Without(finder, hidden) for finder in sys.meta_path]


if __name__ == "__main__":
    hide(*sys.argv[1].split(","))
    from runtime.cli.main import main

    sys.exit(main(sys.argv[2:]))
