"""Devices: the one place where a device name becomes a ``torch.device``, and what the pipeline needs of a CUDA
device (IEEE float32 convolutions, CUDA-graph replay, pinned buffers).

Everything here is a no-op or a plain call on the CPU, so callers need no device-specific branches.
"""

from __future__ import annotations

import collections
import contextlib
import logging
from typing import Callable

import torch

from retinaface_trt.errors import RetinaFaceError


def resolve_device(device: str | None = "cpu"):
    """Turn ``cpu`` / ``cuda`` / ``cuda:N`` / ``auto`` (None: auto) into a torch.device.

    A CUDA device always comes back with its index: ``cuda`` (and ``auto`` on a GPU machine) is ``cuda:0``, as
    the TensorRT backend and ``build`` take it, never "whichever device is current in the calling thread" (with
    that, caches keyed by the device name and the device made current around the pipeline's work could
    disagree between threads). RetinaFaceError for any other name (``cpu:5``, ``tpu``), for CUDA on a machine
    where PyTorch sees no GPU, and for a CUDA index beyond the GPUs PyTorch sees.
    """
    from runtime.options import check_device

    name = check_device("auto" if device is None else device)
    import torch

    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    resolved = torch.device(name)
    if resolved.type == "cpu":
        return resolved
    if not torch.cuda.is_available():
        raise RetinaFaceError(f"device {device!r} asked for, but PyTorch sees no CUDA GPU; use --device cpu")
    index, count = resolved.index or 0, torch.cuda.device_count()
    if index >= count:
        raise RetinaFaceError(f"device {device!r} asked for, but PyTorch sees {count} CUDA device(s) "
                              f"(cuda:0 to cuda:{count - 1}); pick one of those")
    return torch.device("cuda", index)


def cpu_cores() -> int:
    """The CPUs this process may run on (its affinity, which containers and ``taskset`` restrict), at least 1."""
    import os

    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:      # not Linux
        return max(1, os.cpu_count() or 1)


def batch_bucket(n: int, limit: int | None = None) -> int:
    """The batch size that ``n`` images run as on a GPU: the next power of two, at most ``limit`` (a backend's
    ``max_batch``; None: no limit). Every batch shape is planned by cuDNN (seconds in float16) and captured as a
    CUDA graph of its own, so a stream of partial batches of any size would keep planning; rounded up, a canvas
    has at most eight batch shapes up to 128, for at most twice the work of the images padded in."""
    bucket = 1 << max(0, n - 1).bit_length()
    return min(bucket, limit) if limit else bucket


class TuneAfter:
    """``rule(key, pixels) -> bool``: whether a shape is run by cuDNN, autotuned (True), or by PyTorch's own
    kernels (False); ``pixels`` are the pixels this call runs (batch × height × width).

    Planning a shape is a one-off price (measured on an H100, docs/benchmarks.md: about 0.15 s in float32 and
    2.2 s in float16) and the untuned kernels pay rent: several times slower on every call. A shape is therefore
    tuned once the pixels it has run untuned would have paid for its plan (the ski-rental rule: never more than
    twice the cost of the best choice made knowing the future), so a folder of one-off sizes never plans, a
    fixed input size plans within a few batches, and a size that recurs plans once it has earned it.
    :meth:`settle` tunes a shape from its next call (a warm-up that knows the shapes to come). The ``size``
    most recently used keys are remembered (bounded memory for a stream of one-off sizes).
    """

    def __init__(self, pixels: int, size: int = 1024):
        self.pixels, self.size = pixels, size
        self._run: collections.OrderedDict = collections.OrderedDict()     # key → pixels run untuned

    def __call__(self, key, pixels: int) -> bool:
        run = self._run.get(key, 0)
        _remember(self._run, key, run + (pixels if run < self.pixels else 0), self.size)
        return run >= self.pixels

    def settled(self, key) -> bool:
        """Whether ``key``'s next call runs tuned (a graph captured now keeps the tuned kernels)."""
        return self._run.get(key, 0) >= self.pixels

    def settle(self, key) -> None:
        _remember(self._run, key, self.pixels, self.size)


def _remember(ordered: collections.OrderedDict, key, value, size: int) -> None:
    """``ordered[key] = value`` as the most recently used key, forgetting the least recently used beyond ``size``."""
    ordered.pop(key, None)
    ordered[key] = value
    if len(ordered) > size:
        ordered.popitem(last=False)


@contextlib.contextmanager
def float32_convolutions(repeated: bool = True):
    """Convolutions in IEEE float32 for the duration (PyTorch allows TF32 in cuDNN's by default).

    "fp32" must mean float32: TF32 rounds convolution inputs to 10 mantissa bits (score differences up to
    1e-3 from the original's outputs). TensorRT fp32 engines are built with TF32 cleared for the same reason.

    ``repeated``: the input shape has earned its plan (see :class:`TuneAfter`). Then cuDNN runs, autotuned
    (``cudnn.benchmark``): it plans and times its kernels once per shape, then runs the fastest. Until then the
    shape runs PyTorch's own CUDA kernels, which need no plan: cuDNN's planning of a new shape would cost every
    photo of a one-off size its price (measured on an H100, `docs/benchmarks.md`: about 0.15 s in float32 and
    2.2 s in float16). PyTorch's matrix products are float32 too, unless the process allows TF32 in matrix
    products, in which case cuDNN (TF32 cleared) is kept.
    """
    cudnn = torch.backends.cudnn
    use_cudnn = cudnn.enabled and (repeated or torch.backends.cuda.matmul.allow_tf32)
    with cudnn.flags(enabled=use_cudnn, benchmark=repeated, deterministic=cudnn.deterministic, allow_tf32=False):
        yield


class SeenCounter:
    """``seen(key) -> int``: how many times ``key`` has been seen, this call included, over the last ``size``
    distinct keys (the least recently seen are forgotten, so a stream of one-off keys takes bounded memory).

    Used by :class:`GraphCache` to capture a key from its ``capture_after``-th call: a folder of photos of
    one-off sizes never pays for captures, a fixed input size pays for them once.
    """

    def __init__(self, size: int = 1024):
        self._counts: collections.OrderedDict = collections.OrderedDict()
        self.size = size

    def __call__(self, key) -> int:
        count = self._counts.get(key, 0) + 1
        _remember(self._counts, key, count, self.size)
        return count


class GraphCache:
    """``cache(key, *tensors)``: ``fn(*tensors)`` eagerly, or replayed from a CUDA graph once ``key`` is known.

    A key (for example a batch shape) is captured the ``capture_after``-th time it is seen, or later, once
    ``ready(key)`` (default: always) says that ``fn`` runs as it will from now on (a backend still running a
    shape with untuned kernels, :class:`TuneAfter`, is not captured with them); earlier calls run eagerly: a
    folder of photos of one-off sizes never pays for captures. Graphs are kept in a least-recently-used
    cache of ``size`` graphs that share one memory pool (they are never replayed concurrently). Before a
    capture, ``fn`` runs ``warmup`` times on a side stream (cuDNN and Triton choose and compile their kernels
    there). Inputs are copied into the graph's static inputs unless they are those very tensors; the outputs
    returned are the graph's static outputs, overwritten by the next replay of that key: read them first.
    """

    def __init__(self, fn: Callable, capture_after: int = 2, size: int = 8, warmup: int = 2, pool=None,
                 ready: Callable | None = None):
        self.fn, self.capture_after, self.size, self.warmup = fn, capture_after, size, warmup
        self.ready = ready
        self._graphs: collections.OrderedDict = collections.OrderedDict()
        self._seen = SeenCounter()
        self._failed: set = set()
        self._pool = pool

    @classmethod
    def stages(cls, functions: dict, options: dict | None = None) -> dict:
        """One cache per stage of a chain (``{name: fn}``; ``options``: ``{name: keyword arguments}``), all
        sharing one memory pool (the stages run one after the other, each reading the previous one's static
        outputs, which a pool never hands out while they are held)."""
        pool = torch.cuda.graph_pool_handle()
        return {name: cls(fn, pool=pool, **(options or {}).get(name, {})) for name, fn in functions.items()}

    def __call__(self, key, *xs: torch.Tensor):
        if key in self._graphs:
            self._graphs.move_to_end(key)
            return self._replay(self._graphs[key], xs)
        if self._seen(key) < self.capture_after or key in self._failed or (self.ready and not self.ready(key)):
            return self.fn(*xs)
        try:
            self._graphs[key] = self._capture(xs)
        except RuntimeError as error:     # something in fn cannot be captured here: run it eagerly
            self._failed.add(key)
            logging.getLogger("retinaface_trt").warning(
                "CUDA graph capture failed for %s (%s); running it without a graph", key,
                str(error).splitlines()[0] if str(error) else type(error).__name__)
            return self.fn(*xs)
        while len(self._graphs) > self.size:
            self._graphs.popitem(last=False)
        return self._graphs[key][2]

    def __len__(self) -> int:
        return len(self._graphs)

    @staticmethod
    def _replay(entry, xs):
        graph, inputs, outputs = entry
        for static, x in zip(inputs, xs):
            if static.data_ptr() != x.data_ptr():
                static.copy_(x, non_blocking=True)
        graph.replay()
        return outputs

    def _capture(self, xs):
        inputs = list(xs)          # the caller's tensors become the static inputs
        stream = torch.cuda.Stream(xs[0].device)
        stream.wait_stream(torch.cuda.current_stream(xs[0].device))
        with torch.cuda.stream(stream):
            for _ in range(self.warmup):
                self.fn(*inputs)
        torch.cuda.current_stream(xs[0].device).wait_stream(stream)
        if self._pool is None:
            self._pool = torch.cuda.graph_pool_handle()
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph, pool=self._pool):
            outputs = self.fn(*inputs)
        graph.replay()             # the captured run has not computed anything yet
        return graph, inputs, outputs


class Buffers:
    """Tensors reused per (name, shape, dtype): page-locked host memory (``pinned=True``, so host↔device copies
    can be asynchronous) or device memory; at most ``size`` are kept, the least recently used go first.

    Allocating pinned memory costs milliseconds, and a pipeline asks for the same few shapes again and again.
    Pinning is skipped where no CUDA device is in use.
    """

    def __init__(self, device: torch.device, pinned: bool = False, size: int = 16):
        self.device, self.size = torch.device(device), size
        self.pinned = pinned and torch.cuda.is_available()
        self._buffers: collections.OrderedDict = collections.OrderedDict()

    def get(self, name: str, shape: tuple, dtype: torch.dtype) -> torch.Tensor:
        key = (name, tuple(shape), dtype)
        if key not in self._buffers:
            self._buffers[key] = torch.empty(shape, dtype=dtype, device=self.device, pin_memory=self.pinned)
            while len(self._buffers) > self.size:
                self._buffers.popitem(last=False)
        self._buffers.move_to_end(key)
        return self._buffers[key]

    def drop(self, name) -> None:
        """Forget every buffer of ``name`` (its memory is freed once nothing uses it)."""
        for key in [key for key in self._buffers if key[0] == name]:
            del self._buffers[key]
