"""A minimal progress bar on stderr, redrawn in place: ``detect  3/10 [######              ] 30%``, followed by
the throughput and the time left when a ``unit`` is given (``  41.5 images/s, 0:02:13 left``). Without a known
total (a live stream) the line is the count and the throughput: ``detect 1234 frames  29.8 frames/s``.

Only a terminal gets the bar redrawn in place (carriage returns, erase-line sequences). Anything else (a file, a
pipe, a CI log) gets plain lines, one every ``LOG_INTERVAL_S`` seconds at most and one for the last step, so that a
log holds no control characters and does not grow with every image."""

from __future__ import annotations

import sys
import time

LOG_INTERVAL_S = 10.0


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
        self.tty = _is_terminal(self.stream)
        self.unit, self._clock = unit, clock
        self.interval_s = interval_s if self.tty else max(interval_s, LOG_INTERVAL_S)
        self.done = self._drawn_done = 0
        self._start = self._drawn = clock()
        self._drawn -= self.interval_s       # the first step is drawn

    def advance(self, steps: int = 1) -> None:
        self.done = self.done + steps if self.total is None else min(self.total, self.done + steps)
        if self.done == self.total or self._clock() - self._drawn >= self.interval_s:
            self._draw()

    def write(self, line: str) -> None:
        """Print ``line`` on its own line without breaking the bar."""
        if self.enabled and self.tty:
            self.stream.write("\r\033[K")
        print(line, file=self.stream)
        if self.tty:
            self._draw()

    def finish(self) -> None:
        if self.enabled and self.tty:
            self.stream.write("\n")
            self.stream.flush()
        elif self.enabled and self._drawn_done != self.done:     # a log's last line has the final count
            self._draw()

    def rate(self) -> float:
        """Steps per second since the bar was made."""
        return self.done / max(1e-9, self._clock() - self._start)

    def _draw(self) -> None:
        if not self.enabled:
            return
        self._drawn, self._drawn_done = self._clock(), self.done
        if self.total is None:
            line = f"{self.label} {self.done} {self.unit or 'steps'}" + self._speed()
        else:
            filled = self.width * self.done // self.total
            bar = "#" * filled + " " * (self.width - filled)
            line = f"{self.label} {self.done}/{self.total} [{bar}] {100 * self.done // self.total}%" + self._speed()
        self.stream.write("\r" + line if self.tty else line + "\n")
        self.stream.flush()

    def _speed(self) -> str:
        if self.unit is None or self.done == 0:
            return ""
        rate = self.rate()
        if self.total is None:
            return f"  {rate:.1f} {self.unit}/s"
        left = round((self.total - self.done) / rate) if rate > 0 else 0
        return f"  {rate:.1f} {self.unit}/s, {left // 3600}:{left // 60 % 60:02d}:{left % 60:02d} left"


def _is_terminal(stream) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):   # no isatty, or a closed stream
        return False
