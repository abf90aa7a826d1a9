"""A minimal progress bar on stderr, redrawn in place: ``detect  3/10 [######              ] 30%``, followed by
the throughput and the time left when a ``unit`` is given (``  41.5 images/s, 0:02:13 left``). Without a known
total (a live stream) the line is the count and the throughput: ``detect 1234 frames  29.8 frames/s``."""

from __future__ import annotations

import sys
import time


class Progress:
    """Counts ``total`` steps (None: unknown); draws only when ``enabled`` (the CLI enables it for more than one
    image).

    unit:       name of a step (``images``): the line then ends with the steps per second since the bar was made
                and the time left at that rate
    interval_s: the bar is redrawn at most this often (seconds), and always for the last step
    """

    def __init__(self, total: int | None, label: str = "", enabled: bool = True, stream=None, width: int = 30,
                 unit: str | None = None, interval_s: float = 0.1, clock=time.monotonic):
        self.total, self.label, self.enabled, self.width = total, label, enabled and (total is None or total > 0), width
        self.stream = stream or sys.stderr
        self.unit, self.interval_s, self._clock = unit, interval_s, clock
        self.done = 0
        self._start = self._drawn = clock()
        self._drawn -= interval_s       # the first step is drawn

    def advance(self, steps: int = 1) -> None:
        self.done = self.done + steps if self.total is None else min(self.total, self.done + steps)
        if self.done == self.total or self._clock() - self._drawn >= self.interval_s:
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

    def rate(self) -> float:
        """Steps per second since the bar was made."""
        return self.done / max(1e-9, self._clock() - self._start)

    def _draw(self) -> None:
        if not self.enabled:
            return
        self._drawn = self._clock()
        if self.total is None:
            self.stream.write(f"\r{self.label} {self.done} {self.unit or 'steps'}" + self._speed())
            self.stream.flush()
            return
        filled = self.width * self.done // self.total
        bar = "#" * filled + " " * (self.width - filled)
        line = f"\r{self.label} {self.done}/{self.total} [{bar}] {100 * self.done // self.total}%"
        self.stream.write(line + self._speed())
        self.stream.flush()

    def _speed(self) -> str:
        if self.unit is None or self.done == 0:
            return ""
        rate = self.rate()
        if self.total is None:
            return f"  {rate:.1f} {self.unit}/s"
        left = round((self.total - self.done) / rate) if rate > 0 else 0
        return f"  {rate:.1f} {self.unit}/s, {left // 3600}:{left // 60 % 60:02d}:{left % 60:02d} left"
