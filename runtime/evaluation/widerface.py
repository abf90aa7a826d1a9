"""WIDER FACE validation data: ground truth, the official prediction text format, the scale manifest.

Conventions:

- An image is keyed ``"<event>/<name>"`` (no extension), e.g. ``"0--Parade/0_Parade_Parade_0_102"``.
- Ground-truth boxes are ``(x, y, w, h)`` in pixels of the original image, as stored in the ``.mat`` files.
- A prediction row is ``(x, y, w, h, score)`` with ``w = x2 - x1 + 1`` and ``h = y2 - y1 + 1`` for a
  detected box ``(x1, y1, x2, y2)``: the form the official evaluation reads.
- A prediction file ``<event>/<name>.txt`` holds the image name, the row count, then one
  ``x y w h score`` line per row, sorted by score, highest first.
- The keep sets of the three settings are 0-based indices into an image's ground-truth boxes
  (the ``.mat`` files store them 1-based).
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Mapping, Sequence

import numpy as np

from retinaface_trt.errors import RetinaFaceError

SETTINGS = ("easy", "medium", "hard")
MAT_FILES = {"all": "wider_face_val.mat", "easy": "wider_easy_val.mat",
             "medium": "wider_medium_val.mat", "hard": "wider_hard_val.mat"}


@dataclass(frozen=True)
class GroundTruthImage:
    """The annotated faces of one validation image.

    boxes: float64 [K, 4] of (x, y, w, h), original-image pixels
    keep:  setting name -> int64 [M] of 0-based indices into ``boxes`` that the setting counts
    """

    event: str
    name: str
    boxes: np.ndarray
    keep: Mapping[str, np.ndarray]

    @property
    def key(self) -> str:
        return f"{self.event}/{self.name}"


def _loadmat(path: Path) -> dict:
    from retinaface_trt.extras import require

    loadmat = require("scipy.io", "eval", "reading the WIDER FACE ground truth").loadmat
    if not path.is_file():
        raise RetinaFaceError(f"missing WIDER FACE ground truth file {path}: --ground-truth must be the "
                              f"folder holding {', '.join(MAT_FILES.values())}")
    try:
        return loadmat(str(path))
    except Exception as error:   # noqa: BLE001 - scipy raises MatReadError, ValueError, OSError… for a bad file
        raise RetinaFaceError(f"{path} is not a readable MATLAB .mat file ({type(error).__name__}: {error}); "
                              "expected the official WIDER FACE evaluation files") from None


def _cell_str(cell) -> str:
    """The string inside a MATLAB cell as scipy returns it (an array wrapping a 1-element array)."""
    return str(np.asarray(cell).ravel()[0])


def load_ground_truth(folder: str | Path) -> dict[str, GroundTruthImage]:
    """Read the four official ``.mat`` files in ``folder`` into {key: GroundTruthImage}, in file order."""
    folder = Path(folder)
    mats = {setting: _loadmat(folder / filename) for setting, filename in MAT_FILES.items()}
    try:
        return dict(_ground_truth_images(mats))
    except (KeyError, IndexError, TypeError, ValueError) as error:
        raise RetinaFaceError(f"the .mat files in {folder} do not have the layout of the official WIDER FACE "
                              f"evaluation files ({type(error).__name__}: {error}); download them again") from None


def _ground_truth_images(mats: Mapping[str, dict]):
    """(key, GroundTruthImage) in file order from the loaded ``.mat`` files."""
    full = mats["all"]
    for e, event_cell in enumerate(full["event_list"][:, 0]):
        event = _cell_str(event_cell)
        for j, name_cell in enumerate(full["file_list"][e, 0][:, 0]):
            boxes = np.asarray(full["face_bbx_list"][e, 0][j, 0], dtype=np.float64).reshape(-1, 4)
            keep = {s: np.asarray(mats[s]["gt_list"][e, 0][j, 0], dtype=np.int64).ravel() - 1
                    for s in SETTINGS}
            image = GroundTruthImage(event, _cell_str(name_cell), boxes, keep)
            yield image.key, image


def restrict(ground_truth: Mapping[str, GroundTruthImage], keys: Iterable[str]) -> dict[str, GroundTruthImage]:
    """The ground truth of ``keys`` only, in the order given; an unknown key is an error."""
    missing = [key for key in keys if key not in ground_truth]
    if missing:
        raise RetinaFaceError(f"{len(missing)} image(s) are not in the WIDER FACE val ground truth, "
                              f"e.g. {missing[0]!r}; expected keys like '0--Parade/0_Parade_Parade_0_102'")
    return {key: ground_truth[key] for key in keys}


def image_key(path: str) -> str:
    """``"/0--Parade/0_Parade_Parade_0_102.jpg"`` (or without the slash or extension) -> the image key."""
    parts = path.strip().strip("/").rsplit("/", 2)
    if len(parts) < 2:
        raise RetinaFaceError(f"expected an image path '<event>/<name>.jpg', found {path!r}")
    return f"{parts[-2]}/{parts[-1].removesuffix('.jpg')}"


def read_image_list(path: str | Path) -> list[str]:
    """Keys of the images listed one per line in ``path`` (the ``wider_val*.txt`` format)."""
    path = Path(path)
    if not path.is_file():
        raise RetinaFaceError(f"image list {path} does not exist; expected a text file of "
                              "'/<event>/<name>.jpg' lines")
    return [image_key(line) for line in _read_text(path, "image list").splitlines() if line.strip()]


def _read_text(path: Path, what: str) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise RetinaFaceError(f"cannot read the {what} {path} as UTF-8 text: {error}") from None


# ---- prediction rows and files ---------------------------------------------------------------


def rows_from_boxes(boxes: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """Detections -> official prediction rows, sorted by score (highest first, stable).

    boxes:  [N, 4] (x1, y1, x2, y2) pixels; scores: [N].
    Returns float64 [N, 5] of (x1, y1, x2 - x1 + 1, y2 - y1 + 1, score).
    """
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    scores = np.asarray(scores, dtype=np.float64).reshape(-1)
    order = np.argsort(-scores, kind="stable")
    b = boxes[order]
    return np.column_stack([b[:, 0], b[:, 1], b[:, 2] - b[:, 0] + 1, b[:, 3] - b[:, 1] + 1, scores[order]])


def format_predictions(name: str, rows: np.ndarray) -> str:
    """The text of one prediction file: ``name``, the row count, then ``x y w h score`` lines.

    Numbers are written with ``repr`` so that reading them back gives the same float64 values.
    """
    lines = [name, str(len(rows))]
    lines += [" ".join(repr(float(v)) for v in row) for row in np.asarray(rows).reshape(-1, 5)]
    return "\n".join(lines) + "\n"


def parse_predictions(text: str, source: str = "<text>") -> tuple[str, np.ndarray]:
    """Parse one prediction file's text into (image name, float64 [N, 5] rows in file order)."""
    lines = text.splitlines()
    try:
        count = int(lines[1])
        rows = [[float(v) for v in line.split()[:5]] for line in lines[2:2 + count]]
        array = np.array(rows, dtype=np.float64).reshape(-1, 5)
    except (IndexError, ValueError) as error:
        raise RetinaFaceError(f"{source}: expected a name line, a count line and 'x y w h score' lines "
                              f"({error}); rewrite it with the evaluate command") from None
    if len(array) != count:
        raise RetinaFaceError(f"{source}: the count line says {count} rows but {len(array)} follow")
    return lines[0].strip(), array


def read_predictions(folder: str | Path, keys: Sequence[str]) -> dict[str, np.ndarray]:
    """Read ``folder/<key>.txt`` for every key: {key: float64 [N, 5] rows}."""
    folder = Path(folder)
    predictions = {}
    for key in keys:
        path = folder / f"{key}.txt"
        if not path.is_file():
            raise RetinaFaceError(f"missing prediction file {path}; every evaluated image needs one")
        predictions[key] = parse_predictions(_read_text(path, "prediction file"), str(path))[1]
    return predictions


# ---- scale manifest --------------------------------------------------------------------------


@dataclass(frozen=True)
class ScaleEntry:
    """Sizes of one image of a resized subset: the file's size and the original's, in pixels."""

    orig_width: int
    orig_height: int
    file_width: int
    file_height: int

    def to_original(self, boxes: np.ndarray) -> np.ndarray:
        """float [N, 4] (x1, y1, x2, y2) in file pixels -> original pixels (x·orig_w/file_w, ...)."""
        factors = np.array([self.orig_width / self.file_width, self.orig_height / self.file_height] * 2)
        return np.asarray(boxes, dtype=np.float64).reshape(-1, 4) * factors

    def to_file(self, boxes: np.ndarray) -> np.ndarray:
        """The inverse of :meth:`to_original`."""
        factors = np.array([self.file_width / self.orig_width, self.file_height / self.orig_height] * 2)
        return np.asarray(boxes, dtype=np.float64).reshape(-1, 4) * factors


MANIFEST_COLUMNS = ("event", "image", "orig_width", "orig_height", "file_width", "file_height")


def read_scale_manifest(path: str | Path) -> dict[str, ScaleEntry]:
    """Read a ``manifest.tsv`` (tab-separated, header row) into {key: ScaleEntry}."""
    path = Path(path)
    if not path.is_file():
        raise RetinaFaceError(f"scale manifest {path} does not exist; expected the manifest.tsv of a resized subset")
    reader = csv.DictReader(_read_text(path, "scale manifest").splitlines(), delimiter="\t")
    missing = [c for c in MANIFEST_COLUMNS if c not in (reader.fieldnames or ())]
    if missing:
        raise RetinaFaceError(f"{path}: expected columns {', '.join(MANIFEST_COLUMNS)}; "
                              f"missing {', '.join(missing)}")
    return dict(_manifest_entry(row, path, line) for line, row in enumerate(reader, start=2))


def _manifest_entry(row: Mapping[str, str], path: Path, line: int) -> tuple[str, ScaleEntry]:
    sizes = [row[c] for c in MANIFEST_COLUMNS[2:]]
    if not all(isinstance(v, str) and v.strip().isdigit() and int(v) > 0 for v in sizes):
        raise RetinaFaceError(f"{path}: line {line}: expected positive integer sizes in "
                              f"{', '.join(MANIFEST_COLUMNS[2:])}, found {', '.join(map(repr, sizes))}")
    return f"{row['event']}/{row['image']}", ScaleEntry(*(int(v) for v in sizes))
