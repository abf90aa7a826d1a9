"""The detection record: the one place that knows the layout of a detection row.

Every route (the pipeline's post-processing, the network's own decoding and NMS, the benchmark's baseline)
produces detections as a float array (NumPy or torch) whose last axis holds

    x1, y1, x2, y2, score, then five landmark (x, y) pairs          (:data:`WIDTH` = 15 values)

in pixels, rows sorted by score, highest first. The arrays stay arrays (no Python object per face, for
speed); everyone else asks this module for the parts by name instead of counting columns. Every accessor
takes any leading dimensions (one image [K, 15] or a batch [N, D, 15]) and returns views, not copies, where
the array library allows it.

The landmark order is RetinaFace's (left eye, right eye, nose, left and right mouth corner, as seen in the
image: :data:`LANDMARK_NAMES`).
"""

from __future__ import annotations

WIDTH = 15                       # values per detection row
BOX = slice(0, 4)                # x1, y1, x2, y2
SCORE = 4                        # the face probability in [0, 1] (the network's conf[:, 1])
LANDMARKS = slice(5, 15)         # five (x, y) pairs, interleaved
POINTS = 5
BOX_COLUMNS = tuple(range(BOX.start, BOX.stop))
# Every coordinate column (the box, then the landmarks): what a change of pixel grid maps, the score aside.
COORDINATES = BOX_COLUMNS + tuple(range(LANDMARKS.start, LANDMARKS.stop))
LANDMARK_NAMES = ("left_eye", "right_eye", "nose", "mouth_left", "mouth_right")


def boxes(dets):
    """(x1, y1, x2, y2) of each detection: [..., 4]."""
    return dets[..., BOX]


def scores(dets):
    """The score of each detection: [...]."""
    return dets[..., SCORE]


def landmarks(dets):
    """The five (x, y) points of each detection, interleaved: [..., 10]."""
    return dets[..., LANDMARKS]


def landmark_points(dets):
    """The five points of each detection as pairs: [..., 5, 2]."""
    points = landmarks(dets)
    return points.reshape(*points.shape[:-1], POINTS, 2)


def at_least(dets, threshold: float):
    """The detections [K, 15] of one image scoring at least ``threshold``, in their order."""
    return dets[scores(dets) >= threshold]


def above(dets, threshold: float):
    """The detections [K, 15] of one image scoring strictly above ``threshold``, in their order."""
    return dets[scores(dets) > threshold]


def by_score(dets):
    """The detections [K, 15] of one image sorted by score, highest first; equal scores keep their order."""
    import numpy as np

    return dets[np.argsort(-scores(dets), kind="stable")]


def join(box, score, points, xp):
    """Detection rows from their parts: boxes [..., 4], scores [...] and landmarks [..., 10], joined with the
    array library ``xp`` (numpy or torch; both take ``axis=``)."""
    return xp.concatenate((box, score[..., None], points), axis=-1)
