"""WIDER FACE data handling and the official protocol, on hand-made cases and the real .mat files."""

from __future__ import annotations

import csv

import numpy as np
import pytest

from retinaface_trt.errors import RetinaFaceError
from runtime.evaluation.widerface import (SETTINGS, GroundTruthImage, format_predictions, load_ground_truth,
                               parse_predictions, read_image_list, read_predictions, read_scale_manifest,
                               restrict, rows_from_boxes)
from runtime.evaluation.protocol import (evaluate_predictions, match_image, normalise_scores,
                                        score_thresholds, voc_ap)


def gt_image(name: str, boxes, keep=None) -> GroundTruthImage:
    """A hand-made image: boxes (x, y, w, h); ``keep`` (default: every face) for all three settings."""
    boxes = np.array(boxes, dtype=np.float64).reshape(-1, 4)
    keep = np.arange(len(boxes)) if keep is None else np.array(keep, dtype=np.int64)
    return GroundTruthImage("0--Test", name, boxes, {s: keep for s in SETTINGS})


def rows(*rows_) -> np.ndarray:
    return np.array(rows_, dtype=np.float64).reshape(-1, 5)


def easy_ap(predictions: dict, images: list[GroundTruthImage]) -> float:
    truth = {image.key: image for image in images}
    return evaluate_predictions({f"0--Test/{k}": v for k, v in predictions.items()}, truth)["easy"]["ap"]


# ---- hand-made protocol cases -----------------------------------------------------------------


def test_exact_match_of_one_face_gives_ap_one():
    assert easy_ap({"a": rows([10, 20, 30, 40, 0.9])}, [gt_image("a", [[10, 20, 30, 40]])]) == 1.0


def test_perfect_detector_over_several_images_gives_ap_one():
    images = [gt_image("a", [[0, 0, 20, 20], [50, 50, 10, 12]]), gt_image("b", [[5, 5, 40, 40]])]
    predictions = {"a": rows([0, 0, 20, 20, 0.3], [50, 50, 10, 12, 0.8]), "b": rows([5, 5, 40, 40, 0.5])}
    assert easy_ap(predictions, images) == 1.0


def test_match_to_ignored_face_is_neither_true_nor_false_positive():
    # Face 1 is not kept: the prediction on it must leave the proposals, not count as a false positive.
    recalled, counted = match_image(rows([100, 100, 20, 20, 0.9], [0, 0, 20, 20, 0.8]),
                                    np.array([[0, 0, 20, 20], [100, 100, 20, 20]], float), np.array([0]))
    assert counted.tolist() == [False, True] and recalled.tolist() == [0, 1]


def test_prediction_on_ignored_face_does_not_lower_ap():
    image = gt_image("a", [[0, 0, 20, 20], [100, 100, 20, 20]], keep=[0])
    assert easy_ap({"a": rows([100, 100, 20, 20, 0.9], [0, 0, 20, 20, 0.1])}, [image]) == 1.0


def test_iou_exactly_one_half_with_plus_one_convention():
    # Ground truth (0, 0, 9, 9) spans 10×10 pixels inclusive; the prediction covers its upper 10×5 half.
    from runtime.postprocess import box_iou

    assert box_iou(np.array([[0, 0, 9, 4.0]]), np.array([[0, 0, 9, 9.0]]))[0, 0] == 0.5


def test_iou_exactly_one_half_counts_as_match():
    recalled, _ = match_image(rows([0, 0, 9, 4, 1.0]), np.array([[0, 0, 9, 9.0]]), np.array([0]))
    assert recalled.tolist() == [1]


def test_iou_just_below_one_half_is_no_match():
    recalled, counted = match_image(rows([0, 0, 9, 3.9, 1.0]), np.array([[0, 0, 9, 9.0]]), np.array([0]))
    assert recalled.tolist() == [0] and counted.tolist() == [True]


def test_second_detection_of_a_face_is_a_false_positive():
    recalled, counted = match_image(rows([0, 0, 20, 20, 0.9], [0, 0, 20, 20, 0.8]),
                                    np.array([[0, 0, 20, 20.0]]), np.array([0]))
    assert recalled.tolist() == [1, 1] and counted.tolist() == [True, True]


def test_predictions_on_image_without_faces_are_not_counted():
    images = [gt_image("a", [[0, 0, 20, 20]]), gt_image("empty", np.zeros((0, 4)))]
    predictions = {"a": rows([0, 0, 20, 20, 0.2]), "empty": rows([5, 5, 9, 9, 0.9], [50, 5, 9, 9, 0.8])}
    assert easy_ap(predictions, images) == 1.0


def test_image_without_predictions_still_counts_its_faces():
    images = [gt_image("a", [[0, 0, 20, 20]]), gt_image("b", [[0, 0, 20, 20]])]
    assert easy_ap({"a": rows([0, 0, 20, 20, 0.5]), "b": rows()}, images) == 0.5


def test_scores_are_normalised_over_the_whole_prediction_set():
    normalised = normalise_scores({"a": rows([0, 0, 1, 1, 0.25], [0, 0, 1, 1, 0.5]),
                                   "b": rows([0, 0, 1, 1, 0.75])})
    assert normalised["a"][:, 4].tolist() == [0.0, 0.5] and normalised["b"][:, 4].tolist() == [1.0]


def test_hand_computed_precision_recall_and_ap():
    # Scores 1, .75, .5, 0 (already normalised): TP, FP, TP, TP on 3 faces.
    # (P, R) = (1, 1/3), (1/2, 1/3), (2/3, 2/3), (3/4, 1); envelope 1, 3/4, 3/4 -> AP = 1/3 + 1/4 + 1/4.
    image = gt_image("a", [[0, 0, 10, 10], [50, 0, 10, 10], [100, 0, 10, 10]])
    predictions = {"0--Test/a": rows([0, 0, 10, 10, 1.0], [200, 0, 10, 10, 0.75],
                                     [50, 0, 10, 10, 0.5], [100, 0, 10, 10, 0.0])}
    easy = evaluate_predictions(predictions, {image.key: image})["easy"]
    t = score_thresholds()
    assert easy["ap"] == pytest.approx(5 / 6, abs=1e-12)
    assert easy["precision"][t >= 0.75].tolist() == [1.0] * int((t > 0.75).sum()) + [0.5]
    assert (easy["precision"][-1], easy["recall"][-1]) == (0.75, 1.0)


def test_thresholds_are_the_official_thousand():
    t = score_thresholds()
    assert len(t) == 1000 and t[0] == 0.999 and t[-1] == 0.0


def test_voc_ap_of_a_single_operating_point():
    assert voc_ap(np.array([0.5]), np.array([0.8])) == pytest.approx(0.4)


# ---- an independent, loop-by-loop reference on random cases -----------------------------------


def _slow_ap(predictions: dict, truth: dict, setting: str) -> float:
    """The protocol written out literally: scalar loops, a recall list per image, threshold by threshold."""
    values = np.concatenate([r[:, 4] for r in predictions.values()])
    lo, hi = values.min(), values.max()
    pr, faces = np.zeros((1000, 2)), 0
    for key, r in predictions.items():
        gt, keep = truth[key].boxes, set(truth[key].keep[setting].tolist())
        faces += len(keep)
        state, proposal, cum = [0] * len(gt), [], []
        for x, y, w, h, _ in r:
            ious = [_scalar_iou((x, y, x + w, y + h), (gx, gy, gx + gw, gy + gh)) for gx, gy, gw, gh in gt]
            j = int(np.argmax(ious))
            proposal.append(not (ious[j] >= 0.5 and j not in keep))
            if ious[j] >= 0.5 and j in keep:
                state[j] = 1
            cum.append(sum(state))
        for k in range(1000):
            above = [i for i, s in enumerate((r[:, 4] - lo) / (hi - lo)) if s >= 1 - (k + 1) / 1000]
            if above:
                pr[k] += (sum(proposal[:above[-1] + 1]), cum[above[-1]])
    precision = np.array([b / a if a else 0.0 for a, b in pr])
    return voc_ap(pr[:, 1] / faces, precision)


def _scalar_iou(a, b) -> float:
    iw = min(a[2], b[2]) - max(a[0], b[0]) + 1
    ih = min(a[3], b[3]) - max(a[1], b[1]) + 1
    if iw <= 0 or ih <= 0:
        return 0.0
    return iw * ih / ((a[2] - a[0] + 1) * (a[3] - a[1] + 1) + (b[2] - b[0] + 1) * (b[3] - b[1] + 1) - iw * ih)


def _random_case(rng, n_images=4):
    truth, predictions = {}, {}
    for i in range(n_images):
        gt = np.column_stack([rng.integers(0, 200, (8, 2)), rng.integers(4, 40, (8, 2))]).astype(float)
        image = gt_image(f"r{i}", gt, keep=np.flatnonzero(rng.random(8) < 0.6))
        jitter = gt[rng.integers(0, 8, 12)] + rng.normal(0, 3, (12, 4))
        scores = np.sort(rng.random(12))[::-1]
        truth[image.key], predictions[image.key] = image, np.column_stack([jitter, scores])
    return predictions, truth


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_ap_agrees_with_loop_reference_on_random_cases(seed):
    predictions, truth = _random_case(np.random.default_rng(seed))
    assert evaluate_predictions(predictions, truth)["easy"]["ap"] == pytest.approx(
        _slow_ap(predictions, truth, "easy"), abs=1e-12)


# ---- prediction files ---------------------------------------------------------------------------


def test_rows_from_boxes_use_inclusive_width_and_sort_by_score():
    out = rows_from_boxes(np.array([[10, 20, 29, 59], [0, 0, 9, 9.0]]), np.array([0.3, 0.9]))
    assert out.tolist() == [[0, 0, 10, 10, 0.9], [10, 20, 20, 40, 0.3]]


def test_prediction_text_round_trip():
    original = rows([1.25, 2.5, 30.125, 40.0625, 0.987654321], [3, 4, 5, 6, 0.02])
    name, parsed = parse_predictions(format_predictions("img_1", original))
    assert name == "img_1" and np.array_equal(parsed, original)


def test_empty_prediction_file_round_trip():
    assert parse_predictions(format_predictions("img_2", rows()))[1].shape == (0, 5)


def test_missing_prediction_file_is_an_error(tmp_path):
    with pytest.raises(RetinaFaceError, match="missing prediction file"):
        read_predictions(tmp_path, ["0--Parade/nothing"])


# ---- the real ground truth and manifest --------------------------------------------------------


@pytest.fixture(scope="module")
def ground_truth(shared_dir):
    return load_ground_truth(shared_dir / "widerface" / "ground_truth")


@pytest.fixture(scope="module")
def subset_dir(shared_dir):
    return shared_dir / "widerface" / "val_subset_416"


def _manifest_rows(subset_dir) -> list[dict]:
    with (subset_dir / "manifest.tsv").open(newline="") as handle:
        return list(csv.DictReader(handle, delimiter="\t"))


def test_ground_truth_holds_every_val_image_and_face(ground_truth):
    assert (len(ground_truth), sum(len(i.boxes) for i in ground_truth.values())) == (3226, 39708)


def test_ground_truth_keep_indices_point_at_boxes(ground_truth):
    assert all(len(i.keep[s]) == 0 or (i.keep[s].min() >= 0 and i.keep[s].max() < len(i.boxes))
               for i in ground_truth.values() for s in SETTINGS)


def test_subset_face_counts_match_the_manifest(ground_truth, subset_dir):
    subset = restrict(ground_truth, read_image_list(subset_dir / "wider_val_subset.txt"))
    expected = [sum(int(r[f"n_{s}"]) for r in _manifest_rows(subset_dir)) for s in SETTINGS]
    assert [sum(len(i.keep[s]) for i in subset.values()) for s in SETTINGS] == expected  # 548, 1189, 3477


def test_unknown_image_key_is_an_error(ground_truth):
    with pytest.raises(RetinaFaceError, match="not in the WIDER FACE val ground truth"):
        restrict(ground_truth, ["0--Parade/no_such_image"])


def test_manifest_maps_file_box_to_whole_original_image(subset_dir):
    entry = read_scale_manifest(subset_dir / "manifest.tsv")["0--Parade/0_Parade_Parade_0_102"]
    assert entry.to_original(np.array([[0, 0, 416, 416]])).tolist() == [[0, 0, 1024, 819]]


def test_manifest_factors_agree_with_its_scale_columns(subset_dir):
    manifest = read_scale_manifest(subset_dir / "manifest.tsv")
    for row in _manifest_rows(subset_dir):
        ratio = manifest[f"{row['event']}/{row['image']}"].to_file(np.array([[1.0, 1, 1, 1]]))[0, :2]
        assert ratio == pytest.approx([float(row["scale_x"]), float(row["scale_y"])], abs=1e-6)


def test_manifest_round_trip(subset_dir):
    entry = next(iter(read_scale_manifest(subset_dir / "manifest.tsv").values()))
    boxes = np.random.default_rng(0).uniform(0, 416, (20, 4))
    assert np.allclose(entry.to_file(entry.to_original(boxes)), boxes, rtol=0, atol=1e-9)


# ---- damaged inputs: one line each -----------------------------------------------------------------------

def test_file_that_is_not_a_mat_file_is_refused(tmp_path):
    for name in ("wider_face_val.mat", "wider_easy_val.mat", "wider_medium_val.mat", "wider_hard_val.mat"):
        (tmp_path / name).write_text("not MATLAB")
    with pytest.raises(RetinaFaceError, match=r"wider_face_val\.mat is not a readable MATLAB \.mat file"):
        load_ground_truth(tmp_path)


def test_mat_files_of_another_layout_are_refused(tmp_path):
    from scipy.io import savemat

    for name in ("wider_face_val.mat", "wider_easy_val.mat", "wider_medium_val.mat", "wider_hard_val.mat"):
        savemat(tmp_path / name, {"something": np.zeros(3)})
    with pytest.raises(RetinaFaceError, match="do not have the layout of the official WIDER FACE"):
        load_ground_truth(tmp_path)


def test_image_list_that_is_not_text_is_refused(tmp_path):
    (tmp_path / "list.txt").write_bytes(b"/0--Parade/\xff\xfe.jpg\n")
    with pytest.raises(RetinaFaceError, match="cannot read the image list .* as UTF-8 text"):
        read_image_list(tmp_path / "list.txt")


@pytest.mark.parametrize("sizes", ["abc\t1\t1\t1", "0\t10\t10\t10", "10\t10\t10"])
def test_manifest_with_bad_sizes_is_refused_naming_the_line(tmp_path, sizes):
    (tmp_path / "m.tsv").write_text("event\timage\torig_width\torig_height\tfile_width\tfile_height\n"
                                    "0--Parade\ta\t10\t10\t10\t10\n" f"0--Parade\tb\t{sizes}\n")
    with pytest.raises(RetinaFaceError, match="m.tsv: line 3: expected positive integer sizes"):
        read_scale_manifest(tmp_path / "m.tsv")
