"""Agreement of the in-network post-processing (``build --with-postprocess``, run here by the executor on
the CPU) with the pipeline's detect.py post-processing (``runtime.postprocess.detect_faces``).

    python tools/measure_postprocess.py photos [IMAGE ...]        # default: $RETINAFACE_SHARED/images/*
    python tools/measure_postprocess.py wider [--limit N]         # ../shared/widerface/val_subset_416, AP each way

Both sides run the same executor network on the same image at its own size (``resize original``), so
every difference comes from the post-processing: TensorRT's plain IoU against detect.py's "+1 pixel" IoU,
and top-k 3840 against 5000. Results go to stdout as one JSON object per line (docs/tensorrt.md quotes them).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
SHARED = Path(os.environ.get("RETINAFACE_SHARED", REPO.parent / "shared"))   # as the tests find it


def detector(weights_path, size, postprocess: str):
    """The executor Detector at the original size ``size`` (W, H), post-processing in the pipeline or the network."""
    from runtime.detector import Detector

    return Detector.from_options(weights=str(weights_path), backend="torch", device="cpu", resize="original",
                                 input_size=size, postprocess=postprocess)


def compare(ours: np.ndarray, theirs: np.ndarray, threshold: float) -> dict:
    """Detections scoring ≥ threshold: counts, how many of ours have an identical row in theirs (IoU ≥ 0.999),
    and the largest element difference among those matched."""
    from runtime.postprocess import box_iou

    a, b = ours[ours[:, 4] >= threshold], theirs[theirs[:, 4] >= threshold]
    matched, worst = 0, 0.0
    for row in a:
        if len(b):
            overlaps = box_iou(row[None, :4], b[:, :4])[0]
            best = int(np.argmax(overlaps))
            if overlaps[best] >= 0.999:
                matched += 1
                worst = max(worst, float(np.abs(row - b[best]).max()))
    return {"network": len(a), "pipeline": len(b), "identical": matched, "max_abs_diff": worst}


def measure_photos(paths) -> None:
    import cv2

    weights = REPO / "weights" / "mobilenet0.25_Final.pth"
    for path in paths:
        bgr = cv2.imread(str(path))
        size = (bgr.shape[1], bgr.shape[0])
        with detector(weights, size, "network") as network, detector(weights, size, "pipeline") as pipeline:
            ours, theirs = network.detect_arrays([bgr])[0], pipeline.detect_arrays([bgr])[0]
        row = {"image": Path(path).name, "size": f"{size[0]}x{size[1]}", "all": compare(ours, theirs, 0.0),
               "score>=0.5": compare(ours, theirs, 0.5), "score>=0.6": compare(ours, theirs, 0.6)}
        print(json.dumps(row), flush=True)


def measure_wider(limit: int | None) -> None:
    from runtime.evaluation.run import evaluate_folder
    from runtime.evaluation.widerface import load_ground_truth, read_image_list, read_scale_manifest

    subset = SHARED / "widerface" / "val_subset_416"
    truth = load_ground_truth(SHARED / "widerface" / "ground_truth")
    keys = read_image_list(subset / "wider_val_subset.txt")[:limit]
    manifest = read_scale_manifest(subset / "manifest.tsv")
    weights = REPO / "weights" / "mobilenet0.25_Final.pth"
    names = {"pipeline": "pipeline (detect.py: +1 IoU, top_k 5000)",
             "network": "network (TensorRT NMS: plain IoU, top_k 3840)"}
    for postprocess, name in names.items():
        start = time.perf_counter()
        with detector(weights, (416, 416), postprocess) as chosen:
            summary = evaluate_folder(chosen, subset / "images", truth, keys, manifest, show_progress=False)
        print(json.dumps({"post-processing": name, "images": summary["images"],
                          **{s: summary[s] for s in ("easy", "medium", "hard")},
                          "seconds": round(time.perf_counter() - start, 1)}), flush=True)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="what", required=True)
    photos = sub.add_parser("photos")
    photos.add_argument("images", nargs="*", type=Path)
    wider = sub.add_parser("wider")
    wider.add_argument("--limit", type=int)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    if args.what == "photos":
        images = args.images or sorted((SHARED / "images").glob("*"))
        if not images:
            parser.error(f"no images given and none in {SHARED / 'images'} (set RETINAFACE_SHARED)")
        measure_photos(images)
    else:
        measure_wider(args.limit)
    return 0


if __name__ == "__main__":
    sys.exit(main())
