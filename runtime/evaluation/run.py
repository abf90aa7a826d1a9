"""Run a detector over WIDER FACE val images and score it with the official protocol.

Images live at ``<images_dir>/<event>/<name>.jpg``. Outputs under ``out_dir`` (all written atomically):
``predictions/<event>/<name>.txt`` (the official text format), ``summary.json`` and ``pr_curves.png``.
The detector is anything with ``detect(bgr_uint8_image) -> list[Face]`` (see :mod:`runtime.face`);
its boxes are in pixels of the image file, mapped to original pixels through a scale manifest when the
files are resized copies.

Before anything is detected, the ground truth is checked to fit the files (:func:`check_frames`): WIDER FACE
boxes never reach beyond their image, so boxes beyond a file mean resized copies given without their
manifest (the AP would be computed in two different pixel grids and mean nothing), and a manifest whose
file sizes are not those of the files belongs to other copies.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import IO, Iterable, Mapping, Sequence

import numpy as np

from retinaface_trt.errors import RetinaFaceError
from retinaface_trt.fileio import atomic_write, make_dirs, write_text_atomic
from runtime.evaluation.widerface import (SETTINGS, GroundTruthImage, ScaleEntry, format_predictions, restrict,
                               rows_from_boxes)
from runtime.evaluation.protocol import evaluate_predictions
from runtime.progress import Progress


def list_images(images_dir: Path, keys: Iterable[str] | None = None) -> list[str]:
    """Keys of the images to evaluate: ``keys`` (each checked to exist) or every ``<event>/<name>.jpg``."""
    if not images_dir.is_dir():
        raise RetinaFaceError(f"image folder {images_dir} does not exist; expected <event>/<name>.jpg files")
    if keys is None:
        keys = sorted(f"{p.parent.name}/{p.stem}" for p in images_dir.glob("*/*.jpg"))
        if not keys:
            raise RetinaFaceError(f"no <event>/<name>.jpg images in {images_dir}")
    keys = list(keys)
    missing = [k for k in keys if not (images_dir / f"{k}.jpg").is_file()]
    if missing:
        raise RetinaFaceError(f"{len(missing)} listed image(s) are missing from {images_dir}, "
                              f"e.g. {missing[0]}.jpg; check --images and --list")
    return keys


FRAME_TOLERANCE_PX = 1.0   # rounding of the annotations: a box may end one pixel past the image


def check_frames(images_dir: Path, truth: Mapping[str, GroundTruthImage],
                 scale_manifest: Mapping[str, ScaleEntry] | None = None) -> None:
    """Raise RetinaFaceError unless every image's ground truth fits in its original frame: the file's size (read
    from its header), or the manifest's original size once the manifest's file size is checked to be the file's."""
    outside = []
    for key, image in truth.items():
        size = _file_size(images_dir / f"{key}.jpg")
        entry = scale_manifest[key] if scale_manifest is not None else None
        if entry is not None and (entry.file_width, entry.file_height) != size:
            raise RetinaFaceError(f"--scale-manifest gives {key}.jpg as {entry.file_width}×{entry.file_height} pixels, "
                                  f"but the file is {size[0]}×{size[1]}: the manifest belongs to other copies of the "
                                  "images; pass the manifest.tsv that came with these files")
        frame = (entry.orig_width, entry.orig_height) if entry is not None else size
        reach = tuple(np.max(image.boxes[:, :2] + image.boxes[:, 2:], axis=0)) if len(image.boxes) else (0, 0)
        if reach[0] > frame[0] + FRAME_TOLERANCE_PX or reach[1] > frame[1] + FRAME_TOLERANCE_PX:
            outside.append((key, frame, reach))
    if outside:
        key, frame, reach = outside[0]
        fix = ("pass --scale-manifest with the manifest.tsv of these resized copies, which maps the boxes back to "
               "original pixels" if scale_manifest is None else "the manifest's original sizes are wrong")
        raise RetinaFaceError(f"the ground-truth faces of {len(outside)} of {len(truth)} images reach beyond the "
                              f"image (e.g. {key}.jpg is {frame[0]}×{frame[1]}, its faces reach {reach[0]:.0f}×"
                              f"{reach[1]:.0f}): the AP would be meaningless; {fix}")


def _file_size(path: Path) -> tuple[int, int]:
    from runtime.image_io import header_size

    with open(path, "rb") as handle:
        size = header_size(handle)
    if size is None:
        raise RetinaFaceError(f"cannot read image {path}: not a readable JPEG")
    return size


def detect_rows(detector, image_path: Path, scale: ScaleEntry | None) -> np.ndarray:
    """Detect faces in one image file -> prediction rows [N, 5] (x, y, w, h, score), original pixels."""
    import cv2

    image = cv2.imread(str(image_path), cv2.IMREAD_COLOR)
    if image is None:
        raise RetinaFaceError(f"cannot read image {image_path}: not a readable JPEG")
    faces = detector.detect(image)
    boxes = np.array([face.box for face in faces], dtype=np.float64).reshape(-1, 4)
    scores = np.array([face.score for face in faces], dtype=np.float64)
    return rows_from_boxes(scale.to_original(boxes) if scale else boxes, scores)


def summarise(results: Mapping[str, dict], n_images: int, settings: Mapping | None = None) -> dict:
    """The ``summary.json`` content: AP and face count per setting, image count, settings used."""
    summary = {s: round(results[s]["ap"], 6) for s in SETTINGS}
    summary.update(images=n_images, faces={s: int(results[s]["faces"]) for s in SETTINGS},
                   protocol={"iou_threshold": 0.5, "score_thresholds": len(results[SETTINGS[0]]["recall"]),
                             "score_normalisation": "min-max over all predictions"})
    summary["settings"] = dict(settings or {})
    return summary


def plot_pr_curves(results: Mapping[str, dict], path: Path) -> None:
    """Write the easy / medium / hard precision-recall curves as a PNG (matplotlib, Agg backend)."""
    figure = pr_figure(results)
    with atomic_write(path, "wb") as handle:
        figure.savefig(handle, format="png")


def pr_figure(results: Mapping[str, dict]):
    """The matplotlib Figure of :func:`plot_pr_curves`: the legend sits below the axes, where it covers no curve
    (inside, any corner is crossed by one of the three curves on some detector)."""
    from retinaface_trt.extras import require

    require("matplotlib", "eval", "plotting the precision-recall curves").use("Agg")
    from matplotlib.figure import Figure

    figure = Figure(figsize=(6, 6), dpi=100, layout="constrained")
    axes = figure.add_subplot()
    for setting in SETTINGS:
        r = results[setting]
        axes.plot(r["recall"], r["precision"], label=f"{setting}  AP {r['ap']:.4f}  ({r['faces']} faces)")
    axes.set(xlabel="recall", ylabel="precision", xlim=(0, 1), ylim=(0, 1.01), title="WIDER FACE val")
    axes.grid(alpha=0.3)
    figure.legend(loc="outside lower center")
    return figure


def write_outputs(out_dir: Path, predictions: Mapping[str, np.ndarray], summary: dict,
                  results: Mapping[str, dict]) -> None:
    """Write the prediction files, ``summary.json`` and ``pr_curves.png`` under ``out_dir`` (created)."""
    make_dirs(out_dir)
    for key, rows in predictions.items():
        path = out_dir / "predictions" / f"{key}.txt"
        make_dirs(path.parent)
        write_text_atomic(path, format_predictions(key.split("/")[-1], rows))
    write_text_atomic(out_dir / "summary.json", json.dumps(summary, indent=2) + "\n")
    plot_pr_curves(results, out_dir / "pr_curves.png")


def evaluate_folder(detector, images_dir: str | Path, ground_truth: Mapping[str, GroundTruthImage],
                    keys: Iterable[str] | None = None, scale_manifest: Mapping[str, ScaleEntry] | None = None,
                    out_dir: str | Path | None = None, settings: Mapping | None = None,
                    show_progress: bool = True, stream: IO | None = None) -> dict:
    """Detect faces in every image (or those in ``keys``) and score them on those images only.

    scale_manifest: {key: ScaleEntry} when the files are resized copies (every key must be in it).
    out_dir: where predictions, ``summary.json`` and ``pr_curves.png`` go (nothing written if None).
    settings: detector options recorded in the summary.
    show_progress: draw a progress bar on ``stream`` (default: the current ``sys.stderr``).
    Returns the summary dict (see :func:`summarise`).
    """
    keys, truth = check_inputs(images_dir, ground_truth, keys, scale_manifest)
    return evaluate_checked(detector, images_dir, truth, keys, scale_manifest, out_dir, settings, show_progress, stream)


def evaluate_checked(detector, images_dir: str | Path, truth: Mapping[str, GroundTruthImage], keys: list[str],
                     scale_manifest: Mapping[str, ScaleEntry] | None = None, out_dir: str | Path | None = None,
                     settings: Mapping | None = None, show_progress: bool = True, stream: IO | None = None) -> dict:
    """:func:`evaluate_folder` on the ``keys`` and ``truth`` that :func:`check_inputs` returned (its checks open
    every image's header: done once, before the model loads)."""
    images_dir = Path(images_dir)
    bar = Progress(len(keys), "evaluate", enabled=show_progress, stream=stream or sys.stderr, unit="images")
    predictions = {}
    for key in keys:
        predictions[key] = detect_rows(detector, images_dir / f"{key}.jpg",
                                       scale_manifest[key] if scale_manifest is not None else None)
        bar.advance()
    bar.finish()
    results = evaluate_predictions(predictions, truth)
    summary = summarise(results, len(keys), settings)
    if out_dir is not None:
        write_outputs(Path(out_dir), predictions, summary, results)
    return summary


def check_inputs(images_dir: str | Path, ground_truth: Mapping[str, GroundTruthImage],
                 keys: Iterable[str] | None = None, scale_manifest: Mapping[str, ScaleEntry] | None = None
                 ) -> tuple[list[str], dict[str, GroundTruthImage]]:
    """The keys to evaluate and their ground truth, once every image exists, is in the ground truth (and the
    manifest) and fits its frame (:func:`check_frames`); RetinaFaceError otherwise. Cheap: no pixel is decoded."""
    images_dir = Path(images_dir)
    keys = list_images(images_dir, keys)
    truth = restrict(ground_truth, keys)
    if scale_manifest is not None:
        _check_manifest(scale_manifest, keys)
    check_frames(images_dir, truth, scale_manifest)
    return keys, truth


def _check_manifest(manifest: Mapping[str, ScaleEntry], keys: Sequence[str]) -> None:
    missing = [k for k in keys if k not in manifest]
    if missing:
        raise RetinaFaceError(f"{len(missing)} image(s) are not in the scale manifest, e.g. {missing[0]!r}; "
                              "pass the manifest.tsv that came with these images")
