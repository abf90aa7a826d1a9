"""A minimal progress bar on stderr: ``detect  3/10 [######              ] 30%``, redrawn in place."""

from __future__ import annotations

import sys


class Progress:
    """Counts ``total`` steps; draws only when ``enabled`` (the CLI enables it for more than one image)."""

    def __init__(self, total: int, label: str = "", enabled: bool = True, stream=None, width: int = 30):
        self.total, self.label, self.enabled, self.width = total, label, enabled and total > 0, width
        self.stream = stream or sys.stderr
        self.done = 0

    def advance(self, steps: int = 1) -> None:
        self.done = min(self.total, self.done + steps)
        self._draw()

    def write(self, line: str) -> None:
        """Print ``line`` on its own line without breaking the bar."""
        if self.enabled:
            self.stream.write("\r\033[K")
        print(line, file=self.stream)
        self._draw()

    def finish(self) -> None:
        if self.enabled:
            self.stream.write("\n")
            self.stream.flush()

    def _draw(self) -> None:
        if not self.enabled:
            return
        filled = self.width * self.done // self.total
        bar = "#" * filled + " " * (self.width - filled)
        self.stream.write(f"\r{self.label} {self.done}/{self.total} [{bar}] {100 * self.done // self.total}%")
        self.stream.flush()
