"""Annotated copies: boxes, scores and the five landmarks drawn on a BGR image, as detect.py draws them."""

from __future__ import annotations

import cv2
import numpy as np

from runtime.face import Face

BOX_COLOUR = (0, 0, 255)
TEXT_COLOUR = (255, 255, 255)
FONT, FONT_SCALE = cv2.FONT_HERSHEY_DUPLEX, 0.5
# BGR colours of the landmarks in RetinaFace order: left eye, right eye, nose, mouth left, mouth right.
LANDMARK_COLOURS = ((0, 0, 255), (0, 255, 255), (255, 0, 255), (0, 255, 0), (255, 0, 0))


def draw_faces(bgr: np.ndarray, faces: list[Face]) -> np.ndarray:
    """A copy of BGR uint8 [H, W, 3] with every face in ``faces`` drawn (filter by score beforehand)."""
    canvas = bgr.copy()
    for face in faces:
        x1, y1, x2, y2 = (int(round(v)) for v in face.box)
        cv2.rectangle(canvas, (x1, y1), (x2, y2), BOX_COLOUR, 2)
        label = f"{face.score:.4f}"
        cv2.putText(canvas, label, label_origin(label, x1, y1, canvas.shape), FONT, FONT_SCALE, TEXT_COLOUR)
        for (x, y), colour in zip(np.asarray(face.landmarks).reshape(5, 2), LANDMARK_COLOURS):
            cv2.circle(canvas, (int(round(x)), int(round(y))), 1, colour, 4)
    return canvas


# Extensions OpenCV reads but encodes under another name of the same format.
_ENCODER_OF = {".jfif": ".jpg", ".pxm": ".ppm"}
_GRAY_ONLY = (".pgm", ".pbm")             # one channel only
_FLOAT_ONLY = (".hdr", ".pic", ".pfm")    # float data (HDR: [0, 1] scaled by 255 when read, as written here)
def label_origin(label: str, x1: int, y1: int, shape) -> tuple[int, int]:
    """Where ``label``'s baseline starts: detect.py's place, 12 pixels below the box's top-left corner, moved inside
    the image ``shape`` (H, W, …) so that a face at an edge keeps its whole label."""
    (width, height), descent = cv2.getTextSize(label, FONT, FONT_SCALE, 1)
    x = min(max(x1, 0), max(0, shape[1] - width))
    y = min(max(y1 + 12, height), max(height, shape[0] - descent))
    return x, y


def encode_like(path: str, bgr: np.ndarray) -> bytes:
    """Encode ``bgr`` in the format named by ``path``'s extension (JPEG, PNG, PGM, …: converted to what that
    format holds, gray for PGM/PBM, float for HDR/PFM); PNG for a name whose extension OpenCV does not know.
    RetinaFaceError when a known format cannot hold this image (OpenCV's own message is not printed)."""
    from retinaface_trt.errors import RetinaFaceError

    suffix = "." + path.rsplit(".", 1)[-1].lower() if "." in path else ".png"
    suffix = _ENCODER_OF.get(suffix, suffix)
    if not cv2.haveImageWriter("x" + suffix):
        suffix = ".png"
    image = bgr
    if suffix in _GRAY_ONLY:
        image = cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY)
    elif suffix in _FLOAT_ONLY:
        image = bgr.astype(np.float32) / (255.0 if suffix != ".pfm" else 1.0)
    try:
        ok, data = cv2.imencode(suffix, image)
    except cv2.error:
        ok = False
    if not ok:
        raise RetinaFaceError(f"{path}: OpenCV cannot encode its annotated copy ({image.shape[1]}×{image.shape[0]}) "
                              f"as {suffix}; use another format for this image")
    return data.tobytes()
