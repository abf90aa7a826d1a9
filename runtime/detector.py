"""The one detection pipeline, on top of any backend: BGR images → faces in original image pixels.

Every caller goes through :class:`Detector`: the ``detect`` CLI, the SDK ``Engine``, ``evaluate``,
``compare``, the service and the benchmark. For a group of same-sized images the chain is:

    host uint8 → (pinned buffer → device) → resize policy → minus mean → backend → priors → decode + NMS
    → one device→host copy of the detections → back to original pixels

On a CUDA device everything between the upload and the copy back stays on the device and waits on nothing
(:mod:`runtime.preprocess`, :mod:`runtime.postprocess`); where the backend allows it (``capturable``: the
executor and TensorRT) the whole chain is captured as one CUDA graph per batch shape, once the backend runs
that shape with its final kernels (from its second call; the executor first lets cuDNN plan it, see
:class:`runtime.device.TuneAfter`), and replayed after that. On a GPU a batch of n images runs as a batch of
:func:`runtime.device.batch_bucket` (n), the next power of two, padded with blank canvases whose detections are
dropped: a canvas has a few batch shapes, whatever sizes of batches the callers send. :meth:`Detector.prepare`
plans and captures the shapes to come before the first image (a service's warm-up). On the CPU the same chain
runs with OpenCV and NumPy, batches as they come.

A Detector serialises its calls (a lock): it may be shared between threads.
"""

from __future__ import annotations

import threading
from itertools import groupby

import numpy as np
import torch

from retinaface_trt.errors import RetinaFaceError
from runtime.device import Buffers, GraphCache, batch_bucket
from runtime.face import Face, faces_from_array
from runtime.image_io import to_bgr8
from retinaface_trt.thresholds import Thresholds
from runtime.options import (DEFAULT_INPUT_SIZE, DEFAULT_MAX_PIXELS, check_count,
                             check_input_size, check_resize)
from runtime.postprocess import detect_faces_batch
from runtime.preprocess import Layout, layout, network_input, place
from runtime.priors import prior_tensor


class Detector:
    """detect.py-style face detection with a backend from :mod:`runtime.backends` (a
    :class:`runtime.backends.base.Backend`: its attributes say what it can do).

    resize:      ``original`` (detect.py), ``stretch`` or ``letterbox`` (see :mod:`runtime.preprocess`)
    input_size:  (W, H) of the network input for ``stretch`` / ``letterbox``; default (640, 640)
    thresholds:  a :class:`retinaface_trt.thresholds.Thresholds` (default: detect.py's)
    max_pixels:  images with more pixels are refused (RetinaFaceError); 0 disables the limit
    cuda_graphs: replay the chain as CUDA graphs (default: when the backend is capturable and on CUDA)
    postprocess: ``pipeline`` (default: decoding and NMS here, detect.py's exact semantics) or ``network``
                 (decoding and NMS inside the network, for a backend built with them: see docs/tensorrt.md
                 for where TensorRT's NMS differs); the thresholds must then be the network's
    """

    def __init__(self, backend, *, resize: str = "original", input_size=DEFAULT_INPUT_SIZE,
                 thresholds: Thresholds = Thresholds(), max_pixels: int = DEFAULT_MAX_PIXELS,
                 cuda_graphs: bool | None = None, postprocess: str = "pipeline"):
        self.backend = backend
        self.resize = check_resize(resize)
        self.input_size = check_input_size(input_size)
        if not isinstance(thresholds, Thresholds):
            raise RetinaFaceError(f"thresholds must be a Thresholds, found {type(thresholds).__name__}")
        self.thresholds = thresholds
        self.max_pixels = check_count("max_pixels", max_pixels, low=0)
        self.postprocess = _check_postprocess(postprocess, backend, thresholds)
        self.device = torch.device(backend.device)
        on_gpu = self.device.type == "cuda"
        graphs = backend.capturable if cuda_graphs is None else bool(cuda_graphs)
        self._graphs = GraphCache.stages({"place": self._placed, "detect": self._detected},
                                         {"place": {"capture_after": PLACE_CAPTURE_AFTER},
                                          "detect": {"ready": self._settled}}) if graphs and on_gpu else None
        self._host = Buffers("cpu", pinned=on_gpu)          # uploads and results, page-locked on a GPU
        self._uploads = Buffers(self.device)                 # the device copies of the uploads
        self._staged: dict = {}                              # (device type, staging name) → bytes held
        self._copies = torch.cuda.Stream(self.device) if on_gpu else None     # the uploads' stream
        self._lock = threading.Lock()
        self._check_fixed_size()

    @classmethod
    def from_options(cls, weights=None, engine=None, backend: str = "auto", device: str | None = "cpu",
                     precision: str = "fp32", engine_cache=None, threads: int | None = None, int8=None,
                     **options) -> "Detector":
        """Build the backend (:func:`runtime.backends.create_backend`) and a Detector over it.

        ``precision`` ("fp32"/"fp16"/"int8"), ``engine_cache``, ``threads`` (CPU threads) and ``int8`` (the
        ``runtime.calibration.Int8Settings`` of precision "int8") go to the backend; ``options`` to the Detector,
        where the thresholds may be given as ``thresholds=Thresholds(...)`` or as its four keywords
        (:meth:`Thresholds.take`).
        """
        from runtime.backends import create_backend

        if weights is None and engine is None:
            raise RetinaFaceError("no model given: pass weights= (a .pth/.wts file; --weights on the command line) "
                                  "or engine= (a TensorRT engine or an .onnx model; --engine)")
        options = dict(options)
        thresholds = options["thresholds"] = Thresholds.take(options)
        in_network = options.get("postprocess", "pipeline") == "network"
        backend = create_backend(backend, weights=weights, engine=engine, device=device, precision=precision,
                                 input_size=options.get("input_size", DEFAULT_INPUT_SIZE), engine_cache=engine_cache,
                                 postprocess=thresholds.in_engine() if in_network else None, threads=threads,
                                 int8=int8)
        try:
            return cls(backend, **options)
        except BaseException:
            backend.close()
            raise

    # Public API ----------------------------------------------------------------------------------------
    def detect(self, image) -> list[Face]:
        """All kept detections of one image, by score: a BGR uint8 [H, W, 3] ndarray (gray, BGRA and 16-bit
        are converted), or a uint8 [H, W, 3] BGR tensor already on the device (e.g. decoded by nvJPEG)."""
        return self.detect_batch([image])[0]

    def detect_batch(self, images) -> list[list[Face]]:
        """:meth:`detect` for several images of any sizes; same-sized images run as one batch."""
        return [faces_from_array(dets) for dets in self.detect_arrays(images)]

    def detect_arrays(self, images) -> list[np.ndarray]:
        """Like :meth:`detect_batch`, as float32 arrays [K, 15] per image (x1, y1, x2, y2, score, five (x, y)
        in original pixels, by score): no Python object per face, for high-throughput callers.

        ``images`` may also be one uint8 tensor [N, H, W, 3] (BGR, e.g. already on the device): a batch of
        same-sized images, without per-image work on the host.
        """
        if self.backend is None:
            raise RetinaFaceError("this detector was closed; create a new one")
        if isinstance(images, torch.Tensor) and images.dim() == 4:
            return self._detect_tensor(images)
        prepared = [self._checked(image, f"image {i}") for i, image in enumerate(images)]
        plans = [self._plan(image.shape) for image in prepared]
        results: list = [None] * len(prepared)
        by_canvas = sorted(range(len(prepared)), key=lambda i: (plans[i].canvas, plans[i].image))
        for _, group in groupby(by_canvas, key=lambda i: plans[i].canvas):
            for chunk in _chunks(list(group), self.backend.max_batch):
                sizes = [(plans[j], [prepared[i] for i in same]) for j, same in _same_size(chunk, plans)]
                for index, dets in zip(chunk, self._run(sizes)):
                    results[index] = dets
        return results

    def prepare(self, size: tuple[int, int] | None = None, batches=(1,)) -> None:
        """Plan and capture now what batches of ``batches`` images (each rounded up to its
        :func:`runtime.device.batch_bucket`) of images of ``size`` (W, H; None: the input size, for ``stretch``
        and ``letterbox``) will run, so that the first of them runs at full speed (cuDNN's planning of a
        float16 shape takes seconds). A no-op on the CPU."""
        if self.backend is None:
            raise RetinaFaceError("this detector was closed; create a new one")
        if size is None and self.resize in ("original", "padded"):
            raise RetinaFaceError(f"resize {self.resize!r} has no canvas of its own: pass the image size (W, H)")
        if self.device.type != "cuda":
            return
        width, height = self._plan(tuple(size or self.input_size)[::-1] + (3,)).canvas
        with _on(self.device), self._lock:
            for n in sorted({batch_bucket(n, self.backend.max_batch) for n in batches}):
                self.backend.settle((n, 3, height, width))
                blank = self._uploads.get("prepare", (n, height, width, 3), torch.uint8).zero_()
                for _ in range(2 if self._graphs is None else self._graphs["detect"].capture_after):
                    self._download(*self._stage("detect", self._detected, blank))
                self._uploads.drop("prepare")

    @property
    def cuda_graphs(self) -> bool:
        """Whether the chain is replayed as CUDA graphs (see the class docstring)."""
        return self._graphs is not None

    def close(self) -> None:
        """Release the backend (and the GPU memory it holds). Safe to call twice."""
        if self.backend is not None:
            self.backend.close()
            self.backend, self._graphs = None, None

    def __enter__(self) -> "Detector":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # The chain -------------------------------------------------------------------------------------------
    def _placed(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 [N, H, W, 3] on the device → the resize policy's uint8 canvas [N, h, w, 3]."""
        return place(images, layout((images.shape[2], images.shape[1]), self.resize, self.input_size))

    def _settled(self, key: tuple) -> bool:
        """Whether the backend runs the detect stage's ``key`` ("detect", N, H, W, 3) with its final kernels."""
        _, n, height, width, _ = key
        return self.backend.settled((n, 3, height, width))

    def _padded(self, canvas: torch.Tensor) -> torch.Tensor:
        """A canvas batch on a GPU padded to its :func:`runtime.device.batch_bucket` with blank canvases."""
        n = canvas.shape[0]
        bucket = batch_bucket(n, self.backend.max_batch)
        if self.device.type != "cuda" or bucket == n:
            return canvas
        padded = self._uploads.get("padded", (bucket,) + tuple(canvas.shape[1:]), torch.uint8)
        padded[:n].copy_(canvas)
        padded[n:].zero_()
        return padded

    def _detected(self, canvas: torch.Tensor):
        """uint8 canvas [N, h, w, 3] on the device → (dets [N, D, 15] in network pixels, counts [N])."""
        backend = self.backend
        batch = network_input(canvas, backend.input_dtype, backend.input_channels_last)
        if self.postprocess == "network":
            return backend.infer(batch)          # (dets [N, D, 15], count [N]) from the network itself
        loc, conf, landms = backend.infer(batch)
        height, width = canvas.shape[1:3]
        priors = prior_tensor(backend.cfg, height, width, self.device)
        return detect_faces_batch(loc, conf, landms, priors, width, height, self.thresholds, backend.cfg.variance)

    def _detect_tensor(self, images: torch.Tensor) -> list[np.ndarray]:
        self._checked(images[0], "image 0")
        plan = self._plan(images.shape[1:])
        return [dets for chunk in torch.split(images, self.backend.max_batch or len(images))
                for dets in self._run([(plan, chunk)])]

    def _plan(self, shape) -> Layout:
        plan = layout((shape[1], shape[0]), self.resize, self.input_size)
        self._check_input(plan)
        return plan

    def _run(self, sizes: list[tuple[Layout, object]]) -> list[np.ndarray]:
        """[(layout, images of that size)] sharing one canvas size → detections in original pixels, in order.

        ``images`` is a list of host arrays or a uint8 tensor [n, H, W, 3]. The images are staged and uploaded
        before the lock is taken (:meth:`_upload`): a second thread's batch is copied to the device while this
        one's runs there.
        """
        with _on(self.device):
            uploads = [(plan, *self._upload(images)) for plan, images in sizes]
            with self._lock:
                canvases = []
                for plan, batch, copied in uploads:
                    if copied is not None:
                        torch.cuda.current_stream(self.device).wait_event(copied)
                        if self._graphs is not None:    # a graph reads the very tensor it was captured with, for
                            # ever: the lock's buffer, never a thread's staging one (its next upload would race)
                            batch = self._uploads.get("upload", tuple(batch.shape), torch.uint8).copy_(batch)
                    canvases.append(self._stage("place", self._placed, batch) if plan.resizes else batch)
                canvas = canvases[0] if len(canvases) == 1 else torch.cat(canvases)
                dets, counts = self._download(*self._stage("detect", self._detected, self._padded(canvas)))
                # dets views a pinned buffer that the next call of this shape overwrites: copy out under the lock
                plans = [plan for plan, images in sizes for _ in range(len(images))]
                return [plan.transform.detections_to_original(dets[i, :counts[i]]) for i, plan in enumerate(plans)]

    def _stage(self, name: str, fn, batch: torch.Tensor):
        """``fn(batch)``, replayed from a CUDA graph per (stage, shape) where graphs are on."""
        if self._graphs is None:
            return fn(batch)
        return self._graphs[name]((name,) + tuple(batch.shape), batch)

    def _upload(self, images) -> tuple[torch.Tensor, object]:
        """The images as one uint8 [N, H, W, 3] tensor on the device, and the CUDA event that its copy records
        (None when there is nothing to wait for). Host images on a GPU are stacked into this thread's page-locked
        staging memory and copied on the detector's upload stream, into this thread's device memory: both are
        reused by this thread's next call only, which comes after this call waited for its results."""
        if isinstance(images, torch.Tensor):
            return images.to(self.device), None
        if any(isinstance(image, torch.Tensor) for image in images):
            return torch.stack([torch.as_tensor(image).to(self.device) for image in images]), None
        shape = (len(images),) + images[0].shape
        if self.device.type != "cuda":
            return torch.from_numpy(np.stack(images)), None
        staged = self._staging(self._host, shape)
        for slot, image in zip(staged, images):     # torch's copy lets go of the GIL (np.stack holds it): the
            slot.copy_(torch.from_numpy(image))     # reading threads go on decoding meanwhile
        on_device = self._staging(self._uploads, shape)
        with torch.cuda.stream(self._copies):
            on_device.copy_(staged, non_blocking=True)
            copied = torch.cuda.Event()
            copied.record(self._copies)
        return on_device, copied

    def _staging(self, buffers: Buffers, shape: tuple) -> torch.Tensor:
        """A uint8 tensor of ``shape`` over this thread's staging memory in ``buffers`` (grown to the largest
        batch it has held, in powers of two: one allocation per thread and growth, whatever the sizes)."""
        needed = int(np.prod(shape))
        name = ("stage", threading.get_ident())
        held = self._staged.get((buffers.device.type, name), 0)
        if held < needed:
            held = 1 << (needed - 1).bit_length()
            self._staged[(buffers.device.type, name)] = held
            buffers.drop(name)
        return buffers.get(name, (held,), torch.uint8)[:needed].view(shape)

    def _download(self, dets: torch.Tensor, counts: torch.Tensor) -> tuple[np.ndarray, list[int]]:
        """One copy of the detections to the host (pinned on a GPU), then one wait for it."""
        if self.device.type != "cuda":
            return dets.numpy(), counts.tolist()
        host_dets = self._host.get("dets", tuple(dets.shape), dets.dtype)
        host_counts = self._host.get("counts", tuple(counts.shape), counts.dtype)
        host_dets.copy_(dets, non_blocking=True)
        host_counts.copy_(counts, non_blocking=True)
        torch.cuda.current_stream(self.device).synchronize()
        return host_dets.numpy(), host_counts.tolist()

    # Checks ----------------------------------------------------------------------------------------------
    def _checked(self, image, source: str):
        if isinstance(image, torch.Tensor):
            if image.dtype != torch.uint8 or image.dim() != 3 or image.shape[2] != 3:
                raise RetinaFaceError(f"{source}: expected a uint8 tensor [H, W, 3] (BGR), found "
                                      f"{image.dtype} {tuple(image.shape)}")
            return image
        if not isinstance(image, np.ndarray):
            raise RetinaFaceError(f"{source}: expected a numpy array (BGR uint8 [H, W, 3]), "
                                  f"got {type(image).__name__}")
        return to_bgr8(image, source, self.max_pixels)

    def _check_fixed_size(self) -> None:
        fixed = self.backend.fixed_input_size
        if fixed is not None and self.resize != "original" and tuple(fixed) != self.input_size:
            raise RetinaFaceError(f"the {self.backend.name} engine takes {fixed[0]}x{fixed[1]} inputs, but "
                                  f"input size {self.input_size[0]}x{self.input_size[1]} was asked for; "
                                  f"pass --input-size {fixed[0]}x{fixed[1]}")

    def _check_input(self, plan: Layout) -> None:
        fixed = self.backend.fixed_input_size
        if fixed is not None and tuple(fixed) != plan.canvas:
            width, height = plan.canvas
            raise RetinaFaceError(f"the {self.backend.name} engine takes {fixed[0]}x{fixed[1]} inputs, got a "
                                  f"{width}x{height} image with resize 'original'; use --resize stretch or letterbox")


POSTPROCESS = ("pipeline", "network")
# The call of a resize shape (images of one size → their canvas) from which it is replayed as a CUDA graph: a
# resize is a few kernels, and the shapes of a folder's batches of each photo size rarely recur, so a capture
# must be earned by a few calls (the detect stage, which the batch buckets keep to a few shapes, is captured
# from its second).
PLACE_CAPTURE_AFTER = 4


def _check_postprocess(postprocess: str, backend, thresholds: Thresholds) -> str:
    """``postprocess`` if the backend can do it with these thresholds; else one RetinaFaceError line."""
    if postprocess not in POSTPROCESS:
        raise RetinaFaceError(f"unknown post-processing {postprocess!r}; expected one of: {', '.join(POSTPROCESS)}")
    in_network = backend.postprocess_in_network
    if postprocess == "pipeline" and in_network:
        raise RetinaFaceError(f"the {backend.name} model decodes and suppresses inside the network; use "
                              "--postprocess network (or a model built without --with-postprocess)")
    if postprocess == "network" and not in_network:
        raise RetinaFaceError(f"the {backend.name} model has no post-processing inside; build the engine with "
                              "`retinaface-trt build --with-postprocess`, or use --postprocess pipeline")
    if in_network:
        wanted = thresholds.in_engine()
        if backend.postprocess_settings != wanted:
            raise RetinaFaceError(f"the model's built-in post-processing uses {backend.postprocess_settings}, but "
                                  f"{wanted} was asked for; pass the engine's thresholds or rebuild it")
    return postprocess


def _same_size(chunk: list[int], plans: list[Layout]):
    """(first index, indices) of consecutive runs of ``chunk`` whose images have the same size."""
    for _, run in groupby(chunk, key=lambda i: plans[i].image):
        run = list(run)
        yield run[0], run


def _chunks(items: list, size: int | None):
    """``items`` in consecutive pieces of at most ``size`` (one piece when ``size`` is None)."""
    size = size or len(items)
    return [items[i:i + size] for i in range(0, len(items), size)]


def _on(device: torch.device):
    """Make ``device`` the current CUDA device for the duration (a no-op on the CPU)."""
    import contextlib

    return torch.cuda.device(device) if device.type == "cuda" else contextlib.nullcontext()
