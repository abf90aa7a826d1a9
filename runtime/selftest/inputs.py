"""The selftest's inputs: seeded synthetic photos with drawn faces, so that no image data is needed.

A real checkpoint detects faces in them (the published MobileNet-0.25 finds 29 to 35 faces with score ≥ 0.5
in each of the first four 640×640 images, 34 to 37 at 1024×624, 3 or 4 at 200×328), so the
face-agreement check has faces to compare; random weights find random detections in them (see
:mod:`wts_export.random_weights`). Every image is a smooth colour-noise background (the spread of a photo)
with faces of several sizes that do not overlap: a skin-coloured oval, hair, eyes with pupils, brows, a
nose and a mouth, antialiased.

Image ``i`` depends only on (``i``, H, W, seed): a batch holds images ``first`` .. ``first + N − 1``, so
batches of different sizes share their first images.
"""

from __future__ import annotations

import functools

import numpy as np

FACE_SIDES = (160, 112, 80, 56, 40, 32)   # face heights in pixels, largest first (larger than the image: skipped)
FACES_PER_SIDE = (1, 2, 4, 6, 10, 14)     # how many of each are wanted (placed where they fit)
SEED = 2024


def network_batch(count: int, height: int, width: int, device="cpu", seed: int = SEED, first: int = 0):
    """float32 [count, 3, height, width] on ``device``: :func:`synthetic_image` ``first`` .. ``first + count − 1``,
    BGR minus the mean."""
    from runtime.preprocess import to_network_input

    return to_network_input([synthetic_image(first + i, height, width, seed) for i in range(count)], device)


@functools.lru_cache(maxsize=32)
def synthetic_image(index: int, height: int, width: int, seed: int = SEED) -> np.ndarray:
    """BGR uint8 [height, width, 3]: image ``index`` of the seeded series for this size (cached; read-only)."""
    rng = np.random.default_rng([seed, index, height, width])
    image = _background(rng, height, width)
    for box in _face_boxes(rng, height, width):
        _draw_face(image, box, rng)
    image.setflags(write=False)
    return image


def _background(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """Smooth colour noise (blobs of about 32 pixels) with a little grain, uint8 [H, W, 3]."""
    import cv2

    coarse = rng.uniform(30, 225, size=(max(height // 32, 2), max(width // 32, 2), 3)).astype(np.float32)
    smooth = cv2.resize(coarse, (width, height), interpolation=cv2.INTER_CUBIC)
    return np.clip(smooth + rng.normal(0, 8, size=smooth.shape), 0, 255).astype(np.uint8)


def _face_boxes(rng: np.random.Generator, height: int, width: int) -> list[tuple[int, int, int]]:
    """(centre x, centre y, face height) of non-overlapping faces (a margin of a quarter face around each)."""
    taken: list[tuple[float, float, float, float]] = []
    faces = []
    for side, tries in zip(FACE_SIDES, FACES_PER_SIDE):
        half_w, half_h = 0.55 * side, 0.7 * side           # the face with its hair and a margin
        if 2 * half_w >= width or 2 * half_h >= height:
            continue
        for _ in range(tries * 4):                        # a few attempts per wanted face
            cx, cy = rng.uniform(half_w, width - half_w), rng.uniform(half_h, height - half_h)
            box = (cx - half_w, cy - half_h, cx + half_w, cy + half_h)
            if not any(_overlap(box, other) for other in taken):
                taken.append(box)
                faces.append((int(cx), int(cy), side))
            if sum(1 for f in faces if f[2] == side) == tries:
                break
    return faces


def _overlap(a, b) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


def _draw_face(image: np.ndarray, face: tuple[int, int, int], rng: np.random.Generator) -> None:
    """A cartoon face of height ``s`` centred at (x, y): hair, oval, eyes, brows, nose, mouth (BGR colours)."""
    import cv2

    x, y, s = face
    skin = tuple(int(v) for v in (rng.uniform(60, 140), rng.uniform(110, 170), rng.uniform(160, 230)))
    dark, line = (40, 40, 50), max(int(0.03 * s), 1)
    at = lambda dx, dy: (x + int(dx * s), y + int(dy * s))            # noqa: E731 - a point in face units
    size = lambda a, b: (max(int(a * s), 1), max(int(b * s), 1))       # noqa: E731
    cv2.ellipse(image, at(0, -0.15), size(0.5, 0.62), 0, 180, 360, (30, 40, 60), -1, cv2.LINE_AA)
    cv2.ellipse(image, at(0, 0), size(0.42, 0.55), 0, 0, 360, skin, -1, cv2.LINE_AA)
    for side in (-0.17, 0.17):
        cv2.ellipse(image, at(side, -0.1), size(0.08, 0.045), 0, 0, 360, (245, 245, 245), -1, cv2.LINE_AA)
        cv2.circle(image, at(side, -0.1), max(int(0.035 * s), 1), dark, -1, cv2.LINE_AA)
        cv2.line(image, at(side - 0.09, -0.2), at(side + 0.09, -0.21), dark, line, cv2.LINE_AA)
    shade = tuple(int(v * 0.8) for v in skin)
    cv2.line(image, at(0, -0.05), at(-0.03, 0.12), shade, line, cv2.LINE_AA)
    cv2.ellipse(image, at(0, 0.25), size(0.14, 0.05), 0, 0, 180, (60, 60, 150), line, cv2.LINE_AA)
