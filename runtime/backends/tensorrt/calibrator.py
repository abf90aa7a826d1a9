"""TensorRT's entropy calibrator (implicit INT8, TensorRT 8.6 and 10.x), fed by the project's own pre-processing.

:func:`entropy_calibrator` makes a ``trt.IInt8EntropyCalibrator2`` whose ``get_batch`` hands TensorRT the device
pointer of a torch CUDA tensor (no pycuda): one image per batch, pre-processed as the engine's inputs are
(:func:`runtime.calibration.network_inputs`: the resize policy and input size of the engine, minus the mean). The
tensor of the current batch is kept alive until the next call, and the device is synchronised before its pointer
is returned (TensorRT reads it on its own stream). An error while reading an image cannot cross TensorRT's
callback: it ends the calibration (an empty batch list) and is raised by :meth:`ImplicitCalibration.finish` after
the build, as one RetinaFaceError line.

:class:`ImplicitCalibration` ties the calibrator to the calibration cache of :mod:`runtime.calibration`: the cache
is read (and a cache made for another setup refused) before the build, and TensorRT's cache is written atomically
only after the build succeeded. TensorRT 11 has no calibrator (implicit quantization was removed in 11.0): there
:func:`entropy_calibrator` refuses with the explicit route as the fix.
"""

from __future__ import annotations

from typing import Iterable

from network import INPUT_NAME
from retinaface_trt.errors import RetinaFaceError


def entropy_calibrator(trt, batches: Iterable, cache: bytes | None = None):
    """A ``trt.IInt8EntropyCalibrator2`` over ``batches`` (float32 [1, 3, H, W] torch tensors on the build's CUDA
    device); ``cache``: TensorRT calibration cache bytes to offer instead of calibrating (None: calibrate)."""
    if hasattr(trt, "IInt8EntropyCalibrator2"):          # 8.6 and 10.x
        base = trt.IInt8EntropyCalibrator2
    else:
        raise RetinaFaceError(f"TensorRT {trt.__version__} has no INT8 calibrator (implicit quantization was removed in "
                              "11.0); use --int8-route explicit")

    class ProjectCalibrator(base):
        """Counts the batches it handed out (``batches_seen``), keeps the cache TensorRT wrote (``written``) and the
        first error (``error``)."""

        def __init__(self):
            base.__init__(self)
            self._batches, self._current = iter(batches), None
            self.offered, self.written, self.error, self.batches_seen = cache, None, None, 0

        def get_batch_size(self):
            return 1

        def get_batch(self, names):
            try:
                return self._next(list(names))
            except Exception as error:          # noqa: BLE001 - it must not cross TensorRT's callback
                self.error = self.error or error
                return []

        def _next(self, names: list[str]) -> list[int]:
            if names != [INPUT_NAME]:
                raise RetinaFaceError(f"TensorRT asked the calibrator for inputs {names}, the network has {INPUT_NAME!r}")
            batch = next(self._batches, None)
            if batch is None:
                return []                       # no more batches: calibration ends
            self._current = batch.contiguous()
            if self._current.is_cuda:
                import torch

                torch.cuda.synchronize(self._current.device)
            self.batches_seen += 1
            return [int(self._current.data_ptr())]

        def read_calibration_cache(self):
            return self.offered

        def write_calibration_cache(self, cache):
            self.written = bytes(cache)

    return ProjectCalibrator()


class ImplicitCalibration:
    """The calibrator of one build (``calibrator``) with its cache; call :meth:`finish` after the build.
    ``device``: where the images are pre-processed (the build's GPU, ``cuda:N``)."""

    def __init__(self, trt, weights_path, settings, device: str = "cuda", report=None):
        from runtime import calibration as cal
        from wts_export.weights import sha256_file

        self.settings, self.report = settings, report or cal.report_line
        files = cal.calibration_images(settings)
        self.key = cal.calibration_key(sha256_file(weights_path), settings, files, str(trt.__version__))
        payload = cal.read_cache(settings.cache, self.key) if settings.cache is not None else None
        offered = None if payload is None else cal.decode_tensorrt_cache(payload, settings.cache)
        if offered is None:
            cal.check_cache_writable(settings)
            self.report(f"{len(files)} images of {settings.images} for TensorRT's entropy calibrator")
        else:
            self.report(f"TensorRT's calibration from {settings.cache} (no calibration run)")
        self.calibrator = entropy_calibrator(trt, cal.network_inputs(files, settings, device), offered)

    def finish(self) -> None:
        """Raise the calibration's error if there was one; write TensorRT's cache if it calibrated."""
        from runtime import calibration as cal

        calibrator = self.calibrator
        if calibrator.error is not None:
            error = calibrator.error
            raise error if isinstance(error, RetinaFaceError) else RetinaFaceError(f"calibration failed: {error}")
        if calibrator.batches_seen and calibrator.written and self.settings.cache is not None:
            cal.write_cache(self.settings.cache, self.key, cal.encode_tensorrt_cache(calibrator.written))
            self.report(f"TensorRT's calibration written to {self.settings.cache}")
