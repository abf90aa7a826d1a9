"""A budget of image pixels in flight: what bounds the memory of a job over images of any size.

A count of images does not bound memory: 40 decoded 40-megapixel photos take 4.8 GB, 40 thumbnails almost
nothing. :class:`PixelBudget` is a counting semaphore over pixels: a reader takes an image's pixels (known from
its header before it is decoded) before decoding it, and the pipeline gives them back once the image's outcome
is made. One image larger than the whole budget still runs, alone (nothing else is in flight then), so the
budget never refuses an input that the pixel limit (``max_pixels``) accepts.

Bytes per pixel: a decoded BGR uint8 image takes 3 bytes per pixel; in the pipeline an image also exists once
in the pinned upload buffer of its batch. So a budget of P pixels bounds the decoded images to 3·P bytes (and
their staged copies to as much again).
"""

from __future__ import annotations

import threading

# 128 megapixels (384 MB of decoded BGR): several batches of camera photos (128 × 1024×624 is 82 megapixels),
# three 40-megapixel photos.
DEFAULT_PIXEL_BUDGET = 128_000_000


class PixelBudget:
    """Pixels taken and not yet given back, at most ``limit`` unless a single image is larger (see the module
    doc). Thread-safe. ``peak`` is the most pixels ever taken at once (tests and benchmarks read it)."""

    def __init__(self, limit: int = DEFAULT_PIXEL_BUDGET):
        if limit < 1:
            raise ValueError(f"a pixel budget must be at least 1 pixel, found {limit}")
        self.limit = int(limit)
        self.taken = 0
        self.peak = 0
        self._changed = threading.Condition()

    def fits(self, pixels: int) -> bool:
        """Whether ``pixels`` can be taken now (always when nothing is taken)."""
        return self.taken == 0 or self.taken + pixels <= self.limit

    def try_take(self, pixels: int) -> bool:
        """Take ``pixels`` if they fit now; whether they were taken."""
        with self._changed:
            if not self.fits(pixels):
                return False
            self._take(pixels)
            return True

    def take(self, pixels: int, timeout: float | None = None) -> bool:
        """Take ``pixels``, waiting up to ``timeout`` seconds (None: as long as it takes) for them to fit;
        whether they were taken."""
        with self._changed:
            if not self._changed.wait_for(lambda: self.fits(pixels), timeout):
                return False
            self._take(pixels)
            return True

    def force(self, pixels: int) -> None:
        """Take ``pixels`` now, fitting or not (an image whose size was not known before it was decoded)."""
        with self._changed:
            self._take(pixels)

    def give(self, pixels: int) -> None:
        """Give back ``pixels`` taken earlier."""
        with self._changed:
            self.taken -= pixels
            if self.taken < 0:
                self.taken = 0
                raise RuntimeError("more pixels given back to the budget than were taken")
            self._changed.notify_all()

    def _take(self, pixels: int) -> None:
        self.taken += pixels
        self.peak = max(self.peak, self.taken)
