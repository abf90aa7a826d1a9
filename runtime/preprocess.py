"""Resize policies and the network input, as detect.py prepares it, on the host or on the device.

Conventions:

* Images are BGR ``uint8`` [H, W, 3] (see :mod:`runtime.image_io`), a batch [N, H, W, 3]; sizes are (W, H).
* The network input is [N, 3, H, W] (float32, or the backend's float16), BGR, minus the per-channel mean
  (104, 117, 123); no 1/255 scaling and no RGB swap (detect.py). :func:`network_input` is the one place the
  mean is subtracted.
* Policies: ``original`` runs at the image's own size (detect.py's default); ``stretch`` resizes to the
  fixed input size ignoring aspect (the fixed 640×640 engine of the deployment notes); ``letterbox`` keeps the
  aspect ratio, centres the resized image and pads with the mean colour, so padded pixels are exactly 0 after
  mean subtraction; ``padded`` keeps the image at its own size, at the top left of the smallest canvas of
  :data:`CANVAS_SIDES` that holds it, padded with the mean colour at the right and bottom: images of many sizes
  share a few canvas sizes (one batch, one CUDA graph, one cuDNN plan each) and detections need no mapping back
  (``original`` pixels). It is not ``original``'s arithmetic: the network sees the padding (zeros after the mean)
  where ``original`` sees its own zero padding, so the features of the last 32 pixels at the right and bottom
  edges differ; how much the faces differ on real photos is measured in tests/runtime/test_padded.py.
  :func:`layout` decides the geometry once, for the host and the device alike.
* Resizing is ``cv2.resize(..., INTER_LINEAR)``: on the host OpenCV itself, on a GPU an integer emulation of
  it, equal to OpenCV pixel for pixel (tested): half-pixel source coordinates, 11-bit weights, OpenCV's
  rounding and truncations; at the borders a column's weight is clamped to its edge pixel but a row keeps its
  fractional weights over the clipped row index, as OpenCV does; exact 2× reductions use INTER_AREA, a
  rounded 2×2 mean.
* A :class:`Transform` maps network-input pixels back to original pixels:
  ``x_orig = (x_net - offset_x) * scale_x`` (likewise for y).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import cv2
import numpy as np
import torch

from retinaface_trt import detections
from runtime.options import check_resize

MEAN_BGR = (104.0, 117.0, 123.0)
# The canvas sides of ``padded`` (multiples of 32, each at most 1.25× the one before from 256 on); beyond the last,
# a side is rounded up to a multiple of 1024.
CANVAS_SIDES = (64, 128, 192, 256, 320, 384, 448, 512, 640, 768, 896, 1024, 1280, 1536, 1792, 2048, 2560, 3072,
                3584, 4096, 5120, 6144, 7168, 8192)
_COEF_BITS = 11


@dataclass(frozen=True)
class Transform:
    """Network-input pixels → original pixels: ``orig = (net - offset) * scale``, per axis."""

    scale_x: float = 1.0
    scale_y: float = 1.0
    offset_x: float = 0.0
    offset_y: float = 0.0

    def boxes_to_original(self, boxes: np.ndarray) -> np.ndarray:
        """Map float [N, 4] (x1, y1, x2, y2) boxes, or [N, 2k] interleaved (x, y) points, to original pixels."""
        out = np.array(boxes, dtype=np.float32, copy=True)
        out[:, 0::2] = (out[:, 0::2] - self.offset_x) * self.scale_x
        out[:, 1::2] = (out[:, 1::2] - self.offset_y) * self.scale_y
        return out

    def detections_to_original(self, dets: np.ndarray) -> np.ndarray:
        """Detections [K, 15] (box, score, five points) with boxes and points mapped; the score unchanged."""
        out = np.array(dets, dtype=np.float32, copy=True)
        if self == _IDENTITY:         # original and padded: network pixels are original pixels
            return out
        out[:, _COORDS] = self.boxes_to_original(out[:, _COORDS])
        return out


_IDENTITY = Transform()
_COORDS = list(detections.COORDINATES)


@dataclass(frozen=True)
class Layout:
    """How an image of ``image`` size (W, H) becomes a network input of ``canvas`` size.

    It is resized to ``resized`` and placed at ``offset`` (left, top) of a canvas filled with the mean colour;
    for ``original`` and ``stretch`` the resized image is the whole canvas.
    """

    image: tuple[int, int]
    resized: tuple[int, int]
    offset: tuple[int, int]
    canvas: tuple[int, int]

    @property
    def transform(self) -> Transform:
        (w, h), (rw, rh), (left, top) = self.image, self.resized, self.offset
        return Transform(w / rw, h / rh, float(left), float(top))

    @property
    def padded(self) -> bool:
        return self.resized != self.canvas

    @property
    def resizes(self) -> bool:
        """False when the image is its own network input (``original``)."""
        return self.resized != self.image or self.padded


def layout(image_size: tuple[int, int], resize: str, input_size: tuple[int, int]) -> Layout:
    """The geometry of ``resize`` (a policy name) for an image of ``image_size`` and a network ``input_size``."""
    width, height = image_size
    in_w, in_h = input_size
    if check_resize(resize) == "original":
        return Layout(image_size, image_size, (0, 0), image_size)
    if resize == "stretch":
        return Layout(image_size, (in_w, in_h), (0, 0), (in_w, in_h))
    if resize == "padded":
        return Layout(image_size, image_size, (0, 0), (canvas_side(width), canvas_side(height)))
    ratio = min(in_w / width, in_h / height)
    new_w, new_h = max(1, min(in_w, round(width * ratio))), max(1, min(in_h, round(height * ratio)))
    return Layout(image_size, (new_w, new_h), ((in_w - new_w) // 2, (in_h - new_h) // 2), (in_w, in_h))


def canvas_side(side: int) -> int:
    """The smallest side of :data:`CANVAS_SIDES` that holds ``side`` pixels (a multiple of 1024 beyond them)."""
    for canvas in CANVAS_SIDES:
        if canvas >= side:
            return canvas
    return -(-side // 1024) * 1024


def resize_image(bgr: np.ndarray, resize: str, input_size: tuple[int, int]) -> tuple[np.ndarray, Transform]:
    """Apply a resize policy to BGR uint8 [H, W, 3] on the host.

    Returns the network-sized BGR uint8 image and the :class:`Transform` back to ``bgr``'s pixels.
    ``input_size`` is (W, H) and is ignored by ``original``.
    """
    plan = layout((bgr.shape[1], bgr.shape[0]), resize, input_size)
    if plan.canvas == plan.image and not plan.padded:
        return bgr, plan.transform
    return place(torch.from_numpy(bgr)[None], plan)[0].numpy(), plan.transform


def place(images: torch.Tensor, plan: Layout) -> torch.Tensor:
    """uint8 [N, H, W, 3] (on any device) → uint8 [N, canvas H, canvas W, 3] as ``plan`` says."""
    resized = resize_linear_u8(images, *plan.resized)
    if not plan.padded:
        return resized
    (left, top), (width, height), (cw, ch) = plan.offset, plan.resized, plan.canvas
    canvas = _mean_u8(str(images.device)).expand(images.shape[0], ch, cw, 3).clone()
    canvas[:, top:top + height, left:left + width] = resized
    return canvas


def resize_linear_u8(images: torch.Tensor, width: int, height: int) -> torch.Tensor:
    """uint8 [N, H, W, C] → uint8 [N, height, width, C] with ``cv2.resize`` INTER_LINEAR semantics.

    OpenCV itself for host tensors; for device tensors :func:`resize_linear_emulated`.
    """
    if tuple(images.shape[1:3]) == (height, width):
        return images
    if images.is_cuda:
        return resize_linear_emulated(images, width, height)
    return torch.from_numpy(np.stack([cv2.resize(image, (width, height), interpolation=cv2.INTER_LINEAR)
                                      for image in images.numpy()]))


def resize_linear_emulated(images: torch.Tensor, width: int, height: int) -> torch.Tensor:
    """OpenCV's 8-bit INTER_LINEAR in torch integer arithmetic (any device); see the module docstring."""
    n_h, n_w = images.shape[1:3]
    if n_w == 2 * width and n_h == 2 * height:
        return _half_area(images)
    x0, x1, wx = _tables(n_w, width, str(images.device), clamp=True)
    y0, y1, wy = _tables(n_h, height, str(images.device), clamp=False)
    src = images.to(torch.int32)
    rows = (src[:, :, x0] * wx[None, None, :, 0, None] + src[:, :, x1] * wx[None, None, :, 1, None])
    top, bottom = rows[:, y0] >> 4, rows[:, y1] >> 4
    b0, b1 = wy[None, :, 0, None, None], wy[None, :, 1, None, None]
    out = (((b0 * top) >> 16) + ((b1 * bottom) >> 16) + 2) >> 2
    return out.clamp_(0, 255).to(torch.uint8)


def network_input(images: torch.Tensor, dtype: torch.dtype = torch.float32,
                  channels_last: bool = False) -> torch.Tensor:
    """uint8 [N, H, W, 3] BGR → ``dtype`` [N, 3, H, W] minus (104, 117, 123); NHWC memory if ``channels_last``."""
    nhwc = images.to(dtype) - _mean(dtype, str(images.device))
    chw = nhwc.permute(0, 3, 1, 2)
    return chw if channels_last else chw.contiguous()


def to_network_input(images: list[np.ndarray], device="cpu") -> torch.Tensor:
    """Stack same-sized BGR uint8 [H, W, 3] images into float32 [N, 3, H, W] minus the mean, on ``device``.

    The uint8 data is moved first and converted on the device (4× less to copy to a GPU).
    """
    return network_input(torch.from_numpy(np.stack(images)).to(device))


def _half_area(images: torch.Tensor) -> torch.Tensor:
    """OpenCV's INTER_AREA for an exact 2× reduction: the rounded mean of each 2×2 block."""
    n, h, w, c = images.shape
    blocks = images.to(torch.int32).reshape(n, h // 2, 2, w // 2, 2, c).sum(dim=(2, 4))
    return ((blocks + 2) >> 2).to(torch.uint8)


@functools.lru_cache(maxsize=64)
def _axis_table(n_in: int, n_out: int, clamp: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Source indices [n_out] (the pair's lower and upper) and 11-bit weights [n_out, 2] along one axis, as
    OpenCV builds them. ``clamp``: a coordinate outside [0, n_in - 1] takes its edge pixel with weight 1
    (OpenCV's columns); otherwise it keeps its fractional weights and only the indices are clipped (its rows,
    which differ by OpenCV's truncation of each product)."""
    scale = n_in / n_out
    f = ((np.arange(n_out, dtype=np.float64) + 0.5) * scale - 0.5).astype(np.float32)
    index = np.floor(f).astype(np.int64)
    frac = f - index
    if clamp:
        frac[(index < 0) | (index >= n_in - 1)] = 0.0
    weights = np.stack([1.0 - frac, frac], axis=1) * (1 << _COEF_BITS)
    return np.clip(index, 0, n_in - 1), np.clip(index + 1, 0, n_in - 1), np.rint(weights).astype(np.int64)


@functools.lru_cache(maxsize=64)
def _tables(n_in: int, n_out: int, device: str, clamp: bool) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The axis table on ``device``, cached: no host-to-device copy after the first call (none is allowed
    while a CUDA graph is being captured)."""
    index, upper, weights = _axis_table(n_in, n_out, clamp)
    as_t = lambda a: torch.from_numpy(a).to(device)  # noqa: E731
    return as_t(index), as_t(upper), as_t(weights.astype(np.int32))


@functools.lru_cache(maxsize=16)
def _mean(dtype: torch.dtype, device: str) -> torch.Tensor:
    return torch.tensor(MEAN_BGR, dtype=dtype, device=device)


@functools.lru_cache(maxsize=16)
def _mean_u8(device: str) -> torch.Tensor:
    return torch.tensor(MEAN_BGR, dtype=torch.uint8, device=device)
