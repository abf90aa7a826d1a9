"""Memory budgets: how many image pixels may be decoded and run at once on this machine.

One number bounds what the service and ``detect`` hold at once, so that hostile input (many large images,
many small requests of one size, a huge ``--batch``) cannot exhaust the machine::

    pixel_budget = RAM_SHARE × min(available host memory, free memory of the CUDA device) // BYTES_PER_PIXEL

* available host memory: ``MemAvailable`` of ``/proc/meminfo``, or what the cgroup (container) limit leaves
  (``memory.max − memory.current``), whichever is smaller; without either (not Linux) only the device counts,
  and without a CUDA device either, :data:`FALLBACK_BYTES`;
* free memory of the CUDA device: ``torch.cuda.mem_get_info`` of the device the detector runs on (only for a
  ``cuda`` device, and only when torch is imported already: nothing heavy is loaded here);
* :data:`BYTES_PER_PIXEL`: the peak memory one image pixel costs through decoding and the float32 network at its
  original size (measured 162 bytes per pixel on the executor and 67 with ONNX Runtime for a 6000×6600 PNG;
  rounded up);
* :data:`RAM_SHARE`: half of what is available, leaving the rest to the process itself, its model and others.

With ``detect --devices``, the worker processes share the host: each takes ``available host memory / workers``
(its device's free memory stays its own). The budget is taken once when a service or a ``detect`` run starts,
and never below :data:`MIN_PIXEL_BUDGET` (one 640×640 image). How it is used: a batch holds images while their pixels sum to at most the budget; an
image larger than the budget (but within ``max_pixels``) runs alone, never beside another one.

In flight (``detect`` over folders, :mod:`runtime.jobs`): :class:`PixelBudget` holds the pixels of the decoded
images alive at once to the same number (or ``--pixel-budget``). A count of images does not bound memory (40
decoded 40-megapixel photos take 4.8 GB, 40 thumbnails almost nothing): the reader takes an image's pixels
(known from its header) before decoding it, and the pipeline gives them back once the image's record is made.

The API is :func:`pixel_budget`, :func:`batch_fits` and :class:`PixelBudget`; nothing else here is meant to be
imported.
"""

from __future__ import annotations

import os
import sys
import threading

BYTES_PER_PIXEL = 192
RAM_SHARE = 0.5
MIN_PIXEL_BUDGET = 640 * 640
FALLBACK_BYTES = 4 << 30   # a machine whose free memory cannot be read: assume 4 GiB
# Set to a number of pixels to replace the machine's budget (tests; a machine shared with other jobs).
ENVIRONMENT = "RETINAFACE_TRT_PIXEL_BUDGET"


def pixel_budget(device=None, host_share: int = 1) -> int:
    """The number of image pixels that may be decoded and batched at once here (see the module doc).

    device: the detector's device (``"cpu"``, ``"cuda:0"``, a ``torch.device``) or None for the host only.
    host_share: how many processes of one run share this host's memory (``detect --devices``: one per device);
    each gets that fraction of the host's part (a device's own memory is its worker's alone).
    """
    override = os.environ.get(ENVIRONMENT, "").strip()
    if override:
        from runtime.options import check_count

        return check_count(ENVIRONMENT, override)
    host = _host_available()
    sizes = [size for size in (host and host // max(1, int(host_share)), _device_free(device)) if size]
    available = min(sizes) if sizes else FALLBACK_BYTES
    return max(MIN_PIXEL_BUDGET, int(available * RAM_SHARE) // BYTES_PER_PIXEL)


def batch_fits(pixels: int, count: int, budget: int) -> bool:
    """Whether ``count`` images of ``pixels`` pixels each may run as one batch under ``budget``: always for one
    image (an image over the budget runs alone), else when their pixels sum to at most the budget."""
    return count <= 1 or pixels * count <= budget


def _host_available() -> int | None:
    sizes = []
    try:
        with open("/proc/meminfo", encoding="ascii") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    sizes.append(int(line.split()[1]) * 1024)
                    break
    except (OSError, ValueError, IndexError):
        pass
    try:
        with open("/sys/fs/cgroup/memory.max", encoding="ascii") as limit_file:
            limit = limit_file.read().strip()
        with open("/sys/fs/cgroup/memory.current", encoding="ascii") as current_file:
            current = int(current_file.read().strip())
        if limit != "max":
            sizes.append(max(0, int(limit) - current))
    except (OSError, ValueError):
        pass
    return min(sizes) if sizes else None


def _device_free(device) -> int | None:
    if device is None or not str(device).startswith("cuda") or "torch" not in sys.modules:
        return None
    import torch

    try:
        if not torch.cuda.is_available():
            return None
        free, _total = torch.cuda.mem_get_info(torch.device(device))
        return int(free)
    except (RuntimeError, ValueError, AssertionError):
        return None


class PixelBudget:
    """Pixels taken and not yet given back, at most ``limit`` unless a single image is larger (see the module
    doc). Thread-safe. ``peak`` is the most pixels ever taken at once (tests and benchmarks read it)."""

    def __init__(self, limit: int):
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
