"""The evaluation driver, with a fake detector on small synthetic images and hand-made ground truth."""

from __future__ import annotations

import io
import json
import os

import cv2
import numpy as np
import pytest

from retinaface_trt.errors import RetinaFaceError
from runtime.face import Face
from runtime.evaluation.widerface import SETTINGS, GroundTruthImage, ScaleEntry, read_predictions
from runtime.evaluation.run import evaluate_folder

# Each synthetic image is a flat grey of its own level, which tells the fake detector which image it sees.
IMAGES = {"0--Test/a": (40, [[10, 10, 20, 20], [50, 40, 30, 30]]), "0--Test/b": (200, [[5, 5, 60, 40]])}


class FakeDetector:
    """Returns the ground-truth faces (x1, y1, x2, y2) of the image it recognises, divided by ``shrink``."""

    def __init__(self, truth: dict, shrink: float = 1.0):
        self.by_level = {IMAGES[k][0]: np.hstack([t.boxes[:, :2], t.boxes[:, :2] + t.boxes[:, 2:] - 1]) / shrink
                         for k, t in truth.items()}

    def detect(self, image: np.ndarray) -> list[Face]:
        level = min(self.by_level, key=lambda v: abs(v - float(image.mean())))
        return [Face(tuple(box), 0.5 + 0.1 * i, np.zeros((5, 2))) for i, box in enumerate(self.by_level[level])]


@pytest.fixture
def dataset(tmp_path):
    """(images folder, ground truth) for the synthetic images, 120×100 files."""
    truth = {}
    for key, (level, boxes) in IMAGES.items():
        path = tmp_path / "images" / f"{key}.jpg"
        path.parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(path), np.full((100, 120, 3), level, np.uint8))
        event, name = key.split("/")
        boxes = np.array(boxes, dtype=np.float64)
        truth[key] = GroundTruthImage(event, name, boxes, {s: np.arange(len(boxes)) for s in SETTINGS})
    return tmp_path / "images", truth


def test_perfect_detector_scores_one_on_every_setting(dataset):
    images, truth = dataset
    summary = evaluate_folder(FakeDetector(truth), images, truth, show_progress=False)
    assert [summary[s] for s in SETTINGS] == [1.0, 1.0, 1.0] and summary["faces"]["hard"] == 3


def test_scale_manifest_maps_boxes_back_to_original_pixels(dataset):
    images, truth = dataset
    manifest = {key: ScaleEntry(480, 400, 120, 100) for key in truth}
    summary = evaluate_folder(FakeDetector(truth, shrink=4.0), images, truth, scale_manifest=manifest, show_progress=False)
    assert summary["easy"] == 1.0


def test_list_restricts_images_and_face_count(dataset):
    images, truth = dataset
    summary = evaluate_folder(FakeDetector(truth), images, truth, keys=["0--Test/b"], show_progress=False)
    assert (summary["images"], summary["faces"]["easy"]) == (1, 1)


def test_outputs_written(dataset, tmp_path):
    images, truth = dataset
    summary = evaluate_folder(FakeDetector(truth), images, truth, out_dir=tmp_path / "out",
                              settings={"backend": "fake"}, show_progress=False)
    written = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert written == summary and written["settings"] == {"backend": "fake"}
    assert (tmp_path / "out" / "pr_curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_prediction_files_hold_the_official_rows(dataset, tmp_path):
    images, truth = dataset
    evaluate_folder(FakeDetector(truth), images, truth, out_dir=tmp_path / "out", show_progress=False)
    rows = read_predictions(tmp_path / "out" / "predictions", ["0--Test/a"])["0--Test/a"]
    assert rows[:, :4].tolist() == truth["0--Test/a"].boxes[::-1].tolist()  # highest score first


def test_progress_bar_reaches_the_total(dataset):
    images, truth = dataset
    stream = io.StringIO()
    evaluate_folder(FakeDetector(truth), images, truth, stream=stream)
    assert " 2/2 " in stream.getvalue() and "images/s" in stream.getvalue()


def test_listed_image_missing_from_folder_is_an_error(dataset):
    images, truth = dataset
    with pytest.raises(RetinaFaceError, match="missing from"):
        evaluate_folder(FakeDetector(truth), images, truth, keys=["0--Test/c"], show_progress=False)


def test_image_not_in_ground_truth_is_an_error(dataset):
    images, truth = dataset
    with pytest.raises(RetinaFaceError, match="not in the WIDER FACE val ground truth"):
        evaluate_folder(FakeDetector(truth), images, {"0--Test/a": truth["0--Test/a"]}, show_progress=False)


def test_image_missing_from_manifest_is_an_error(dataset):
    images, truth = dataset
    manifest = {"0--Test/a": ScaleEntry(480, 400, 120, 100)}
    with pytest.raises(RetinaFaceError, match="not in the scale manifest"):
        evaluate_folder(FakeDetector(truth), images, truth, scale_manifest=manifest, show_progress=False)


def test_resized_copies_without_their_manifest_are_refused(dataset):
    """The missing-manifest trap: ground truth in original pixels, files downscaled 4 times."""
    images, truth = dataset
    scaled = {k: GroundTruthImage(t.event, t.name, t.boxes * 4, t.keep) for k, t in truth.items()}
    with pytest.raises(RetinaFaceError, match=r"faces of 2 of 2 images reach beyond the image \(e\.g\. 0--Test/a\.jpg "
                                              r"is 120×100, its faces reach 320×280\).*pass --scale-manifest"):
        evaluate_folder(FakeDetector(truth), images, scaled, show_progress=False)


def test_manifest_of_other_copies_is_refused(dataset):
    images, truth = dataset
    manifest = {key: ScaleEntry(480, 400, 240, 200) for key in truth}
    with pytest.raises(RetinaFaceError, match=r"gives 0--Test/a\.jpg as 240×200 pixels, but the file is 120×100"):
        evaluate_folder(FakeDetector(truth), images, truth, scale_manifest=manifest, show_progress=False)


def test_manifest_with_too_small_original_sizes_is_refused(dataset):
    images, truth = dataset
    manifest = {key: ScaleEntry(60, 50, 120, 100) for key in truth}
    with pytest.raises(RetinaFaceError, match="the manifest's original sizes are wrong"):
        evaluate_folder(FakeDetector(truth), images, truth, scale_manifest=manifest, show_progress=False)


def test_box_ending_one_pixel_past_the_image_is_accepted(dataset):
    images, truth = dataset
    edge = {k: GroundTruthImage(t.event, t.name, np.vstack([t.boxes, [[100, 80, 21, 21]]]), t.keep)
            for k, t in truth.items()}   # reaches 121×101 in a 120×100 file
    assert evaluate_folder(FakeDetector(truth), images, edge, show_progress=False)["images"] == 2


def test_unwritable_output_folder_is_one_line(dataset, tmp_path, monkeypatch):
    images, truth = dataset
    real_mkdir = os.makedirs

    def full_disk(path, *args, **kwargs):
        if "predictions" in os.fspath(path):
            raise OSError(28, "No space left on device")
        return real_mkdir(path, *args, **kwargs)
    monkeypatch.setattr(os, "makedirs", full_disk)
    with pytest.raises(RetinaFaceError, match="cannot create folder .*predictions/0--Test: No space left on device"):
        evaluate_folder(FakeDetector(truth), images, truth, out_dir=tmp_path / "out", show_progress=False)


def test_the_legend_of_the_curves_covers_no_part_of_the_axes(dataset):
    from runtime.evaluation.run import pr_figure

    curve = {"recall": np.linspace(0, 1, 50), "precision": np.linspace(1, 0, 50), "ap": 0.5, "faces": 10}
    figure = pr_figure({s: curve for s in SETTINGS})
    figure.savefig(io.BytesIO(), format="png")     # the constrained layout places the legend while drawing
    renderer = figure._get_renderer()
    legend, axes = figure.legends[0].get_window_extent(renderer), figure.axes[0].get_window_extent(renderer)
    assert legend.y1 <= axes.y0 and len(figure.legends[0].get_texts()) == 3
